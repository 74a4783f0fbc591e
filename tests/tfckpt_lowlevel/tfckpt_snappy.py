"""Test-only helpers for the TensorBundle tests (imported by name, not a conftest)."""

from __future__ import annotations


def snappy_compress(data: bytes) -> bytes:
    """A small, deliberately simple snappy encoder for tests: greedy matches of >= 4
    bytes found through a hash of the last position of every 4-byte sequence, emitted
    with all three copy element kinds; everything else as literals (tag-only, 1-byte
    and 2-byte literal lengths)."""
    out = bytearray()
    n = len(data)
    v = n
    while True:  # varint32 preamble
        if v < 0x80:
            out.append(v)
            break
        out.append((v & 0x7F) | 0x80)
        v >>= 7

    def literal(start: int, end: int) -> None:
        while start < end:
            length = min(end - start, 1 << 16)
            m = length - 1
            if m < 60:
                out.append(m << 2)
            elif m < 1 << 8:
                out.extend(bytes([60 << 2, m]))
            else:
                out.extend(bytes([61 << 2]) + m.to_bytes(2, "little"))
            out.extend(data[start : start + length])
            start += length

    def copy(offset: int, length: int) -> None:
        while length > 0:
            if 4 <= length <= 11 and offset < 2048:
                out.extend(bytes([1 | ((length - 4) << 2) | ((offset >> 8) << 5), offset & 0xFF]))
                return
            chunk = min(length, 64)
            if length - chunk and length - chunk < 4:
                chunk = length - 4  # keep the tail long enough for a copy
            if offset < 1 << 16:
                out.extend(bytes([2 | ((chunk - 1) << 2)]) + offset.to_bytes(2, "little"))
            else:
                out.extend(bytes([3 | ((chunk - 1) << 2)]) + offset.to_bytes(4, "little"))
            length -= chunk

    table: dict[bytes, int] = {}
    i = 0
    lit_start = 0
    while i + 4 <= n:
        k = data[i : i + 4]
        cand = table.get(k)
        table[k] = i
        if cand is not None:
            length = 4
            while i + length < n and data[cand + length] == data[i + length]:
                length += 1
            literal(lit_start, i)
            copy(i - cand, length)
            i += length
            lit_start = i
        else:
            i += 1
    literal(lit_start, n)
    return bytes(out)
