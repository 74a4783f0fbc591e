"""HDF5 as untrusted data, through h5py: the checks of the h5py backend of the one HDF5 read
interface (:mod:`.h5file`, which is how formats read HDF5), and tensor writing for h5py writers.

HDF5 can point outside the file (external links, external raw storage, virtual datasets)
and can declare datasets far larger than what it stores. Everything here refuses those
before any data is read, and reads tensors lazily, one at a time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from ..errors import ReadError
from ..ir import Weight, dtype_name

if TYPE_CHECKING:  # imported when used: plain files are read and written without them
    import h5py
    import numpy as np

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"

#: A dataset declaring more than this while storing under 1/1000 of it is a "shape bomb".
BOMB_MIN_BYTES = 16 * 1024 * 1024
BOMB_RATIO = 1000
#: Compressed (filtered) datasets of one file may together expand to at most this many bytes
#: beyond what they store: a gzip of zeros passes the ratio rule at 1 GB for 5 MB, and numpy
#: holds a tensor whole when it is read. Keras never compresses; ``MODELMORPH_MAX_INFLATE``
#: (a size: ``2GB``) raises the limit for a trusted file that needs more.
MAX_INFLATE = 512 * 1024 * 1024
INFLATE_ENV = "MODELMORPH_MAX_INFLATE"


def max_inflate() -> int:
    """The inflation limit: ``MODELMORPH_MAX_INFLATE`` when set, else :data:`MAX_INFLATE`."""
    import os

    from ..errors import UsageError
    from ..options import parse_size

    text = os.environ.get(INFLATE_ENV, "").strip()
    if not text:
        return MAX_INFLATE
    try:
        return parse_size(text)
    except ValueError as exc:
        raise UsageError(f"{INFLATE_ENV} {exc}") from None


def inflation(ds: "h5py.Dataset") -> int:
    """Bytes a filtered (compressed) dataset expands to beyond what it stores; 0 unfiltered."""
    if ds.id.get_create_plist().get_nfilters() == 0:
        return 0
    return max(0, declared_nbytes(ds) - ds.id.get_storage_size())


def is_hdf5_header(header: bytes) -> bool:
    # HDF5 may start at 0, 512, 1024... (user block); Keras files start at 0.
    return header.startswith(HDF5_MAGIC)


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]


def check_links(group: "h5py.Group", source: str | Path) -> None:
    """Refuse soft, external and user-defined links anywhere below ``group`` (they can point
    at other files). One traversal in HDF5 itself: it follows hard links only, once each."""
    import h5py

    found = group.id.links.visit(lambda name, info: None if info.type == h5py.h5l.TYPE_HARD else (name, info.type),
                                 info=True)
    if found is None:
        return
    where = group.name.rstrip("/") + "/" + found[0].decode("utf-8", "replace")
    if found[1] == h5py.h5l.TYPE_EXTERNAL:
        raise ReadError(source, f"HDF5 external link at {where!r} points to another file; refused")
    kind = "soft" if found[1] == h5py.h5l.TYPE_SOFT else "user-defined"
    raise ReadError(source, f"HDF5 {kind} link at {where!r}; refused")


def check_dataset(ds: "h5py.Dataset", source: str | Path) -> None:
    """Refuse datasets whose data lives elsewhere or that declare more than they store."""
    where = ds.name
    if ds.is_virtual:
        raise ReadError(source, f"HDF5 virtual dataset {where!r} reads other files; refused")
    if ds.external:
        raise ReadError(source, f"HDF5 dataset {where!r} keeps its data in an external file; refused")
    declared = declared_nbytes(ds)
    if declared > BOMB_MIN_BYTES:
        stored = ds.id.get_storage_size()
        if stored * BOMB_RATIO < declared:
            raise ReadError(source, f"HDF5 dataset {where!r} declares {declared} bytes but stores {stored}; refused")


def declared_nbytes(ds: "h5py.Dataset") -> int:
    n = 1
    for d in ds.shape or ():
        n *= int(d)
    return n * ds.dtype.itemsize


def is_bfloat16(ds: "h5py.Dataset") -> bool:
    """Keras 3 stores bfloat16 as 2-byte opaque data tagged ``dtype="bfloat16"``."""
    if ds.dtype.kind != "V" or ds.dtype.itemsize != 2:
        return False
    tag = ds.attrs.get("dtype")
    return tag is None or attr_str(tag) == "bfloat16"


def dataset_dtype(ds: "h5py.Dataset") -> str:
    if is_bfloat16(ds):
        return "bfloat16"
    if ds.dtype.kind in ("S", "O", "U"):
        return "string"
    if ds.dtype.kind == "V":
        raise ValueError(f"dataset {ds.name!r} holds opaque data of {ds.dtype.itemsize} bytes per element")
    return dtype_name(ds.dtype)


def read_dataset(ds: "h5py.Dataset", source: str | Path) -> "np.ndarray":
    import numpy as np

    check_dataset(ds, source)
    if is_bfloat16(ds):
        import ml_dtypes

        raw = np.empty(ds.shape, dtype=ds.dtype)
        if raw.size:
            ds.read_direct(raw)
        return raw.view(np.uint16).view(ml_dtypes.bfloat16)
    return ds[()]


#: The largest piece of a tensor read or written at once when it can be streamed.
BLOCK_BYTES = 16 << 20


def read_blocks(ds: "h5py.Dataset", source: str | Path, max_bytes: int = BLOCK_BYTES) -> Iterator["np.ndarray"]:
    """The dataset's value as consecutive slices along its first axis, each about ``max_bytes``
    (whole chunks of a chunked dataset: libhdf5 then inflates each chunk once); the whole value
    at once for what cannot be split (0-d, strings, bfloat16)."""
    import numpy as np

    check_dataset(ds, source)
    shape = tuple(int(d) for d in ds.shape or ())
    if not shape or not shape[0] or ds.dtype.kind in ("O", "S", "U", "V"):
        yield read_dataset(ds, source)
        return
    row = ds.dtype.itemsize
    for d in shape[1:]:
        row *= d
    rows = max(1, max_bytes // max(row, 1))
    if ds.chunks:
        rows = max(ds.chunks[0], rows // ds.chunks[0] * ds.chunks[0])
    for start in range(0, shape[0], rows):
        stop = min(shape[0], start + rows)
        piece = np.empty((stop - start, *shape[1:]), dtype=ds.dtype)
        if piece.size:
            ds.read_direct(piece, np.s_[start:stop])
        yield piece


def write_weight(group: "h5py.Group", name: str, weight: Weight, max_bytes: int = BLOCK_BYTES) -> "h5py.Dataset":
    """Write ``weight`` as :func:`write_dataset` does, a piece at a time when its reader can
    stream it (:meth:`~modelmorph.Weight.blocks`): a large tensor is never whole in memory."""
    streams_strings = weight.dtype == "string" and weight.streamer is not None
    if (weight.nbytes <= max_bytes and not streams_strings) or not weight.shape or weight.dtype == "bfloat16" \
            or (weight.dtype == "string" and not streams_strings):
        array = weight.read()
        if tuple(array.shape) != tuple(weight.shape):
            raise ValueError(f"weight {weight.path!r} declares shape {tuple(weight.shape)} but holds {array.shape}")
        return write_dataset(group, name, array)
    ds, start = None, 0
    # A string costs a Python object, and h5py copies each block into its own buffers: smaller blocks.
    for piece in weight.blocks(max_bytes // 4 if weight.dtype == "string" else max_bytes):
        if tuple(piece.shape[1:]) != tuple(weight.shape[1:]) or start + piece.shape[0] > weight.shape[0]:
            raise ValueError(f"weight {weight.path!r} declares shape {tuple(weight.shape)} but a piece of it "
                             f"has shape {piece.shape}")
        if ds is None:
            if weight.dtype == "string":  # variable-length, as write_dataset stores strings
                import h5py

                ds = group.create_dataset(name, shape=tuple(weight.shape), dtype=h5py.string_dtype())
            else:
                ds = group.create_dataset(name, shape=tuple(weight.shape), dtype=piece.dtype)
        ds[start:start + piece.shape[0]] = piece
        start += piece.shape[0]
    if ds is None or start != weight.shape[0]:
        raise ValueError(f"weight {weight.path!r} declares {weight.shape[0]} rows but holds {start}")
    return ds


def write_weight_bytes(fd: int, offset: int, nbytes: int, weight: Weight, max_bytes: int = BLOCK_BYTES) -> int:
    """Write ``weight``'s value as C-order little-endian bytes (bfloat16: its 2-byte patterns)
    to ``nbytes`` bytes of file descriptor ``fd`` from ``offset``, a piece at a time when its
    reader streams it; returns their CRC-32. ValueError if the value is not the declared shape."""
    import numpy as np

    from ..ir import numpy_dtype
    from .filecopy import crc32

    stored = np.dtype(np.uint16) if weight.dtype == "bfloat16" else numpy_dtype(weight.dtype)
    crc, at, end = 0, offset, offset + nbytes
    for piece in weight.blocks(max_bytes):
        whole = at == offset and at + piece.size * stored.itemsize == end
        if tuple(piece.shape[1:]) != tuple(weight.shape[1:]) or (whole and tuple(piece.shape) != tuple(weight.shape)):
            raise ValueError(f"weight {weight.path!r} declares shape {tuple(weight.shape)} but holds {piece.shape}")
        data = np.ascontiguousarray(piece).view(stored) if weight.dtype == "bfloat16" else piece
        data = np.ascontiguousarray(data, dtype=stored.newbyteorder("<")).reshape(-1).view(np.uint8)
        if at + len(data) > end:
            raise ValueError(f"weight {weight.path!r} holds more than its declared shape {tuple(weight.shape)}")
        view = memoryview(data)
        crc = crc32(view, crc)
        while view:
            written = os.pwrite(fd, view, at)
            view, at = view[written:], at + written
    if at != end:
        raise ValueError(f"weight {weight.path!r} holds less than its declared shape {tuple(weight.shape)}")
    return crc


def weight_from_dataset(ds: "h5py.Dataset", path: str, source: str | Path, trainable: bool = True) -> Weight:
    """A lazy weight backed by ``ds`` (checked now, read when a writer asks)."""
    try:
        name = ds.name
        check_dataset(ds, source)
        if ds.shape is None:  # a null dataspace: no value at all
            raise ValueError(f"dataset {name!r} has no dataspace (no value)")
        dtype = dataset_dtype(ds)
        shape = tuple(int(d) for d in ds.shape)
    except ValueError as exc:
        raise ReadError(source, _short(exc)) from None
    except (OSError, RuntimeError, KeyError, TypeError) as exc:  # libhdf5 failing on a damaged header
        raise ReadError(source, f"HDF5 dataset {path!r} cannot be read: {_short(exc)}") from None
    return Weight(path, shape, dtype, trainable, loader=lambda: read_dataset(ds, source))


def write_dataset(group: "h5py.Group", name: str, array: "np.ndarray") -> "h5py.Dataset":
    """Write one tensor as Keras does: float16 natively, bfloat16 as tagged 2-byte opaque data."""
    import h5py
    import numpy as np

    if array.dtype.name == "bfloat16":
        ds = group.create_dataset(name, data=np.ascontiguousarray(array).view(np.dtype("V2")))
        ds.attrs["dtype"] = "bfloat16"
        return ds
    if array.dtype.kind in ("O", "U"):
        return group.create_dataset(name, data=array.astype(object), dtype=h5py.string_dtype())
    return group.create_dataset(name, data=array)


def attr_str(value: Any) -> str:
    """An HDF5 string attribute, stored as str or bytes (old Keras files), as str; from h5py
    (numpy scalars and 0-d arrays) or from :mod:`modelmorph.storage.plainh5` (str, bytes)."""
    if isinstance(value, bytes):  # np.bytes_ too
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"a string attribute is not UTF-8 text (byte {exc.start})") from None
    if isinstance(value, str):  # np.str_ too
        return str(value)
    if getattr(value, "shape", None) == () and hasattr(value, "item"):  # a 0-d numpy array
        return attr_str(value[()])
    raise ValueError(f"expected a string attribute, found {type(value).__name__}")


def attr_str_list(value: Any) -> list[str]:
    """An HDF5 array-of-strings attribute (numpy array or plainh5 list) as a list of str."""
    if isinstance(value, (str, bytes)):
        return [attr_str(value)]
    if isinstance(value, list):
        return [attr_str(v) for v in value]
    if hasattr(value, "reshape") and hasattr(value, "dtype"):  # a numpy array
        return [attr_str(v) for v in value.reshape(-1)]
    raise ValueError(f"expected a list of strings, found {type(value).__name__}")


def iter_datasets(group: "h5py.Group") -> Iterator[tuple[str, "h5py.Dataset"]]:
    """Datasets below ``group`` as (relative path, dataset), in a stable order."""
    import h5py

    items: list[tuple[str, h5py.Dataset]] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            items.append((name, obj))

    group.visititems(visit)
    return iter(items)
