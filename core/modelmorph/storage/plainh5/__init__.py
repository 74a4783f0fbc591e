"""Plain HDF5: the small part of HDF5 that h5py writes for Keras weight files, read and written
in pure Python, so that a conversion can move tensor bytes straight from file to file (the
kernel copies them) without importing numpy, h5py or libhdf5.

The subset ("plain" files):

- superblock version 0 with 8-byte addresses and lengths, found at 0, 512, 1024, ... of its window;
- version-1 object headers (with continuation blocks);
- groups stored as symbol tables (version-1 B-trees, local heaps, symbol nodes), hard links only;
- datasets with contiguous storage inside the file, no filters, no external storage, not virtual;
- datatypes: little-endian IEEE floats (2, 4, 8 bytes), little-endian integers (1, 2, 4, 8 bytes,
  signed or not), opaque, fixed-length strings, variable-length strings (global heap);
- attributes stored in object headers.

Every file Keras 3 and tf_keras write with h5py's defaults is plain. Anything else — and any
file that is malformed in a way the subset notices — raises :class:`Unsupported`; the HDF5
interface (``modelmorph.storage.h5file``, which is how formats read HDF5) then uses h5py, which
reads with its own checks (``modelmorph.storage.hdf5``). A file the reader finds *malformed*
raises :class:`Malformed` (a subclass), and the interface refuses it instead of handing it to
libhdf5, which on corrupted heaps can spin forever or allocate gigabytes. The reader never has
to crash, hang or over-allocate.

:func:`read` lives in :mod:`.reader`, :class:`PlainWriter` in :mod:`.writer`, and the IR weights
backed by plain datasets in :mod:`.weights`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

#: Attribute values: ``str`` (variable-length string), ``bytes`` (fixed-length string, trailing
#: NULs removed), ``int``/``float`` (numeric scalar), or a ``list`` of those for a 1-D array.
AttrValue = Union[str, bytes, int, float, list]

#: Numeric dtypes the subset holds, by numpy name, with their sizes. Opaque data is ``"V<n>"``
#: (``"V2"`` for Keras' bfloat16), strings are ``"string"`` (fixed or variable length).
NUMERIC = {
    "float16": 2, "float32": 4, "float64": 8,
    "int8": 1, "int16": 2, "int32": 4, "int64": 8,
    "uint8": 1, "uint16": 2, "uint32": 4, "uint64": 8,
}


class Unsupported(Exception):
    """The file is not plain: read it with h5py instead."""


class Malformed(Unsupported):
    """The file is not well-formed HDF5 (an address past its end, a structure with a wrong
    signature, a heap object larger than its heap...): libhdf5 must not be given it either,
    since on such files it can loop forever or allocate what a corrupted size declares."""


@dataclass
class Dataset:
    """A dataset whose data lies, contiguous and little-endian in C order, at ``offset``."""

    path: str  # "layers/dense/vars/0": from the root, no leading slash
    shape: tuple[int, ...]
    dtype: str  # a NUMERIC name, "V<n>" or "string"
    #: Absolute position of the data in the file object given to ``read`` (window start,
    #: superblock and HDF5 address added), or ``None`` when nothing is stored (``nbytes == 0``).
    offset: int | None
    nbytes: int
    attrs: dict[str, AttrValue] = field(default_factory=dict)


@dataclass
class Group:
    """A group: its attributes and the names of its members."""

    path: str  # "" for the root group
    attrs: dict[str, AttrValue] = field(default_factory=dict)
    children: list[str] = field(default_factory=list)  # member names, in HDF5's (byte) order


@dataclass
class PlainFile:
    """Everything in a plain file but the data itself."""

    groups: dict[str, Group] = field(default_factory=dict)  # by path, root "" included
    datasets: dict[str, Dataset] = field(default_factory=dict)  # by path
    #: Every group and dataset but the root, depth first (a group before its members),
    #: members in HDF5's order: the order h5py's ``visit`` gives.
    objects: list[Group | Dataset] = field(default_factory=list)

    @property
    def attrs(self) -> dict[str, AttrValue]:
        return self.groups[""].attrs


from .reader import read  # noqa: E402  (it uses the definitions above)


def __getattr__(name: str):
    # The writer loads when first asked for: reading (info, diff...) never needs it.
    if name in ("FixedStrings", "PlainWriter"):
        from . import writer

        return getattr(writer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
