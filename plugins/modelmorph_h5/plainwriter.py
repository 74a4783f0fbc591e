"""Writing a legacy ``.h5`` without h5py or numpy: :class:`modelmorph.storage.plainh5.PlainWriter`
lays out the groups, attributes and datasets h5py would write, then each tensor's bytes are
copied file to file from the source (``Weight.raw``), checksummed on the way when the source's
check asks for it (``CopyClaims``: no second read of the source); only a tensor whose
bytes are nowhere in a file is encoded from its array.

Keras 2 keeps its string lists (``layer_names``, ``weight_names``) as arrays of fixed-length
byte strings, split into ``name0``, ``name1``... past the object header limit, exactly as
:func:`.attributes.write_list` has h5py store them; every other attribute is a UTF-8 string.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from modelmorph import Progress, Weight, WriteError
from modelmorph.storage import plainh5
from modelmorph.storage.filecopy import CopyClaims, stored_as_is
from modelmorph.storage.plainh5 import FixedStrings, PlainWriter

from .attributes import split_list


@dataclass
class H5Group:
    """One group of the file to write: its path (``""`` for the root), its attributes (``str``,
    or ``list[str]`` for a Keras string list) and its datasets, in writing order."""

    path: str
    attrs: dict[str, str | list[str]] = field(default_factory=dict)
    datasets: list[tuple[str, Weight]] = field(default_factory=list)


def plain_dtype(weight: Weight) -> tuple[str, dict[str, str]] | None:
    """How the plain writer stores ``weight`` (HDF5 dtype, dataset attributes), if it can:
    as :func:`modelmorph.storage.hdf5.write_dataset` has h5py store it."""
    if weight.dtype in plainh5.NUMERIC:
        return weight.dtype, {}
    if weight.dtype == "bfloat16":
        return "V2", {"dtype": "bfloat16"}
    return None


def can_write(groups: list[H5Group]) -> bool:
    return all(plain_dtype(w) is not None for g in groups for _, w in g.datasets)


def write_plain(path: Path, groups: list[H5Group], progress: Progress) -> bool:
    """Write ``groups`` to ``path``; False (nothing written) if the plain subset cannot hold
    them (a name with a NUL, too many attributes...), for h5py to write instead."""
    with open(path, "w+b") as f:
        writer = PlainWriter(f)
        placed = []
        try:
            for group in groups:
                writer.group(group.path, _attrs(group.attrs))
                for name, weight in group.datasets:
                    dtype, attrs = plain_dtype(weight)
                    where = f"{group.path}/{name}" if group.path else name
                    placed.append((writer.dataset(where, tuple(weight.shape), dtype, attrs or None), weight))
        except ValueError:
            return False
        end = writer.layout()  # flushed: from here on the data goes through the file descriptor
        claims = CopyClaims(weight for ds, weight in placed if ds.offset is not None)
        try:
            copies = []  # (weight, offset): the bytes lie in a file, copied all at once below
            for ds, weight in placed:
                if ds.offset is None:
                    continue  # an empty tensor stores nothing
                if stored_as_is(weight, ds.nbytes):
                    copies.append((weight, ds.offset))  # checksummed on the way for the source's check
                    continue
                _put(f, ds, weight, path)
                progress.advance(weight.nbytes)
            claims.copy(copies, f, progress.advance)
        finally:
            claims.release()
        if f.seek(0, os.SEEK_END) < end:
            f.truncate(end)  # trailing empty datasets: the file still ends where HDF5 says
    return True


def _attrs(attrs: dict[str, str | list[str]]) -> dict[str, str | FixedStrings]:
    out: dict[str, str | FixedStrings] = {}
    for name, value in attrs.items():
        if isinstance(value, str):
            out[name] = value
            continue
        chunks = split_list(value)
        if len(chunks) == 1:
            out[name] = FixedStrings(*chunks[0])
        else:
            out.update((f"{name}{i}", FixedStrings(*chunk)) for i, chunk in enumerate(chunks))
    return out


def _put(f: BinaryIO, ds: plainh5.Dataset, weight: Weight, path: Path) -> None:
    """Write one dataset's bytes from its value (the bytes are in no file to copy from)."""
    from modelmorph.storage.hdf5 import write_weight_bytes

    try:  # the whole tensor, or piece by piece when its reader streams it
        write_weight_bytes(f.fileno(), ds.offset, ds.nbytes, weight)
    except ValueError as exc:
        raise WriteError(path, str(exc)) from None
