"""TensorFlow's layout of a string tensor in a data file, read through bounded buffers.

A DT_STRING tensor of ``n`` elements is stored as ``n`` varint64 lengths, the masked CRC-32C
of those lengths (each as a little-endian uint32, or uint64 when larger), then the strings'
bytes back to back. The entry's CRC-32C chains the lengths as fixed-width integers (not the
varints), the 4 stored bytes and the data. Checking it needs the lengths decoded but not the
strings split: :func:`scan` does it a chunk at a time, so a gigabyte of strings is checked, or
copied as it lies, without a Python object per string. :func:`iter_blocks` splits them when a
writer needs them as values (an HDF5 variable-length string dataset), a block at a time.
"""

from __future__ import annotations

import os
import struct
import zlib
from typing import Iterator, NamedTuple

from .table import BundleError, crc32c_combine, crc32c_extend, crc32c_view

_LENGTHS_CHUNK = 1 << 18  # varint bytes decoded at a time (numpy's temporaries: ~40 bytes each)
_DATA_CHUNK = 1 << 22  # bytes read at a time when checksumming the strings' data
_MAX_VARINT64 = 10


class StringLayout(NamedTuple):
    data_start: int  # file offset of the first string's bytes (after the lengths and their CRC)
    lengths_crc: int  # unmasked CRC-32C of the lengths as fixed-width integers
    stored_lengths_crc: int  # the masked CRC stored after the lengths
    varints_crc: int  # unmasked CRC-32C of the varint bytes as stored (see entry_crc32c_of_stored)


class _Lengths:
    """The ``count`` varint lengths from file offset ``offset`` (none read past ``end``), decoded
    a chunk at a time: iterating yields them as ``bytes`` (every length below 128: each byte is
    one) or a numpy uint64 array. ``crc`` (fixed-width CRC-32C so far), ``varints_crc`` (that
    of the varint bytes), ``total`` and ``pos`` (the offset just past the last varint decoded)
    follow the iteration."""

    def __init__(self, fd: int, offset: int, end: int, count: int, chunk: int = _LENGTHS_CHUNK):
        self.fd, self.pos, self.end, self.left, self.chunk = fd, offset, end, count, chunk
        self.crc = self.varints_crc = self.total = 0

    def __iter__(self) -> Iterator:
        carry, at, spread = b"", self.pos, bytearray()
        while self.left:
            # The varints left take at least one byte each, and a carried partial one at least one
            # more: reading `left` new bytes never goes past them into the strings.
            want = min(self.chunk, self.left, self.end - at)
            if want <= 0:
                raise BundleError("string lengths run past the stored bytes")
            data = os.pread(self.fd, want, at)
            if not data:
                raise BundleError("data file ended early")
            at += len(data)
            buf = carry + data if carry else data
            if buf.isascii():  # all one-byte varints (strings under 128 bytes): C-speed path
                n = len(buf)
                if len(spread) < 4 * n:
                    spread = bytearray(4 * n)
                # Each length as a uint32 (its other 3 bytes stay 0). One buffer, reused: a new
                # 1 MiB one per chunk cost more than the rest of the chunk's work (scanning
                # 1 GiB of 128-byte strings: 30 ms -> 13 ms).
                spread[0:4 * n:4] = buf
                self._took(buf, memoryview(spread)[:4 * n], _ascii_sum(buf), n, n)
                carry = b""
                yield buf
                continue
            values, used = _decode(buf)
            carry = buf[used:]
            if len(carry) >= _MAX_VARINT64:
                raise BundleError(f"string length longer than {_MAX_VARINT64} bytes")
            if len(values):
                biggest = int(values.max())
                fixed = (values.astype("<u4").tobytes() if biggest <= 0xFFFFFFFF else
                         b"".join(struct.pack("<I" if v <= 0xFFFFFFFF else "<Q", v) for v in values.tolist()))
                # A sum in uint64 may wrap for hostile lengths: then Python's integers do it.
                total = int(values.sum()) if biggest * len(values) < 1 << 63 else sum(values.tolist())
                self._took(buf, fixed, total, len(values), used)
                yield values

    def _took(self, buf: bytes, fixed: bytes | memoryview, total: int, count: int, used: int) -> None:
        self.crc = crc32c_view(self.crc, fixed) if isinstance(fixed, memoryview) else crc32c_extend(self.crc, fixed)
        self.varints_crc = crc32c_extend(self.varints_crc, buf if used == len(buf) else memoryview(buf)[:used])
        self.total += total
        self.left -= count
        self.pos += used


def _ascii_sum(data: bytes) -> int:
    """``sum(data)`` for bytes below 128, 8x faster (1 GiB of 128-byte strings: 5 ms against
    40): Adler-32's low half is 1 + the bytes' sum modulo 65521, exact over 512 of them."""
    view = memoryview(data)
    return sum([(zlib.adler32(view[i:i + 512]) & 0xFFFF) - 1 for i in range(0, len(data), 512)])


def _decode(buf: bytes):
    """The complete varints at the start of ``buf`` (a numpy uint64 array) and the bytes they use."""
    import numpy as np

    b = np.frombuffer(buf, dtype=np.uint8)
    ends = np.flatnonzero(b < 0x80)
    if not len(ends):
        return ends.astype(np.uint64), 0
    used = int(ends[-1]) + 1
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    sizes = ends - starts + 1
    longest = int(sizes.max())
    if longest > _MAX_VARINT64:
        raise BundleError(f"string length longer than {_MAX_VARINT64} bytes")
    if longest == _MAX_VARINT64 and (b[ends[sizes == _MAX_VARINT64]] > 1).any():
        raise BundleError("string length does not fit in 64 bits")
    group = np.arange(used, dtype=np.int64) - np.repeat(starts, sizes)
    parts = (b[:used] & 0x7F).astype(np.uint64) << (group * 7).astype(np.uint64)
    return np.bitwise_or.reduceat(parts, starts), used


def scan(fd: int, offset: int, size: int, count: int) -> StringLayout:
    """Check the structure of the string tensor stored at ``[offset, offset + size)`` of ``fd``
    (``count`` lengths, then their CRC, then exactly the bytes they add up to); reads only the
    lengths. Raises :class:`BundleError` (without a path) if they do not fit."""
    end = offset + size
    lengths = _Lengths(fd, offset, end, count)
    for _ in lengths:
        if lengths.total > size:
            raise BundleError("string lengths do not add up to the stored size")
    if lengths.pos + 4 > end:
        raise BundleError("string lengths run past the stored bytes")
    stored = os.pread(fd, 4, lengths.pos)
    if len(stored) != 4:
        raise BundleError("data file ended early")
    if lengths.pos + 4 + lengths.total != end:
        raise BundleError("string lengths do not add up to the stored size")
    return StringLayout(lengths.pos + 4, lengths.crc, struct.unpack("<I", stored)[0], lengths.varints_crc)


def entry_crc32c(fd: int, layout: StringLayout, end: int) -> int:
    """The (unmasked) CRC-32C the entry of a string tensor laid out as ``layout`` should store:
    the lengths' CRC extended by the stored lengths CRC and the data, read in bounded chunks."""
    crc = crc32c_extend(layout.lengths_crc, struct.pack("<I", layout.stored_lengths_crc))
    at = layout.data_start
    while at < end:
        chunk = os.pread(fd, min(_DATA_CHUNK, end - at), at)
        if not chunk:
            raise BundleError("data file ended early")
        crc = crc32c_extend(crc, chunk)
        at += len(chunk)
    return crc


def entry_crc32c_of_stored(layout: StringLayout, stored_crc: int, end: int) -> int:
    """:func:`entry_crc32c` from ``stored_crc``, the CRC-32C of the tensor's stored bytes (up
    to ``end``) as a copy of them computed it: no byte is read again. CRCs are linear: that of
    the stored bytes is the varints' shifted past the rest, xor the rest's; so the rest's (the
    stored lengths CRC and the data) comes out without reading it, and is chained after the
    lengths as fixed-width integers instead of varints."""
    rest = end - (layout.data_start - 4)
    rest_crc = stored_crc ^ crc32c_combine(layout.varints_crc, 0, rest)
    return crc32c_combine(layout.lengths_crc, rest_crc, rest)


def iter_blocks(fd: int, offset: int, size: int, count: int, layout: StringLayout,
                max_bytes: int) -> Iterator[list[bytes]]:
    """The strings, in order, as lists of about ``max_bytes`` of string data (at least one
    string each; ``layout`` from :func:`scan` of the same range, so the lengths are known good)."""
    data_at = layout.data_start
    block: list[bytes] = []
    want: list[int] = []
    pending = 0
    for lengths in _Lengths(fd, offset, layout.data_start - 4, count):
        for length in (lengths if isinstance(lengths, bytes) else lengths.tolist()):
            want.append(length)
            pending += length
            if pending >= max_bytes or len(want) >= max_bytes // 8 + 1:  # bounds the list too
                data_at = _split(fd, data_at, want, pending, block)
                yield block
                block, want, pending = [], [], 0
    if want:
        _split(fd, data_at, want, pending, block)
        yield block


def _split(fd: int, at: int, lengths: list[int], total: int, out: list[bytes]) -> int:
    data = os.pread(fd, total, at) if total else b""
    if len(data) != total:
        raise BundleError("data file ended early")
    view, pos = memoryview(data), 0
    for length in lengths:
        out.append(bytes(view[pos:pos + length]))
        pos += length
    return at + total
