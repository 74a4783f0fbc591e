"""Write plain HDF5 files (see :mod:`modelmorph.storage.plainh5`) without h5py: all the metadata is laid
out and written here, and each dataset's data is left for the caller to put at its
``Dataset.offset`` (typically with ``os.copy_file_range``, so the kernel copies the bytes).

The structures are those libhdf5 1.14 writes with h5py's defaults, checked byte by byte against
h5py-written files:

- superblock 0, 8-byte addresses and lengths, K = 4 (symbol nodes of 8 entries) and K = 16 (B-tree
  nodes of 32 children), base address 0 and addresses relative to the superblock, so the bytes
  ``[start, end)`` are a standalone file (a ``.keras`` member); when ``start`` is 512, 1024, ...
  libhdf5 also opens the whole file (it rebases a superblock it finds past 0 as a user block);
- version-1 object headers; groups are symbol tables (v1 B-tree, local heap, symbol nodes),
  datasets hold dataspace v1 (max dims = dims), datatype, fill value v2 (late allocation, default
  fill), contiguous layout v3 and get libhdf5's 256-byte minimum header; no time stamps;
- attributes are version-1 messages holding variable-length UTF-8 strings (scalar for ``str``,
  1-D for ``list[str]``) whose bytes lie in global heap collections of at least 4 KiB, or a 1-D
  array of fixed-length byte strings (:class:`FixedStrings`, what h5py makes of numpy ``S`` data,
  as Keras 2 stores ``layer_names``) held in the message itself.

Everything the subset cannot express raises ``ValueError``: callers then fall back to h5py.
"""

from __future__ import annotations

import struct
from typing import BinaryIO, NamedTuple

from . import NUMERIC, Dataset

UNDEF = 0xFFFF_FFFF_FFFF_FFFF  # HDF5's undefined address
SNOD_ENTRIES = 8  # 2 * group leaf node K (4)
BTREE_CHILDREN = 32  # 2 * group internal node K (16)
SNOD_SIZE = 8 + SNOD_ENTRIES * 40
BTREE_SIZE = 24 + BTREE_CHILDREN * 8 + (BTREE_CHILDREN + 1) * 8  # libhdf5 reads whole nodes
HEAP_PREFIX = 32
SUPERBLOCK = 96  # superblock 0 with the root's symbol table entry
DATASET_HEADER = 256  # libhdf5 gives a new dataset's header this much room (a NULL message)
GCOL_MIN = 4096  # libhdf5's smallest global heap collection
MAX_MESSAGE = 0xFFF8  # a message's size field has 16 bits; sizes are multiples of 8
MAX_ATTRS = 0xFFFF - 5  # an object header counts its messages in 16 bits
HEAP_FREE_NONE = 1  # "no free block" in a local heap header: libhdf5 rejects the undefined address

# float size: (sign location, exponent location, exponent size, mantissa size, exponent bias)
_FLOAT = {2: (15, 10, 5, 10, 15), 4: (31, 23, 8, 23, 127), 8: (63, 52, 11, 52, 1023)}
# Variable-length string (class 9, v1): null-terminated, UTF-8, over a 1-byte unsigned integer.
_VLEN_UTF8 = struct.pack("<4BI4BIHH", 0x19, 0x01, 0x01, 0, 16, 0x10, 0, 0, 0, 1, 0, 8)
# Fill value v2: allocation late, fill written if set, default fill (defined, size 0).
_FILL = bytes([2, 2, 2, 1, 0, 0, 0, 0])

# name -> (scalar?, values, fixed size): UTF-8 strings in the global heap when the size is None,
# else NUL-padded strings of that many bytes in the message.
Attrs = dict[str, tuple[bool, list[bytes], "int | None"]]


class FixedStrings(NamedTuple):
    """An attribute value: a 1-D array of byte strings ``size`` bytes long each (NUL-padded
    ASCII), as h5py stores a numpy ``S<size>`` array; it may be empty (numpy's ``S1``)."""

    values: tuple[bytes, ...]
    size: int


def _fixed_string_type(size: int) -> bytes:
    return struct.pack("<4BI", 0x13, 0x01, 0, 0, size)  # string class, v1, NUL-padded, ASCII


def _pad8(n: int) -> int:
    return (n + 7) & ~7


def _utf8(s: str, what: str) -> bytes:
    try:
        return s.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} {s!r} is not valid Unicode") from None


def _split(path: str) -> list[str]:
    """Path components, for "" or "/" (the root), "a/b" or "/a/b"."""
    if not isinstance(path, str):
        raise ValueError(f"path must be a str, not {type(path).__name__}")
    parts = path[1:].split("/") if path.startswith("/") else path.split("/")
    if parts == [""]:
        return []
    for c in parts:
        if c in ("", ".", "..") or "\0" in c:
            raise ValueError(f"bad HDF5 path {path!r}")
        _utf8(c, "name")
    return parts


def _datatype(dtype: str) -> tuple[bytes, int]:
    """The Datatype message body (unpadded) and the element size."""
    if not isinstance(dtype, str):
        raise ValueError(f"dtype must be a str, not {type(dtype).__name__}")
    if dtype in NUMERIC:
        size = NUMERIC[dtype]
        if dtype.startswith("float"):
            sign, eloc, esize, msize, bias = _FLOAT[size]
            # little-endian IEEE, implied mantissa msb (normalization 2)
            return struct.pack("<4BIHH4BI", 0x11, 0x20, sign, 0, size, 0, 8 * size,
                               eloc, esize, 0, msize, bias), size
        signed = 0x08 if dtype.startswith("int") else 0
        return struct.pack("<4BIHH", 0x10, signed, 0, 0, size, 0, 8 * size), size
    if dtype[:1] == "V" and dtype[1:].isascii() and dtype[1:].isdigit():
        size = int(dtype[1:])
        if 0 < size < 2**32 and dtype == f"V{size}":
            return struct.pack("<4BI", 0x15, 0, 0, 0, size), size  # opaque, empty tag (as h5py)
    raise ValueError(f"unsupported dtype {dtype!r}")


def _check_attrs(attrs: dict | None) -> Attrs:
    if attrs is not None and not isinstance(attrs, dict):
        raise ValueError(f"attrs must be a dict, not {type(attrs).__name__}")
    out: Attrs = {}
    for name, value in (attrs or {}).items():
        if not isinstance(name, str) or not name or "\0" in name:
            raise ValueError(f"bad attribute name {name!r}")
        if isinstance(value, FixedStrings):
            items = list(value.values)
            if not (0 < value.size < 2**32) or not all(isinstance(v, bytes) and len(v) <= value.size for v in items):
                raise ValueError(f"attribute {name!r}: strings longer than their size {value.size}")
            _utf8(name, "attribute name")
            if _attr_size(name, False, items, value.size) > MAX_MESSAGE:
                raise ValueError(f"attribute {name!r} is too large for an object header message")
            out[name] = (False, items, value.size)
            continue
        if isinstance(value, str):
            scalar, items = True, [value]
        elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            scalar, items = False, value  # an empty list has no type h5py would give it
        else:
            raise ValueError(f"attribute {name!r}: only str and non-empty list[str] are supported")
        if any("\0" in v for v in items):
            raise ValueError(f"attribute {name!r}: variable-length strings cannot hold NUL")
        _utf8(name, "attribute name")
        if _attr_size(name, scalar, items) > MAX_MESSAGE:
            raise ValueError(f"attribute {name!r} is too large for an object header message")
        out[name] = (scalar, [_utf8(v, "attribute value") for v in items], None)
    return out


def _attr_size(name: str, scalar: bool, items: list, fixed: int | None = None) -> int:
    """The attribute message's body size (see ``_attr_message``)."""
    space = 8 if scalar else 24
    head = 8 + _pad8(len(name.encode("utf-8")) + 1) + space
    if fixed is not None:
        return head + _pad8(len(_fixed_string_type(fixed))) + fixed * len(items)
    return head + _pad8(len(_VLEN_UTF8)) + 16 * len(items)


def _attr_message(name: str, scalar: bool, ids: list[tuple[int, int, int]]) -> bytes:
    """Attribute message v1; ``ids`` are (length, collection address, index) per string."""
    n = len(ids)
    space = struct.pack("<4B4x", 1, 0, 0, 0) if scalar else struct.pack("<4B4xQQ", 1, 1, 1, 0, n, n)
    return _attr_body(name, _VLEN_UTF8, space, b"".join(struct.pack("<IQI", *i) for i in ids))


def _fixed_attr_message(name: str, items: list[bytes], size: int) -> bytes:
    n = len(items)
    space = struct.pack("<4B4xQQ", 1, 1, 1, 0, n, n)
    return _attr_body(name, _fixed_string_type(size), space, b"".join(v.ljust(size, b"\0") for v in items))


def _attr_body(name: str, datatype: bytes, space: bytes, data: bytes) -> bytes:
    bname = name.encode("utf-8")
    return b"".join([struct.pack("<BBHHH", 1, 0, len(bname) + 1, len(datatype), len(space)),
                     bname.ljust(_pad8(len(bname) + 1), b"\0"), datatype.ljust(_pad8(len(datatype)), b"\0"),
                     space, data])


def _object_header(msgs: list[tuple[int, int, bytes]], minimum: int = 0) -> bytes:
    """A version-1 object header: (type, flags, body) messages, padded with NULL to ``minimum``."""
    parts = [struct.pack("<HHB3x", t, _pad8(len(b)), fl) + b.ljust(_pad8(len(b)), b"\0")
             for t, fl, b in msgs]
    size = sum(map(len, parts))
    if size < minimum:
        parts.append(struct.pack("<HHB3x", 0, minimum - size - 8, 0) + bytes(minimum - size - 8))
        size = minimum
    return struct.pack("<BBHII4x", 1, 0, len(parts), 1, size) + b"".join(parts)


def _header_size(bodies: list[int], minimum: int = 0) -> int:
    return 16 + max(minimum, sum(8 + _pad8(n) for n in bodies))


def _global_heap(strings: list[bytes], pos: int
                 ) -> tuple[list[tuple[int, int, list[bytes]]], list[tuple[int, int, int]], int]:
    """Pack ``strings`` into global heap collections from ``pos`` on, as libhdf5 fills them: 4 KiB
    each, a new one when the next object does not fit, a bigger one for a big object. Returns
    the collections (address, size, strings), each string's (length, collection address, index)
    and the end of the last collection."""
    colls: list[tuple[int, int, list[bytes]]] = []
    ids: list[tuple[int, int, int]] = []
    used = 0
    for s in strings:
        need = 16 + _pad8(len(s))  # object header, data
        # never leave a leftover too small for the free-space object's own header
        if not colls or not (used + need == colls[-1][1] or used + need + 16 <= colls[-1][1]):
            size = max(GCOL_MIN, 16 + need)
            colls.append((pos, size + 8 if size - 16 - need == 8 else size, []))
            pos, used = pos + colls[-1][1], 16
        colls[-1][2].append(s)
        used += need
        ids.append((len(s), colls[-1][0], len(colls[-1][2])))
    return colls, ids, pos


class _Group:
    __slots__ = ("attrs", "kids", "names", "offsets", "btree", "levels", "heap", "snods")

    def __init__(self) -> None:
        self.attrs: Attrs = {}
        self.kids: dict[str, str] = {}  # name -> path


class PlainWriter:
    """Declare groups and datasets, then ``layout()`` writes the metadata and places the data."""

    def __init__(self, file: BinaryIO, start: int = 0):
        self.file, self.start = file, start
        self._groups: dict[str, _Group] = {"": _Group()}
        self._datasets: dict[str, tuple[Dataset, Attrs, bytes]] = {}
        self._done = False
        self._header: dict[str, int] = {}  # object header addresses, by path

    def _parents(self, parts: list[str]) -> None:
        """Check that no prefix of ``parts`` is a dataset, then create the missing groups."""
        for i in range(1, len(parts) + 1):
            if "/".join(parts[:i]) in self._datasets:
                raise ValueError(f"{'/'.join(parts[:i])!r} is a dataset, not a group")
        for i in range(1, len(parts) + 1):
            path = "/".join(parts[:i])
            if path not in self._groups:
                self._groups[path] = _Group()
                self._groups["/".join(parts[:i - 1])].kids[parts[i - 1]] = path

    def _check_open(self) -> None:
        if self._done:
            raise RuntimeError("layout() was already called")

    def group(self, path: str, attrs: "dict[str, str | list[str] | FixedStrings] | None" = None) -> None:
        self._check_open()
        parts, checked = _split(path), _check_attrs(attrs)
        old = self._groups.get("/".join(parts))
        if len(checked.keys() | (old.attrs.keys() if old else set())) > MAX_ATTRS:
            raise ValueError(f"too many attributes for {path!r}")
        self._parents(parts)
        self._groups["/".join(parts)].attrs.update(checked)

    def dataset(self, path: str, shape: tuple[int, ...], dtype: str, attrs: dict | None = None) -> Dataset:
        self._check_open()
        parts, checked = _split(path), _check_attrs(attrs)
        body, nbytes = _datatype(dtype)
        if not parts:
            raise ValueError("the root is a group")
        if len(checked) > MAX_ATTRS:
            raise ValueError(f"too many attributes for {path!r}")
        if not isinstance(shape, (tuple, list)) or len(shape) > 32 \
                or not all(type(d) is int and d >= 0 for d in shape):  # HDF5 allows rank <= 32
            raise ValueError(f"bad shape {shape!r}")
        shape = tuple(shape)
        for d in shape:
            nbytes *= d
        if nbytes >= 2**63:
            raise ValueError(f"dataset {path!r} is too large")
        full = "/".join(parts)
        if full in self._groups or full in self._datasets:
            raise ValueError(f"{full!r} already exists")
        self._parents(parts[:-1])
        ds = Dataset(full, shape, dtype, None, nbytes, dict(attrs or {}))
        self._datasets[full] = (ds, checked, body)
        self._groups["/".join(parts[:-1])].kids[parts[-1]] = full
        return ds

    def _order(self) -> list[str]:
        """Every object's path, depth first, members in name (byte) order as the B-trees keep them."""
        out: list[str] = []
        stack = [""]
        while stack:
            path = stack.pop()
            out.append(path)
            g = self._groups.get(path)
            if g is not None:
                g.names = sorted(g.kids, key=lambda k: k.encode("utf-8"))
                stack.extend(g.kids[k] for k in reversed(g.names))
        return out

    def layout(self) -> int:
        self._check_open()
        self._done = True
        order = self._order()
        attrs_of = {p: (self._groups[p].attrs if p in self._groups else self._datasets[p][1]) for p in order}

        # Allocate every object's metadata, the root's right after the superblock as libhdf5 does;
        # each group's B-tree, heap and symbol nodes follow its header.
        pos = SUPERBLOCK
        for p in order:
            g = self._groups.get(p)
            self._header[p] = pos
            attr_sizes = [_attr_size(n, *a) for n, a in attrs_of[p].items()]
            if g is None:
                ds, _, dt = self._datasets[p]
                pos += _header_size([8 + 16 * len(ds.shape), len(dt), 8, 18] + attr_sizes, DATASET_HEADER)
                continue
            pos += _header_size([16] + attr_sizes)
            n_snods = -(-len(g.names) // SNOD_ENTRIES)
            g.levels = [-(-max(n_snods, 1) // BTREE_CHILDREN)]  # B-tree nodes per level, leaves first
            while g.levels[-1] > 1:
                g.levels.append(-(-g.levels[-1] // BTREE_CHILDREN))
            g.btree = pos  # the root first, then each level below it
            pos += sum(g.levels) * BTREE_SIZE
            g.offsets, heap_size = {}, 8  # offset 0 is the empty name, the B-tree's first key
            for k in g.names:
                g.offsets[k] = heap_size
                heap_size += _pad8(len(k.encode("utf-8")) + 1)
            g.heap = (pos, heap_size)
            pos += HEAP_PREFIX + heap_size
            g.snods = pos
            pos += n_snods * SNOD_SIZE

        # The attributes' strings go to the global heap, after all the other metadata.
        keys = [(p, n) for p in order for n in sorted(attrs_of[p], key=str.encode) if attrs_of[p][n][2] is None]
        colls, heap_ids, pos = _global_heap([s for p, n in keys for s in attrs_of[p][n][1]], pos)
        ids, i = {}, 0
        for p, n in keys:
            k = len(attrs_of[p][n][1])
            ids[p, n], i = heap_ids[i:i + k], i + k
        meta_end = pos

        # Data region, in declaration order; empty datasets store nothing (undefined address).
        data: dict[str, int] = {}
        end = meta_end
        for path, (ds, _, _) in self._datasets.items():
            if ds.nbytes:
                data[path] = pos
                end = pos + ds.nbytes
                pos = _pad8(end)

        buf = bytearray(meta_end)
        buf[0:SUPERBLOCK] = (b"\x89HDF\r\n\x1a\n" + bytes([0, 0, 0, 0, 0, 8, 8, 0])
                             + struct.pack("<HHI4Q", 4, 16, 0, 0, UNDEF, end, UNDEF)
                             + self._entry(0, ""))
        for addr, size, objs in colls:
            out = [b"GCOL\x01\0\0\0", struct.pack("<Q", size)]
            for i, s in enumerate(objs, 1):  # libhdf5 leaves the reference count of vlen data 0
                out += [struct.pack("<HHIQ", i, 0, 0, len(s)), s.ljust(_pad8(len(s)), b"\0")]
            free = size - sum(map(len, out))
            if free:  # the free space object spans the rest, its own header included
                out += [struct.pack("<HHIQ", 0, 0, 0, free), bytes(free - 16)]
            buf[addr:addr + size] = b"".join(out)
        for p in order:
            g, addr = self._groups.get(p), self._header[p]
            attrs = [(0x0C, 0, _attr_message(n, attrs_of[p][n][0], ids[p, n]) if attrs_of[p][n][2] is None
                      else _fixed_attr_message(n, attrs_of[p][n][1], attrs_of[p][n][2]))
                     for n in sorted(attrs_of[p], key=str.encode)]
            if g is None:
                ds, _, dt = self._datasets[p]
                ds.offset = self.start + data[p] if p in data else None
                space = struct.pack(f"<4B4x{2 * len(ds.shape)}Q", 1, len(ds.shape), 1 if ds.shape else 0,
                                    0, *ds.shape, *ds.shape)
                layout = struct.pack("<BBQQ", 3, 1, data.get(p, UNDEF), ds.nbytes)
                oh = _object_header([(0x01, 0, space), (0x03, 1, dt), (0x05, 1, _FILL), (0x08, 0, layout)]
                                    + attrs, DATASET_HEADER)
            else:
                self._write_group(buf, g)
                oh = _object_header([(0x11, 0, struct.pack("<QQ", g.btree, g.heap[0]))] + attrs)
            buf[addr:addr + len(oh)] = oh
        self.file.seek(self.start)
        self.file.write(buf)
        self.file.flush()  # the caller may write the data through the descriptor (copy_file_range)
        return self.start + end

    def _entry(self, name_offset: int, path: str) -> bytes:
        """Symbol table entry; a group's caches its B-tree and heap (cache type 1) as libhdf5 does."""
        g = self._groups.get(path)
        if g is None:
            return struct.pack("<QQI4x16x", name_offset, self._header[path], 0)
        return struct.pack("<QQI4xQQ", name_offset, self._header[path], 1, g.btree, g.heap[0])

    def _write_group(self, buf: bytearray, g: _Group) -> None:
        heap_addr, heap_size = g.heap
        names = [k.encode("utf-8") for k in g.names]
        buf[heap_addr:heap_addr + HEAP_PREFIX] = b"HEAP\0\0\0\0" + struct.pack(
            "<QQQ", heap_size, HEAP_FREE_NONE, heap_addr + HEAP_PREFIX)
        pos = heap_addr + HEAP_PREFIX + 8
        for b in names:
            buf[pos:pos + len(b)] = b
            pos += _pad8(len(b) + 1)

        # Symbol nodes, full; then B-tree levels bottom-up. A child is (address, key of its last name).
        children: list[tuple[int, int]] = []
        for i in range(0, len(names), SNOD_ENTRIES):
            chunk = g.names[i:i + SNOD_ENTRIES]
            addr = g.snods + (i // SNOD_ENTRIES) * SNOD_SIZE
            entries = b"".join(self._entry(g.offsets[k], g.kids[k]) for k in chunk)
            node = b"SNOD\x01\0" + struct.pack("<H", len(chunk)) + entries
            buf[addr:addr + len(node)] = node
            children.append((addr, g.offsets[chunk[-1]]))
        for level, count in enumerate(g.levels):
            chunks = [children[i:i + BTREE_CHILDREN] for i in range(0, max(len(children), 1), BTREE_CHILDREN)]
            assert len(chunks) == count
            base = g.btree + sum(g.levels[level + 1:]) * BTREE_SIZE
            addrs = [base + j * BTREE_SIZE for j in range(count)]
            for j, chunk in enumerate(chunks):
                left = UNDEF if j == 0 else addrs[j - 1]
                right = addrs[j + 1] if j + 1 < len(chunks) else UNDEF
                key0 = chunks[j - 1][-1][1] if j else 0  # the largest name left of this node, or ""
                node = [b"TREE", struct.pack("<BBHQQQ", 0, level, len(chunk), left, right, key0)]
                node += [struct.pack("<QQ", a, k) for a, k in chunk]
                buf[addrs[j]:addrs[j] + sum(map(len, node))] = b"".join(node)
            children = [(addrs[j], chunk[-1][1]) for j, chunk in enumerate(chunks) if chunk]
