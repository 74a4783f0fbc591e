"""An opened checkpoint: its entries, its object graph and lazily read tensors.

Every problem the bundle library finds becomes a one-line :class:`modelmorph.ReadError`
naming the file concerned, also when a tensor is read later by a writer (a corrupted
tensor then stops the conversion with exit status 4, naming the input, not the output).

A tensor stored as plain bytes also gets ``Weight.raw``, so that a writer storing the same
bytes copies them file to file (no numpy). Its CRC-32C is still checked, lazily, by the file
object the ``ByteRange`` names (:class:`CheckedRange`): every way to the bytes (``fileno()``,
``read``) passes the check first, so no writer can copy a corrupted tensor by forgetting to.
"""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

from modelmorph import DTYPES, ByteRange, ReadError, Weight

from .bundle import OBJECT_GRAPH_KEY, VARIABLE_VALUE, BundleError, BundleReader, Entry, resolve_checkpoint


class ObjectGraph:
    """Navigation over a ``TrackableObjectGraph``: children by name, variables' keys."""

    def __init__(self, proto):
        self.proto = proto
        n = len(proto.nodes)
        self.children: list[dict[str, int]] = []
        self.keys: list[str | None] = []
        for node in proto.nodes:
            named: dict[str, int] = {}
            for ref in node.children:
                if 0 <= ref.node_id < n:
                    named.setdefault(ref.local_name, ref.node_id)
            self.children.append(named)
            self.keys.append(next((a.checkpoint_key for a in node.attributes if a.name == VARIABLE_VALUE), None))

    def walk(self, node: int, path: tuple[str, ...]) -> int | None:
        """The node reached from ``node`` by the child names of ``path``, or None."""
        for name in path:
            node = self.children[node].get(name)
            if node is None:
                return None
        return node

    def full_name(self, node: int) -> str:
        return next((a.full_name for a in self.proto.nodes[node].attributes if a.name == VARIABLE_VALUE), "")


class Checkpoint:
    """A checkpoint opened for reading. ``path`` is what the user named: a prefix, its
    ``.index`` file, a data shard, or a folder whose ``checkpoint`` state file picks one."""

    def __init__(self, path: Path):
        self.source = path
        self.bundle: BundleReader | None = None
        try:
            prefix = resolve_checkpoint(path)
            # Every file of the checkpoint must stay in its folder (no symbolic link out of it).
            self.bundle = BundleReader(prefix, confine_to=os.path.dirname(os.path.abspath(prefix)))
            self.prefix = self.bundle.prefix
            self.entries: dict[str, Entry] = dict(self.bundle.entries())
            self._check_data_files()
            proto = self.bundle.object_graph()
        except BundleError as exc:
            self.close()
            raise _read_error(exc, path) from None
        except BaseException:
            self.close()
            raise
        self.graph = ObjectGraph(proto) if proto is not None else None
        self.graph_bytes = proto.SerializeToString() if proto is not None else None

    def close(self) -> None:
        if self.bundle is not None:
            self.bundle.close()

    def variable_keys(self) -> list[str]:
        """Every tensor key but the object graph's own, in key order."""
        return [key for key in self.entries if key != OBJECT_GRAPH_KEY]

    def _check_data_files(self) -> None:
        """Fail now, before any output is written, on a missing data shard or a tensor that
        lies past the end of its shard (checksums are verified when each tensor is read)."""
        files = self.bundle.data_files()
        sizes = []
        for shard, path in enumerate(files):
            try:
                sizes.append(os.stat(path).st_size)
            except FileNotFoundError:
                raise BundleError(f"missing data shard {shard} of {len(files)}", path) from None
            except OSError as exc:
                raise BundleError(f"cannot read data shard: {exc.strerror or exc}", path) from None
        for key, entry in self.entries.items():
            for stored in self.bundle.slice_entries(key) if entry.is_partitioned else [entry]:
                if stored.offset + stored.size > sizes[stored.shard_id]:
                    raise BundleError(f"tensor {key!r}: bytes {stored.offset}..{stored.offset + stored.size} lie past "
                                      f"the end of its data file ({sizes[stored.shard_id]} bytes)", files[stored.shard_id])

    def weight(self, key: str, path: str, trainable: bool = True) -> Weight:
        """The lazy IR weight of tensor ``key``; its data is read (and CRC-checked) on ``read()``."""
        entry = self.entries[key]
        if entry.dtype not in DTYPES:
            raise ReadError(self.source, f"tensor {key!r} has dtype {entry.dtype}, which modelmorph does not carry")

        def load():
            try:
                return self.bundle.read(key)
            except BundleError as exc:
                raise _read_error(exc, self.source) from None

        try:
            where = self.bundle.byte_range(key)
        except BundleError as exc:
            raise _read_error(exc, self.source) from None
        raw = None
        if where is not None:
            file, offset, size = where
            raw = ByteRange(CheckedRange(file, lambda: self._verify(key)), offset, size)
        return Weight(path, tuple(entry.shape), entry.dtype, trainable, loader=load, raw=raw)

    def _verify(self, key: str) -> None:
        try:
            self.bundle.verify(key)
        except BundleError as exc:
            raise _read_error(exc, self.source) from None


class CheckedRange(io.RawIOBase):
    """A read-only view of an open data file that runs ``check`` (the CRC of one tensor) once,
    before it gives access to any byte: through :meth:`fileno` (what ``copy_file_range`` and
    ``pread`` use) or :meth:`readinto` (every ``read``). A failed check fails every later access
    too. Positions are this object's own; the shared file's is never moved. Closing it leaves
    the data file open (the checkpoint owns it). ``name`` is the data file's path."""

    def __init__(self, file, check):
        super().__init__()
        self._file, self._check, self._pos = file, check, 0
        self.name = file.name  # the data file's path, as an open file names it
        self._lock = threading.Lock()
        self._verdict: BaseException | bool | None = None

    def _checked(self) -> None:
        with self._lock:
            if self._verdict is None:
                try:
                    self._check()
                    self._verdict = True
                except BaseException as exc:
                    self._verdict = exc
                    raise
            elif self._verdict is not True:
                raise self._verdict

    def fileno(self) -> int:
        self._checked()
        return self._file.fileno()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos,
                os.SEEK_END: os.fstat(self._file.fileno()).st_size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buffer) -> int:
        self._checked()
        view = memoryview(buffer).cast("B")
        n = os.preadv(self._file.fileno(), [view], self._pos) if hasattr(os, "preadv") else self._pread(view)
        self._pos += n
        return n

    def _pread(self, view: memoryview) -> int:
        data = os.pread(self._file.fileno(), len(view), self._pos)
        view[:len(data)] = data
        return len(data)


def _read_error(exc: BundleError, source: Path) -> ReadError:
    return ReadError(exc.path or source, exc.problem)
