"""Protocol Buffers fields written by hand, for the few small messages a checkpoint writer
produces (index entries, the bundle header, the object graph): importing protobuf and building
its message classes costs more (~25-45 ms) than writing them all. Each function gives one field
as protobuf serializes it; a message is its fields joined in field-number order, as protobuf
writes them, with proto3's zero values (0, "") left out by these functions, as protobuf leaves
them out. The reading side is :mod:`modelmorph.storage.protowire`."""

from __future__ import annotations

import struct

from .table import encode_varint

_VARINT, _LENGTH, _FIXED32 = 0, 2, 5


def varint_field(number: int, value: int) -> bytes:
    """An int32/int64/uint/enum/bool field; none if zero. A negative value takes ten bytes (its
    64-bit two's complement), as protobuf writes int32 and int64 alike."""
    if not value:
        return b""
    return encode_varint(number << 3 | _VARINT) + encode_varint(value & 0xFFFFFFFFFFFFFFFF)


def fixed32_field(number: int, value: int) -> bytes:
    """A fixed32 field; none if zero."""
    return encode_varint(number << 3 | _FIXED32) + struct.pack("<I", value) if value else b""


def string_field(number: int, value: str) -> bytes:
    """A string field (UTF-8); none if empty."""
    return message_field(number, value.encode("utf-8")) if value else b""


def message_field(number: int, body: bytes) -> bytes:
    """A message field (``body``: its fields), present even when empty, as a set sub-message
    is (a scalar's shape, an empty object-graph node)."""
    return encode_varint(number << 3 | _LENGTH) + encode_varint(len(body)) + body
