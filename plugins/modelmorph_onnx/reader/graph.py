"""ONNX nodes → a Keras 3 functional config, layer by layer, keeping the numbers right across
the layout change.

By default the Keras model has the ONNX graph's interface (same input and output names, shapes,
dtypes): an NCHW input stays NCHW. With ``-O layout=channels_last`` every float input and
output of rank 3 or more is the ONNX one with axis 1 moved last (the boundary is the only
place the layout changes). Keras' spatial layers are channels-last, so each tensor records
whether its Keras value is the ONNX value itself (``cl=False``) or the ONNX value with axis 1
moved last (``cl=True``). Convolutions and pools ask for channels-last (one Permute where a
tensor is not), element-wise ops keep what they get (constants are transposed to match),
and Reshape, Transpose, Squeeze and ONNX-order outputs ask for ONNX's own order. A Flatten
(or a Reshape to (batch, n)) of a channels-last tensor that only Dense layers read flattens
as Keras holds it: the tensor records the order of its features (``rows``) and the Dense
takes its kernel rows in that order, so a CNN pays no Permute before its classifier.

This module holds the walk and the tensor bookkeeping; the per-op converters are in :mod:`.ops`.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelmorph import ReadError
from modelmorph.keras import kerasconfig

from .fold import is_symbolic, run_fold, topological
from .load import DTYPES, Onnx, attributes
from .reload import View, root, view_of
from .shapes import Shapes

#: Initializers at least this large are dropped from memory after their last reader (smaller
#: ones stay: shape targets and the like, which pattern matchers may look back at).
RELEASE_FROM = 1 << 16

_LAYERS = "keras.layers"


class Unsupported(Exception):
    """A node the importer cannot map faithfully (the message names what)."""


@dataclass
class T:
    """A Keras tensor: its ``__keras_tensor__`` record, the ONNX shape it stands for (``None`` for
    unknown dims) and whether it holds that value channels-last."""

    record: dict
    shape: tuple | None
    dtype: str
    cl: bool = False
    #: For a (batch, n) tensor flattened from a channels-last one: the ONNX feature index each
    #: Keras feature holds (only Dense layers read such a tensor; see Graph.flat_source).
    rows: np.ndarray | None = None

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def trivial(self) -> bool:
        """Channels-last and channels-first hold the same flat order (spatial dims all 1)."""
        return self.shape is not None and all(d == 1 for d in self.shape[2:])


def _perm_cl(rank: int) -> list[int]:
    """ONNX axes in the order a channels-last Keras tensor holds them."""
    return [0, *range(2, rank), 1]


def _keras_shape(shape: tuple, cl: bool) -> list:
    dims = [d if isinstance(d, int) else None for d in shape]
    return [dims[i] for i in _perm_cl(len(dims))] if cl and len(dims) >= 3 else dims


def _name(text: str) -> str:
    """A valid Keras 3 name (no '/', which Keras refuses) from an ONNX name."""
    name = re.sub(r"[^A-Za-z0-9_.\-]", "_", text.strip("/")).strip("_")
    return name or "node"


class Graph:
    #: What an importer raises for a node Keras cannot express (plugins reach it as ``g.Unsupported``).
    Unsupported = Unsupported

    def __init__(self, src: Onnx, shapes: Shapes, converters: dict, *, channels_last: bool = False,
                 plugin_ops: frozenset = frozenset()):
        self.src, self.path, self.opset, self.shapes = src, src.path, src.opset, shapes
        self.channels_last = channels_last  # -O layout=channels_last: feature-map inputs/outputs NHWC
        # modelmorph's own export names each node "<Keras layer>/<op>_<n>": the layers get their names back
        self.keras_names = src.model.producer_name == "modelmorph"
        self.converters = converters  # op type (or (domain, op type)) → convert(graph, node, attributes)
        self.plugin_ops = plugin_ops  # the keys a plugin's importer serves
        self.entries: list[dict] = []
        self.weights: dict[str, list[np.ndarray | View]] = {}
        self.scopes: dict[str, str] = {}  # layer → the Keras layer its node's name says (modelmorph's export)
        self.values: dict[str, np.ndarray] = {}  # folded constants (initializers included)
        self.loaded: dict[str, np.ndarray] = {}  # initializer → the array its value's memory is (while held)
        self.roots: dict[int, tuple[np.ndarray, Any]] = {}  # id of such an array → (it, its loader)
        self.readers_left: Counter = Counter()  # initializer → nodes still to walk that read it
        self.tensors: dict[str, T] = {}  # ONNX name → Keras tensor
        # Both kept as the walk goes, so that a node's questions cost no pass over the whole graph
        # (each was one, per activation folded: 8,000 nodes took 34 s).
        self._aliases: dict[int, list[str]] = {}  # id of a Keras tensor record → the ONNX names bound to it
        self._reads: Counter | None = Counter()  # layer → reads of its outputs by the calls so far (None: count again)
        self.names: set[str] = set()
        self.skip: set[int] = set()  # ids of nodes already mapped as part of a pattern
        self.permuted: dict[tuple, T] = {}  # (tensor record id, to channels-last) → the Permute's output
        self.flat_shapes: dict[int, tuple] = {}  # record id of a `rows` tensor → the ONNX shape it flattens
        graph = src.graph
        self.outputs = [o.name for o in graph.output]
        self.output_names = {o: _name(o) for o in self.outputs}
        self.names.update(self.output_names.values())
        self.consumers: dict[str, list] = {}
        for node in graph.node:
            for x in node.input:
                self.consumers.setdefault(x, []).append(node)

    # -- building ------------------------------------------------------------------------------
    def unique(self, base: str) -> str:
        name, i = base, 1
        while name in self.names:
            name, i = f"{base}_{i}", i + 1
        self.names.add(name)
        return name

    def layer(self, node, class_name: str, config: dict, args: list, out: str, shape, cl: bool = False,
              weights: list | None = None, module: str = _LAYERS, kwargs: dict | None = None,
              dtype: str = "float32", registered_name: str | None = None) -> T:
        """Append one layer (or keras.ops operation) call; returns its output as ONNX tensor ``out``."""
        if out in self.output_names and cl == self.boundary_cl(shape, dtype) \
                and self.output_names[out] not in {e["name"] for e in self.entries}:
            name = self.output_names[out]  # the graph output's name is the Keras output's
        elif node is not None and self.keras_names and "/" in node.name.strip("/") \
                and _name(node.name.rsplit("/", 1)[0]) not in self.names:
            name = self.unique(_name(node.name.rsplit("/", 1)[0]))  # modelmorph's export: "layer/Op_1"
        else:
            name = self.unique(_name(node.name) if node is not None and node.name else
                               _name(f"{node.op_type if node is not None else class_name}").lower())
        is_op = module != _LAYERS
        if node is not None and self.keras_names and "/" in node.name.strip("/"):
            self.scopes[name] = node.name.strip("/").rsplit("/", 1)[0]  # one layer called twice: shared.py
        self._append({
            "module": module, "class_name": class_name, "config": {"name": name, **config},
            "registered_name": registered_name or (class_name if is_op else None), "name": name,
            "inbound_nodes": [{"args": [self._arg(a) for a in args], "kwargs": kwargs or {}}]})
        if weights:
            self.weights[name] = [self._reloadable(w) for w in weights]
        t = T(self._record(name, shape, cl, dtype), shape, dtype, cl)
        self.alias(out, t)
        return t

    def _reloadable(self, weight: np.ndarray) -> np.ndarray | View:
        """A weight that is a view of a loaded initializer as a :class:`~.reload.View` (read again
        when written), else the array."""
        if isinstance(weight, np.ndarray):
            held = self.roots.get(id(root(weight)))
            if held is not None and held[0] is root(weight):
                return view_of(weight, held[0], held[1]) or weight
        return weight

    def _arg(self, a: Any) -> Any:
        if isinstance(a, T):
            return a.record
        if isinstance(a, list):
            return [self._arg(v) for v in a]
        return a

    @staticmethod
    def _record(layer: str, shape, cl: bool, dtype: str) -> dict:
        return {"class_name": "__keras_tensor__", "config": {
            "shape": _keras_shape(shape, cl), "dtype": dtype, "keras_history": [layer, 0, 0]}}

    def boundary_cl(self, shape, dtype: str) -> bool:
        """Whether a graph input or output of this shape is channels-last in the Keras interface."""
        return self.channels_last and shape is not None and len(shape) >= 3 and dtype.startswith("float")

    def flat_source(self, x: T, node, out: str) -> tuple[T, np.ndarray | None]:
        """What a Flatten of ``x`` to ONNX tensor ``out`` (batch, n) reads, and the order of its
        features: ``x`` as Keras holds it when that differs from ONNX's order and only Dense
        layers read ``out`` (their kernels take the rows in that order), else ``x`` in ONNX order."""
        if not x.cl or x.trivial or x.rank < 3 or not all(isinstance(d, int) for d in x.shape[1:]) \
                or not self._dense_only(out):
            return (x if x.trivial else self.to_onnx_order(x, node)), None
        rest = x.shape[1:]
        rows = np.arange(int(np.prod(rest))).reshape(rest).transpose(*range(1, len(rest)), 0).reshape(-1)
        return x, rows

    def _dense_only(self, name: str, depth: int = 0) -> bool:
        """Every reader of ``name`` (through Identity/Dropout) is a Gemm or MatMul with a constant
        matrix as its second input, and ``name`` is no graph output."""
        users = self.consumers.get(name, [])
        if name in self.outputs or not users or depth > 16:
            return False
        for user in users:
            if user.op_type in ("Identity", "Dropout") and user.input[0] == name:
                if not self._dense_only(user.output[0], depth + 1):
                    return False
                continue
            if user.op_type not in ("Gemm", "MatMul") or user.input[0] != name or name in user.input[1:]:
                return False
            w = self.values.get(user.input[1])
            w_shape = w.shape if isinstance(w, np.ndarray) else self.shapes.get(user.input[1])
            if w is None or (user.op_type == "MatMul" and len(w_shape or ()) != 2):
                return False
            if user.op_type == "Gemm" and attributes(user).get("transA", 0):
                return False
        return True

    def in_onnx_rows(self, t: T, node) -> T:
        """A flattened tensor (see :meth:`flat_source`) with its features in ONNX's order: its
        channels-last shape back, channels first, flattened again (a reader other than a Dense)."""
        if t.rows is None:
            return t
        key = (id(t.record), "rows")
        if key not in self.permuted:
            held = len(t.rows)
            n = t.shape[0]
            src = self.flat_shapes.get(id(t.record))
            if src is None:
                raise Unsupported("a flattened tensor's source shape is lost")
            cl_shape = (n, *src[2:], src[1])
            back = self.layer(None, "Reshape", {"target_shape": [int(d) for d in cl_shape[1:]]}, [T(t.record, (n, held), t.dtype)],
                              f"{key}:unflat", src, cl=True, dtype=t.dtype)
            back = self.to_onnx_order(back, node)
            self.permuted[key] = self.layer(None, "Flatten", {}, [back], f"{key}", t.shape, dtype=t.dtype)
        return self.permuted[key]

    def to_cl(self, t: T, node) -> T:
        """``t`` channels-last: one Permute per tensor, however many layers ask."""
        if t.cl or t.rank < 3:
            return t
        key = (id(t.record), True)
        if key not in self.permuted:
            self.permuted[key] = self.layer(None, "Permute", {"dims": [*range(2, t.rank), 1]}, [t], f"{key}",
                                            t.shape, cl=True, dtype=t.dtype)
        return self.permuted[key]

    def to_onnx_order(self, t: T, node) -> T:
        """``t`` in ONNX's own order."""
        if not t.cl or t.rank < 3:
            return t
        key = (id(t.record), False)
        if key not in self.permuted:
            self.permuted[key] = self.layer(None, "Permute", {"dims": [t.rank - 1, *range(1, t.rank - 1)]}, [t],
                                            f"{key}", t.shape, dtype=t.dtype)
        return self.permuted[key]

    # -- inputs ------------------------------------------------------------------------------
    def add_input(self, value_info) -> None:
        name = value_info.name
        dtype = DTYPES.get(value_info.type.tensor_type.elem_type)
        if dtype is None:
            raise ReadError(self.path, f"graph input {name!r} has an element type that is not read")
        shape = self.shapes.get(name)
        if shape is None:
            raise ReadError(self.path, f"graph input {name!r} has no shape")
        layer_name = _name(name)
        if layer_name in self.names and layer_name not in self.output_names.values():
            layer_name = self.unique(layer_name)
        self.names.add(layer_name)
        shape = tuple(d if isinstance(d, int) else None for d in shape)
        cl = self.boundary_cl(shape, dtype)  # -O layout=channels_last: the one change of layout, here
        self._append({"module": _LAYERS, "class_name": "InputLayer", "registered_name": None,
                      "config": {"batch_shape": _keras_shape(shape, cl), "dtype": dtype, "sparse": False,
                                 "name": layer_name},
                      "name": layer_name, "inbound_nodes": []})
        self._bind(name, T(self._record(layer_name, shape, cl, dtype), shape, dtype, cl))

    # -- the walk ----------------------------------------------------------------------------
    def run(self) -> None:
        graph = self.src.graph
        for name, load in self.src.tensors.items():
            self.values[name] = load
        initial = set(self.src.tensors)
        inputs = [vi for vi in graph.input if vi.name not in initial]
        for vi in inputs:
            self.add_input(vi)
        order = topological(self.path, list(graph.node), initial | {vi.name for vi in inputs})
        self.readers_left = Counter(x for node in order for x in node.input if x in initial)
        for node in order:
            self.step(node)
            self._release(node)

    def step(self, node) -> None:
        """Fold or map one node."""
        custom = node.domain not in ("", "ai.onnx")
        if custom and (node.domain, node.op_type) not in self.converters:
            raise self.error(node, f"custom domain {node.domain!r} is not read (a plugin can add an importer "
                                   f"for it: spec/formats/onnx.md)")
        folded = None if custom else run_fold(self.path, node, self._constants(node), self.shapes, self.opset)
        if folded is not None:
            for name, value in zip(node.output, folded):
                self.values[name] = value
            return
        if id(node) in self.skip:
            return
        key = (node.domain, node.op_type) if custom else node.op_type
        convert = self.converters.get(key)
        if convert is None:
            raise self.error(node, "no Keras mapping yet (see spec/formats/onnx.md)")
        try:
            convert(self, node, attributes(node))
        except Unsupported as exc:
            raise self.error(node, str(exc)) from None
        except ReadError:
            raise
        except Exception as exc:
            if key not in self.plugin_ops:
                raise
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise self.error(node, f"a plugin's importer failed: {type(exc).__name__}"
                                   f"{': ' + message if message else ''}") from None

    def _release(self, node) -> None:
        """Forget the arrays of large initializers no node left reads (a weight taken from one is
        read again when written: :mod:`.reload`), so the walk holds about one at a time."""
        for x in node.input:
            if x not in self.readers_left:
                continue
            self.readers_left[x] -= 1
            if self.readers_left[x] == 0 and x in self.loaded and self.loaded[x].nbytes >= RELEASE_FROM:
                self.roots.pop(id(self.loaded.pop(x)), None)
                self.values[x] = self.src.tensors[x]

    def load(self, name: str):
        """The value of ``name`` (an initializer loads here, when first read), or None."""
        value = self.values.get(name)
        if callable(value):
            loader = value
            value = self.values[name] = loader()
            if loader is self.src.tensors.get(name) and isinstance(value, np.ndarray):
                base = root(value)
                self.loaded[name] = base
                self.roots[id(base)] = (base, loader)
        return value

    def _constants(self, node) -> dict:
        """The values of the node's constant inputs (initializers load here, when first read)."""
        out = {}
        for x in node.input:
            value = self.load(x)
            if value is not None:
                out[x] = value
        return out

    def error(self, node, problem: str) -> ReadError:
        return ReadError(self.path, f"node {node.name!r} ({node.op_type}): {problem}")

    # -- lookups for converters ----------------------------------------------------------------
    def const(self, name: str) -> np.ndarray | None:
        if not name:
            return None
        value = self.load(name)
        if value is not None and is_symbolic(value):
            raise Unsupported(f"{name!r} depends on a dynamic dimension")
        return value

    def tensor(self, name: str, rows_ok: bool = False) -> T:
        """The Keras tensor of ONNX tensor ``name``; a flattened one in ONNX's feature order
        unless the caller (a Dense) takes ``rows`` itself."""
        t = self.tensors.get(name)
        if t is None:
            if name in self.values:
                raise Unsupported(f"input {name!r} is a constant where a computed tensor is expected")
            raise Unsupported(f"input {name!r} is not available")
        return t if rows_ok else self.in_onnx_rows(t, None)

    def shape(self, name: str) -> tuple:
        shape = self.shapes.get(name)
        if shape is None:
            raise Unsupported(f"the shape of {name!r} is not known statically")
        return tuple(d if isinstance(d, int) else None for d in shape)

    def alias(self, out: str, t: T) -> None:
        self._bind(out, t)
        known = self.shapes.known(out)  # (what inference finds later still wins where it is complete)
        if known is None or len(known) != t.rank or any(k is None for k in known[1:]):
            # what we computed is what later Shape nodes fold (dim 0 is the batch everywhere)
            self.shapes[out] = tuple("N" if i == 0 and d is None else d for i, d in enumerate(t.shape))

    # -- the end ---------------------------------------------------------------------------
    def finish(self) -> tuple[list, list, list]:
        """(layers, input_layers, output_layers) of the functional config."""
        from .shared import share_layers

        share_layers(self)
        graph = self.src.graph
        input_names = [vi.name for vi in graph.input if vi.name not in self.src.tensors]
        outputs = []
        for out in self.outputs:
            want = self.output_names[out]
            t = self.tensors.get(out)
            if t is None:
                raise ReadError(self.path, f"graph output {out!r} is a constant or not computed (not read)")
            t = self.in_onnx_rows(t, None)
            layer = t.record["config"]["keras_history"][0]
            if t.rank >= 3 and t.cl != self.boundary_cl(t.shape, t.dtype):
                t = self._relayout_named(t, want)
            elif layer != want and want not in [o[0] for o in outputs] and self._rename(layer, want):
                pass  # the layer itself takes the output's name (no Identity)
            elif layer != want or want in [o[0] for o in outputs]:
                t = self._identity(t, want)
            outputs.append(t.record["config"]["keras_history"])
        inputs = [self.tensors[n].record["config"]["keras_history"] for n in input_names]
        return _keras_order(self.entries, [i[0] for i in inputs], [(o[0], o[1]) for o in outputs]), inputs, outputs

    def _append(self, entry: dict) -> None:
        self.entries.append(entry)
        if self._reads is not None:
            self._reads.update(r["config"]["keras_history"][0] for r in _tensor_refs(entry["inbound_nodes"]))

    def _bind(self, name: str, t: T) -> None:
        """ONNX tensor ``name`` is Keras tensor ``t`` (several names may share its record)."""
        old = self.tensors.get(name)
        self.tensors[name] = t
        if old is not None and old.record is t.record:
            return
        if old is not None:
            names = self._aliases[id(old.record)]
            names.remove(name)
            if not names:
                del self._aliases[id(old.record)]
        self._aliases.setdefault(id(t.record), []).append(name)

    def aliases(self, t: T) -> list[str]:
        """The ONNX names bound to ``t``'s Keras tensor, in the order they were bound."""
        return list(self._aliases.get(id(t.record), ()))

    def readers(self, layer: str) -> int:
        """How many references to ``layer``'s outputs the layer calls so far hold (a call reading
        one twice counts twice)."""
        if self._reads is None:
            self._reads = Counter(r["config"]["keras_history"][0] for e in self.entries
                                  for r in _tensor_refs(e["inbound_nodes"]))
        return self._reads[layer]

    def rewired(self) -> None:
        """Calls were merged or their references renamed (shared layers): :meth:`readers` counts
        again when next asked."""
        self._reads = None

    def entry(self, t: T) -> dict | None:
        """The layer call whose output ``t`` is."""
        name = t.record["config"]["keras_history"][0]
        return next((e for e in reversed(self.entries) if e["name"] == name), None)

    def _rename(self, layer: str, want: str) -> bool:
        """Give an output layer read by no other layer the graph output's name (the Keras tensor
        records are shared, so renaming them renames every reference)."""
        entry = next((e for e in self.entries if e["name"] == layer), None)
        if entry is None or entry["class_name"] == "InputLayer" or self.readers(layer) \
                or len(entry["inbound_nodes"]) > 1 \
                or want in {e["name"] for e in self.entries}:
            return False
        records = [t.record for t in self.tensors.values() if t.record["config"]["keras_history"][0] == layer]
        for record in {id(r): r for r in records}.values():
            record["config"]["keras_history"][0] = want
        entry["name"] = entry["config"]["name"] = want
        if self._reads is not None:
            self._reads[want] += self._reads.pop(layer, 0)
        if layer in self.weights:
            self.weights[want] = self.weights.pop(layer)
        return True

    def _relayout_named(self, t: T, want: str) -> T:
        """Output ``t`` in the interface's layout, as the layer ``want``."""
        self.names.discard(want)
        if want in {e["name"] for e in self.entries}:
            want = self.unique(want)
        dims = [t.rank - 1, *range(1, t.rank - 1)] if t.cl else [*range(2, t.rank), 1]
        return self._named(want, "Permute", {"dims": dims}, t, cl=not t.cl)

    def _identity(self, t: T, want: str) -> T:
        if want in {e["name"] for e in self.entries}:
            want = self.unique(want)
        return self._named(want, "Identity", {}, t, cl=t.cl)

    def _named(self, name: str, class_name: str, config: dict, t: T, cl: bool) -> T:
        self.names.add(name)
        self._append({"module": _LAYERS, "class_name": class_name, "registered_name": None,
                      "config": {"name": name, **config}, "name": name,
                      "inbound_nodes": [{"args": [t.record], "kwargs": {}}]})
        return T(self._record(name, t.shape, cl, t.dtype), t.shape, t.dtype, cl)


def _tensor_refs(value: Any):
    """The Keras tensor records referenced in a call's ``inbound_nodes`` (or any part of them)."""
    if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensor_refs(v)
    elif isinstance(value, list):
        for v in value:
            yield from _tensor_refs(v)


def _keras_order(entries: list[dict], inputs: list[str], outputs: list[tuple[str, int]]) -> list[dict]:
    """The layers in the order Keras 3 lists them when it rebuilds the model (its `map_graph`:
    by depth from the outputs, deepest first, ties in first-visit order of a depth-first walk
    from the outputs; a node is (layer, inbound node index), a shared layer taking its deepest
    node's depth). Keras saves weights by position in that list, so the config must already
    be in it."""
    by_name = {e["name"]: e for e in entries}

    def parents(key: tuple[str, int]) -> list[tuple[str, int]]:
        out: list[tuple[str, int]] = []

        def walk(value):
            if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
                history = value["config"]["keras_history"]
                out.append((history[0], int(history[1])))
            elif isinstance(value, dict) and not kerasconfig.is_constant(value):
                for k in sorted(value):  # tree.flatten visits dict keys sorted
                    walk(value[k])
            elif isinstance(value, list):
                for v in value:
                    walk(v)
        nodes = by_name[key[0]]["inbound_nodes"]
        if key[1] < len(nodes):
            walk(nodes[key[1]]["args"])
            walk(nodes[key[1]]["kwargs"])
        return out

    index: dict[str, int] = {}
    finished: list[tuple[str, int]] = []
    done: set[tuple[str, int]] = set()

    def visit(key: tuple[str, int]) -> None:  # iterative would be kinder to deep graphs; Keras recurses too
        if key in done:
            return
        index.setdefault(key[0], len(index))
        for parent in parents(key):
            visit(parent)
        done.add(key)
        finished.append(key)

    for key in outputs:
        visit(key)
    node_depth: dict[tuple[str, int], int] = {}
    depth_of: dict[str, int] = {}
    for key in reversed(finished):
        depth = max(node_depth.setdefault(key, 0), depth_of.get(key[0], 0))
        depth_of[key[0]] = node_depth[key] = depth
        for parent in parents(key):
            node_depth[parent] = max(depth + 1, node_depth.get(parent, 0))
    for name in inputs:
        if name not in depth_of:
            depth_of[name], index[name] = 0, -1
    order = sorted(depth_of, key=lambda n: (-depth_of[n], index[n]))
    return [by_name[n] for n in order]
