"""TensorBundle (TensorFlow checkpoint) reader and writer, without TensorFlow.

A checkpoint ``<prefix>`` is ``<prefix>.index`` (an SSTable, see :mod:`.table`) plus data
shards ``<prefix>.data-NNNNN-of-MMMMM``.  The index maps ``""`` to a
``BundleHeaderProto`` and every tensor key to a ``BundleEntryProto`` giving dtype, shape,
shard, byte offset/size and the masked CRC-32C of the tensor's bytes.

Partitioned variables have an entry under their full key that carries only dtype, shape
and the list of ``slices``; each slice is stored as an ordinary tensor under a key built
by :func:`.ordered_code.encode_slice_key`.
"""

from __future__ import annotations

import functools
import importlib
import math
import os
import struct
import sys
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator, Mapping, NamedTuple, Sequence

from modelmorph.storage import protowire as wire
from modelmorph.storage.safety import open_input

from . import strings
from .ordered_code import decode_slice_key, encode_slice_key
from .strings import StringLayout
from .wirewrite import fixed32_field, message_field, varint_field
from .table import (
    BundleError,
    Crc32cOfPieces,
    TableReader,
    TableWriter,
    buffer_address,
    crc32c_at_address,
    crc32c_combine,
    crc32c_extend,
    decode_varint,
    encode_varint,
    mask_crc,
    short_repr,
)

__all__ = [
    "ByteCopy",
    "Entry",
    "BundleReader",
    "BundleWriter",
    "OBJECT_GRAPH_KEY",
    "SUPPORTED_DTYPES",
    "data_filename",
    "index_filename",
    "read_checkpoint_state",
    "write_checkpoint_state",
    "resolve_checkpoint",
]

OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
_HEADER_KEY = b""
_MAX_RANK = 64  # numpy holds no more dimensions (TensorFlow allows 254: such a tensor is refused on read)
_MAX_SHARDS = 99999  # the %05d file-name field
#: Tensors (slices included) an index may hold, as the HDF5 reader's ``MAX_OBJECTS``: real
#: checkpoints hold thousands. An index stores an entry in a few bytes (keys share prefixes,
#: blocks may be snappy-compressed), and a model read from it costs ~3 KB per tensor: a 453 KB
#: index of 300,000 made ``info`` take 13 s and 0.9 GB, so this bounds what a small file can ask.
_MAX_ENTRIES = 1_000_000
_BUNDLE_VERSION = 1  # TensorFlow's kTensorBundleVersion
_IO_CHUNK = 16 * 1024 * 1024
_MAX_STATE_FILE = 1024 * 1024  # a `checkpoint` state file is a few hundred bytes
_LITTLE_ENDIAN_HOST = sys.byteorder == "little"
# Bytes read at a time when checking a tensor's CRC without decoding it: a piece this size stays in
# the CPU's L2 cache from the read through both CRCs (larger ones cost more CPU time, measured).
_VERIFY_CHUNK = 1 << 18


class _LazyModule:
    """A module imported on first use, then bound to ``alias`` in this module. Tensors whose bytes
    a writer copies as they are never need numpy, and ml_dtypes (bfloat16, float8) costs seconds
    to import: both load only when a tensor is decoded or encoded. Reading parses the index and
    the object graph from their wire format (:mod:`modelmorph.storage.protowire`), and writing
    encodes its messages itself (:mod:`.wirewrite`): protobuf and the message classes load only
    for :meth:`BundleReader.object_graph`."""

    def __init__(self, name: str, alias: str):
        self._name, self._alias = name, alias

    def __getattr__(self, attr: str):
        module = importlib.import_module(self._name)
        globals()[self._alias] = module  # later uses skip this object
        return getattr(module, attr)


if TYPE_CHECKING:
    import numpy as np

    from .protos import trackable_object_graph_pb2
else:
    np = _LazyModule("numpy", "np")
    trackable_object_graph_pb2 = _LazyModule(f"{__package__}.protos.trackable_object_graph_pb2",
                                             "trackable_object_graph_pb2")


# --------------------------------------------------------------------------- dtypes


class _DType(NamedTuple):
    enum: int
    name: str
    code: str | None  # numpy dtype string, "ml_dtypes.<name>", or None: string (object) or unsupported
    itemsize: int = 0

    @property
    def np(self) -> "np.dtype | None":
        return _numpy_dtype(self.code) if self.code is not None else None


@functools.lru_cache(maxsize=None)
def _numpy_dtype(code: str) -> "np.dtype":
    if code.startswith("ml_dtypes."):
        import ml_dtypes

        return np.dtype(getattr(ml_dtypes, code[len("ml_dtypes."):]))
    return np.dtype(code)


# TensorFlow's DataType enum (tensor_bundle.proto), as the wire holds it.
_DT_STRING = 7
_DTYPE_LIST = [
    _DType(1, "float32", "<f4", 4),
    _DType(2, "float64", "<f8", 8),
    _DType(3, "int32", "<i4", 4),
    _DType(4, "uint8", "u1", 1),
    _DType(5, "int16", "<i2", 2),
    _DType(6, "int8", "i1", 1),
    _DType(7, "string", None),
    _DType(8, "complex64", "<c8", 8),
    _DType(9, "int64", "<i8", 8),
    _DType(10, "bool", "?", 1),
    _DType(11, "qint8", "i1", 1),
    _DType(12, "quint8", "u1", 1),
    _DType(13, "qint32", "<i4", 4),
    _DType(14, "bfloat16", "ml_dtypes.bfloat16", 2),
    _DType(15, "qint16", "<i2", 2),
    _DType(16, "quint16", "<u2", 2),
    _DType(17, "uint16", "<u2", 2),
    _DType(18, "complex128", "<c16", 16),
    _DType(19, "float16", "<f2", 2),
    _DType(20, "resource", None),
    _DType(21, "variant", None),
    _DType(22, "uint32", "<u4", 4),
    _DType(23, "uint64", "<u8", 8),
    _DType(24, "float8_e5m2", "ml_dtypes.float8_e5m2", 1),
    _DType(25, "float8_e4m3fn", "ml_dtypes.float8_e4m3fn", 1),
    _DType(29, "int4", None),
    _DType(30, "uint4", None),
]
_DTYPE_BY_ENUM = {d.enum: d for d in _DTYPE_LIST}
_DTYPE_BY_NAME = {d.name: d for d in _DTYPE_LIST}
_DTYPE_BY_NAME.update({"half": _DTYPE_BY_NAME["float16"], "float": _DTYPE_BY_NAME["float32"],
                       "double": _DTYPE_BY_NAME["float64"], "bytes": _DTYPE_BY_NAME["string"],
                       "str": _DTYPE_BY_NAME["string"], "object": _DTYPE_BY_NAME["string"]})
# numpy dtype name (the TF name, for these) -> the TensorFlow dtype a writer stores it as
_WRITABLE_BY_NUMPY_NAME = {d.name: d for d in _DTYPE_LIST if d.code is not None and not d.name.startswith("q")}

#: dtype names :meth:`BundleReader.read` can decode (qint*/quint* come back as plain ints).
SUPPORTED_DTYPES = tuple(d.name for d in _DTYPE_LIST if d.code is not None or d.name == "string")


def _dtype_name(enum: int) -> str:
    d = _DTYPE_BY_ENUM.get(enum)
    return d.name if d else f"unknown_dtype_{enum}"


def _resolve_dtype(dtype) -> _DType:
    """Accept a TF dtype name ("bfloat16", "string"), a numpy dtype or an enum int."""
    if isinstance(dtype, _DType):
        return dtype
    if isinstance(dtype, int) and not isinstance(dtype, bool):
        if dtype in _DTYPE_BY_ENUM:
            return _DTYPE_BY_ENUM[dtype]
        raise ValueError(f"unknown TensorFlow dtype enum {dtype}")
    if isinstance(dtype, str) and dtype in _DTYPE_BY_NAME:
        return _DTYPE_BY_NAME[dtype]
    try:
        npd = np.dtype(dtype)
    except TypeError:
        raise ValueError(f"unsupported dtype {dtype!r}") from None
    if npd.kind in "OSUT":
        return _DTYPE_BY_NAME["string"]
    d = _WRITABLE_BY_NUMPY_NAME.get(npd.name)
    if d is None:
        raise ValueError(f"dtype {npd} cannot be stored in a TensorFlow checkpoint")
    return d


# --------------------------------------------------------------------------- names


def index_filename(prefix: str | os.PathLike) -> str:
    return f"{os.fspath(prefix)}.index"


def data_filename(prefix: str | os.PathLike, shard_id: int, num_shards: int) -> str:
    return f"{os.fspath(prefix)}.data-{shard_id:05d}-of-{num_shards:05d}"


def _key_to_str(key: bytes) -> str:
    return key.decode("utf-8", "surrogateescape")


def _key_to_bytes(key: str | bytes) -> bytes:
    return key if isinstance(key, bytes) else key.encode("utf-8", "surrogateescape")


# --------------------------------------------------------------------------- entries


Extents = tuple  # tuple[tuple[int, int | None], ...]; length None = whole dimension


class ByteCopy(NamedTuple):
    """A tensor for :meth:`BundleWriter.add_copies`: ``nbytes`` of ``file`` (an open binary
    file, or an in-memory one) from ``offset`` hold its C-order, little-endian value; ``dtype``
    is a TF dtype name of fixed size; ``report_crc32`` (optional) gets the CRC-32 of those bytes."""

    key: str
    dtype: str
    shape: Sequence[int]
    file: object
    offset: int
    nbytes: int
    report_crc32: Callable[[int | None], None] | None = None


class Entry(NamedTuple):
    """One tensor of a checkpoint as described by the index (no data read yet).

    ``dtype`` is a TensorFlow dtype name ("float32", "bfloat16", "string", ...;
    ``unknown_dtype_N`` for enums this library does not know).  ``crc32c`` is the
    masked CRC-32C as stored.  ``slices`` is non-empty for a partitioned variable whose
    data lives in slice entries: one tuple of ``(start, length)`` per dimension per
    slice, ``length`` ``None`` meaning the whole dimension.  ``slice`` is set on the
    sub-entries that hold one slice's data (see :meth:`BundleReader.slice_entries`).
    """

    key: str
    dtype: str
    shape: tuple[int, ...]
    shard_id: int = 0
    offset: int = 0
    size: int = 0
    crc32c: int = 0
    slices: tuple[Extents, ...] = ()
    slice: Extents | None = None
    dtype_enum: int = 0

    @property
    def num_elements(self) -> int:
        return math.prod(self.shape)

    @property
    def is_partitioned(self) -> bool:
        return bool(self.slices)


def _extents(sp: "wire.Fields") -> Extents:
    """A TensorSliceProto's extents (repeated extent = 1: start = 1, oneof length = 2)."""
    return tuple((wire.int64(e, 1), wire.int64(e, 2) if wire.has(e, 2, wire.VARINT) else None)
                 for e in wire.messages(sp, 1))


class BundleHeader(NamedTuple):
    """The index's ``BundleHeaderProto``, as read."""

    num_shards: int
    endianness: int  # 0: little-endian
    producer: int
    min_consumer: int
    bad_consumers: tuple[int, ...]


def _concrete(extents: Extents, shape: tuple[int, ...]) -> tuple[tuple[int, int], ...] | None:
    """Replace whole-dimension extents by (0, dim); None if ranks differ."""
    if len(extents) != len(shape):
        return None
    return tuple((start, dim - start if length is None else length) for (start, length), dim in zip(extents, shape))


# --------------------------------------------------------------------------- reader


class BundleReader:
    """Lazy, checked reader of a TensorFlow checkpoint.

    ``prefix`` may be the checkpoint prefix, its ``.index`` file, one of its data
    shards, or a folder holding a ``checkpoint`` state file (see
    :func:`resolve_checkpoint`).  The index is parsed at construction; tensor data is
    read on demand by :meth:`read`, CRC-verified, from the right data shard.  Instances
    are safe to share between threads (reads are serialised per reader).

    ``confine_to`` (a folder): refuse to open any file (index or shard) whose real
    path, symlinks resolved, lies outside that folder.  Off by default because shared
    caches legitimately symlink checkpoint files to blobs stored elsewhere.
    """

    def __init__(
        self,
        prefix: str | os.PathLike,
        *,
        verify_checksums: bool = True,
        confine_to: str | os.PathLike | None = None,
    ):
        self.prefix = resolve_checkpoint(prefix)
        self.index_path = index_filename(self.prefix)
        self.verify_checksums = verify_checksums
        self.confine_to = os.fspath(confine_to) if confine_to is not None else None
        self._check_confined(self.index_path)
        self._lock = threading.RLock()  # re-entered: a string read checks its layout under it
        self._shard_files: dict[int, tuple[object, int, str]] = {}
        self._entries: dict[str, Entry] = {}
        self._slice_entries: dict[str, list[Entry]] = {}
        with TableReader(self.index_path) as table:
            self.num_data_blocks = table.num_data_blocks
            items = iter(table)
            first = next(items, None)
            if first is None or first[0] != _HEADER_KEY:
                raise self._error("index has no bundle header (the entry under the empty key)")
            self._parse_header(first[1])
            for count, (key, value) in enumerate(items, 1):
                if count > _MAX_ENTRIES:
                    raise self._error(f"the index holds more than {_MAX_ENTRIES:,} tensors")
                self._add_entry(key, value)

    # -- parsing ---------------------------------------------------------------------
    def _error(self, problem: str, path: str | None = None) -> BundleError:
        return BundleError(problem, path or self.index_path)

    def _parse_header(self, value: bytes) -> None:
        # BundleHeaderProto: num_shards = 1, endianness = 2 (LITTLE = 0), version = 3
        # (VersionDef: producer = 1, min_consumer = 2, repeated bad_consumers = 3).
        try:
            h = wire.parse(value)
            version = wire.message(h, 3) or {}
            header = BundleHeader(wire.int32(h, 1), wire.int32(h, 2), wire.int32(version, 1),
                                  wire.int32(version, 2), tuple(wire.repeated_ints(version, 3, wire.to_int32)))
        except wire.WireError:
            raise self._error("unparsable bundle header") from None
        if not 1 <= header.num_shards <= _MAX_SHARDS:
            raise self._error(f"bundle header declares {header.num_shards} data shards")
        if header.endianness != 0:
            raise self._error("big-endian checkpoints are not supported")
        if header.min_consumer > _BUNDLE_VERSION or _BUNDLE_VERSION in header.bad_consumers:
            raise self._error(
                f"checkpoint format version too new (producer {header.producer}, min_consumer {header.min_consumer})"
            )
        self.num_shards = header.num_shards
        self.header = header

    def _add_entry(self, raw_key: bytes, value: bytes) -> None:
        is_slice = raw_key[:1] == b"\x00"
        if is_slice:
            try:
                name, extents = decode_slice_key(raw_key)
            except BundleError as e:
                raise self._error(e.problem) from None
        else:
            name, extents = _key_to_str(raw_key), None
        label = f"entry {short_repr(name)}" + (" (slice)" if is_slice else "")
        # BundleEntryProto: dtype = 1, shape = 2 (TensorShapeProto: repeated dim = 2 (size = 1),
        # unknown_rank = 3), shard_id = 3, offset = 4, size = 5, crc32c = 6 (fixed32), slices = 7.
        try:
            p = wire.parse(value)
            dims = wire.message(p, 2) or {}
            if wire.boolean(dims, 3):
                raise self._error(f"{label}: shape of unknown rank")
            rank = len(dims.get(2, ()))
            if rank > _MAX_RANK:
                raise self._error(f"{label}: rank {rank} exceeds {_MAX_RANK}")
            shape = tuple(wire.int64(d, 1) for d in wire.messages(dims, 2))
            slices = tuple(_extents(s) for s in wire.messages(p, 7)) if 7 in p else ()  # (rare: no call otherwise)
            dtype = wire.int32(p, 1)
            entry = Entry(
                key=name,
                dtype=_dtype_name(dtype),
                shape=shape,
                shard_id=wire.int32(p, 3),
                offset=wire.int64(p, 4),
                size=wire.int64(p, 5),
                crc32c=wire.fixed32(p, 6),
                slices=slices,
                slice=extents,
                dtype_enum=dtype,
            )
        except wire.WireError:
            raise self._error(f"{label}: unparsable BundleEntryProto") from None
        if shape and min(shape) < 0:
            raise self._error(f"{label}: negative or unknown dimension in shape {list(shape)}")
        if not slices:  # a partitioned variable's own entry stores no data
            if not 0 <= entry.shard_id < self.num_shards:
                raise self._error(f"{label}: shard {entry.shard_id} out of range (bundle has {self.num_shards})")
            if entry.offset < 0 or entry.size < 0 or entry.offset + entry.size >= 1 << 63:
                raise self._error(f"{label}: invalid offset {entry.offset} / size {entry.size}")
            self._check_declared_size(entry, label)
        if is_slice:
            if slices:
                raise self._error(f"{label}: a slice cannot itself be partitioned")
            self._slice_entries.setdefault(name, []).append(entry)
        else:
            self._entries[name] = entry

    def _check_declared_size(self, e: Entry, label: str) -> None:
        """Shape, dtype and stored byte size must agree (no allocation is ever based on
        a shape that the stored bytes do not back)."""
        d = _DTYPE_BY_ENUM.get(e.dtype_enum)
        n = e.num_elements
        if d is not None and d.code is not None:
            need = n * d.itemsize
            if need != e.size:
                raise self._error(
                    f"{label}: shape {list(e.shape)} of {e.dtype} needs {need} bytes but the entry stores {e.size}"
                )
        elif d is not None and d.name == "string":
            if e.size < 4 or n > e.size - 4:
                raise self._error(
                    f"{label}: {n} strings cannot fit in the {e.size} bytes the entry stores"
                )

    # -- mapping API -------------------------------------------------------------------
    def entries(self) -> Mapping[str, Entry]:
        """All tensors in key order (slice sub-entries are folded into their variable)."""
        return dict(self._entries)

    def slice_entries(self, key: str) -> list[Entry]:
        """The sub-entries holding the slices of partitioned variable ``key``."""
        return list(self._slice_entries.get(key, ()))

    def keys(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, key: str) -> np.ndarray:
        return self.read(key)

    def items(self) -> Iterator[tuple[str, np.ndarray]]:
        """``(key, array)`` for every tensor, reading one tensor at a time."""
        for key in list(self._entries):
            yield key, self.read(key)

    # -- files -----------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            for f, _, _ in self._shard_files.values():
                f.close()
            self._shard_files.clear()

    def __enter__(self) -> "BundleReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def data_files(self) -> list[str]:
        return [data_filename(self.prefix, i, self.num_shards) for i in range(self.num_shards)]

    def _check_confined(self, path: str) -> None:
        if self.confine_to is not None and not _inside(path, self.confine_to):
            raise BundleError(f"file resolves outside {self.confine_to} (symbolic link?)", path)

    def _shard(self, shard_id: int) -> tuple[object, int, str]:
        got = self._shard_files.get(shard_id)
        if got is None:
            path = data_filename(self.prefix, shard_id, self.num_shards)
            self._check_confined(path)
            try:
                f = open_input(path)
            except FileNotFoundError:
                raise BundleError(f"missing data shard {shard_id} of {self.num_shards}", path) from None
            except OSError as e:
                raise BundleError(f"cannot open data shard: {e.strerror or e}", path) from None
            got = (f, os.fstat(f.fileno()).st_size, path)
            self._shard_files[shard_id] = got
        return got

    # -- reading ---------------------------------------------------------------------
    def _entry(self, key: str) -> Entry:
        try:
            return self._entries[key]
        except KeyError:
            raise KeyError(f"no tensor {key!r} in checkpoint {self.prefix}") from None

    def read(self, key: str) -> np.ndarray:
        """The tensor stored under ``key`` as a numpy array (writable, C order).

        Strings come back as an object array of ``bytes``; bfloat16/float8 use
        ml_dtypes; partitioned variables are reassembled from their slices.  Corrupted
        or inconsistent data raises :class:`BundleError` naming the key.
        """
        entry = self._entry(key)
        with self._lock:
            if entry.slices:
                return self._read_partitioned(entry)
            return self._read_plain(entry, key)

    def _check_region(self, e: Entry, label: str) -> tuple[object, str]:
        f, fsize, path = self._shard(e.shard_id)
        if e.offset + e.size > fsize:
            raise BundleError(
                f"tensor {label}: bytes {e.offset}..{e.offset + e.size} lie past the end of the data file ({fsize} bytes)",
                path,
            )
        return f, path

    def _read_bytes(self, e: Entry, label: str, verify: bool = True) -> bytearray:
        """The entry's raw bytes, bounds- and CRC-checked, in a fresh buffer."""
        f, path = self._check_region(e, label)
        buf = bytearray(e.size)  # size checked against the file just above
        mv = memoryview(buf)
        f.seek(e.offset)
        got = 0
        while got < e.size:
            n = f.readinto(mv[got:])
            if not n:
                raise BundleError(f"tensor {label}: data file ended early", path)
            got += n
        if verify and self.verify_checksums:
            self._check_crc(e, label, mask_crc(crc32c_extend(0, buf)), path)
        return buf

    def _check_crc(self, e: Entry, label: str, actual: int, path: str) -> None:
        if actual != e.crc32c:
            raise BundleError(
                f"checksum mismatch for tensor {label} (stored {e.crc32c:#010x}, computed {actual:#010x}): data corrupted",
                path,
            )

    def byte_range(self, key: str) -> tuple[object, int, int] | None:
        """``(open data file, offset, size)`` where tensor ``key`` lies as plain bytes (C order,
        little-endian, as numpy's ``<`` dtypes and ml_dtypes' bfloat16 hold them), or None when
        its bytes are not its value as such: strings, partitioned variables, bool (any non-zero
        byte is True), quantized and unknown dtypes. The bytes are not read, so not yet checked:
        call :meth:`verify` before trusting them."""
        e = self._entry(key)
        d = _DTYPE_BY_ENUM.get(e.dtype_enum)
        if e.slices or d is None or d.code is None or d.name == "bool" or d.name.startswith("q"):
            return None
        with self._lock:
            f, _ = self._check_region(e, short_repr(key))
        return f, e.offset, e.size

    def string_range(self, key: str) -> tuple[object, int, int] | None:
        """``(open data file, offset, size)`` of string tensor ``key`` as TensorFlow lays it out
        (lengths, their CRC, the bytes: see :mod:`.strings`), which a checkpoint writer copies
        as it is, entry CRC included; None for any other tensor. Not read, so not yet checked:
        call :meth:`verify` before trusting the bytes."""
        e = self._entry(key)
        if e.slices or e.dtype_enum != _DT_STRING:
            return None
        with self._lock:
            f, _ = self._check_region(e, short_repr(key))
        return f, e.offset, e.size

    def _string_layout(self, e: Entry, label: str, verify: bool,
                       stored_crc: int | None = None) -> tuple[object, StringLayout]:
        """Check a string tensor's structure (and with ``verify``, its CRCs) reading only its
        lengths and streaming its bytes; no string becomes a Python object. With ``stored_crc``
        (the CRC-32C of its stored bytes, from a copy) the bytes are not read at all."""
        with self._lock:
            f, path = self._check_region(e, label)
        fd = f.fileno()
        try:
            layout = strings.scan(fd, e.offset, e.size, e.num_elements)
        except BundleError as err:  # the lengths lie in the data file: it is the one named
            raise BundleError(f"tensor {label}: {err.problem}", path) from None
        if verify and self.verify_checksums:
            if layout.stored_lengths_crc != mask_crc(layout.lengths_crc):
                raise BundleError(f"checksum mismatch in the string lengths of tensor {label}: data corrupted", path)
            try:
                end = e.offset + e.size
                actual = mask_crc(strings.entry_crc32c(fd, layout, end) if stored_crc is None
                                  else strings.entry_crc32c_of_stored(layout, stored_crc, end))
            except BundleError as err:
                raise BundleError(f"tensor {label}: {err.problem}", path) from None
            self._check_crc(e, label, actual, path)
        return f, layout

    def verify(self, key: str, crc32: bool = False) -> int | None:
        """Check the CRC-32C of tensor ``key``'s stored bytes without decoding them: read through
        one bounded buffer by positioned reads (no seek, so concurrent :meth:`read` calls are
        unaffected). Raises :class:`BundleError` on a mismatch. With ``crc32``, returns the
        CRC-32 (zip's) of the same bytes, computed in the same pass (None for strings, whose
        stored bytes are not their value as such)."""
        e = self._entry(key)
        label = short_repr(key)
        if e.dtype_enum == _DT_STRING and not e.slices:
            self._string_layout(e, label, verify=True)
            return None
        with self._lock:
            f, path = self._check_region(e, label)
        if (not self.verify_checksums and not crc32) or e.slices:
            return None
        try:
            crc, zip_crc = _crc32c_range(f.fileno(), e.offset, e.size, crc32)
        except EOFError:
            raise BundleError(f"tensor {label}: data file ended early", path) from None
        if self.verify_checksums:
            self._check_crc(e, label, mask_crc(crc), path)
        return zip_crc

    def check_crc32c(self, key: str, crc: int) -> None:
        """Raise :class:`BundleError` unless ``crc``, the (unmasked) CRC-32C of tensor ``key``'s
        stored bytes as a copy of them computed it, is the one the index holds. For a string
        tensor (whose entry CRC is not that of its stored bytes) its lengths are read and
        checked, and the entry's CRC follows from ``crc`` (:func:`.strings.entry_crc32c_of_stored`)."""
        e = self._entry(key)
        if not self.verify_checksums:
            return
        if e.dtype_enum == _DT_STRING and not e.slices:
            self._string_layout(e, short_repr(key), verify=True, stored_crc=crc)
            return
        self._check_crc(e, short_repr(key), mask_crc(crc), self._shard(e.shard_id)[2])

    def _read_plain(self, e: Entry, key: str) -> np.ndarray:
        label = short_repr(key)
        d = _DTYPE_BY_ENUM.get(e.dtype_enum)
        if d is None or (d.code is None and d.name != "string"):
            raise self._error(f"tensor {label}: unsupported dtype {e.dtype}")
        if d.name == "string":
            out = np.empty(e.num_elements, dtype=object)
            i = 0
            for block in self.string_blocks(key, _IO_CHUNK, _entry=e):
                out[i:i + len(block)] = np.fromiter(block, dtype=object, count=len(block))
                i += len(block)
            return out.reshape(e.shape)
        buf = np.frombuffer(self._read_bytes(e, label), dtype=np.uint8)  # writable: a bytearray's
        if d.name == "bool":
            return (buf != 0).reshape(e.shape)
        arr = buf.view(d.np)
        if not _LITTLE_ENDIAN_HOST and d.np.byteorder == "|" and d.np.itemsize > 1:
            arr = arr.byteswap()  # ml_dtypes types have no explicit byte order
        return arr.reshape(e.shape)

    def string_blocks(self, key: str, max_bytes: int, _entry: Entry | None = None,
                      verify: bool = True) -> Iterator[list[bytes]]:
        """String tensor ``key``'s elements in C order, as lists of about ``max_bytes`` of string
        data: checked first (structure, and with ``verify`` the CRC, streaming), then read a block
        at a time, so memory holds one block (a whole tensor of short strings costs a Python
        object each). ``verify=False`` only for a tensor whose CRC was checked already."""
        e = _entry or self._entry(key)
        label = short_repr(e.key if _entry is not None else key)
        f, layout = self._string_layout(e, label, verify=verify)
        try:
            yield from strings.iter_blocks(f.fileno(), e.offset, e.size, e.num_elements, layout, max_bytes)
        except BundleError as err:
            raise BundleError(f"tensor {label}: {err.problem}", f.name) from None

    def _read_strings(self, e: Entry, label: str) -> list[bytes]:
        # Layout: varint64 length per element, masked CRC-32C of the lengths (each as a
        # little-endian uint32, or uint64 if it does not fit), then the bytes.  The
        # entry's checksum chains: lengths (as uint32/uint64) + the 4 stored bytes + data.
        data = bytes(self._read_bytes(e, label, verify=False))
        n = e.num_elements  # <= size - 4, checked at open
        lengths = []
        pos = 0
        limit = len(data)
        try:
            for _ in range(n):
                length, pos = decode_varint(data, pos, limit, 64, what="string length")
                lengths.append(length)
        except BundleError as err:
            raise self._error(f"tensor {label}: {err.problem}") from None
        lcrc = _lengths_crc(lengths)
        if pos + 4 > limit:
            raise self._error(f"tensor {label}: string lengths run past the stored bytes")
        (stored,) = struct.unpack_from("<I", data, pos)
        if self.verify_checksums and stored != mask_crc(lcrc):
            raise self._error(f"checksum mismatch in the string lengths of tensor {label}: data corrupted")
        pos += 4
        if pos + sum(lengths) != limit:
            raise self._error(f"tensor {label}: string lengths do not add up to the stored size")
        if self.verify_checksums:
            actual = mask_crc(crc32c_extend(lcrc, data[pos - 4 :]))
            if actual != e.crc32c:
                raise self._error(
                    f"checksum mismatch for tensor {label} (stored {e.crc32c:#010x}, computed {actual:#010x}): data corrupted"
                )
        out = []
        for length in lengths:
            out.append(data[pos : pos + length])
            pos += length
        return out

    def _read_partitioned(self, e: Entry) -> np.ndarray:
        label = short_repr(e.key)
        d = _DTYPE_BY_ENUM.get(e.dtype_enum)
        if d is None or d.code is None:
            raise self._error(f"tensor {label}: partitioned variables of dtype {e.dtype} are not supported")
        subs = {}
        for s in self._slice_entries.get(e.key, ()):
            c = _concrete(s.slice, e.shape)
            if c is not None:
                subs[c] = s
        pieces = []
        covered = 0
        per_shard: dict[int, int] = {}
        if len(set(e.slices)) != len(e.slices):
            raise self._error(f"tensor {label}: the same slice is listed twice")
        for spec in e.slices:
            c = _concrete(spec, e.shape)
            if c is None:
                raise self._error(f"tensor {label}: slice rank differs from the tensor's rank {len(e.shape)}")
            for (start, length), dim in zip(c, e.shape):
                if start < 0 or length < 0 or start + length > dim:
                    raise self._error(f"tensor {label}: slice {list(c)} lies outside shape {list(e.shape)}")
            sub = subs.get(c)
            if sub is None:
                raise self._error(f"tensor {label}: the data of slice {list(c)} is missing")
            if sub.dtype_enum != e.dtype_enum or sub.shape != tuple(length for _, length in c):
                raise self._error(f"tensor {label}: slice {list(c)} stored with dtype/shape {sub.dtype}{list(sub.shape)}")
            self._check_region(sub, f"{label} slice {list(c)}")
            # Slices may not claim more bytes than their data files hold, so that the
            # whole tensor allocated below is backed by data that really exists.
            per_shard[sub.shard_id] = per_shard.get(sub.shard_id, 0) + sub.size
            if per_shard[sub.shard_id] > self._shard(sub.shard_id)[1]:
                raise self._error(f"tensor {label}: its slices claim more bytes than data shard {sub.shard_id} holds")
            pieces.append((c, sub))
            covered += sub.num_elements
        total = e.num_elements
        if covered != total or self._slices_overlap([c for c, _ in pieces], e.shape):
            raise self._error(f"tensor {label}: its slices do not tile shape {list(e.shape)} exactly")
        out = np.empty(e.shape, dtype=d.np)
        for c, sub in pieces:
            part = self._read_plain(sub, f"{e.key} slice {list(c)}")
            out[tuple(slice(s, s + n) for s, n in c)] = part
        return out

    @staticmethod
    def _slices_overlap(specs, shape) -> bool:
        def intersects(a, b):
            return all(sa < sb + nb and sb < sa + na for (sa, na), (sb, nb) in zip(a, b))

        specs = [s for s in specs if all(n > 0 for _, n in s)]
        if len(specs) <= 256:
            return any(intersects(specs[i], specs[j]) for i in range(len(specs)) for j in range(i + 1, len(specs)))
        mask = np.zeros(shape, dtype=np.uint8)  # element count <= stored bytes (checked)
        for s in specs:
            region = mask[tuple(slice(a, a + n) for a, n in s)]
            if region.any():
                return True
            region[...] = 1
        return False

    # -- object graph ------------------------------------------------------------------
    def object_graph(self):
        """The ``TrackableObjectGraph`` message stored under ``_CHECKPOINTABLE_OBJECT_GRAPH``
        (protobuf's), or ``None`` for a name-based (TF1-style) checkpoint without one."""
        data = self.object_graph_bytes()
        if data is None:
            return None
        from google.protobuf.message import DecodeError

        try:
            return trackable_object_graph_pb2.TrackableObjectGraph.FromString(data)
        except DecodeError:
            raise self._error(f"unparsable {OBJECT_GRAPH_KEY}") from None

    def object_graph_bytes(self) -> bytes | None:
        """The serialized ``TrackableObjectGraph`` (CRC-checked, not parsed), or ``None`` for a
        name-based (TF1-style) checkpoint without one."""
        e = self._entries.get(OBJECT_GRAPH_KEY)
        if e is None:
            return None
        if e.dtype != "string" or e.shape != () or e.slices:
            raise self._error(f"{OBJECT_GRAPH_KEY} is not a string scalar")
        with self._lock:  # numpy-free: the graph is read on every checkpoint job
            (data,) = self._read_strings(e, short_repr(OBJECT_GRAPH_KEY))
        return data


# --------------------------------------------------------------------------- writer

#: Copied tensors pass through a buffer this size: it stays in the CPU's L2 cache from the read
#: into it, through the CRCs, to the write from it, so the bytes cross memory once, as in ``cp``
#: (measured, 1 GiB from the page cache: about the CPU time of an aligned ``copy_file_range``,
#: CRC-32C and CRC-32 included; 1-4 MiB pieces cost up to three times as much). Not 256 KiB:
#: writes that large to page-aligned offsets were up to 3x slower on a 2-vCPU VM (Linux 6.18;
#: 1 GiB read 256 KiB at a time and written 256 KiB at a time: 0.97-1.13 s in 8 rounds, 128 KiB:
#: 0.31-0.33 s in 4, cp 0.26-0.32 s; another 8 rounds: medians 0.39, 0.31 and 0.29 s). The page
#: cache sizes its pages by the write; cp writes 64 KiB at a time.
_COPY_PIECE = 1 << 17
_PAGE = 4096
#: ``copy_file_range`` between offsets that differ within a page costs ~50% more system time
#: (every destination page is filled from two source pages): a tensor this large is placed at
#: its source's offset within a page, after up to 4095 zero bytes (TensorFlow's reader goes by
#: each entry's offset; its own writer pads so with ``data_alignment``).
_ALIGN_FROM = 1 << 20
_SPLIT_FROM = 1 << 23  # a copy this large is shared by two threads
#: ... in units this size, which the threads take in turn, as in ``filecopy.copy_ranges_crc32``:
#: both write near the same end of the file. (Halves had one thread write from the middle of a
#: 1 GiB string tensor while the other filled its start; 1 GiB ckpt -> ckpt, 8 rounds each on a
#: 2-vCPU VM: median 0.51-0.52 s with units, 0.56 s with halves.)
_SPLIT_UNIT = 1 << 23
#: A copy this large between the same offsets within a page is the kernel's (``copy_file_range``
#: in the caller's thread, as ``cp`` does) while a second thread reads the source for the CRCs:
#: the bytes are read twice, but not written from user space. Such writes (to page-aligned
#: offsets: a checkpoint's big tensors) went 3-4x slower on a 2-vCPU VM (Linux 6.18) for minutes
#: after other 1 GiB conversions, and cp did not. The copy alone, 1 GiB, 6 rounds each in that
#: state: this way 0.37 s median, cp 0.43 s, two threads writing from user space 0.69 s. The
#: 1 GiB string checkpoint -> checkpoint in bench_ladder, after its float rungs: 1.02 s -> 0.36 s.
_KERNEL_FROM = 1 << 23


def _copy_checksummed(src, src_offset: int, dst_fd: int, dst_offset: int, nbytes: int,
                      feed: Callable[[memoryview, int], None] | None = None) -> int:
    """Copy ``nbytes`` of ``src`` (an open binary file, or an in-memory one) from ``src_offset``
    to ``dst_fd`` at ``dst_offset``; returns the (unmasked) CRC-32C of the bytes written, computed
    from the buffer they pass through: the source is read once and the copy never. With ``feed``
    (a source's check the writer claimed: ``ByteRange.claim_check``) each piece goes to it with
    its position in the range instead, and the CRC-32C returned is 0: the check computes it.
    From ``_KERNEL_FROM`` bytes at the same offset within a page as the source, the kernel
    copies instead, and the CRC comes from a second read (see there). Otherwise, from ``_SPLIT_FROM`` bytes two threads copy
    ``_SPLIT_UNIT``-sized units in turn (the calls they make release the GIL; the file system
    still takes the writes one at a time: measured at 1 GiB on two cores, with halves, 20-25%
    less wall time than one thread for the same CPU time) and the units' CRCs are combined.
    Raises EOFError if ``src`` ends early."""
    try:
        sfd = src.fileno()
    except (OSError, ValueError):  # io.UnsupportedOperation: an in-memory file (one position: one thread)
        sfd = None
    if sfd is not None and nbytes >= _KERNEL_FROM and (src_offset - dst_offset) % _PAGE == 0:
        return _copy_in_kernel(src, sfd, src_offset, dst_fd, dst_offset, nbytes, feed)
    if sfd is None or nbytes < _SPLIT_FROM:
        return _copy_pieces(src, sfd, src_offset, dst_fd, dst_offset, nbytes, feed)
    starts = range(0, nbytes, _SPLIT_UNIT)
    done: list[int | None] = [None] * len(starts)
    lock = threading.Lock()
    state: dict = {"next": 0, "error": None}

    def work() -> None:
        while True:
            with lock:
                if state["error"] is not None or state["next"] == len(starts):
                    return
                index = state["next"]
                state["next"] += 1
            at = starts[index]
            try:
                done[index] = _copy_pieces(src, sfd, src_offset + at, dst_fd, dst_offset + at,
                                           min(_SPLIT_UNIT, nbytes - at), feed, at)
            except BaseException as exc:  # raised by the caller's thread, below
                with lock:
                    if state["error"] is None:
                        state["error"] = exc
                return

    thread = threading.Thread(target=work, name="modelmorph-copy", daemon=True)
    thread.start()
    try:
        work()
    finally:
        thread.join()
    if state["error"] is not None:
        raise state["error"]
    crc = 0
    for at, unit_crc in zip(starts, done):
        crc = crc32c_combine(crc, unit_crc, min(_SPLIT_UNIT, nbytes - at))
    return crc


def _copy_in_kernel(src, sfd: int, src_offset: int, dst_fd: int, dst_offset: int, nbytes: int,
                    feed: Callable[[memoryview, int], None] | None) -> int:
    """:func:`_copy_checksummed` by the kernel (see ``_KERNEL_FROM``): the CRC comes from a second
    read of the source, in another thread, as the copy goes on."""
    from modelmorph.storage.filecopy import copy_range

    found: dict = {}

    def check() -> None:
        try:
            found["crc"] = _copy_pieces(src, sfd, src_offset, None, dst_offset, nbytes, feed)
        except BaseException as exc:  # raised by the caller's thread, below
            found["error"] = exc

    thread = threading.Thread(target=check, name="modelmorph-check", daemon=True)
    thread.start()
    try:
        copy_range(src, src_offset, dst_fd, dst_offset, nbytes)
    finally:
        thread.join()
    if "error" in found:
        raise found["error"]
    return found["crc"]


def _copy_pieces(src, sfd: int | None, src_offset: int, dst_fd: int | None, dst_offset: int, nbytes: int,
                 feed: Callable[[memoryview, int], None] | None = None, position: int = 0) -> int:
    """:func:`_copy_checksummed` in one thread (``sfd``: ``src``'s descriptor, None: in memory;
    ``position``: that of ``src_offset`` in the range a ``feed`` checks; ``dst_fd`` None: the
    CRC only, nothing written)."""
    from modelmorph.storage.filecopy import read_pieces

    crc = 0
    if nbytes <= 0:
        return crc
    buffer = bytearray(min(nbytes, _COPY_PIECE))
    extend = crc32c_at_address()  # on the buffer itself: no bytes object per piece
    address = buffer_address(buffer) if extend is not None else 0
    at = dst_offset
    for got in read_pieces(src if sfd is None else sfd, src_offset, nbytes, memoryview(buffer)):
        n = len(got)
        if feed is not None:
            feed(got, position + at - dst_offset)
        elif extend is not None:
            crc = extend(crc, address, n)
        else:
            crc = crc32c_extend(crc, bytes(got))
        if dst_fd is None:
            at += n
            continue
        while got:
            written = os.pwrite(dst_fd, got, at)
            got, at = got[written:], at + written
    return crc


# --------------------------------------------------------------------------- index entries, written
# Encoded here (:mod:`.wirewrite`), not by protobuf, whose import costs more than the whole index.


@dataclass
class _IndexEntry:
    """One ``BundleEntryProto`` of the index being written (:meth:`encode` gives its bytes)."""

    dtype: int
    shape: tuple[int, ...]
    shard_id: int = 0
    offset: int = 0
    size: int = 0
    crc32c: int = 0  # masked, as stored
    slices: list[tuple[tuple[int, int], ...]] = field(default_factory=list)  # each: (start, length) per dim

    def encode(self) -> bytes:
        # TensorShapeProto (dim = 2, each Dim: size = 1), present even for a scalar as TensorFlow writes it
        shape = b"".join(message_field(2, varint_field(1, d)) for d in self.shape)
        out = [varint_field(1, self.dtype), message_field(2, shape), varint_field(3, self.shard_id),
               varint_field(4, self.offset), varint_field(5, self.size), fixed32_field(6, self.crc32c)]
        for extents in self.slices:  # TensorSliceProto: extent = 1; each: start = 1, length = 2 (a oneof: always)
            extent = b"".join(message_field(1, varint_field(1, start) + encode_varint(2 << 3) + encode_varint(length))
                              for start, length in extents)
            out.append(message_field(7, extent))
        return b"".join(out)


def _header_bytes(num_shards: int) -> bytes:
    """The ``BundleHeaderProto``: shard count, little-endian (0: left out), version.producer."""
    return varint_field(1, num_shards) + message_field(3, varint_field(1, _BUNDLE_VERSION))


def _lengths_crc(lengths: list[int]) -> int:
    """CRC-32C over string lengths, each as a little-endian uint32 (uint64 if larger)."""
    if not lengths or max(lengths) <= 0xFFFFFFFF:
        return crc32c_extend(0, struct.pack(f"<{len(lengths)}I", *lengths))
    crc = 0
    for length in lengths:
        crc = crc32c_extend(crc, struct.pack("<I" if length <= 0xFFFFFFFF else "<Q", length))
    return crc


def _string_elements(value) -> tuple[list[bytes], tuple[int, ...]]:
    arr = np.asarray(value, dtype=object) if not isinstance(value, np.ndarray) else value
    shape = tuple(arr.shape)
    out = []
    for item in arr.reshape(-1).tolist() if arr.dtype.kind != "O" else arr.reshape(-1):
        if isinstance(item, str):
            item = item.encode("utf-8")
        elif isinstance(item, (np.bytes_, bytearray, memoryview)):
            item = bytes(item)
        elif not isinstance(item, bytes):
            raise ValueError(f"string tensor element must be bytes or str, not {type(item).__name__}")
        out.append(item)
    return out, shape


class BundleWriter:
    """Stream tensors into a new checkpoint ``<prefix>.index`` + data shard(s).

    Each :meth:`add` writes the tensor's bytes to the current data file at once (only
    index metadata is kept in memory).  With ``max_shard_size`` (bytes) a new data file
    is started whenever the next tensor would push the current one past that size (a
    tensor is never split; one larger than the limit gets a shard of its own).  Data go
    to temporary files that :meth:`finish` renames to ``<prefix>.data-NNNNN-of-MMMMM``
    before writing the ``.index``; :meth:`abort` (or leaving a ``with`` block by an
    exception) removes them.
    """

    def __init__(self, prefix: str | os.PathLike, max_shard_size: int | None = None):
        if max_shard_size is not None and max_shard_size <= 0:
            raise ValueError("max_shard_size must be positive")
        self.prefix = os.fspath(prefix)
        self.max_shard_size = max_shard_size
        parent = os.path.dirname(os.path.abspath(self.prefix))
        os.makedirs(parent, exist_ok=True)
        self._token = os.urandom(4).hex()
        self._tmp_paths: list[str] = []
        self._shard_sizes: list[int] = []
        self._f = None
        self._background = None  # BackgroundRanges of the current shard, once a copy needs one
        self._pending: list = []  # (entry proto, its CRC-32C once computed) of copies of this shard
        self._entries: dict[bytes, _IndexEntry] = {}
        self._partitioned: dict[bytes, _IndexEntry] = {}
        self._done = False
        self._new_shard()

    # -- files -----------------------------------------------------------------------
    def _new_shard(self) -> None:
        if self._f is not None:
            self._settle()
            self._f.close()
        if len(self._tmp_paths) >= _MAX_SHARDS:
            raise ValueError(f"more than {_MAX_SHARDS} data shards")
        path = f"{self.prefix}.data-{len(self._tmp_paths):05d}.tmp{self._token}"
        self._f = open(path, "w+b")  # read too: add_bytes computes the CRC from the copy
        self._tmp_paths.append(path)
        self._shard_sizes.append(0)

    def _needs_new_shard(self, nbytes: int) -> bool:
        cur = self._shard_sizes[-1]
        return self.max_shard_size is not None and cur > 0 and cur + nbytes > self.max_shard_size

    def _reserve(self, nbytes: int) -> tuple[int, int]:
        if self._needs_new_shard(nbytes):
            self._new_shard()
        return len(self._tmp_paths) - 1, self._shard_sizes[-1]

    def _reserve_copy(self, nbytes: int, src_offset: int) -> tuple[int, int, int]:
        """Shard, offset and the zero padding before it for a tensor ``copy_file_range`` copies
        from ``src_offset``: a large one starts at the source's offset within a page (see
        ``_ALIGN_FROM``). The file is flushed (the copy writes through its descriptor), and the
        padding written."""
        if nbytes < _ALIGN_FROM:
            self._f.flush()
            return (*self._reserve(nbytes), 0)
        shard, at = self._reserve(nbytes + _PAGE - 1)
        pad = (src_offset - at) % _PAGE
        self._f.flush()
        if pad:
            os.pwrite(self._f.fileno(), bytes(pad), at)
        return shard, at, pad

    def __enter__(self) -> "BundleWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            if not self._done:
                self.finish()
        else:
            self.abort()

    def abort(self) -> None:
        """Remove every file written so far (no checkpoint is left behind)."""
        if self._background is not None:
            self._background.stop()
            self._background, self._pending = None, []
        if self._f is not None:
            self._f.close()
            self._f = None
        for p in self._tmp_paths:
            try:
                os.remove(p)
            except FileNotFoundError:
                pass
        self._done = True

    # -- adding ----------------------------------------------------------------------
    def _check_key(self, key: str | bytes) -> bytes:
        if self._done:
            raise ValueError("writer already finished")
        k = _key_to_bytes(key)
        if not k:
            raise ValueError("the empty key is reserved for the bundle header")
        if k[:1] == b"\x00":
            raise ValueError("keys starting with NUL are reserved for slices")
        if k in self._entries or k in self._partitioned:
            raise ValueError(f"duplicate key {key!r}")
        return k

    def add(self, key: str, value, dtype=None) -> Entry:
        """Write one tensor now.  ``value`` is anything ``numpy.asarray`` accepts;
        ``dtype`` (a TF dtype name such as ``"bfloat16"``/``"string"``, or a numpy
        dtype) converts it first, chunk by chunk.  Arrays of ``bytes``/``str`` objects
        (or numpy ``S``/``U`` arrays, or a plain ``bytes``/``str``) become DT_STRING."""
        k = self._check_key(key)
        proto = self._write_tensor(value, dtype)
        self._entries[k] = proto
        return self._entry_of(key, proto)

    def add_slice(self, key: str, full_shape: Sequence[int], start: Sequence[int], value, dtype=None) -> Entry:
        """Write one slice of partitioned variable ``key`` (shape ``full_shape``); the
        slice begins at index ``start`` and has ``value``'s shape.  All slices of a key
        must have the same dtype and together tile the full shape (checked by readers)."""
        if self._done:
            raise ValueError("writer already finished")
        k = _key_to_bytes(key)
        if not k or k[:1] == b"\x00" or k in self._entries:
            raise ValueError(f"invalid or duplicate key {key!r}")
        full_shape = tuple(int(d) for d in full_shape)
        arr = np.asarray(value) if dtype is None else np.asarray(value, dtype=_resolve_dtype(dtype).np)
        if len(start) != len(full_shape) or arr.ndim != len(full_shape):
            raise ValueError("slice rank differs from the variable's rank")
        extents = tuple((int(s), int(n)) for s, n in zip(start, arr.shape))
        for (s, n), dim in zip(extents, full_shape):
            if s < 0 or s + n > dim:
                raise ValueError(f"slice {extents} lies outside shape {full_shape}")
        full = self._partitioned.get(k)
        slice_key = encode_slice_key(k, extents)
        if slice_key in self._entries:
            raise ValueError(f"slice {extents} of {key!r} added twice")
        proto = self._write_tensor(arr, dtype)
        if proto.dtype == _DT_STRING:
            raise ValueError("string variables cannot be partitioned")
        if full is None:
            full = self._partitioned[k] = _IndexEntry(proto.dtype, full_shape)
        elif full.dtype != proto.dtype or full.shape != full_shape:
            raise ValueError(f"slices of {key!r} disagree on dtype or full shape")
        full.slices.append(extents)  # TensorFlow writes explicit lengths, start omitted when 0
        self._entries[slice_key] = proto
        return self._entry_of(key, proto, extents)

    def add_object_graph(self, graph) -> Entry:
        """Store a ``TrackableObjectGraph`` (message or serialized bytes) under
        ``_CHECKPOINTABLE_OBJECT_GRAPH``, which TF2 restore-by-object requires."""
        data = graph if isinstance(graph, bytes) else graph.SerializeToString()
        k = self._check_key(OBJECT_GRAPH_KEY)
        proto = self._write_string_items([data], ())  # no numpy for one string
        self._entries[k] = proto
        return self._entry_of(OBJECT_GRAPH_KEY, proto)

    def add_bytes(self, key: str, dtype: str, shape: Sequence[int], file, offset: int, nbytes: int,
                  crc32c: Callable[[], int | None] | None = None,
                  report_crc32: Callable[[int | None], None] | None = None) -> Entry:
        """Write one tensor whose value lies as C-order, little-endian bytes in ``file`` (an open
        binary file) from ``offset``: copied file to file, never decoded.
        With ``crc32c`` (what returns the source's own CRC-32C, unmasked, once the copy is made:
        a checkpoint stores it) the kernel copies (``copy_file_range`` where the system has it);
        should it return None, the CRC-32C is computed from the copy by a thread while the next
        tensors are copied (the returned entry's ``crc32c`` is then 0; the index gets the right
        one). Without it, this is :meth:`add_copies` of one tensor.
        ``dtype`` is a TF dtype name of fixed size."""
        if crc32c is None:
            return self.add_copies([ByteCopy(key, dtype, shape, file, offset, nbytes, report_crc32)])[0]
        from modelmorph.storage.filecopy import copy_range

        k = self._check_key(key)
        target, shape = self._copied_type(dtype, shape, nbytes)
        shard, start, pad = self._reserve_copy(nbytes, offset)
        at = start + pad
        try:
            copy_range(file, offset, self._f, at, nbytes)
            crc = crc32c()  # known to the source: not read again
            self._f.seek(at + nbytes)
        except BaseException:
            self._f.seek(start)  # drop the partial tensor so later offsets stay right
            self._f.truncate()
            raise
        self._shard_sizes[-1] += pad + nbytes
        p = _IndexEntry(target.enum, shape, shard, at, nbytes)
        if crc is not None:
            p.crc32c = mask_crc(crc)
        else:  # read back by a thread while the next tensors are copied; filled in before the index
            self._pending.append((p, self._copies().add(at, nbytes)))
        self._entries[k] = p
        return self._entry_of(key, p)

    def add_copies(self, copies: Sequence[ByteCopy], advance: Callable[[int], None] | None = None) -> list[Entry]:
        """Write tensors whose values lie as C-order, little-endian bytes in files (each a
        :class:`ByteCopy`), copied file to file through small buffers that give each one's
        CRC-32C on the way, and its CRC-32 to its ``report_crc32`` (None if the copy failed),
        for a source whose check takes it instead of reading them again
        (``ByteRange.claim_crc32``). All of them are copied by two threads that take units of
        them in turn (:func:`~modelmorph.storage.filecopy.copy_ranges_crc32`), so that neither
        waits for the other at the end of each tensor. Copied tensor by tensor (the copy alone,
        1 GiB from the page cache, 2 vCPUs, median of 10), 8 MiB tensors went through one thread
        (0.44 s against cp's 0.26 s) and 32 MiB tensors lost ~2 ms each to that wait (0.31 s);
        together, either took 0.25 s.
        ``advance(nbytes)`` is called as bytes are copied. On a failure no tensor of those
        copied into the failing data file is added (earlier data files keep theirs)."""
        from modelmorph.storage.filecopy import CopyJob, copy_ranges_crc32

        planned: list[tuple] = []  # per copy: key, copy, type, shape, then its offset once placed
        reported = [False] * len(copies)

        def copy_group(group: list[int]) -> None:
            """Copy ``group`` (indices into ``planned``, at their places in the current shard)."""
            jobs, crc32cs = [], []
            for index in group:
                _, copy, _, _, at = planned[index]
                crc32cs.append(Crc32cOfPieces())
                jobs.append(CopyJob(copy.file, copy.offset, at, copy.nbytes, crc32cs[-1].feed))
            self._f.flush()  # the copy writes through the descriptor
            crc32s = None
            try:
                crc32s = copy_ranges_crc32(jobs, self._f, advance)
            finally:
                for n, index in enumerate(group):
                    reported[index] = True
                    if planned[index][1].report_crc32 is not None:
                        planned[index][1].report_crc32(crc32s[n] if crc32s is not None else None)
            for index, pieces in zip(group, crc32cs):
                k, copy, target, shape, at = planned[index]
                crc = pieces.value(copy.nbytes)
                if crc is None:  # every byte was fed if the copy returned
                    raise RuntimeError(f"the copy of {copy.key!r} left bytes without a CRC-32C")
                self._entries[k] = _IndexEntry(target.enum, shape, len(self._tmp_paths) - 1, at, copy.nbytes,
                                               mask_crc(crc))

        group: list[int] = []
        group_start = self._shard_sizes[-1]
        try:
            keys: set[bytes] = set()
            for copy in copies:
                k = self._check_key(copy.key)
                if k in keys:
                    raise ValueError(f"duplicate key {copy.key!r}")
                keys.add(k)
                planned.append((k, copy, *self._copied_type(copy.dtype, copy.shape, copy.nbytes)))
            for index, (k, copy, target, shape) in enumerate(planned):
                if self._needs_new_shard(copy.nbytes):
                    copy_group(group)
                    group = []
                    self._f.seek(self._shard_sizes[-1])
                    self._new_shard()
                    group_start = 0
                planned[index] = (k, copy, target, shape, self._shard_sizes[-1])
                self._shard_sizes[-1] += copy.nbytes
                group.append(index)
            copy_group(group)
            self._f.seek(self._shard_sizes[-1])
        except BaseException:
            if group:  # drop the group's bytes so later offsets stay right
                for index in group:
                    self._entries.pop(planned[index][0], None)
                self._f.seek(group_start)
                self._f.truncate()
                self._shard_sizes[-1] = group_start
            for index, copy in enumerate(copies):  # every claimed check given back, none left waiting
                if not reported[index] and copy.report_crc32 is not None:
                    copy.report_crc32(None)
            raise
        return [self._entry_of(copy.key, self._entries[k]) for k, copy, *_ in planned]

    def _copied_type(self, dtype: str, shape: Sequence[int], nbytes: int):
        """The checked type and shape of a tensor copied as bytes."""
        target = _resolve_dtype(dtype)
        if target.code is None or target.name.startswith("q"):
            raise ValueError(f"dtype {target.name} cannot be copied as bytes")
        shape = tuple(int(d) for d in shape)
        size = math.prod(shape) * target.itemsize
        if size != nbytes:
            raise ValueError(f"{nbytes} bytes for a {target.name} tensor of shape {list(shape)} ({size} bytes)")
        return target, shape

    def add_string_bytes(self, key: str, shape: Sequence[int], file, offset: int, nbytes: int,
                         crc32c: Callable[[], int | None] | None = None,
                         check: Callable[..., None] | None = None) -> Entry:
        """Write one string tensor whose stored form (TensorFlow's layout: lengths, their CRC,
        the bytes) lies in ``file`` from ``offset``, as a checkpoint stores it: copied file to
        file, never split into strings. ``crc32c`` returns the source entry's (unmasked) checked
        CRC-32C once the copy is made; without it (or if it returns None) the copy is scanned
        for it, which also checks its structure. With ``check`` (the source's check, claimed:
        ``ByteRange.claim_check``) the bytes pass through one small buffer that feeds it, read
        once for copy and check alike, or, from ``_KERNEL_FROM`` bytes, the kernel copies them
        while a second read feeds it; its verdict (a raised error) comes before the entry is
        added. Without it the kernel copies them, after the source checked them on its own.
        A large tensor keeps its source offset's position within a page (``_reserve_copy``)."""
        from modelmorph.storage.filecopy import copy_range

        k = self._check_key(key)
        shape = tuple(int(d) for d in shape)
        shard, start, pad = self._reserve_copy(nbytes, offset)
        at = start + pad
        copied = False
        try:
            if check is None:
                copy_range(file, offset, self._f, at, nbytes)
            else:
                _copy_checksummed(file, offset, self._f.fileno(), at, nbytes, feed=check)
            copied = True
            if check is not None:
                check(None)  # the verdict: raises the source's error if its bytes were bad
            crc = crc32c() if crc32c is not None else None
            if crc is None:
                fd = self._f.fileno()
                layout = strings.scan(fd, at, nbytes, math.prod(shape))
                crc = strings.entry_crc32c(fd, layout, at + nbytes)
            self._f.seek(at + nbytes)
        except BaseException:
            if check is not None and not copied:
                check(None)  # the copy stopped early: the check is the source's again
            self._f.seek(start)  # drop the partial tensor so later offsets stay right
            self._f.truncate()
            raise
        self._shard_sizes[-1] += pad + nbytes
        p = _IndexEntry(_DT_STRING, shape, shard, at, nbytes, mask_crc(crc))
        self._entries[k] = p
        return self._entry_of(key, p)

    def _copies(self):
        """The thread computing the CRC-32C of copied tensors in the current shard."""
        if self._background is None:
            from modelmorph.storage.filecopy import BackgroundRanges

            self._background = BackgroundRanges(self._f, lambda f, at, n: _crc32c_range(f.fileno(), at, n)[0])
        return self._background

    def _settle(self) -> None:
        """Wait for the CRC-32Cs still being computed (before the shard they read closes)."""
        if self._background is None:
            return
        try:
            for p, crc in self._pending:
                try:
                    p.crc32c = mask_crc(crc())
                except EOFError:
                    raise BundleError("a copied tensor was cut short in its data shard", self._tmp_paths[-1]) from None
        finally:
            self._background.stop()
            self._background, self._pending = None, []

    def _entry_of(self, key, p, extents=None) -> Entry:
        return Entry(
            key=key if isinstance(key, str) else _key_to_str(key),
            dtype=_dtype_name(p.dtype),
            shape=p.shape,
            shard_id=p.shard_id,
            offset=p.offset,
            size=p.size,
            crc32c=p.crc32c,
            slice=extents,
            dtype_enum=p.dtype,
        )

    def _write_tensor(self, value, dtype) -> _IndexEntry:
        target = _resolve_dtype(dtype) if dtype is not None else None
        if isinstance(value, (bytes, str)) and (target is None or target.name == "string"):
            value = np.array(value, dtype=object)
        if isinstance(value, np.ndarray):
            arr = value
        else:
            arr = np.asarray(value)
            if arr.dtype.kind in "SU":  # numpy's fixed-width bytes drop trailing NULs
                arr = np.asarray(value, dtype=object)
        if target is None:
            target = _resolve_dtype(arr.dtype)
        if target.name == "string":
            return self._write_strings(arr)
        if target.code is None:
            raise ValueError(f"dtype {target.name} cannot be written")
        shape = tuple(arr.shape)
        size = arr.size * target.np.itemsize
        shard, offset = self._reserve(size)
        crc = 0
        written = 0
        try:
            for chunk in _le_chunks(arr, target.np):
                data = memoryview(chunk.reshape(-1).view(np.uint8))  # no copy
                crc = crc32c_extend(crc, data)
                self._f.write(data)
                written += data.nbytes
            if written != size:
                raise ValueError(f"wrote {written} bytes for a tensor of {size}")
        except BaseException:
            self._f.seek(offset)  # drop the partial tensor so later offsets stay right
            self._f.truncate()
            raise
        self._shard_sizes[-1] += size
        return _IndexEntry(target.enum, tuple(int(d) for d in shape), shard, offset, size, mask_crc(crc))

    def _write_strings(self, arr) -> _IndexEntry:
        return self._write_string_items(*_string_elements(arr))

    def _write_string_items(self, items: list[bytes], shape: tuple[int, ...]) -> _IndexEntry:
        header = bytearray()
        for s in items:
            header += encode_varint(len(s))
        crc = _lengths_crc([len(s) for s in items])  # fixed-width ints, not the varints
        masked = struct.pack("<I", mask_crc(crc))
        header += masked
        crc = crc32c_extend(crc, masked)
        header = bytes(header)
        size = len(header) + sum(len(s) for s in items)
        shard, offset = self._reserve(size)
        try:
            self._f.write(header)
            pending: list[bytes] = []
            pending_size = 0
            for i, s in enumerate(items):
                pending.append(s)
                pending_size += len(s)
                if pending_size >= 1 << 20 or i == len(items) - 1:  # write in ~1 MiB batches
                    blob = b"".join(pending)
                    crc = crc32c_extend(crc, blob)
                    self._f.write(blob)
                    pending, pending_size = [], 0
        except BaseException:
            self._f.seek(offset)
            self._f.truncate()
            raise
        self._shard_sizes[-1] += size
        return _IndexEntry(_DT_STRING, tuple(int(d) for d in shape), shard, offset, size, mask_crc(crc))

    # -- finishing ---------------------------------------------------------------------
    def finish(self) -> list[str]:
        """Close the data shards under their final names and write the sorted index.
        Returns the paths written (index first)."""
        if self._done:
            raise ValueError("writer already finished")
        try:
            self._settle()
        except BaseException:
            self.abort()
            raise
        self._f.close()
        self._f = None
        n = len(self._tmp_paths)
        finals = [data_filename(self.prefix, i, n) for i in range(n)]
        for tmp, final in zip(self._tmp_paths, finals):
            os.replace(tmp, final)
        self._tmp_paths = []
        items = {**self._entries, **self._partitioned}
        index_path = index_filename(self.prefix)
        tmp_index = f"{index_path}.tmp{self._token}"
        try:
            with open(tmp_index, "wb") as f:
                table = TableWriter(f)
                table.add(_HEADER_KEY, _header_bytes(n))
                for key in sorted(items):
                    table.add(key, items[key].encode())
                table.finish()
            os.replace(tmp_index, index_path)
        except BaseException:
            if os.path.exists(tmp_index):
                os.remove(tmp_index)
            raise
        self._done = True
        return [index_path, *finals]


def _crc32c_range(fd: int, offset: int, size: int, crc32: bool = False) -> tuple[int, int | None]:
    """The CRC-32C of ``size`` bytes of file ``fd`` from ``offset``, and with ``crc32`` their
    CRC-32 (zip's) from the same pass (else None). The bytes go through one buffer of this thread
    (:func:`_verify_buffer`), small enough to stay in the CPU's cache from the read to both CRCs,
    and reused from tensor to tensor: no object is made per piece read."""
    from modelmorph.storage.filecopy import crc32 as zip_crc32, read_pieces

    buffer, address = _verify_buffer()
    at_address = crc32c_at_address() if address is not None else None
    crc, zip_crc = 0, 0 if crc32 else None
    for got in read_pieces(fd, offset, size, memoryview(buffer)):
        crc = at_address(crc, address, len(got)) if at_address is not None else crc32c_extend(crc, bytes(got))
        if zip_crc is not None:
            zip_crc = zip_crc32(got, zip_crc)
    return crc, zip_crc


_VERIFY_BUFFERS = threading.local()


def _verify_buffer() -> tuple[bytearray, int | None]:
    """This thread's ``_VERIFY_CHUNK``-byte buffer for :func:`_crc32c_range`, and its address
    when the CRC-32C can be computed in place (:func:`.table.crc32c_at_address`), else None."""
    got = getattr(_VERIFY_BUFFERS, "buffer", None)
    if got is None:
        buffer = bytearray(_VERIFY_CHUNK)
        got = _VERIFY_BUFFERS.buffer = (buffer, buffer_address(buffer) if crc32c_at_address() is not None else None)
    return got




def _le_chunks(arr: np.ndarray, target: np.dtype) -> Iterator[np.ndarray]:
    """C-order, little-endian ``target`` pieces of ``arr`` of about _IO_CHUNK bytes,
    without ever materialising a converted copy of the whole array."""
    if arr.dtype == target and arr.flags.c_contiguous and (_LITTLE_ENDIAN_HOST or target.byteorder == "<"):
        flat = arr.reshape(-1)
        step = max(1, _IO_CHUNK // max(1, target.itemsize))
        for i in range(0, flat.size, step):
            yield flat[i : i + step]
        return
    if arr.ndim == 0 or arr.size == 0:
        yield np.ascontiguousarray(arr.reshape(-1), dtype=target)
        return
    row_bytes = max(1, math.prod(arr.shape[1:]) * target.itemsize)
    rows = max(1, _IO_CHUNK // row_bytes)
    for i in range(0, arr.shape[0], rows):
        yield np.ascontiguousarray(arr[i : i + rows], dtype=target)


# --------------------------------------------------------------------------- state file


def read_checkpoint_state(directory: str | os.PathLike):
    """Parse ``<directory>/checkpoint`` (text-format ``CheckpointState``), or ``None``
    if there is no such file."""
    path = os.path.join(os.fspath(directory), "checkpoint")
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_STATE_FILE + 1)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise BundleError(f"cannot read checkpoint state file: {e.strerror or e}", path) from None
    if len(data) > _MAX_STATE_FILE:
        raise BundleError("checkpoint state file is implausibly large", path)
    from .statefile import parse_state  # not protobuf's text format: its import costs ~30 ms

    try:
        return parse_state(data.decode("utf-8"))
    except ValueError as e:  # UnicodeDecodeError too
        raise BundleError(f"unparsable checkpoint state file: {e}", path) from None


def write_checkpoint_state(
    directory: str | os.PathLike,
    model_checkpoint_path: str,
    all_model_checkpoint_paths: Sequence[str] | None = None,
    all_model_checkpoint_timestamps: Sequence[float] | None = None,
    last_preserved_timestamp: float | None = None,
) -> str:
    """Write ``<directory>/checkpoint`` naming the latest checkpoint (paths are stored
    relative to ``directory`` when they lie inside it).  Returns the file's path.
    The ``CheckpointState`` is written in protobuf's text format as ``text_format`` writes it
    (field order, escapes, proto3 defaults left out), without importing protobuf (~30 ms)."""
    directory = os.fspath(directory)

    def rel(p: str) -> str:
        p = os.fspath(p)
        if os.path.isabs(p) and _inside(p, directory):
            return os.path.relpath(p, directory)
        return p

    model_path = rel(model_checkpoint_path)
    paths = list(all_model_checkpoint_paths) if all_model_checkpoint_paths is not None else [model_checkpoint_path]
    lines = [f"model_checkpoint_path: {_text_string(model_path)}"] if model_path else []
    lines += [f"all_model_checkpoint_paths: {_text_string(rel(p))}" for p in paths]
    lines += [f"all_model_checkpoint_timestamps: {float(t)!r}" for t in all_model_checkpoint_timestamps or ()]
    if last_preserved_timestamp:  # a double field: 0 is its default, left out
        lines.append(f"last_preserved_timestamp: {float(last_preserved_timestamp)!r}")
    path = os.path.join(directory, "checkpoint")
    tmp = f"{path}.tmp{os.urandom(4).hex()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))
    os.replace(tmp, path)
    return path


#: protobuf's text-format escapes of a string field (its ``CEscape`` with UTF-8 output): ASCII
#: control characters in octal, quotes and backslash escaped; other characters as they are.
_TEXT_ESCAPES = {**{i: f"\\{i:03o}" for i in (*range(32), 127)},
                 **{ord("\t"): "\\t", ord("\n"): "\\n", ord("\r"): "\\r", ord('"'): '\\"', ord("'"): "\\'",
                    ord("\\"): "\\\\"}}


def _text_string(value: str) -> str:
    return '"' + value.translate(_TEXT_ESCAPES) + '"'


def _inside(path: str, folder: str) -> bool:
    p = os.path.realpath(path)
    d = os.path.realpath(folder)
    return p == d or p.startswith(d.rstrip(os.sep) + os.sep)


_DATA_SUFFIX_LEN = len(".data-00000-of-00000")


def _strip_data_suffix(path: str) -> str | None:
    tail = path[-_DATA_SUFFIX_LEN:]
    if (
        len(path) > _DATA_SUFFIX_LEN
        and tail.startswith(".data-")
        and tail[6:11].isdigit()
        and tail[11:15] == "-of-"
        and tail[15:].isdigit()
    ):
        return path[:-_DATA_SUFFIX_LEN]
    return None


def resolve_checkpoint(path: str | os.PathLike) -> str:
    """Turn what a user names into a checkpoint prefix.

    * a folder: the prefix named by its ``checkpoint`` state file
      (``model_checkpoint_path``), which must stay inside that folder; without a state
      file, the folder's only ``*.index`` file;
    * ``<prefix>.index`` or ``<prefix>.data-NNNNN-of-MMMMM``: that prefix;
    * anything else is taken as a prefix and must have a ``.index`` file.
    """
    p = os.fspath(path)
    if os.path.isdir(p):
        return _resolve_folder(p)
    if p.endswith(".index") and os.path.isfile(p):
        return p[: -len(".index")]
    stripped = _strip_data_suffix(p)
    if stripped is not None and os.path.isfile(index_filename(stripped)):
        return stripped
    if os.path.isfile(index_filename(p)):
        return p
    if p.endswith(".index"):
        raise BundleError("index file not found", p)
    raise BundleError("no checkpoint here (expected a folder, a .index file or a checkpoint prefix)", p)


def _resolve_folder(folder: str) -> str:
    state_path = os.path.join(folder, "checkpoint")
    state = read_checkpoint_state(folder)
    if state is not None:
        name = state.model_checkpoint_path
        if not name:
            raise BundleError("checkpoint state file names no model_checkpoint_path", state_path)
        if "\0" in name:  # no file has such a name; os.path would raise ValueError on it
            raise BundleError(f"checkpoint state file names {short_repr(name)}, which holds a NUL byte", state_path)
        candidate = name if os.path.isabs(name) else os.path.join(folder, name)
        if not _inside(candidate, folder) or os.path.realpath(candidate) == os.path.realpath(folder):
            # A state file written on another machine may hold an absolute path; only
            # the same base name inside this folder is ever considered.
            base = os.path.basename(name.replace("\\", "/"))
            fallback = os.path.join(folder, base)
            if base and base not in (".", "..") and _inside(fallback, folder) and os.path.isfile(index_filename(fallback)):
                return fallback
            raise BundleError(f"checkpoint state file points outside its folder: {short_repr(name)}", state_path)
        if not os.path.isfile(index_filename(candidate)):
            raise BundleError(f"checkpoint state file names {short_repr(name)} but that .index file does not exist", state_path)
        return candidate
    indexes = sorted(f for f in os.listdir(folder) if f.endswith(".index"))
    if len(indexes) == 1:
        return os.path.join(folder, indexes[0][: -len(".index")])
    if not indexes:
        raise BundleError("folder holds no checkpoint (.index file or checkpoint state file)", folder)
    raise BundleError(f"folder holds {len(indexes)} checkpoints and no checkpoint state file to choose one", folder)
