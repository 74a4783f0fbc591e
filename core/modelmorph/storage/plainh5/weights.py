"""IR weights backed by datasets of a plain HDF5 file: lazy (numpy loads only when a tensor is
read) and carrying a :class:`~modelmorph.ir.ByteRange`, so that writers storing the same bytes
copy them file to file."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from ...errors import ReadError
from ...ir import ByteRange, Weight
from . import NUMERIC, Dataset

if TYPE_CHECKING:
    import numpy as np


def weight_from_plain(ds: Dataset, file: BinaryIO, path: str, source: str | Path, trainable: bool = True) -> Weight:
    """The weight ``path`` whose value is ``ds`` of the plain file open as ``file``."""
    if ds.dtype in NUMERIC:
        dtype = ds.dtype
    elif ds.dtype == "V2" and ds.attrs.get("dtype", "bfloat16") in ("bfloat16", b"bfloat16"):
        dtype = "bfloat16"  # Keras 3 stores bfloat16 as 2-byte opaque data, tagged
    elif ds.dtype.startswith("V"):
        raise ReadError(source, f"dataset {'/' + ds.path!r} holds opaque data of {ds.dtype[1:]} bytes per element")
    else:
        raise ReadError(source, f"dataset {'/' + ds.path!r} holds {ds.dtype} data, not numbers")
    raw = ByteRange(file, ds.offset, ds.nbytes) if ds.offset is not None else None
    load = functools.partial(_load, file, ds.offset, ds.nbytes, dtype, ds.shape, source, ds.path)
    return Weight(path, ds.shape, dtype, trainable, loader=load, raw=raw)


def _read_into(file: BinaryIO, view: memoryview, offset: int) -> int:
    if hasattr(os, "preadv"):  # positioned: leaves the file's position to its other readers
        return os.preadv(file.fileno(), [view], offset)
    file.seek(offset)
    return file.readinto(view) or 0


def _load(file: BinaryIO, offset: int | None, nbytes: int, dtype: str, shape: tuple[int, ...],
          source: str | Path, where: str) -> "np.ndarray":
    import numpy as np

    from ...ir import numpy_dtype

    target = numpy_dtype(dtype)
    if offset is None:
        return np.zeros(shape, target)
    buffer = bytearray(nbytes)
    view, got = memoryview(buffer), 0
    while got < nbytes:  # one call reads at most ~2 GiB
        n = _read_into(file, view[got:], offset + got)
        if n <= 0:
            raise ReadError(source, f"dataset {'/' + where!r} cannot be read: the file ends {nbytes - got} bytes early")
        got += n
    if dtype == "bfloat16":
        return np.frombuffer(buffer, "<u2").astype(np.uint16, copy=False).view(target).reshape(shape)
    return np.frombuffer(buffer, target.newbyteorder("<")).astype(target, copy=False).reshape(shape)
