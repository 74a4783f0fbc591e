"""Protocol Buffers messages read and written by hand in their wire format, without the protobuf package.

Importing protobuf and building its message classes costs more than a small message's parse:
a reader that needs a few fields of a few small messages (a checkpoint's index entries, the
object graph, a SavedModel's Keras metadata) takes them from :func:`parse`, which lists one
message's fields as the wire holds them (no schema): field number -> values in order. The
caller decides what each field means, with the helpers below following protobuf's rules: the
last value of a scalar field wins, a repeated numeric field may come packed, the occurrences of
a message field merge, a field of the wrong wire type is an unknown field (skipped).

Every problem (a value running past its message, a varint longer than ten bytes, a group or an
unknown wire type) raises :class:`WireError`, a ``ValueError`` the caller turns into its own
one-line error naming the file. Nothing here allocates more than the input it is given.
"""

from __future__ import annotations

import struct
from typing import Callable

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5

#: One message: field number -> [(wire type, value)], in wire order. A varint or fixed value is
#: an int (unsigned: see :func:`int32`, :func:`int64`), a length-delimited one ``bytes``.
Fields = dict[int, list[tuple[int, "int | bytes"]]]


class WireError(ValueError):
    """The bytes are not a well-formed protobuf message."""


def read_varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """The varint at ``pos`` (unsigned, at most 64 bits kept) and the position after it."""
    if pos >= end:
        raise WireError("truncated varint")
    byte = data[pos]
    if byte < 0x80:
        return byte, pos + 1
    value, shift = byte & 0x7F, 7
    pos += 1
    while True:
        if pos >= end:
            raise WireError("truncated varint")
        if shift > 63:
            raise WireError("varint longer than ten bytes")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value & 0xFFFFFFFFFFFFFFFF, pos
        shift += 7


def parse(data: bytes | memoryview, start: int = 0, end: int | None = None) -> Fields:
    """The fields of the message in ``data[start:end]``. Given a memoryview, its length-delimited
    values are views of it, not copies (a large message nested several levels deep is then
    held once); :func:`text` and :func:`texts` still give ``str``."""
    end = len(data) if end is None else end
    fields: Fields = {}
    pos = start
    while pos < end:
        key = data[pos]  # one-byte keys and lengths (the usual case) skip read_varint
        if key < 0x80:
            pos += 1
        else:
            key, pos = read_varint(data, pos, end)
        kind = key & 7
        if kind == VARINT:
            value, pos = read_varint(data, pos, end)
        elif kind == LENGTH:
            if pos < end and data[pos] < 0x80:
                length, pos = data[pos], pos + 1
            else:
                length, pos = read_varint(data, pos, end)
            if length > end - pos:
                raise WireError("a field runs past the end of its message")
            value, pos = data[pos:pos + length], pos + length
        elif kind == FIXED32 or kind == FIXED64:
            size = 4 if kind == FIXED32 else 8
            if size > end - pos:
                raise WireError("a field runs past the end of its message")
            value, pos = int.from_bytes(data[pos:pos + size], "little"), pos + size
        else:
            raise WireError(f"unsupported wire type {kind}")
        number = key >> 3
        values = fields.get(number)
        if values is None:
            if number == 0:
                raise WireError("field number 0")
            fields[number] = [(kind, value)]
        else:
            values.append((kind, value))
    return fields


def offsets(data: bytes, number: int) -> list[tuple[int, int]]:
    """``(start, end)`` in ``data`` of every length-delimited value of field ``number`` of the
    message ``data`` holds, the others skipped: a large repeated field is listed without
    copying or parsing its elements (each is :func:`parse`\\ d when needed)."""
    out = []
    end, pos = len(data), 0
    while pos < end:
        key = data[pos]  # one-byte keys (the usual case) skip read_varint, as in parse
        if key < 0x80:
            pos += 1
        else:
            key, pos = read_varint(data, pos, end)
        kind = key & 7
        if key >> 3 == 0:
            raise WireError("field number 0")
        if kind == VARINT:
            _, pos = read_varint(data, pos, end)
        elif kind == LENGTH:
            if pos < end and data[pos] < 0x80:
                length, pos = data[pos], pos + 1
            else:
                length, pos = read_varint(data, pos, end)
            if length > end - pos:
                raise WireError("a field runs past the end of its message")
            if key >> 3 == number:
                out.append((pos, pos + length))
            pos += length
        elif kind == FIXED32 or kind == FIXED64:
            pos += 4 if kind == FIXED32 else 8
            if pos > end:
                raise WireError("a field runs past the end of its message")
        else:
            raise WireError(f"unsupported wire type {kind}")
    return out


def varint_then_text(data: bytes) -> tuple[int, str] | None:
    """``(field 1, field 2)`` of a message holding exactly a varint field 1 then a short string
    field 2, as protobuf writes such a pair (an object graph's child references, thousands of
    them): read without building its :data:`Fields`. None for any other layout (then
    :func:`parse` it)."""
    end = len(data)
    if end < 4 or data[0] != 0x08:
        return None
    if data[1] < 0x80:  # a one-byte number skips read_varint, as in parse
        number, pos = data[1], 2
    else:
        try:
            number, pos = read_varint(data, 1, end)
        except WireError:
            return None
    if pos + 2 > end or data[pos] != 0x12 or data[pos + 1] >= 0x80 or pos + 2 + data[pos + 1] != end:
        return None
    return number, _utf8(data[pos + 2:])


# -- field values, as protobuf reads them -------------------------------------------------------
def _scalars(fields: Fields, number: int, kinds: tuple[int, ...]) -> list:
    return [value for kind, value in fields.get(number, ()) if kind in kinds]


def _last(fields: Fields, number: int, wanted: int, default):
    """The last value of field ``number`` of wire type ``wanted`` (others are unknown fields)."""
    values = fields.get(number)
    if not values:
        return default
    kind, value = values[-1]
    if kind == wanted:
        return value
    for kind, value in reversed(values):
        if kind == wanted:
            return value
    return default


def uint(fields: Fields, number: int, default: int = 0) -> int:
    """A varint field's last value, unsigned as on the wire (``uint64``, ``bool``...)."""
    return _last(fields, number, VARINT, default)


def fixed32(fields: Fields, number: int, default: int = 0) -> int:
    """A ``fixed32`` field's last value."""
    return _last(fields, number, FIXED32, default)


def int64(fields: Fields, number: int, default: int = 0) -> int:
    """An ``int64`` field's last value (two's complement)."""
    value = _last(fields, number, VARINT, default)
    return value if 0 <= value < 1 << 63 else _signed(value & 0xFFFFFFFFFFFFFFFF, 64)


def int32(fields: Fields, number: int, default: int = 0) -> int:
    """An ``int32`` (or enum) field's last value: the low 32 bits, as protobuf keeps them."""
    value = _last(fields, number, VARINT, default)
    return value if 0 <= value < 1 << 31 else _signed(value & 0xFFFFFFFF, 32)


def boolean(fields: Fields, number: int) -> bool:
    return uint(fields, number) != 0


def has(fields: Fields, number: int, kind: int | None = None) -> bool:
    """Whether field ``number`` is on the wire (with ``kind``: as that wire type)."""
    return any(kind is None or k == kind for k, _ in fields.get(number, ()))


def text(fields: Fields, number: int, default: str = "") -> str:
    """A ``string`` field's last value; raises :class:`WireError` unless it is UTF-8, as protobuf does."""
    value = _last(fields, number, LENGTH, None)
    return default if value is None else _utf8(value)


def raw(fields: Fields, number: int, default: bytes = b"") -> bytes:
    """A ``bytes`` field's last value."""
    return _last(fields, number, LENGTH, default)


def texts(fields: Fields, number: int) -> list[str]:
    """A ``repeated string`` field's values."""
    return [_utf8(value) for value in _scalars(fields, number, (LENGTH,))]


def message(fields: Fields, number: int) -> Fields | None:
    """A message field (its occurrences merged, as protobuf merges them), or None if absent."""
    values = _scalars(fields, number, (LENGTH,))
    if not values:
        return None
    return parse(values[0] if len(values) == 1 else b"".join(values))


def messages(fields: Fields, number: int) -> list[Fields]:
    """A ``repeated`` message field's elements, parsed."""
    return [parse(value) for kind, value in fields.get(number, ()) if kind == LENGTH]


def repeated_ints(fields: Fields, number: int, convert: Callable[[int], int] | None = None) -> list[int]:
    """A ``repeated`` varint field's values, packed or not (``convert``: e.g. :func:`to_int32`)."""
    out: list[int] = []
    for kind, value in fields.get(number, ()):
        if kind == VARINT:
            out.append(value)
        elif kind == LENGTH:
            pos = 0
            while pos < len(value):
                item, pos = read_varint(value, pos, len(value))
                out.append(item)
    return [convert(v) for v in out] if convert is not None else out


def repeated_fixed(fields: Fields, number: int, size: int) -> bytes:
    """A ``repeated`` fixed-size field's values (``size`` 4: float/fixed32, 8: double/fixed64),
    packed or not, as their little-endian bytes joined (for ``numpy.frombuffer`` or ``struct``)."""
    out = []
    for kind, value in fields.get(number, ()):
        if kind == LENGTH:
            if len(value) % size:
                raise WireError("a packed field's length is not a whole number of values")
            out.append(value)
        elif kind == (FIXED32 if size == 4 else FIXED64):
            out.append(value.to_bytes(size, "little"))
    return out[0] if len(out) == 1 else b"".join(out)


def to_int32(value: int) -> int:
    return _signed(value & 0xFFFFFFFF, 32)


def to_int64(value: int) -> int:
    return _signed(value & 0xFFFFFFFFFFFFFFFF, 64)


def _signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value >> (bits - 1) else value


def _utf8(value: bytes | memoryview) -> str:
    if type(value) is not bytes:  # a message parsed from a memoryview: its values are views
        value = bytes(value)
    if value.isascii():  # most names: no validation to do
        return value.decode("ascii")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise WireError("a string field is not valid UTF-8") from None


# -- writing ---------------------------------------------------------------------------------
# A message is its fields' encodings joined (protobuf writes them in field-number order; a
# reader accepts any order). These write every field they are given, zero or empty included:
# proto2's explicit presence. A proto3 writer leaves zero values out itself.
def encode_varint(value: int) -> bytes:
    """``value`` as a varint; a negative one as its 64-bit two's complement (ten bytes), as
    protobuf writes negative int32 and int64 values."""
    value &= 0xFFFFFFFFFFFFFFFF
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def varint_field(number: int, value: int) -> bytes:
    """An int32/int64/uint/enum/bool field."""
    return encode_varint(number << 3 | VARINT) + encode_varint(value)


def fixed32_field(number: int, value: int) -> bytes:
    return encode_varint(number << 3 | FIXED32) + struct.pack("<I", value)


def float_field(number: int, value: float) -> bytes:
    return encode_varint(number << 3 | FIXED32) + struct.pack("<f", value)


def bytes_field(number: int, value: bytes) -> bytes:
    """A bytes or message field (``value``: the message's encoding), present even when empty."""
    return encode_varint(number << 3 | LENGTH) + encode_varint(len(value)) + value


def string_field(number: int, value: str) -> bytes:
    return bytes_field(number, value.encode("utf-8"))


def length_prefix(number: int, length: int) -> bytes:
    """The start of a length-delimited field whose ``length`` bytes follow (a message written
    piece by piece)."""
    return encode_varint(number << 3 | LENGTH) + encode_varint(length)
