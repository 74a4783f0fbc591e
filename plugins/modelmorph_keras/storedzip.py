"""Writing a zip of stored (uncompressed) members, one of which is already in the file.

A ``.keras`` archive keeps ``model.weights.h5`` uncompressed. Rather than writing the weights
to a temporary file and copying them into the zip, HDF5 writes them straight into the output,
after a *user block* (a prefix HDF5 reserves, a power of two long) that is then filled with the
members that come first and the weights' own zip header. Read alone — as Keras reads the
member — the HDF5 data is a whole file: HDF5 relocates a file whose superblock moved.
Python's ``zipfile`` cannot write a member whose data is already there, hence this module.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO

_LOCAL = struct.Struct("<IHHHHHIIIHH")  # signature, version, flags, method, time, date, crc, sizes, name, extra
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_END = struct.Struct("<IHHHHIIH")
_END64 = struct.Struct("<IQHHIIQQQQ")
_LOCATOR64 = struct.Struct("<IIQI")
_CRC_AT = 14  # where a local header holds the CRC-32
_ZIP64_EXTRA = struct.Struct("<HHQQ")  # id 1, 16 bytes: uncompressed then compressed size
ZIP64_LIMIT = 0xFFFFFFFF  # sizes and offsets from here on need zip64 records
_MAX32, _MAX16 = 0xFFFFFFFF, 0xFFFF  # what a 32-/16-bit field holds when the zip64 record has the value
_DOS_DATE = (0 << 9) | (1 << 5) | 1  # 1980-01-01, the date Keras gives its members; time 00:00
_UNIX_FILE = 0o644 << 16


def local_header_size(name: str, size: int, zip64: bool = False) -> int:
    """The length of :meth:`StoredZip.header` for a member of ``size`` bytes."""
    return _LOCAL.size + len(name.encode("utf-8")) + (_ZIP64_EXTRA.size if zip64 or size >= ZIP64_LIMIT else 0)


@dataclass
class _Entry:
    """A member written so far, as the central directory lists it."""

    name: bytes
    crc: int
    size: int
    offset: int
    zip64: bool


class StoredZip:
    """Members written at the file's current position, then the central directory on ``finish``."""

    def __init__(self, file: BinaryIO):
        self.file = file
        self.entries: list[_Entry] = []

    def add(self, name: str, data: bytes) -> None:
        self.header(name, zlib.crc32(data), len(data))
        self.file.write(data)

    def add_stream(self, name: str, size: int, stream: BinaryIO, chunk: int = 1 << 20) -> None:
        """A member of ``size`` bytes read from ``stream`` in chunks (memory stays one chunk):
        the header is written first, its CRC filled in once the data has gone by."""
        self.header(name, 0, size)
        entry, crc, done = self.entries[-1], 0, 0
        while True:
            data = stream.read(chunk)
            if not data:
                break
            done += len(data)
            if done > size:
                break
            crc = zlib.crc32(data, crc)
            self.file.write(data)
        if done != size:
            raise ValueError(f"member {name!r} was declared {size} bytes long but its source holds "
                             f"{'more' if done > size else done}")
        end = self.file.tell()
        self.file.seek(entry.offset + _CRC_AT)
        self.file.write(struct.pack("<I", crc))
        self.file.seek(end)
        entry.crc = crc

    def header(self, name: str, crc: int, size: int, zip64: bool = False) -> None:
        """The local header of a member whose ``size`` bytes follow it (written now or already)."""
        entry = _Entry(name.encode("utf-8"), crc, size, self.file.tell(), zip64 or size >= ZIP64_LIMIT)
        sizes = (_MAX32, _MAX32) if entry.zip64 else (size, size)
        extra = _ZIP64_EXTRA.pack(1, 16, size, size) if entry.zip64 else b""
        self.file.write(_LOCAL.pack(0x04034B50, _version(entry.zip64), _flags(entry.name), 0, 0, _DOS_DATE, crc,
                                    *sizes, len(entry.name), len(extra)) + entry.name + extra)
        self.entries.append(entry)

    def finish(self) -> None:
        start = self.file.tell()
        for e in self.entries:
            far = e.offset >= ZIP64_LIMIT
            fields = ([e.size, e.size] if e.zip64 else []) + ([e.offset] if far else [])
            extra = struct.pack(f"<HH{len(fields)}Q", 1, 8 * len(fields), *fields) if fields else b""
            sizes = (_MAX32, _MAX32) if e.zip64 else (e.size, e.size)
            version = _version(bool(fields))
            self.file.write(_CENTRAL.pack(0x02014B50, (3 << 8) | version, version, _flags(e.name), 0, 0, _DOS_DATE,
                                          e.crc, *sizes, len(e.name), len(extra), 0, 0, 0, _UNIX_FILE,
                                          _MAX32 if far else e.offset) + e.name + extra)
        end = self.file.tell()
        count, size = len(self.entries), end - start
        if start >= ZIP64_LIMIT or size >= ZIP64_LIMIT or count >= _MAX16:
            self.file.write(_END64.pack(0x06064B50, _END64.size - 12, (3 << 8) | 45, 45, 0, 0, count, count, size, start))
            self.file.write(_LOCATOR64.pack(0x07064B50, 0, end, 1))
            count, size, start = min(count, _MAX16), _MAX32, _MAX32
        self.file.write(_END.pack(0x06054B50, 0, 0, count, count, size, start, 0))


def _version(zip64: bool) -> int:
    return 45 if zip64 else 20


def _flags(name: bytes) -> int:
    return 0 if name.isascii() else 0x800  # bit 11: the name is UTF-8
