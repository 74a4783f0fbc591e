"""HDF5 as untrusted data, through h5py: the checks of the h5py backend of the one HDF5 read
interface (:mod:`.h5file`, which is how formats read HDF5), and tensor writing for h5py writers.

HDF5 can point outside the file (external links, external raw storage, virtual datasets)
and can declare datasets far larger than what it stores. Everything here refuses those
before any data is read, and reads tensors lazily, one at a time.
"""

from __future__ import annotations

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


def weight_from_dataset(ds: "h5py.Dataset", path: str, source: str | Path, trainable: bool = True) -> Weight:
    """A lazy weight backed by ``ds`` (checked now, read when a writer asks)."""
    check_dataset(ds, source)
    try:
        dtype = dataset_dtype(ds)
    except ValueError as exc:
        raise ReadError(source, str(exc)) from None
    return Weight(path, tuple(int(d) for d in ds.shape), dtype, trainable, loader=lambda: read_dataset(ds, source))


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
        return value.decode("utf-8")
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
