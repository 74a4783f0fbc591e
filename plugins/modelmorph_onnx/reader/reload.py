"""Weights read again when written, not held from the walk to the write.

Most weights a converter hands over are views of an initializer's array: a Conv kernel is the
initializer transposed, a BatchNormalization's statistics are the initializers themselves. Such
a weight keeps only where it sits in that array (offset, strides); when the writer asks for it
the initializer is read from the file again and the same view taken, so memory holds about one
tensor at a time instead of every weight. A weight that is the initializer whole, in C order
and little-endian, also says where its bytes lie in the ``.onnx`` (``Weight.raw``): a writer
storing them may copy file to file. Anything else a converter computed stays an array.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .load import InFile


def root(array: np.ndarray) -> np.ndarray:
    """The array owning ``array``'s memory."""
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


@dataclass(frozen=True)
class View:
    """A weight as a view of what ``loader`` returns (see the module)."""

    loader: Callable[[], np.ndarray]
    shape: tuple[int, ...]
    dtype: np.dtype
    offset: int
    strides: tuple[int, ...]
    #: The initializer's bytes in the file when the view is all of them, in C order.
    whole: InFile | None = None

    def __call__(self) -> np.ndarray:
        buffer = root(self.loader())
        view = np.ndarray(self.shape, self.dtype, buffer=buffer, offset=self.offset, strides=self.strides)
        view.flags.writeable = False
        return view


def view_of(array: np.ndarray, base: np.ndarray, loader: Callable[[], np.ndarray]) -> View | None:
    """``array`` as a :class:`View` of ``base`` (the root of what ``loader`` returned), or None
    when it does not lie inside that memory."""
    if not base.flags.c_contiguous or base.base is not None:
        return None
    offset = array.__array_interface__["data"][0] - base.__array_interface__["data"][0]
    low = offset + sum(min(0, (n - 1) * s) for n, s in zip(array.shape, array.strides))
    high = offset + sum(max(0, (n - 1) * s) for n, s in zip(array.shape, array.strides)) + array.itemsize
    if array.size == 0 or low < 0 or high > base.nbytes:
        return None
    whole = None
    if (isinstance(loader, InFile) and offset == 0 and array.flags.c_contiguous and array.nbytes == loader.nbytes
            and array.dtype == np.dtype(loader.dtype)
            and (array.dtype.byteorder == "<" or (array.dtype.byteorder == "=" and sys.byteorder == "little")
                 or array.itemsize == 1)):
        whole = loader
    return View(loader, tuple(array.shape), array.dtype, offset, tuple(array.strides), whole)
