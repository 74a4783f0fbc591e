"""Keys of the slices of a partitioned (sliced) variable in a TensorBundle.

A slice of tensor ``name`` is stored under a key built with the order-preserving
"OrderedCode" byte encoding:

    num(0) · string(name) · num(rank) · for each dimension: signed(start) · signed(length)

* ``num(v)`` (unsigned, increasing): one length byte ``L`` (0..8) then ``v`` as ``L``
  big-endian bytes with leading zero bytes dropped (``0`` is the single byte ``00``).
* ``string(s)``: ``s`` with ``00`` escaped as ``00 ff`` and ``ff`` escaped as ``ff 00``,
  terminated by ``00 01``.
* ``signed(v)`` (increasing): an ``n``-byte big-endian two's-complement number (``n`` the
  smallest length with ``-2**(7n-1) <= v < 2**(7n-1)``, at most 10) whose leading ``n``
  bits (``n`` up to 10 spills into the second byte) are inverted; so a non-negative
  value starts with ``n`` one-bits then a zero-bit, a negative one with ``n`` zero-bits
  then a one-bit.

A whole-dimension extent is written as start ``0``, length ``-1``.
"""

from __future__ import annotations

from .table import BundleError

__all__ = [
    "encode_slice_key",
    "decode_slice_key",
    "FULL_EXTENT",
]

FULL_EXTENT = -1  # length written for an extent that covers the whole dimension

_MAX_RANK = 254  # TensorFlow's TensorShape limit


def _write_num(out: bytearray, value: int) -> None:
    if value < 0 or value >= 1 << 64:
        raise ValueError(f"number out of range: {value}")
    body = value.to_bytes((value.bit_length() + 7) // 8, "big")
    out.append(len(body))
    out += body


def _write_string(out: bytearray, s: bytes) -> None:
    out += _escape(s)
    out += b"\x00\x01"


def _escape(s: bytes) -> bytes:
    res = bytearray()
    for b in s:
        if b == 0:
            res += b"\x00\xff"
        elif b == 0xFF:
            res += b"\xff\x00"
        else:
            res.append(b)
    return bytes(res)


def _signed_length(value: int) -> int:
    x = ~value if value < 0 else value
    # n bytes hold [-2**(7n-1), 2**(7n-1)); x has at most 7n-1 significant bits.
    n = (x.bit_length() + 1 + 6) // 7
    return max(n, 1)


def _write_signed(out: bytearray, value: int) -> None:
    if not -(1 << 63) <= value < 1 << 63:
        raise ValueError(f"number out of int64 range: {value}")
    n = _signed_length(value)
    raw = value & ((1 << (8 * n)) - 1)  # n-byte two's complement
    header = ((1 << n) - 1) << (7 * n)  # n leading one-bits
    out += (raw ^ header).to_bytes(n, "big")


def encode_slice_key(name: str | bytes, extents) -> bytes:
    """Key of one slice of tensor ``name``.

    ``extents`` gives ``(start, length)`` per dimension; ``length`` ``None`` or ``-1``
    means the whole dimension (then ``start`` must be 0).
    """
    if isinstance(name, str):
        name = name.encode("utf-8", "surrogateescape")
    out = bytearray()
    _write_num(out, 0)
    _write_string(out, name)
    extents = list(extents)
    _write_num(out, len(extents))
    for start, length in extents:
        if length is None:
            length = FULL_EXTENT
        _write_signed(out, int(start))
        _write_signed(out, int(length))
    return bytes(out)


class _Cursor:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def fail(self, what: str) -> BundleError:
        return BundleError(f"malformed slice key {self.data[:80]!r}: {what}")

    def num(self) -> int:
        d = self.data
        if self.pos >= len(d):
            raise self.fail("truncated number")
        n = d[self.pos]
        if n > 8 or self.pos + 1 + n > len(d):
            raise self.fail("bad number length")
        v = int.from_bytes(d[self.pos + 1 : self.pos + 1 + n], "big")
        self.pos += 1 + n
        return v

    def string(self) -> bytes:
        d = self.data
        out = bytearray()
        i = self.pos
        while True:
            j_candidates = [x for x in (d.find(b"\x00", i), d.find(b"\xff", i)) if x >= 0]
            if not j_candidates:
                raise self.fail("unterminated string")
            j = min(j_candidates)
            if j + 1 >= len(d):
                raise self.fail("unterminated string")
            out += d[i:j]
            pair = d[j : j + 2]
            if pair == b"\x00\x01":
                self.pos = j + 2
                return bytes(out)
            if pair == b"\x00\xff":
                out.append(0)
            elif pair == b"\xff\x00":
                out.append(0xFF)
            else:
                raise self.fail("bad escape in string")
            i = j + 2

    def signed(self) -> int:
        d = self.data
        if self.pos >= len(d):
            raise self.fail("truncated signed number")
        negative = not d[self.pos] & 0x80
        # The length n is the count of leading bits equal to the sign bit (over two bytes).
        head = int.from_bytes(d[self.pos : self.pos + 2].ljust(2, b"\x00"), "big")
        if negative:
            head ^= 0xFFFF
        n = 0
        while n < 11 and head & (1 << (15 - n)):
            n += 1
        if n > 10:
            raise self.fail("bad signed number length")
        if self.pos + n > len(d):
            raise self.fail("truncated signed number")
        raw = int.from_bytes(d[self.pos : self.pos + n], "big")
        value = raw ^ (((1 << n) - 1) << (7 * n))  # undo the inverted length bits
        if value >> (8 * n - 1):  # n-byte two's complement
            value -= 1 << (8 * n)
        if not -(1 << 63) <= value < 1 << 63:
            raise self.fail("signed number out of int64 range")
        self.pos += n
        return value


def decode_slice_key(key: bytes) -> tuple[str, tuple[tuple[int, int | None], ...]]:
    """Inverse of :func:`encode_slice_key`: ``(name, ((start, length|None), ...))``."""
    c = _Cursor(bytes(key))
    if c.num() != 0:
        raise c.fail("leading number is not 0")
    name = c.string()
    rank = c.num()
    if rank == 0 or rank > _MAX_RANK:
        raise c.fail(f"bad rank {rank}")
    extents = []
    for _ in range(rank):
        start = c.signed()
        length = c.signed()
        extents.append((start, None if length == FULL_EXTENT else length))
    if c.pos != len(c.data):
        raise c.fail("trailing bytes")
    return name.decode("utf-8", "surrogateescape"), tuple(extents)
