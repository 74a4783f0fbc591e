"""Protocol Buffers fields written by hand, for the few small messages a checkpoint writer
produces (index entries, the bundle header, the object graph): importing protobuf and building
its message classes costs more (~25-45 ms) than writing them all. These are proto3's fields:
zero values (0, "") are left out, as protobuf leaves them out; the encoding itself is the
core's (:mod:`modelmorph.storage.protowire`, which also reads them)."""

from __future__ import annotations

from modelmorph.storage import protowire as wire


def varint_field(number: int, value: int) -> bytes:
    """An int32/int64/uint/enum/bool field; none if zero. A negative value takes ten bytes (its
    64-bit two's complement), as protobuf writes int32 and int64 alike."""
    return wire.varint_field(number, value) if value else b""


def fixed32_field(number: int, value: int) -> bytes:
    """A fixed32 field; none if zero."""
    return wire.fixed32_field(number, value) if value else b""


def string_field(number: int, value: str) -> bytes:
    """A string field (UTF-8); none if empty."""
    return wire.string_field(number, value) if value else b""


def message_field(number: int, body: bytes) -> bytes:
    """A message field (``body``: its fields), present even when empty, as a set sub-message
    is (a scalar's shape, an empty object-graph node)."""
    return wire.bytes_field(number, body)
