"""Keras' conventions for HDF5 attributes, shared by the reader and the writer."""

from __future__ import annotations

from typing import Any, Mapping

from modelmorph.storage.hdf5 import attr_str_list

#: HDF5 keeps attributes in the object header; Keras splits a string list longer than this
#: into ``name0``, ``name1``... (the same limit tf_keras and Keras 3 use).
HEADER_LIMIT = 64512


def read_list(attrs: Mapping[str, Any], name: str) -> list[str]:
    """A string-list attribute, whole or split into numbered chunks; empty when absent."""
    if name in attrs:
        return attr_str_list(attrs[name])
    out: list[str] = []
    chunk = 0
    while f"{name}{chunk}" in attrs:
        out += attr_str_list(attrs[f"{name}{chunk}"])
        chunk += 1
    return out


def split_list(values: list[str]) -> list[tuple[tuple[bytes, ...], int]]:
    """The chunks :func:`write_list` stores, without numpy: ``(byte strings, item size)`` each,
    the item size being the longest string's (at least 1, as numpy's), split as
    ``numpy.array_split`` splits until every chunk fits the header limit."""
    data = [v.encode("utf-8") for v in values]
    too_long = [v for v in data if len(v) > HEADER_LIMIT]
    if too_long:
        raise ValueError(f"name {too_long[0][:60]!r}... is longer than the {HEADER_LIMIT} bytes an HDF5 attribute holds")
    size = max([1] + [len(v) for v in data])
    chunks = 1
    while -(-len(data) // chunks) * size > HEADER_LIMIT:  # the first chunk is the largest
        chunks += 1
    base, extra = divmod(len(data), chunks)
    out, at = [], 0
    for i in range(chunks):
        n = base + (i < extra)
        out.append((tuple(data[at:at + n]), size))
        at += n
    return out


def write_list(attrs: Any, name: str, values: list[str]) -> None:
    """Write a string list as Keras does: byte strings, split when over the header limit."""
    import numpy as np

    data = np.array([v.encode("utf-8") for v in values]) if values else np.array([], dtype="S1")
    too_long = [v for v in values if len(v.encode("utf-8")) > HEADER_LIMIT]
    if too_long:
        raise ValueError(f"name {too_long[0][:60]!r}... is longer than the {HEADER_LIMIT} bytes an HDF5 attribute holds")
    chunks = 1
    while any(part.nbytes > HEADER_LIMIT for part in np.array_split(data, chunks)):
        chunks += 1
    if chunks == 1:
        attrs[name] = data
        return
    for i, part in enumerate(np.array_split(data, chunks)):
        attrs[f"{name}{i}"] = part

