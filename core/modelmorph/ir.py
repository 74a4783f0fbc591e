"""The intermediate representation every reader produces and every writer consumes.

Plain typed dataclasses and nothing else: no format knowledge lives here. Configs are
kept in one canonical dialect, Keras 3's (see ``spec/ir.md``). Weight values are read
lazily, one tensor at a time, only when a writer asks for them.
"""

from __future__ import annotations

import functools
import io
import math
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Iterator

if TYPE_CHECKING:  # numpy is imported only when a tensor is: a byte-copying conversion never needs it
    import numpy as np

#: The dtype names a :class:`Weight` may carry (numpy names, plus ``bfloat16`` and ``string``),
#: with their sizes in bytes (0: variable).
ITEMSIZE = {
    "float16": 2, "bfloat16": 2, "float32": 4, "float64": 8,
    "int8": 1, "int16": 2, "int32": 4, "int64": 8, "uint8": 1, "uint16": 2, "uint32": 4, "uint64": 8,
    "bool": 1, "complex64": 8, "complex128": 16, "string": 0,
}
DTYPES = tuple(ITEMSIZE)


@dataclass(frozen=True)
class TensorRef:
    """A graph edge: output ``tensor_index`` of call ``node_index`` of layer ``layer``.

    ``shape`` and ``dtype`` are what the source file recorded about the tensor, if anything.
    """

    layer: str
    node_index: int = 0
    tensor_index: int = 0
    shape: tuple[int | None, ...] | None = None
    dtype: str | None = None


@dataclass
class Node:
    """One call of a layer inside its model.

    ``args`` and ``kwargs`` are nested lists/dicts whose leaves are :class:`TensorRef`
    or plain JSON constants (serialized Keras objects stay as the dicts Keras wrote).
    """

    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ByteRange:
    """Where a weight's value already lies as raw bytes: ``nbytes`` bytes of the open binary
    ``file`` from ``offset``, in C order, little-endian (bfloat16: its 2-byte patterns). A writer
    that stores exactly these bytes may copy them file to file instead of decoding the tensor."""

    file: BinaryIO = field(compare=False, repr=False)
    offset: int
    nbytes: int
    #: The CRC-32 (zip's) of these bytes, when the reader computes it anyway while checking
    #: them: called after the bytes were accessed (it may wait for that check, and raises its
    #: ReadError); None when unknown. A writer storing the bytes in a zip combines it
    #: (``modelmorph.storage.filecopy.assemble_crc32``) instead of reading its copy again.
    crc32: Callable[[], int | None] | None = field(default=None, compare=False, repr=False)
    #: Likewise the (unmasked) CRC-32C of these bytes, which TF checkpoints store per tensor.
    crc32c: Callable[[], int | None] | None = field(default=None, compare=False, repr=False)
    #: Offered by a reader whose check reads these bytes for a CRC-32 (zip's): a writer about to
    #: copy them, computing their CRC-32 on the way, calls it first; if it returns a function,
    #: the writer gives it that CRC-32 once the bytes are read (None if it could not), and the
    #: check takes it instead of reading them again. None from the call: the check has them.
    claim_crc32: Callable[[], Callable[[int | None], None] | None] | None = field(default=None, compare=False,
                                                                                 repr=False)
    #: Offered by a reader whose check reads these bytes (a TF checkpoint's CRC-32C): a writer
    #: that reads them anyway to copy them calls it before its first read. If it returns a
    #: function, the check is the writer's to feed: it passes every piece it reads with its
    #: position in the range (a memoryview, valid during the call; from several threads, in any
    #: order, each byte once), then None once done; that last call raises the reader's ReadError
    #: if the check failed. Stopping early, the writer still calls it with None: the check is
    #: then the reader's again. None from the call: the reader checks them. A checkpoint offers
    #: it for ``"tf-string"`` ranges too, fed the stored bytes (only its own writer copies those).
    claim_check: Callable[[], Callable[..., None] | None] | None = field(default=None, compare=False, repr=False)
    #: How the bytes hold the value: ``"plain"`` (as above), or ``"tf-string"``: a string tensor
    #: as a TF checkpoint stores it (varint lengths, their CRC, the bytes), which only a
    #: checkpoint writer copies (``crc32c`` is then the entry's CRC, not that of the bytes).
    layout: str = "plain"


@dataclass
class Weight:
    """One variable of a layer (or of the optimizer).

    ``path`` is relative to its layer: ``kernel``, ``cell/kernel``,
    ``forward_layer/cell/bias``. Unknown layer classes use their positions ``0``, ``1``...
    The value is produced by ``loader`` only when :meth:`read` is called, so a
    conversion can stream a model far larger than memory.
    """

    path: str
    shape: tuple[int, ...]
    dtype: str
    trainable: bool = True
    loader: Callable[[], "np.ndarray"] | None = field(default=None, repr=False, compare=False)
    #: The same value as raw bytes in a file, when the reader knows where (``None`` otherwise).
    #: Whoever replaces ``loader`` with one that changes the value must clear it.
    raw: ByteRange | None = field(default=None, repr=False, compare=False)
    #: The name Keras gave the variable (``add_weight(name=...)``: ``gamma``), when the source
    #: records one and ``path`` cannot say it: a class the catalogue does not know is read by
    #: position, and a legacy ``.h5`` still names each of its variables (``ls/gamma:0``).
    name: str | None = field(default=None, compare=False)
    #: The same value in pieces, when the reader can give them (see :meth:`blocks`): the
    #: ``loader`` it goes with and a function of the largest piece in bytes. Used only while
    #: ``loader`` is still that one, so a loader replaced by a transformation is never bypassed.
    streamer: "tuple[Callable[[], Any], Callable[[int], Iterator[Any]]] | None" = field(
        default=None, repr=False, compare=False)

    def read(self) -> "np.ndarray":
        if self.loader is None:
            raise ValueError(f"weight {self.path!r} has no data")
        return self.loader()

    def blocks(self, max_bytes: int) -> Iterator["np.ndarray"]:
        """The value as consecutive slices along its first axis (each about ``max_bytes`` or
        less where the source allows), so that a writer holds one piece at a time; the whole
        value as one piece when the reader cannot split it."""
        if self.streamer is not None and self.streamer[0] is self.loader and len(self.shape) >= 1:
            yield from self.streamer[1](max_bytes)
        else:
            yield self.read()

    @property
    def size(self) -> int:
        return math.prod(int(d) for d in self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * ITEMSIZE[self.dtype]

    @classmethod
    def scalar(cls, path: str, value: float, dtype: str = "float32", trainable: bool = False) -> "Weight":
        """A 0-d weight from a Python number (an optimizer's learning rate from its config),
        held as bytes: writers copy them like any stored tensor, numpy never loads."""
        data = struct.pack(_SCALAR_FORMATS[dtype], value)
        return cls(path, (), dtype, trainable, loader=functools.partial(_from_bytes, data, dtype),
                   raw=ByteRange(io.BytesIO(data), 0, len(data)))

    @classmethod
    def from_array(cls, path: str, array: "np.ndarray", trainable: bool = True) -> "Weight":
        """A weight backed by an in-memory array (for tests and small transformations)."""
        return cls(path, tuple(array.shape), dtype_name(array.dtype), trainable, loader=lambda: array)


@dataclass
class Layer:
    """One layer of a model, as Keras 3 would serialize it.

    ``config`` is the layer's own config dict (Keras 3 dialect). ``nodes`` are its calls
    in the enclosing functional model (empty in a Sequential). A nested model is a layer
    whose ``submodel`` holds the inner structure; its own ``weights`` are then empty.
    ``extra`` keeps format-specific keys verbatim, namespaced (``"keras:shared_object_id"``).
    """

    name: str
    class_name: str
    config: dict[str, Any] = field(default_factory=dict)
    module: str | None = None
    registered_name: str | None = None
    build_config: dict[str, Any] | None = None
    nodes: list[Node] = field(default_factory=list)
    weights: list[Weight] = field(default_factory=list)
    submodel: "Model | None" = None
    extra: dict[str, Any] = field(default_factory=dict)

    def weight(self, path: str) -> Weight:
        for w in self.weights:
            if w.path == path:
                return w
        raise KeyError(f"layer {self.name!r} has no weight {path!r}")


@dataclass
class OptimizerSlot:
    """A per-variable optimizer variable: slot ``name`` (``m``, ``v``, ``momentum``...) of
    the model variable ``variable`` (its full path, see :meth:`Model.iter_weights`)."""

    variable: str
    name: str
    weight: Weight


@dataclass
class OptimizerState:
    """The optimizer's serialized config and its variables.

    ``variables`` are the optimizer's own (``iterations``, ``learning_rate``...), in the
    optimizer's order; ``slots`` are mapped to the model variables they belong to;
    ``unmapped`` keeps, by position, whatever could not be mapped.
    """

    config: dict[str, Any] | None = None
    variables: list[Weight] = field(default_factory=list)
    slots: list[OptimizerSlot] = field(default_factory=list)
    unmapped: list[Weight] = field(default_factory=list)


@dataclass
class Asset:
    """A file a layer saved beside its weights (e.g. a StringLookup vocabulary)."""

    path: str
    size: int
    loader: Callable[[], bytes] | None = field(default=None, repr=False, compare=False)
    #: Opens the data as a binary stream, when the reader can (so that writers copy a large
    #: vocabulary in chunks instead of holding it whole); :meth:`open` falls back to ``loader``.
    opener: Callable[[], BinaryIO] | None = field(default=None, repr=False, compare=False)

    def read(self) -> bytes:
        if self.loader is None:
            raise ValueError(f"asset {self.path!r} has no data")
        return self.loader()

    def open(self) -> BinaryIO:
        """The data as a readable binary stream (close it when done)."""
        return self.opener() if self.opener is not None else io.BytesIO(self.read())


@dataclass
class Model:
    """A whole model: architecture, weights, training state and where it came from.

    ``inputs``/``outputs`` are structures (a single ref, list or dict) of
    :class:`TensorRef`, as Keras' ``input_layers``/``output_layers`` are. A Sequential
    model has none. ``has_architecture`` is False for weights-only sources (a checkpoint,
    a ``.weights.h5``): their layers then only group weights, with ``class_name`` ``""``
    and a key in ``extra`` namespaced by the reading format (``"h5:group"``, ``"tf-checkpoint:object"``)
    telling where each group came from.
    """

    name: str
    class_name: str = "Functional"
    config: dict[str, Any] = field(default_factory=dict)
    module: str | None = None
    registered_name: str | None = None
    build_config: dict[str, Any] | None = None
    layers: list[Layer] = field(default_factory=list)
    inputs: Any = None
    outputs: Any = None
    compile_config: dict[str, Any] | None = None
    optimizer: OptimizerState | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    assets: list[Asset] = field(default_factory=list)
    has_architecture: bool = True
    extra: dict[str, Any] = field(default_factory=dict)
    _closers: list[Callable[[], None]] = field(default_factory=list, repr=False, compare=False)
    _checks: list["Check"] = field(default_factory=list, repr=False, compare=False)

    # -- lookups ---------------------------------------------------------------------
    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"model {self.name!r} has no layer {name!r}")

    def iter_layers(self, prefix: str = "") -> Iterator[tuple[str, Layer]]:
        """Every layer, nested models' layers included, with its ``/``-joined path."""
        for layer in self.layers:
            path = f"{prefix}{layer.name}"
            yield path, layer
            if layer.submodel is not None:
                yield from layer.submodel.iter_layers(path + "/")

    def iter_weights(self) -> Iterator[tuple[str, Layer, Weight]]:
        """Every model weight as ``(full path, layer, weight)``; the full path is the
        layer path plus the weight path, e.g. ``inner/dense/kernel``."""
        for path, layer in self.iter_layers():
            for weight in layer.weights:
                yield f"{path}/{weight.path}", layer, weight

    def weight_count(self) -> int:
        return sum(w.size for _, _, w in self.iter_weights())

    # -- resources -------------------------------------------------------------------
    def on_close(self, closer: Callable[[], None]) -> None:
        """Register a callback that releases what lazy weights read from."""
        self._closers.append(closer)

    def close(self) -> None:
        while self._closers:
            self._closers.pop()()

    # -- integrity -------------------------------------------------------------------
    def add_check(self, what: str, finish: Callable[[], None], start: Callable[[], None] | None = None) -> None:
        """Register a checksum test of the source that the reader did not run, so that reading
        the metadata alone (``modelmorph info``) costs no pass over the tensor bytes. ``what``
        names it (``CRC-32 of model.weights.h5``); ``start``, if given, begins it in the
        background; ``finish`` waits for the verdict and raises :class:`ReadError` on a mismatch.
        Writers run them all before the output is kept (see :meth:`verify`)."""
        self._checks.append(Check(what, finish, start))

    def start_checks(self) -> None:
        """Begin every pending check that can run in the background. :func:`modelmorph.write`
        does not: a writer first claims the checks its copies compute (``ByteRange.claim_crc32``,
        ``claim_check``), and the readers' checks start themselves when first needed (a tensor
        read or asked for its CRC). For a caller that reads the bytes some other way."""
        for check in self._checks:
            if check.start is not None and not check.started:
                check.started = True
                check.start()

    def verify(self) -> list[str]:
        """Run every pending check now; returns what was checked. A check that passed is not
        run again; one that failed raises (again, if asked again)."""
        done = []
        while self._checks:
            check = self._checks[0]
            check.finish()
            self._checks.pop(0)
            done.append(check.what)
        return done

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Check:
    """One checksum test a reader deferred (see :meth:`Model.add_check`)."""

    what: str
    finish: Callable[[], None]
    start: Callable[[], None] | None = None
    started: bool = False


_SCALAR_FORMATS = {"float16": "<e", "float32": "<f", "float64": "<d", "int32": "<i", "int64": "<q"}


def _from_bytes(data: bytes, dtype: str) -> "np.ndarray":
    import numpy as np

    return np.frombuffer(bytearray(data), np.dtype(dtype).newbyteorder("<")).astype(dtype).reshape(())


def dtype_name(dtype: Any) -> str:
    """The IR name of a numpy dtype (``bfloat16`` from ml_dtypes, ``string`` for bytes/objects)."""
    import numpy as np

    dt = np.dtype(dtype)
    if dt.name == "bfloat16":
        return "bfloat16"
    if dt.kind in ("S", "O", "U"):
        return "string"
    return dt.name


def numpy_dtype(name: str) -> "np.dtype":
    """The numpy dtype for an IR dtype name."""
    import numpy as np

    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    if name == "string":
        return np.dtype(object)
    return np.dtype(name)
