"""SSTable (LevelDB table format) reader and writer for a TensorBundle ``.index`` file.

Layout of a table file::

    [data block + trailer]*  [metaindex block + trailer]  [index block + trailer]  [footer]

* A block body is a run of entries ``varint32 shared | varint32 non_shared |
  varint32 value_len | key bytes (non-shared part) | value bytes`` followed by the
  restart array (``uint32`` offsets of entries that store their full key) and its
  ``uint32`` length.
* Every block is followed by a 5-byte trailer: a compression type byte (0 = none,
  1 = snappy) and the masked CRC-32C of ``body + type byte``.
* The footer (48 bytes) holds two block handles (``varint64 offset, varint64 size``) for
  the metaindex and index blocks, zero padding up to 40 bytes, then the 8-byte magic.
* The index block maps a separator key (>= the last key of a data block and < the first
  key of the next one) to that data block's handle.

Everything read from the file is treated as hostile: every offset and size is checked
against the file size before anything is read or allocated, varints are bounded, and
every failure raises :class:`BundleError` with a one-line message.
"""

from __future__ import annotations

import functools
import os
import struct
import threading
from typing import BinaryIO, Callable, Iterator

import google_crc32c

from modelmorph.storage import protowire
from modelmorph.storage.safety import open_input

__all__ = [
    "BundleError",
    "TableReader",
    "TableWriter",
    "crc32c",
    "crc32c_extend",
    "mask_crc",
    "unmask_crc",
    "snappy_decompress",
    "encode_varint",
    "decode_varint",
    "TABLE_MAGIC",
    "FOOTER_SIZE",
    "BLOCK_TRAILER_SIZE",
]

TABLE_MAGIC = 0xDB4775248B80FB57
_MAGIC_BYTES = struct.pack("<Q", TABLE_MAGIC)
FOOTER_SIZE = 48
_HANDLES_SIZE = 40  # two handles, each at most 2 * 10 varint bytes
BLOCK_TRAILER_SIZE = 5
NO_COMPRESSION = 0
SNAPPY_COMPRESSION = 1

DEFAULT_BLOCK_SIZE = 256 * 1024  # TensorFlow's table::Options default
DEFAULT_RESTART_INTERVAL = 16

#: Upper bound for the size of one block, stored or decompressed (TensorFlow writes
#: ~256 KiB blocks, more only for a single huge entry; anything near this limit is not a
#: checkpoint index).
MAX_UNCOMPRESSED_BLOCK = 256 * 1024 * 1024

_MASK_DELTA = 0xA282EAD8
_CRC_CHUNK = 64 * 1024  # small pieces: reused heap memory, no page-fault churn


class BundleError(Exception):
    """A checkpoint (``.index`` table, data shard, entry or tensor) is malformed,
    corrupted, hostile, missing or unsupported.

    ``str(error)`` is always a single line; ``path`` names the file concerned (or is
    ``None``) and ``problem`` is the message without the path.
    """

    def __init__(self, problem: str, path: str | os.PathLike | None = None):
        problem = " ".join(str(problem).split())  # guarantee a single line
        self.problem = problem
        self.path = os.fspath(path) if path is not None else None
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


def short_repr(value, limit: int = 120) -> str:
    """``repr(value)`` cut to ``limit`` characters, for error messages about hostile data."""
    r = repr(value)
    return r if len(r) <= limit else r[: limit - 3] + "..."


# --------------------------------------------------------------------------- CRC-32C


def crc32c(data) -> int:
    """CRC-32C (Castagnoli) of a bytes-like object."""
    return crc32c_extend(0, data)


def crc32c_extend(crc: int, data) -> int:
    """Extend ``crc`` with ``data`` (any bytes-like object, including numpy buffers).

    ``google_crc32c`` only accepts immutable ``bytes``; other buffers are fed in bounded
    chunks so that memory stays small for huge tensors.
    """
    if isinstance(data, bytes):
        return google_crc32c.extend(crc, data)
    mv = memoryview(data)
    if mv.ndim != 1 or mv.itemsize != 1:
        mv = mv.cast("B")
    for start in range(0, mv.nbytes, _CRC_CHUNK):
        crc = google_crc32c.extend(crc, bytes(mv[start : start + _CRC_CHUNK]))
    return crc


@functools.lru_cache(maxsize=None)
def crc32c_at_address() -> "Callable[[int, int, int], int] | None":
    """``crc32c_extend(crc, address, size)``: the C function ``google_crc32c`` wraps, called
    through ctypes (which lets other threads run meanwhile) on memory the caller owns, such as a
    reused ``bytearray``: its Python API takes ``bytes`` only, a new object and a copy for every
    piece read. None where it cannot be found or does not give the known check value (then
    :func:`crc32c_extend` does the job)."""
    try:
        import ctypes

        from google_crc32c import _crc32c

        function = ctypes.CDLL(_crc32c.__file__).crc32c_extend
    except (ImportError, OSError, AttributeError):
        return None
    function.restype = ctypes.c_uint32
    function.argtypes = (ctypes.c_uint32, ctypes.c_void_p, ctypes.c_size_t)
    return function if function(0, b"123456789", 9) == 0xE3069283 else None


def crc32c_view(crc: int, view: memoryview) -> int:
    """:func:`crc32c_extend` of a piece of a writable buffer (a copy's reused ``bytearray``),
    computed where it lies when :func:`crc32c_at_address` can."""
    at_address = crc32c_at_address()
    if at_address is not None and not view.readonly and view.nbytes:
        import ctypes

        return at_address(crc, ctypes.addressof(ctypes.c_char.from_buffer(view)), view.nbytes)
    return crc32c_extend(crc, view)


def crc32c_combine(crc1: int, crc2: int, len2: int) -> int:
    """The CRC-32C of A+B from those of A and B (``len2``: B's length)."""
    from modelmorph.storage.filecopy import crc_combine

    return crc_combine(crc1, crc2, len2, CRC32C_POLY)


CRC32C_POLY = 0x82F63B78  # reflected, for combining CRC-32Cs


class Crc32cOfPieces:
    """The CRC-32C of a range fed in pieces (:meth:`feed`, each with its position in the range)
    by a copy that reads it in any order, from several threads at once, each thread in order:
    a piece that continues a run extends that run's CRC, and :meth:`value` combines the runs
    (a combination costs ~30 us in Python, too much per piece)."""

    def __init__(self) -> None:
        self._runs: dict[int, list[int]] = {}  # by where each run ends: [start, CRC-32C]
        self._lock = threading.Lock()

    def feed(self, piece: memoryview, at: int) -> None:
        with self._lock:
            run = self._runs.pop(at, None) or [at, 0]
        run[1] = crc32c_view(run[1], piece)  # unlocked: another thread's copy goes on
        with self._lock:
            self._runs[at + len(piece)] = run

    def value(self, size: int) -> int | None:
        """The CRC-32C of the ``size`` bytes fed; None unless the pieces covered them exactly
        once (a copy that stopped early)."""
        crc = done = 0
        for start, end, piece in sorted((start, end, c) for end, (start, c) in self._runs.items()):
            if start != done:
                return None
            crc, done = crc32c_combine(crc, piece, end - start), end
        return crc if done == size else None


def buffer_address(buffer: bytearray) -> int:
    """The address of a ``bytearray``'s memory, for :func:`crc32c_at_address` (the array must
    not be resized while it is used: exporting it here forbids that)."""
    import ctypes

    return ctypes.addressof((ctypes.c_char * len(buffer)).from_buffer(buffer))


def mask_crc(crc: int) -> int:
    """LevelDB/TensorFlow CRC masking (rotate right by 15, add a constant)."""
    crc &= 0xFFFFFFFF
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def unmask_crc(masked: int) -> int:
    rot = (masked - _MASK_DELTA) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


# --------------------------------------------------------------------------- varints


def encode_varint(value: int) -> bytes:
    """LEB128 encoding of a non-negative integer (< 2**64)."""
    if value < 0 or value >= 1 << 64:
        raise ValueError(f"varint out of range: {value}")
    return protowire.encode_varint(value)


def decode_varint(buf, pos: int, limit: int, bits: int = 64, what: str = "varint") -> tuple[int, int]:
    """Decode a LEB128 varint of at most ``bits`` bits from ``buf[pos:limit]``.

    Returns ``(value, new_pos)``; raises :class:`BundleError` if the varint runs past
    ``limit``, is longer than ``ceil(bits / 7)`` bytes, or does not fit in ``bits``.
    """
    max_len = (bits + 6) // 7
    result = 0
    shift = 0
    for i in range(max_len):
        p = pos + i
        if p >= limit:
            raise BundleError(f"truncated {what}")
        b = buf[p]
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            if result >> bits:
                raise BundleError(f"{what} does not fit in {bits} bits")
            return result, p + 1
        shift += 7
    raise BundleError(f"{what} longer than {max_len} bytes")


# --------------------------------------------------------------------------- snappy


def snappy_decompress(data, max_output: int = MAX_UNCOMPRESSED_BLOCK) -> bytes:
    """Decompress a raw (unframed) snappy buffer, with bounds checks everywhere.

    Format: ``varint32 uncompressed_length`` then elements tagged by the low two bits of
    their first byte: 0 literal, 1 copy with 11-bit offset, 2 copy with 16-bit offset,
    3 copy with 32-bit offset.  A copy may overlap its own output (run-length style).
    """
    data = memoryview(data).cast("B") if not isinstance(data, (bytes, bytearray)) else data
    n = len(data)
    expected, pos = decode_varint(data, 0, n, bits=32, what="snappy length")
    # Snappy cannot expand by more than ~22x (a 3-byte copy emits at most 64 bytes);
    # refuse any declared size beyond that before allocating anything.
    if expected > max_output or expected > 32 * n + 64:
        raise BundleError(f"snappy block declares an absurd uncompressed size ({expected} bytes from {n})")
    out = bytearray()
    while pos < n:
        tag = data[pos]
        pos += 1
        kind = tag & 3
        if kind == 0:  # literal
            length = tag >> 2
            if length >= 60:
                extra = length - 59  # 1..4 little-endian length bytes
                if pos + extra > n:
                    raise BundleError("truncated snappy literal length")
                length = int.from_bytes(data[pos : pos + extra], "little")
                pos += extra
            length += 1
            if pos + length > n:
                raise BundleError("snappy literal runs past the end of the block")
            if len(out) + length > expected:
                raise BundleError("snappy data longer than its declared size")
            out += data[pos : pos + length]
            pos += length
            continue
        if kind == 1:
            if pos + 1 > n:
                raise BundleError("truncated snappy copy")
            length = 4 + ((tag >> 2) & 7)
            offset = ((tag >> 5) << 8) | data[pos]
            pos += 1
        elif kind == 2:
            if pos + 2 > n:
                raise BundleError("truncated snappy copy")
            length = (tag >> 2) + 1
            offset = data[pos] | (data[pos + 1] << 8)
            pos += 2
        else:
            if pos + 4 > n:
                raise BundleError("truncated snappy copy")
            length = (tag >> 2) + 1
            offset = int.from_bytes(data[pos : pos + 4], "little")
            pos += 4
        if offset == 0 or offset > len(out):
            raise BundleError("snappy copy offset out of range")
        if len(out) + length > expected:
            raise BundleError("snappy data longer than its declared size")
        start = len(out) - offset
        if offset >= length:
            out += out[start : start + length]
        else:  # overlapping copy repeats the last `offset` bytes
            pattern = bytes(out[start:])
            reps, rest = divmod(length, offset)
            out += pattern * reps + pattern[:rest]
    if len(out) != expected:
        raise BundleError(f"snappy data shorter than its declared size ({len(out)} of {expected} bytes)")
    return bytes(out)


# --------------------------------------------------------------------------- reading


def _parse_block(body: bytes, what: str) -> Iterator[tuple[bytes, bytes]]:
    """Yield ``(key, value)`` pairs of one block body (checked, never trusting sizes)."""
    n = len(body)
    if n < 4:
        raise BundleError(f"{what} is too short ({n} bytes)")
    (num_restarts,) = struct.unpack_from("<I", body, n - 4)
    if num_restarts > (n - 4) // 4:
        raise BundleError(f"{what} declares {num_restarts} restart points, more than fit in {n} bytes")
    limit = n - 4 - 4 * num_restarts
    if limit > 0 and num_restarts == 0:
        raise BundleError(f"{what} has entries but no restart points")
    pos = 0
    key = b""
    first = True
    while pos < limit:
        shared, pos = decode_varint(body, pos, limit, 32, what=f"entry header in {what}")
        non_shared, pos = decode_varint(body, pos, limit, 32, what=f"entry header in {what}")
        value_len, pos = decode_varint(body, pos, limit, 32, what=f"entry header in {what}")
        if shared > len(key) or (first and shared):
            raise BundleError(f"{what} has an entry sharing more key bytes than exist")
        end_key = pos + non_shared
        end_value = end_key + value_len
        if end_value > limit:
            raise BundleError(f"{what} has an entry running past the end of the block")
        key = key[:shared] + body[pos:end_key]
        yield key, body[end_key:end_value]
        pos = end_value
        first = False


def _decode_handle(buf, pos: int, limit: int, what: str) -> tuple[int, int, int]:
    offset, pos = decode_varint(buf, pos, limit, 64, what=f"{what} offset")
    size, pos = decode_varint(buf, pos, limit, 64, what=f"{what} size")
    return offset, size, pos


class TableReader:
    """Read-only view of one SSTable file, checked against hostile input.

    >>> with TableReader("model.ckpt.index") as t:
    ...     for key, value in t:
    ...         ...

    Iteration yields ``(key: bytes, value: bytes)`` in key order; keys are verified to be
    strictly increasing across the whole table.  Every block's CRC is verified.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        try:
            self._f: BinaryIO = open_input(self.path)
        except FileNotFoundError:
            raise BundleError("index file not found", self.path) from None
        except OSError as e:
            raise BundleError(f"cannot open index file: {e.strerror or e}", self.path) from None
        try:
            self.file_size = os.fstat(self._f.fileno()).st_size
            self._data_end = self.file_size - FOOTER_SIZE
            self._read_footer()
            index_body = self._read_block(self.index_offset, self.index_size, "index block")
            self._data_handles = self._parse_index(index_body)
        except BaseException:
            self._f.close()
            raise

    # -- context manager -----------------------------------------------------------
    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "TableReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- structure -------------------------------------------------------------------
    def _error(self, problem: str) -> BundleError:
        return BundleError(problem, self.path)

    def _read_footer(self) -> None:
        if self.file_size < FOOTER_SIZE:
            raise self._error(
                f"truncated or not a checkpoint index: {self.file_size} bytes, a table needs at least {FOOTER_SIZE}"
            )
        self._f.seek(self._data_end)
        footer = self._f.read(FOOTER_SIZE)
        if len(footer) != FOOTER_SIZE:
            raise self._error("truncated footer")
        if footer[_HANDLES_SIZE:] != _MAGIC_BYTES:
            raise self._error("bad table magic number: not a TensorFlow checkpoint .index file, or truncated")
        try:
            mo, ms, pos = _decode_handle(footer, 0, _HANDLES_SIZE, "metaindex handle")
            io_, is_, pos = _decode_handle(footer, pos, _HANDLES_SIZE, "index handle")
        except BundleError as e:
            raise self._error(f"corrupt footer: {e.problem}") from None
        for name, off, size in (("metaindex", mo, ms), ("index", io_, is_)):
            self._check_range(off, size, f"{name} block")
        self.metaindex_offset, self.metaindex_size = mo, ms
        self.index_offset, self.index_size = io_, is_

    def _check_range(self, offset: int, size: int, what: str) -> None:
        if offset > self._data_end or size > self._data_end or offset + size + BLOCK_TRAILER_SIZE > self._data_end:
            raise self._error(
                f"{what} at offset {offset} with size {size} lies outside the file ({self.file_size} bytes)"
            )

    def _read_block(self, offset: int, size: int, what: str) -> bytes:
        self._check_range(offset, size, what)
        if size > MAX_UNCOMPRESSED_BLOCK:
            raise self._error(f"{what} at offset {offset} has an absurd size ({size} bytes)")
        self._f.seek(offset)
        raw = self._f.read(size + BLOCK_TRAILER_SIZE)
        if len(raw) != size + BLOCK_TRAILER_SIZE:
            raise self._error(f"truncated {what} at offset {offset}")
        body_and_type = raw[: size + 1]
        (stored,) = struct.unpack_from("<I", raw, size + 1)
        actual = mask_crc(crc32c(body_and_type))
        if actual != stored:
            raise self._error(
                f"checksum mismatch in {what} at offset {offset} (stored {stored:#010x}, computed {actual:#010x})"
            )
        kind = raw[size]
        body = raw[:size]
        if kind == NO_COMPRESSION:
            return body
        if kind == SNAPPY_COMPRESSION:
            try:
                return snappy_decompress(body)
            except BundleError as e:
                raise self._error(f"{what} at offset {offset}: {e.problem}") from None
        raise self._error(f"{what} at offset {offset} uses unknown compression type {kind}")

    def _parse_index(self, body: bytes) -> list[tuple[int, int]]:
        handles = []
        prev_end = 0
        try:
            for _key, value in _parse_block(body, "index block"):
                off, size, end = _decode_handle(value, 0, len(value), "data block handle")
                if end != len(value):
                    raise BundleError("index block entry has trailing bytes after its block handle")
                self._check_range(off, size, "data block")
                # Data blocks are laid out in order without overlap; enforcing that bounds
                # the total work to the file size whatever the index claims.
                if off < prev_end:
                    raise BundleError(f"data block at offset {off} overlaps or precedes the previous block")
                prev_end = off + size + BLOCK_TRAILER_SIZE
                handles.append((off, size))
        except BundleError as e:
            if e.path:
                raise
            raise self._error(e.problem) from None
        return handles

    # -- contents ------------------------------------------------------------------
    @property
    def num_data_blocks(self) -> int:
        return len(self._data_handles)

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        prev: bytes | None = None
        for i, (off, size) in enumerate(self._data_handles):
            what = f"data block {i}"
            body = self._read_block(off, size, what)
            try:
                for key, value in _parse_block(body, what):
                    if prev is not None and key <= prev:
                        raise BundleError(f"keys out of order in {what} ({short_repr(key)} after {short_repr(prev)})")
                    prev = key
                    yield key, value
            except BundleError as e:
                if e.path:
                    raise
                raise self._error(e.problem) from None

    items = __iter__


# --------------------------------------------------------------------------- writing


def _shortest_separator(start: bytes, limit: bytes) -> bytes:
    """A short key k with start <= k < limit (LevelDB's bytewise comparator rule)."""
    n = min(len(start), len(limit))
    i = 0
    while i < n and start[i] == limit[i]:
        i += 1
    if i >= n:
        return start  # one is a prefix of the other
    b = start[i]
    if b < 0xFF and b + 1 < limit[i]:
        return start[:i] + bytes([b + 1])
    return start


def _short_successor(key: bytes) -> bytes:
    """A short key k >= key."""
    for i, b in enumerate(key):
        if b != 0xFF:
            return key[:i] + bytes([b + 1])
    return key


class _BlockBuilder:
    def __init__(self, restart_interval: int):
        self.restart_interval = restart_interval
        self.buf = bytearray()
        self.restarts = [0]
        self.counter = 0
        self.last_key = b""
        self.entries = 0

    def add(self, key: bytes, value: bytes) -> None:
        shared = 0
        if self.counter < self.restart_interval:
            n = min(len(key), len(self.last_key))
            while shared < n and key[shared] == self.last_key[shared]:
                shared += 1
        else:
            self.restarts.append(len(self.buf))
            self.counter = 0
        non_shared = len(key) - shared
        self.buf += encode_varint(shared) + encode_varint(non_shared) + encode_varint(len(value))
        self.buf += key[shared:]
        self.buf += value
        self.last_key = key
        self.counter += 1
        self.entries += 1

    def size_estimate(self) -> int:
        return len(self.buf) + 4 * len(self.restarts) + 4

    def finish(self) -> bytes:
        return bytes(self.buf) + struct.pack(f"<{len(self.restarts)}I", *self.restarts) + struct.pack(
            "<I", len(self.restarts)
        )


class TableWriter:
    """Write an SSTable exactly like TensorFlow's ``table::TableBuilder`` does.

    Keys must be added in strictly increasing byte order.  Data blocks are cut once
    they reach ``block_size`` bytes (restart point every ``restart_interval`` entries),
    the index block uses a restart point per entry and LevelDB's shortest-separator
    keys, the metaindex block is empty.

    ``compress`` (tests only) is an optional ``bytes -> bytes`` snappy compressor; when
    given, blocks are stored with compression type 1 if that makes them smaller.
    """

    def __init__(
        self,
        fileobj: BinaryIO,
        block_size: int = DEFAULT_BLOCK_SIZE,
        restart_interval: int = DEFAULT_RESTART_INTERVAL,
        compress: Callable[[bytes], bytes] | None = None,
    ):
        self._f = fileobj
        self.block_size = block_size
        self.restart_interval = restart_interval
        self._compress = compress
        self._offset = 0
        self._data = _BlockBuilder(restart_interval)
        self._index = _BlockBuilder(1)
        self._last_key: bytes | None = None
        self._pending_handle: tuple[int, int] | None = None
        self._finished = False
        self.num_entries = 0

    def add(self, key: bytes, value: bytes) -> None:
        if self._finished:
            raise ValueError("table already finished")
        key = bytes(key)
        if self._last_key is not None and key <= self._last_key:
            raise ValueError(f"keys must be strictly increasing: {key!r} after {self._last_key!r}")
        if self._pending_handle is not None:
            sep = _shortest_separator(self._last_key, key)
            self._index.add(sep, self._encode_handle(*self._pending_handle))
            self._pending_handle = None
        self._data.add(key, bytes(value))
        self._last_key = key
        self.num_entries += 1
        if self._data.size_estimate() >= self.block_size:
            self._flush()

    @staticmethod
    def _encode_handle(offset: int, size: int) -> bytes:
        return encode_varint(offset) + encode_varint(size)

    def _flush(self) -> None:
        if self._data.entries == 0:
            return
        self._pending_handle = self._write_block(self._data.finish())
        self._data = _BlockBuilder(self.restart_interval)

    def _write_block(self, body: bytes) -> tuple[int, int]:
        kind = NO_COMPRESSION
        if self._compress is not None:  # like LevelDB, every block goes through it
            packed = self._compress(body)
            if len(packed) < len(body) - len(body) // 8:  # LevelDB keeps it only if >12.5% smaller
                body, kind = packed, SNAPPY_COMPRESSION
        type_byte = bytes([kind])
        trailer = type_byte + struct.pack("<I", mask_crc(crc32c(body + type_byte)))
        handle = (self._offset, len(body))
        self._f.write(body)
        self._f.write(trailer)
        self._offset += len(body) + BLOCK_TRAILER_SIZE
        return handle

    def finish(self) -> int:
        """Write the remaining blocks and the footer; returns the table size in bytes."""
        if self._finished:
            raise ValueError("table already finished")
        self._flush()
        self._finished = True
        meta = self._write_block(_BlockBuilder(self.restart_interval).finish())
        if self._pending_handle is not None:
            self._index.add(_short_successor(self._last_key), self._encode_handle(*self._pending_handle))
            self._pending_handle = None
        index = self._write_block(self._index.finish())
        handles = self._encode_handle(*meta) + self._encode_handle(*index)
        footer = handles + b"\0" * (_HANDLES_SIZE - len(handles)) + _MAGIC_BYTES
        self._f.write(footer)
        self._offset += len(footer)
        return self._offset
