"""Read the structure of a plain HDF5 file (see the package docstring) in pure Python.

``read`` walks the superblock, the symbol-table groups and the object headers, and returns where
each dataset's bytes lie, so they can be copied file to file without numpy, h5py or libhdf5.
It reads metadata only, with one read per structure (plus read-ahead that serves neighbours).

The input is untrusted: every address and size is checked against the HDF5 data's end inside
the window before anything is read or allocated; a set of visited addresses stops cycles;
depth, object count and metadata bytes are bounded. Anything outside the subset raises
:class:`Unsupported`; what is malformed (a wrong signature, an address or size past the end, a
structure shorter than its fields, a heap object past its heap) raises :class:`Malformed`,
which libhdf5 is then not given. These raise :class:`Unsupported`, though h5py would read them:

- an object reached by two hard links (the subset has no shared objects; refusing them keeps
  the walk linear), groups nested deeper than 64, link names longer than 4096 bytes;
- attributes with a null dataspace (``h5py.Empty``), of rank 2 or more, or opaque;
- variable-length string datasets (their bytes are heap references, nothing to copy);
- datasets whose storage was never allocated (created without data), data layout messages of
  versions 1 and 2 (HDF5 before 1.6.3).

``OSError`` from the file itself passes through: it is not a property of the format.
"""

from __future__ import annotations

import io
import os
import struct
from typing import BinaryIO

from . import AttrValue, Dataset, Group, Malformed, PlainFile, Unsupported

__all__ = ["read"]

SIGNATURE = b"\x89HDF\r\n\x1a\n"
UNDEFINED = 0xFFFF_FFFF_FFFF_FFFF
MAX_DEPTH = 64  # group nesting
MAX_OBJECTS = 1_000_000
MAX_RANK = 32  # libhdf5's H5S_MAX_RANK
MAX_NAME = 4096  # bytes in a link name
READ_AHEAD = 4096  # bytes read at least per miss: neighbouring structures come for free

_Q = struct.Struct("<Q")
_QQ = struct.Struct("<QQ")
_SUPER = struct.Struct("<8sBBBBBBBBHHI")  # signature .. file consistency flags (24 bytes)
_SUPER_ADDRS = struct.Struct("<QQQQQQII")  # base, free space, EOF, driver; root entry (no scratch)
_OH_PREFIX = struct.Struct("<BBHII")  # version, reserved, messages, refcount, header size
_MSG = struct.Struct("<HHB3x")  # type, size, flags
_TREE = struct.Struct("<4sBBH")  # signature, node type, level, entries used
_SNOD = struct.Struct("<4sBxH")  # signature, version, symbols
_ENTRY = struct.Struct("<QQI20x")  # name offset, object header address, cache type, scratch
_KID = struct.Struct("<8xQ")  # a B-tree key (a heap offset, unused) and the child after it
_HEAP = struct.Struct("<4sB3xQQQ")  # signature, version, data size, free list, data address
_GCOL = struct.Struct("<4sB3xQ")  # signature, version, collection size
_GOBJ = struct.Struct("<HH4xQ")  # index, reference count, size
_VLEN = struct.Struct("<IQI")  # length, collection address, object index
_ATTR = struct.Struct("<BBHHH")  # version, flags, name, datatype and dataspace sizes
_INT = struct.Struct("<HH")  # bit offset, precision
_FLOAT = struct.Struct("<HHBBBBI")  # bit offset, precision, exponent/mantissa fields, bias
_DIMS = [struct.Struct(f"<{n}Q") for n in range(MAX_RANK + 1)]

#: IEEE layouts by size: exponent location and size, mantissa location and size, bias.
_IEEE = {2: (10, 5, 0, 10, 15), 4: (23, 8, 0, 23, 127), 8: (52, 11, 0, 52, 1023)}
#: struct codes by NUMERIC name, for attribute values.
_CODES = {"float16": "e", "float32": "f", "float64": "d", "int8": "b", "int16": "h", "int32": "i",
          "int64": "q", "uint8": "B", "uint16": "H", "uint32": "I", "uint64": "Q"}
#: Messages that change how an object reads, named for the refusal.
_REFUSED = {2: "link info (new-style group)", 6: "link message (new-style group)",
            7: "external data files", 11: "filter pipeline", 15: "shared message table",
            21: "attribute info (dense attributes)"}
_HARMLESS = {0, 4, 5, 10, 13, 14, 18}  # NIL, fill values, group info, comment, mtimes
_MUST_UNDERSTAND = 0x08 | 0x80  # fail if unknown (when writable / always)


class _Type:
    """A datatype the subset holds: its name for ``Dataset.dtype``, size and kind."""

    __slots__ = ("name", "size", "kind")

    def __init__(self, name: str, size: int, kind: str) -> None:
        self.name, self.size, self.kind = name, size, kind  # kind: num, opaque, fstr, vstr


def read(file: BinaryIO, start: int = 0, size: int | None = None, root_only: bool = False) -> PlainFile:
    """The groups and datasets of the plain HDF5 file in bytes ``[start, start + size)`` of
    ``file`` (``size=None``: to the end); dataset offsets are absolute positions in ``file``.
    With ``root_only``, just the root group (its attributes and member names: what a format
    sniffer needs), nothing below it is checked. Raises :class:`Unsupported` for any file
    that is not plain or not well formed."""
    if start < 0 or (size is not None and size < 0):
        raise ValueError("start and size must not be negative")
    fd = None
    if type(file) in (io.FileIO, io.BufferedReader, io.BufferedRandom):
        file.flush()  # pread below bypasses Python's buffer
        fd = file.fileno()
        end = os.fstat(fd).st_size
    else:
        here = file.tell()
        end = file.seek(0, os.SEEK_END)
    if size is not None:
        end = min(end, start + size)
    try:
        return _Reader(file, fd, start, end, root_only).run()
    except Unsupported:
        raise
    except UnicodeDecodeError:  # HDF5 allows names that are not UTF-8; h5py reads them
        raise Unsupported("a name or string that is not UTF-8") from None
    except (struct.error, ValueError, IndexError, KeyError, OverflowError, RecursionError, MemoryError) as e:
        # A structure shorter than its own fields say, or a field out of range.
        raise Malformed(f"malformed HDF5 ({type(e).__name__}: {e})") from None
    finally:
        if fd is None:
            file.seek(here)


class _Reader:
    def __init__(self, file: BinaryIO, fd: int | None, start: int, end: int, root_only: bool = False) -> None:
        self.file, self.fd, self.start, self.root_only = file, fd, start, root_only
        self.end = end  # absolute end of what may be read: the window's, then the HDF5 data's
        self.base = start  # absolute position of HDF5 address 0 (the superblock)
        self.budget = 16 * 2**20 + 8 * max(0, end - start)  # metadata bytes to read, paths to make
        self.buf, self.buf_pos = b"", 0  # the last block read
        self.claimed: set[int] = set()  # addresses of headers, chunks, nodes and heaps seen
        self.objects = 0
        self.types: dict[bytes, _Type] = {}  # parsed datatype messages, by their bytes
        self.gcols: dict[int, dict[int, bytes]] = {}  # global heap objects, by collection
        self.strings: dict[tuple[int, int, int], str] = {}
        self.out = PlainFile()

    # -- bytes ---------------------------------------------------------------------------

    def _raw(self, pos: int, n: int) -> bytes:
        if self.fd is not None:
            data = os.pread(self.fd, n, pos)
        else:
            self.file.seek(pos)
            data = self.file.read(n)
        if len(data) != n:
            raise Malformed("file shorter than its window")
        return data

    def _at(self, addr: int, n: int) -> tuple[bytes, int]:
        """The ``n`` bytes at HDF5 address ``addr``, as (buffer, offset into it)."""
        o = self.base + addr - self.buf_pos
        if 0 <= o and o + n <= len(self.buf):  # the last block never extends past self.end
            return self.buf, o
        pos = self.base + addr
        if n < 0 or pos + n > self.end:  # an undefined address lands here too
            raise Malformed("address or size beyond the end of the file")
        k = min(max(n, READ_AHEAD), self.end - pos)
        self.budget -= k
        if self.budget < 0:
            raise Malformed("too much metadata")
        self.buf, self.buf_pos = self._raw(pos, k), pos
        return self.buf, 0

    def _claim(self, addr: int) -> None:
        if addr in self.claimed:
            raise Unsupported("structure reached twice (shared object or cycle)")
        self.claimed.add(addr)

    # -- file and groups -----------------------------------------------------------------

    def run(self) -> PlainFile:
        pos = 0  # libhdf5 looks for the signature at 0, 512, 1024, 2048, ...
        while self.start + pos + 8 <= self.end:
            if self._raw(self.start + pos, 8) == SIGNATURE:
                break
            pos = pos * 2 or 512
        else:
            raise Unsupported("no HDF5 signature")
        self.base = self.start + pos
        head = self._raw(self.base, min(self.end - self.base, 24 + 4 + _SUPER_ADDRS.size))
        (_, version, free_v, root_v, _, shared_v, osize, lsize, _, _, _, _) = _SUPER.unpack_from(head)
        if version > 1:
            raise Unsupported(f"superblock version {version}")
        if (osize, lsize) != (8, 8):
            raise Unsupported(f"{osize}-byte addresses, {lsize}-byte lengths")
        if free_v or root_v or shared_v:
            raise Unsupported("unknown superblock component versions")
        (base, _, eof, driver, _, root, cache, _) = _SUPER_ADDRS.unpack_from(head, 24 + 4 * version)
        if driver != UNDEFINED:
            raise Unsupported("driver information block (multi-file driver)")
        # The stored base is where the superblock was when written; the EOF address counts
        # from the same origin. Addresses count from the superblock wherever it is now.
        if eof < base or self.base + eof - base > self.end:
            raise Malformed("truncated file (end of file address beyond the window)")
        self.end = self.base + eof - base
        if self._object(root, "", 0) != "group":
            raise Unsupported("root object is not a group")
        return self.out

    def _group(self, path: str, attrs: dict, btree: int, heap: int, depth: int) -> None:
        names = self._local_heap(heap)
        links = {}
        for name_offset, addr, cache in self._symbols(btree):
            if cache > 1:  # 2: a soft link, its value in the local heap
                raise Unsupported("soft link" if cache == 2 else "bad symbol table entry")
            end = names.find(b"\0", name_offset, name_offset + MAX_NAME)  # bounded: no O(n²)
            if end < 0 or name_offset >= len(names):
                raise Unsupported("link name outside the local heap, or too long")
            name = names[name_offset:end].decode()
            if not name or "/" in name or name in links:
                raise Malformed(f"bad or duplicate link name {name!r}")
            links[name] = addr
        children = sorted(links)  # code point order is UTF-8 byte order, HDF5's
        group = self.out.groups[path] = Group(path, attrs, children)
        if path:
            self.out.objects.append(group)
        if self.root_only:
            return
        for name in children:
            self._object(links[name], f"{path}/{name}" if path else name, depth + 1)

    def _local_heap(self, addr: int) -> bytes:
        self._claim(addr)
        buf, o = self._at(addr, _HEAP.size)
        sig, version, size, _, data = _HEAP.unpack_from(buf, o)
        if sig != b"HEAP" or version != 0:
            raise Malformed("bad local heap")
        buf, o = self._at(data, size)
        return buf[o:o + size]

    def _symbols(self, root: int) -> list[tuple[int, int, int]]:
        """(name offset, object header address, cache type) of the entries under a B-tree."""
        found: list[tuple[int, int, int]] = []
        stack = [(root, -1)]
        while stack:
            addr, level = stack.pop()
            self._claim(addr)
            buf, o = self._at(addr, _TREE.size)
            sig, kind, node_level, used = _TREE.unpack_from(buf, o)
            if sig != b"TREE" or kind != 0 or level not in (-1, node_level):
                raise Malformed("bad group B-tree node")
            if o + 32 + 16 * used > len(buf):
                buf, o = self._at(addr, 32 + 16 * used)
            kids = [kid for kid, in _KID.iter_unpack(buf[o + 24:o + 24 + 16 * used])]
            if node_level:
                stack.extend((kid, node_level - 1) for kid in reversed(kids))
                continue
            for kid in kids:  # symbol table nodes
                self._claim(kid)
                buf, o = self._at(kid, _SNOD.size)
                sig, version, count = _SNOD.unpack_from(buf, o)
                if sig != b"SNOD" or version != 1:
                    raise Malformed("bad symbol table node")
                if o + 8 + 40 * count > len(buf):
                    buf, o = self._at(kid, 8 + 40 * count)
                found += _ENTRY.iter_unpack(buf[o + 8:o + 8 + 40 * count])
        return found

    # -- objects -------------------------------------------------------------------------

    def _messages(self, addr: int) -> list[tuple[int, int, bytes]]:
        """(type, flags, data) of the messages of a version-1 object header, but the harmless."""
        self._claim(addr)
        self.objects += 1
        if self.objects > MAX_OBJECTS:
            raise Unsupported("too many objects")
        buf, o = self._at(addr, 16)
        version, _, _, _, size = _OH_PREFIX.unpack_from(buf, o)
        if version != 1:
            raise Unsupported("object header version 2" if buf[o:o + 4] == b"OHDR"
                              else f"object header version {version}")
        if o + 16 + size > len(buf):  # the read-ahead usually brought the messages too
            buf, o = self._at(addr, 16 + size)
        found = []
        more: list[tuple[int, int]] = []  # continuation blocks still to read
        o, end = o + 16, o + 16 + size
        while True:
            while o + 8 <= end:
                mtype, msize, flags = _MSG.unpack_from(buf, o)
                o += 8
                if o + msize > end:
                    raise Malformed("message beyond its object header")
                if mtype == 16:
                    chunk = _QQ.unpack_from(buf[o:o + msize])
                    self._claim(chunk[0])
                    more.append(chunk)
                elif mtype not in _HARMLESS or flags & 0x02:
                    found.append((mtype, flags, buf[o:o + msize]))
                o += msize
            if not more:
                return found
            chunk, size = more.pop(0)
            buf, o = self._at(chunk, size)
            end = o + size

    def _object(self, addr: int, path: str, depth: int) -> str:
        if depth > MAX_DEPTH:
            raise Unsupported("groups nested too deep")
        self.budget -= len(path)  # paths are output that grows with depth: charge them too
        if self.budget < 0:
            raise Malformed("too much metadata")
        shape: tuple[int, ...] | None = None
        dtype = layout = symbols = None
        attrs: dict[str, AttrValue] = {}
        for mtype, flags, data in self._messages(addr):
            if flags & 0x02:
                raise Unsupported("shared message (committed datatype)")
            if mtype == 1:
                shape = _dataspace(data)
            elif mtype == 3:
                dtype = self.types.get(data) or self.types.setdefault(data, _datatype(data))
            elif mtype == 8:
                layout = _layout(data)
            elif mtype == 12:
                name, value = self._attribute(data)
                if name in attrs:
                    raise Malformed(f"duplicate attribute {name!r}")
                attrs[name] = value
            elif mtype == 17:
                symbols = _QQ.unpack_from(data)
            elif mtype in _REFUSED:
                raise Unsupported(_REFUSED[mtype])
            elif flags & _MUST_UNDERSTAND:
                raise Unsupported(f"unknown message type {mtype}")
        if symbols is not None and dtype is None and layout is None:
            self._group(path, attrs, symbols[0], symbols[1], depth)
            return "group"
        if symbols is not None or dtype is None or layout is None:
            raise Unsupported(f"{path!r} is neither a group nor a dataset")
        self._dataset(path, attrs, shape, dtype, layout)
        return "dataset"

    def _dataset(self, path: str, attrs: dict, shape: tuple[int, ...] | None, dtype: _Type,
                 layout: tuple[int, int]) -> None:
        if shape is None:
            raise Unsupported("dataset without dataspace, or with a null one")
        if dtype.kind == "vstr":  # its bytes are heap references, not data to copy
            raise Unsupported("variable-length string dataset")
        nbytes = dtype.size
        for n in shape:
            nbytes *= n
        addr, stored = layout
        if stored != nbytes:
            raise Malformed("layout size does not match the dataspace")
        offset = None
        if addr != UNDEFINED:
            offset = self.base + addr
            if offset + nbytes > self.end:
                raise Malformed("dataset data beyond the end of the file")
        elif nbytes:
            raise Unsupported("dataset storage not allocated")
        self.out.objects.append(Dataset(path, shape, dtype.name, offset, nbytes, attrs))
        self.out.datasets[path] = self.out.objects[-1]

    def _attribute(self, data: bytes) -> tuple[str, AttrValue]:
        version, flags, name_size, type_size, space_size = _ATTR.unpack_from(data)
        if version == 1:  # name, datatype and dataspace each padded to 8 bytes
            o, pad = 8, 7
        elif version in (2, 3):
            if flags & 3:
                raise Unsupported("shared datatype or dataspace in an attribute")
            o, pad = (8 if version == 2 else 9), 0  # version 3 adds the name's encoding
        else:
            raise Unsupported(f"attribute message version {version}")
        name = data[o:o + name_size].split(b"\0", 1)[0].decode()
        o += (name_size + pad) & ~pad
        raw = data[o:o + type_size]
        dtype = self.types.get(raw) or self.types.setdefault(raw, _datatype(raw))
        o += (type_size + pad) & ~pad
        shape = _dataspace(data[o:o + space_size])
        o += (space_size + pad) & ~pad
        if shape is None:
            raise Unsupported(f"attribute {name!r} has a null dataspace")
        if len(shape) > 1:
            raise Unsupported(f"attribute {name!r} has rank {len(shape)}")
        count = shape[0] if shape else 1
        if count * dtype.size > len(data) - o:
            raise Malformed(f"attribute {name!r} data beyond its message")
        if dtype.kind == "num":
            values: list = list(struct.unpack_from(f"<{count}{_CODES[dtype.name]}", data, o))
        elif dtype.kind == "fstr":
            values = [data[o + i * dtype.size:o + (i + 1) * dtype.size].rstrip(b"\0")
                      for i in range(count)]
        elif dtype.kind == "vstr":
            values = [self._string(*_VLEN.unpack_from(data, o + 16 * i)) for i in range(count)]
        else:
            raise Unsupported(f"attribute {name!r} is opaque")
        return name, (values if shape else values[0])

    def _string(self, length: int, collection: int, index: int) -> str:
        if not length:
            return ""
        key = (collection, index, length)
        text = self.strings.get(key)  # decoded once however often it is referenced
        if text is None:
            objects = self.gcols.get(collection)
            if objects is None:
                objects = self.gcols[collection] = self._global_heap(collection)
            raw = objects.get(index)
            if raw is None or len(raw) != length:  # libhdf5 stores a string as one whole object
                raise Malformed("missing global heap object")
            text = self.strings[key] = raw.decode()
        return text

    def _global_heap(self, addr: int) -> dict[int, bytes]:
        buf, o = self._at(addr, _GCOL.size)
        sig, version, size = _GCOL.unpack_from(buf, o)
        if sig != b"GCOL" or version != 1 or size < _GCOL.size:
            raise Malformed("bad global heap collection")
        if o + size > len(buf):
            buf, o = self._at(addr, size)
        objects, p, end = {}, o + _GCOL.size, o + size
        while p + _GOBJ.size <= end:
            number, _, osize = _GOBJ.unpack_from(buf, p)
            p += _GOBJ.size
            if number == 0:  # free space: the rest of the collection
                break
            if osize > end - p:
                raise Malformed("global heap object beyond its collection")
            objects[number] = buf[p:p + osize]
            p += (osize + 7) & ~7
        return objects


def _dataspace(data: bytes) -> tuple[int, ...] | None:
    """The shape (``()`` for a scalar), or None for a null dataspace."""
    version, rank, _ = data[0], data[1], data[2]
    if version == 1:
        o = 8
    elif version == 2:  # adds a type: 0 scalar, 1 simple, 2 null
        if data[3] == 2:
            return None
        if data[3] != (rank > 0):
            raise Malformed("bad dataspace type")
        o = 4
    else:
        raise Unsupported(f"dataspace version {version}")
    if rank > MAX_RANK:
        raise Unsupported(f"rank {rank}")
    return _DIMS[rank].unpack_from(data, o)


def _datatype(data: bytes) -> _Type:
    cls, version = data[0] & 0x0F, data[0] >> 4
    bits = data[1] | data[2] << 8 | data[3] << 16
    size = int.from_bytes(data[4:8], "little")
    if not 1 <= version <= 4:
        raise Unsupported(f"datatype version {version}")
    if cls == 0:
        if bits & 0x01:
            raise Unsupported("big-endian integers")
        if _INT.unpack_from(data, 8) != (0, 8 * size) or size not in (1, 2, 4, 8):
            raise Unsupported("integer with padding bits")
        return _Type(f"{'int' if bits & 0x08 else 'uint'}{8 * size}", size, "num")
    if cls == 1:
        if bits & 0x41:
            raise Unsupported("big-endian or VAX floats")
        off, precision, *layout = _FLOAT.unpack_from(data, 8)
        if (off, precision) != (0, 8 * size) or _IEEE.get(size) != tuple(layout) \
                or bits >> 8 & 0xFF != 8 * size - 1 or bits >> 4 & 3 != 2:
            raise Unsupported("float other than IEEE half, single or double")
        return _Type(f"float{8 * size}", size, "num")
    if cls == 3:
        if bits >> 4 & 0x0F > 1 or not size:
            raise Unsupported("string with unknown character set")
        return _Type("string", size, "fstr")
    if cls == 5:
        if not size:
            raise Unsupported("empty opaque type")
        return _Type(f"V{size}", size, "opaque")
    if cls == 9:
        if bits & 0x0F != 1:
            raise Unsupported("variable-length sequence")
        if bits >> 8 & 0x0F > 1 or size != 16:
            raise Unsupported("variable-length string with unknown layout")
        return _Type("string", size, "vstr")
    names = {2: "time", 4: "bitfield", 6: "compound", 7: "reference", 8: "enum", 10: "array"}
    raise Unsupported(f"{names.get(cls, f'class {cls}')} datatype")


def _layout(data: bytes) -> tuple[int, int]:
    """(address, size) of contiguous storage."""
    version = data[0]
    if version not in (3, 4):  # 1 and 2 predate HDF5 1.6.3; libhdf5 no longer writes them
        raise Unsupported(f"data layout version {version}")
    if data[1] != 1:
        kinds = {0: "compact", 2: "chunked", 3: "virtual"}
        raise Unsupported(f"{kinds.get(data[1], 'unknown')} layout")
    return _QQ.unpack_from(data, 2)
