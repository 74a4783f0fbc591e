"""An opened checkpoint: its entries, its object graph and lazily read tensors.

Every problem the bundle library finds becomes a one-line :class:`modelmorph.ReadError`
naming the file concerned, also when a tensor is read later by a writer (a corrupted
tensor then stops the conversion with exit status 4, naming the input, not the output).

A tensor stored as plain bytes also gets ``Weight.raw``, so that a writer storing the same
bytes copies them file to file (no numpy). Its CRC-32C is still checked, lazily, by the file
object the ``ByteRange`` names (:class:`CheckedRange`): every way to the bytes (``fileno()``,
``read``) passes the check first, so no writer can copy a corrupted tensor by forgetting to.
Once a writer takes the first tensor's bytes without having claimed its check, a
thread checks the others ahead of it (:class:`Prefetch`, in the order their weights were made),
so that checking one tensor overlaps copying the one before; the same pass computes each
tensor's CRC-32, which a zip writer combines instead of reading its copy (``ByteRange.crc32``).
Reading the checkpoint reads no tensor: :meth:`Checkpoint.verify_all` is the model's deferred
check (``Model.verify``), which skips the tensors already checked on their way to a writer.
"""

from __future__ import annotations

import functools
import io
import os
import threading
from pathlib import Path
from typing import Callable, NamedTuple

from modelmorph import DTYPES, ByteRange, ReadError, Weight
from modelmorph.storage import protowire as wire
from modelmorph.storage.safety import refuse_special

from .bundle import OBJECT_GRAPH_KEY, VARIABLE_VALUE, BundleError, BundleReader, Entry, resolve_checkpoint
from .bundle.table import Crc32cOfPieces, unmask_crc


class ObjectGraph:
    """Navigation over a ``TrackableObjectGraph``: children by name, variables' keys.

    ``children[i]`` and ``keys[i]`` are read from node ``i`` when first asked for: a SavedModel's
    graph has thousands of nodes (traced functions, metrics), of which a join visits a few.
    ``proto`` is the graph as :class:`WireGraph` reads it (or protobuf's message: same fields)."""

    def __init__(self, proto):
        self.proto = proto
        self.children = _PerNode(proto.nodes, _named_children)
        self.keys = _PerNode(proto.nodes, _checkpoint_key)

    def walk(self, node: int, path: tuple[str, ...]) -> int | None:
        """The node reached from ``node`` by the child names of ``path``, or None."""
        for name in path:
            node = self.children[node].get(name)
            if node is None:
                return None
        return node

    def full_name(self, node: int) -> str:
        return next((a.full_name for a in self.proto.nodes[node].attributes if a.name == VARIABLE_VALUE), "")

    def check_all(self) -> None:
        """Parse every node now (a join reads only those it visits): a model that carries the
        serialized graph to a writer, which parses it whole, must not carry a malformed one."""
        nodes = self.proto.nodes
        for index in range(len(nodes)):
            nodes[index]


class WireGraph:
    """A serialized ``TrackableObjectGraph`` read from its wire format, without protobuf: the
    nodes (field 1) are found at once, each parsed when first used (:class:`WireNode`); a
    malformed one raises what ``error`` makes of the problem (a ReadError naming the file).
    Raises :class:`modelmorph.storage.protowire.WireError` if the list of nodes is malformed."""

    def __init__(self, data: bytes, error: Callable[[str], BaseException]):
        self.data = data
        self.nodes = _WireNodes(data, wire.offsets(data, 1), error)


class _WireNodes:
    """The graph's nodes, a read-only sequence parsing each on first access."""

    __slots__ = ("_data", "_spans", "_done", "_error")

    def __init__(self, data: bytes, spans: list[tuple[int, int]], error: Callable[[str], BaseException]):
        self._data, self._spans, self._done, self._error = data, spans, {}, error

    def __len__(self) -> int:
        return len(self._spans)

    def __getitem__(self, index: int) -> "WireNode":
        node = self._done.get(index)
        if node is None:
            if not -len(self._spans) <= index < len(self._spans):
                raise IndexError(index)
            start, end = self._spans[index]
            try:
                fields = wire.parse(self._data, start, end)
                node = WireNode(fields)
                if 4 in fields:  # registered_saver and has_checkpoint_values (5): not used,
                    saver = wire.message(fields, 4)  # but checked as protobuf would
                    if saver is not None:
                        wire.text(saver, 1), wire.text(saver, 2)
                if 5 in fields:
                    wire.message(fields, 5)
                self._done[index] = node
            except wire.WireError as exc:
                raise self._error(f"unparsable {OBJECT_GRAPH_KEY}: object {index}: {exc}") from None
        return node

    def __iter__(self):
        return (self[i] for i in range(len(self)))


class WireNode:
    """One ``TrackableObject``: the fields a reader uses, named as protobuf names them
    (children = 1: node_id = 1, local_name = 2; attributes = 2: name = 1, full_name = 2,
    checkpoint_key = 3; slot_variables = 3: original_variable_node_id = 1, slot_name = 2,
    slot_variable_node_id = 3)."""

    __slots__ = ("children", "attributes", "slot_variables")

    def __init__(self, fields: "wire.Fields"):
        # A join parses hundreds of nodes (a layer's, each of its variables'): a field a node
        # lacks (most have no slot variables, a variable no children) costs no call.
        self.children = [_reference(value) for kind, value in fields[1] if kind == wire.LENGTH] if 1 in fields else []
        self.attributes = [SerializedTensor(wire.text(f, 1), wire.text(f, 2), wire.text(f, 3))
                           for f in wire.messages(fields, 2)] if 2 in fields else []
        self.slot_variables = [SlotVariableReference(wire.int32(f, 1), wire.text(f, 2), wire.int32(f, 3))
                               for f in wire.messages(fields, 3)] if 3 in fields else []


def _reference(data: bytes) -> "ObjectReference":
    pair = wire.varint_then_text(data)  # the layout TensorFlow writes, read directly
    if pair is not None and pair[0] < 1 << 31:
        return ObjectReference(*pair)
    fields = wire.parse(data)
    return ObjectReference(wire.int32(fields, 1), wire.text(fields, 2))


class ObjectReference(NamedTuple):
    node_id: int
    local_name: str


class SerializedTensor(NamedTuple):
    name: str
    full_name: str
    checkpoint_key: str


class SlotVariableReference(NamedTuple):
    original_variable_node_id: int
    slot_name: str
    slot_variable_node_id: int


class _PerNode:
    """A read-only sequence of one value per node, each computed on first access."""

    __slots__ = ("_nodes", "_compute", "_done")

    def __init__(self, nodes, compute):
        self._nodes, self._compute, self._done = nodes, compute, {}

    def __len__(self) -> int:
        return len(self._nodes)

    def __getitem__(self, index: int):
        value = self._done.get(index, self)
        if value is self:
            if not 0 <= index < len(self._nodes):
                raise IndexError(index)
            value = self._done[index] = self._compute(self._nodes[index], len(self._nodes))
        return value


def _named_children(node, count: int) -> dict[str, int]:
    named: dict[str, int] = {}
    for ref in node.children:
        if 0 <= ref.node_id < count:
            named.setdefault(ref.local_name, ref.node_id)
    return named


def _checkpoint_key(node, count: int) -> str | None:
    return next((a.checkpoint_key for a in node.attributes if a.name == VARIABLE_VALUE), None)


class Checkpoint:
    """A checkpoint opened for reading. ``path`` is what the user named: a prefix, its
    ``.index`` file, a data shard, or a folder whose ``checkpoint`` state file picks one."""

    def __init__(self, path: Path):
        self.source = path
        self.bundle: BundleReader | None = None
        self.prefetch = Prefetch(self._checksums, skip=lambda key: key in self._verified)
        self._verified: set[str] = set()  # keys whose CRC-32C has been checked (read or verified)
        try:
            prefix = resolve_checkpoint(path)
            # Every file of the checkpoint must stay in its folder (no symbolic link out of it).
            self.bundle = BundleReader(prefix, confine_to=os.path.dirname(os.path.abspath(prefix)))
            self.prefix = self.bundle.prefix
            self.entries: dict[str, Entry] = dict(self.bundle.entries())
            self._check_data_files()
            self.graph_bytes = self.bundle.object_graph_bytes()  # kept as stored, for a writer
            proto = WireGraph(self.graph_bytes, lambda problem: ReadError(self.bundle.index_path, problem)) \
                if self.graph_bytes is not None else None
        except BundleError as exc:
            self.close()
            raise _read_error(exc, path) from None
        except wire.WireError:
            self.close()
            raise ReadError(self.bundle.index_path, f"unparsable {OBJECT_GRAPH_KEY}") from None
        except BaseException:
            self.close()
            raise
        if proto is not None and not proto.nodes:  # every walk starts at node 0, the root
            self.close()
            raise ReadError(path, f"{OBJECT_GRAPH_KEY} holds no objects (not even the root)")
        self.graph = ObjectGraph(proto) if proto is not None else None

    def close(self) -> None:
        self.prefetch.stop()  # its thread reads the data files: stopped before they close
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
            refuse_special(path)  # a named pipe's size is 0: say what it is
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
                value = self.bundle.read(key)
            except BundleError as exc:
                raise _read_error(exc, self.source) from None
            self._verified.add(key)
            return value

        layout = "plain"
        try:
            where = self.bundle.byte_range(key)
            if where is None and entry.dtype == "string":
                where, layout = self.bundle.string_range(key), "tf-string"
        except BundleError as exc:
            raise _read_error(exc, self.source) from None
        raw = None
        if where is not None:
            file, offset, size = where
            tensor = self.prefetch.add(key)
            checked = CheckedRange(file, lambda: self.prefetch.wait(tensor))
            stored = entry.crc32c if self.bundle.verify_checksums else None

            def crc32c() -> int | None:
                checked.fileno()  # the check first: a stored CRC is given out only once it held
                return unmask_crc(stored) if stored is not None else None

            claim = None
            if stored is not None:  # a string tensor's too: check_crc32c takes the CRC of its stored bytes
                claim = functools.partial(self._claim_check, key, tensor, checked, size)
            raw = ByteRange(checked, offset, size, crc32=lambda: self.prefetch.wait(tensor), crc32c=crc32c,
                            claim_check=claim, layout=layout)
        weight = Weight(path, tuple(entry.shape), entry.dtype, trainable, loader=load, raw=raw)
        if raw is not None and layout == "tf-string" and entry.shape:
            weight.streamer = (load, lambda max_bytes: self._string_rows(key, max_bytes, raw.file.fileno))
        return weight

    def _claim_check(self, key: str, tensor: _Tensor, checked: CheckedRange, size: int):
        """``ByteRange.claim_check`` of tensor ``key``: a writer copying its bytes computes their
        CRC-32C on the way (one read of them, not two); None if its check is under way or done."""
        if not self.prefetch.claim(tensor):
            return None
        checked.defer()
        pieces = Crc32cOfPieces()  # a copy may read them from two threads

        def feed(piece: memoryview | None, at: int = 0) -> None:
            if piece is not None:
                pieces.feed(piece, at)
                return
            crc = pieces.value(size)
            if crc is None:  # the writer stopped early: the check is the reader's again
                checked.undefer()
                self.prefetch.release(tensor)
                return
            error = None
            try:
                self.bundle.check_crc32c(key, crc)
            except BundleError as exc:
                error = _read_error(exc, self.source)
            checked.judge(error)
            self.prefetch.settle(tensor, None, error)
            if error is not None:
                raise error
            self._verified.add(key)

        return feed

    def _string_rows(self, key: str, max_bytes: int, check: Callable[[], object]):
        """String tensor ``key`` as object arrays of whole rows (first axis), each about
        ``max_bytes`` of string data or one row: a writer that splits strings (HDF5) holds one
        block, not the tensor. The tensor's CRC is checked before its first row is given."""
        import numpy as np

        entry = self.entries[key]
        per_row = 1
        for d in entry.shape[1:]:
            per_row *= d
        pending: list[bytes] = []
        try:
            check()  # the tensor's one CRC pass: the thread's ahead of the writer, or ours if it is not there yet
            for block in self.bundle.string_blocks(key, max_bytes, verify=False):
                pending += block
                rows = len(pending) // per_row if per_row else 0
                if rows:
                    cut = rows * per_row
                    out = np.fromiter(pending[:cut], dtype=object, count=cut)  # never via a fixed-width 'S' array
                    del pending[:cut]
                    yield out.reshape((rows, *entry.shape[1:]))
        except BundleError as exc:
            raise _read_error(exc, self.source) from None
        if not per_row:  # rows of no elements: the whole (empty) value at once
            yield np.empty(entry.shape, dtype=object)

    def _verify(self, key: str) -> None:
        self._checksums(key)

    def _checksums(self, key: str) -> int | None:
        """Check tensor ``key``'s CRC-32C; returns its CRC-32 (zip's), from the same pass."""
        try:
            crc = self.bundle.verify(key, crc32=True)
        except BundleError as exc:
            raise _read_error(exc, self.source) from None
        self._verified.add(key)
        return crc

    def start_checks(self) -> None:
        """Begin checking, in the background, the tensors a writer may copy (see :class:`Prefetch`;
        ``Model.start_checks``: the first tensor a writer touches starts it anyway)."""
        self.prefetch.start()

    def verify_all(self) -> None:
        """Check the CRC-32C of every tensor not checked yet (by a read or a copy). Partitioned
        variables are checked by reading them; the others, strings too, through bounded buffers."""
        self.prefetch.wait_all()  # those a writer may copy, checked (or being checked) ahead of it
        for key, entry in self.entries.items():
            if key == OBJECT_GRAPH_KEY or key in self._verified:
                continue
            if entry.is_partitioned:
                try:
                    self.bundle.read(key)
                except BundleError as exc:
                    raise _read_error(exc, self.source) from None
                self._verified.add(key)
            else:
                self._verify(key)


class _Tensor:
    """One tensor's check: claimed by one thread (or a writer's copy), its outcome (a CRC-32 or
    an error) for all."""

    __slots__ = ("key", "claimed", "done", "crc32", "error")

    def __init__(self, key: str):
        self.key, self.claimed, self.done = key, False, False
        self.crc32: int | None = None
        self.error: BaseException | None = None


class Prefetch:
    """Checks tensors in a background thread ahead of the writer that copies them.

    Nothing runs until :meth:`start` or the first :meth:`wait` (a writer touching a tensor's
    bytes): reading a checkpoint reads no tensor. Then the thread checks every tensor in the
    order they were added while the caller copies; a tensor the caller needs before the thread
    reached it is checked by the caller itself (each tensor is claimed once), so a writer going
    in another order waits for no more than its own tensor. A writer that reads a tensor's
    bytes anyway may :meth:`claim` its check, and :meth:`settle` it with what its copy computed
    (or :meth:`release` it unread): the thread then skips it.
    """

    def __init__(self, check: Callable[[str], int | None], skip: Callable[[str], bool] = lambda key: False):
        self._check = check
        self._skip = skip  # checked already (decoded by a reader): its CRC-32 is then unknown
        self._tensors: list[_Tensor] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False

    def add(self, key: str) -> _Tensor:
        tensor = _Tensor(key)
        with self._cond:
            self._tensors.append(tensor)
        return tensor

    def start(self) -> None:
        with self._cond:
            if self._thread is None and not self._stopping and self._tensors:
                self._thread = threading.Thread(target=self._run, name="modelmorph-crc32c", daemon=True)
                self._thread.start()

    def wait(self, tensor: _Tensor) -> int | None:
        """The tensor's CRC-32 once its CRC-32C held; raises the ReadError of a failed check."""
        self.start()
        with self._cond:
            while not tensor.done and tensor.claimed:
                self._cond.wait()  # checked by the thread or a writer's copy: wait for its outcome
            mine = not tensor.done
            tensor.claimed = True
        if mine:
            self._run_one(tensor)
        if tensor.error is not None:
            raise tensor.error
        return tensor.crc32

    def wait_all(self) -> None:
        for tensor in list(self._tensors):
            self.wait(tensor)

    def claim(self, tensor: _Tensor) -> bool:
        """Take the tensor's check over (a writer's copy computes it); False if it is taken."""
        with self._cond:
            if tensor.claimed or tensor.done:
                return False
            tensor.claimed = True
            return True

    def settle(self, tensor: _Tensor, crc32: int | None, error: BaseException | None) -> None:
        """The outcome of a check :meth:`claim` took."""
        with self._cond:
            tensor.crc32, tensor.error, tensor.done = crc32, error, True
            self._cond.notify_all()

    def release(self, tensor: _Tensor) -> None:
        """Give a claimed check back unread: whoever needs it checks it."""
        with self._cond:
            tensor.claimed = False
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _run(self) -> None:
        for tensor in list(self._tensors):
            with self._cond:
                if self._stopping:
                    return
                if tensor.claimed or tensor.done:
                    continue
                tensor.claimed = True
            self._run_one(tensor)

    def _run_one(self, tensor: _Tensor) -> None:
        crc32, error = None, None
        try:
            if not self._skip(tensor.key):
                crc32 = self._check(tensor.key)
        except BaseException as exc:  # given to whoever waits for this tensor
            error = exc
        self.settle(tensor, crc32, error)


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

    def defer(self) -> None:
        """Let accesses through before the check: a writer's copy computes it (``claim_check``)."""
        with self._lock:
            if self._verdict is None:
                self._verdict = True

    def judge(self, verdict: BaseException | None) -> None:
        """The outcome of a deferred check (None: it held), or its return to the reader."""
        with self._lock:
            self._verdict = verdict if verdict is not None else True

    def undefer(self) -> None:
        """The check is the reader's again (the copy that took it stopped early)."""
        with self._lock:
            self._verdict = None

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
