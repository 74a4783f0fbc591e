"""Parsing a large ``.onnx`` without holding its weights: the protobuf wire format is walked
(ModelProto → graph → initializer) reading the file in small pieces, and every initializer's ``raw_data`` of
at least :data:`STRIP_AT` bytes is left out of the bytes handed to the protobuf parser; its
place in the file is kept instead, so the tensor is read from there when first used. What the
parser gets is the same model less those bytes (small initializers, which shape inference may
read, stay).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from modelmorph.storage.protowire import bytes_field
from modelmorph.storage.safety import open_input

#: raw_data at least this long is read from the file when used, not parsed.
STRIP_AT = 4096

_MODEL_GRAPH, _GRAPH_INITIALIZER, _TENSOR_RAW_DATA = 7, 5, 9
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


class Malformed(ValueError):
    """The bytes are not a well-formed protobuf message."""


@dataclass(frozen=True)
class Stripped:
    """The bytes to parse, and for the n-th initializer (in file order) whose raw data was left
    out, the (offset, length) of that data in the file."""

    data: bytes
    raw: dict[int, tuple[int, int]]


class _FileBytes:
    """A file indexed like bytes, read in small chunks on demand (a memory map would bring the
    page cache's neighbouring pages, the weights, into this process's resident memory)."""

    CHUNK = 1 << 14

    def __init__(self, f):
        self.f = f
        self.size = os.fstat(f.fileno()).st_size
        self.start, self.chunk = 0, b""

    def __len__(self) -> int:
        return self.size

    def _read(self, offset: int, length: int) -> bytes:
        self.f.seek(offset)
        return self.f.read(length)

    def __getitem__(self, key):
        if isinstance(key, slice):
            return self._read(key.start, key.stop - key.start)
        if not self.start <= key < self.start + len(self.chunk):
            self.start = key
            self.chunk = self._read(key, self.CHUNK)
            if not self.chunk:
                raise Malformed("truncated")
        return self.chunk[key - self.start]


def _varint(buf, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise Malformed("truncated or overlong varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(buf, start: int, end: int):
    """(field number, wire type, field start, value start, value end) of each field in buf[start:end]."""
    pos = start
    while pos < end:
        field_start = pos
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            _, pos = _varint(buf, pos, end)
            value_start = value_end = pos
        elif wire == _I64:
            value_start, pos = pos, pos + 8
            value_end = pos
        elif wire == _I32:
            value_start, pos = pos, pos + 4
            value_end = pos
        elif wire == _LEN:
            length, value_start = _varint(buf, pos, end)
            pos = value_end = value_start + length
        else:  # groups (deprecated) and invalid wire types: not in any ONNX file
            raise Malformed(f"wire type {wire}")
        if pos > end or number == 0:
            raise Malformed("a field runs past its message")
        yield number, wire, field_start, value_start, value_end


def strip(path: Path) -> Stripped:
    """The model at ``path`` with its large raw initializer data left out (see the module)."""
    with open_input(path) as f:
        buf = _FileBytes(f)
        out = bytearray()
        raw: dict[int, tuple[int, int]] = {}
        index = 0
        for number, wire, field_start, start, end in _fields(buf, 0, len(buf)):
            if number != _MODEL_GRAPH or wire != _LEN:
                out += buf[field_start:end]
                continue
            graph = bytearray()
            for g_number, g_wire, g_field_start, g_start, g_end in _fields(buf, start, end):
                if g_number != _GRAPH_INITIALIZER or g_wire != _LEN:
                    graph += buf[g_field_start:g_end]
                    continue
                tensor = bytearray()
                data = None
                for t_number, t_wire, t_field_start, t_start, t_end in _fields(buf, g_start, g_end):
                    if t_number == _TENSOR_RAW_DATA and t_wire == _LEN:
                        data = (t_field_start, t_start, t_end)  # the last one counts, as in protobuf
                    else:
                        tensor += buf[t_field_start:t_end]
                if data is not None and data[2] - data[1] >= STRIP_AT:
                    raw[index] = (data[1], data[2] - data[1])
                elif data is not None:
                    tensor += buf[data[0]:data[2]]
                graph += bytes_field(_GRAPH_INITIALIZER, bytes(tensor))
                index += 1
            out += bytes_field(_MODEL_GRAPH, bytes(graph))
        return Stripped(bytes(out), raw)
