"""ONNX nodes → a Keras 3 functional config, layer by layer, keeping the numbers right across
the layout change.

The Keras model has the ONNX graph's interface (same input and output names, shapes, dtypes):
an NCHW input stays NCHW. Keras' spatial layers are channels-last, so each tensor records
whether its Keras value is the ONNX value itself (``cl=False``) or the ONNX value with axis 1
moved last (``cl=True``). Convolutions and pools ask for channels-last (one Permute where a
tensor is not), element-wise ops keep what they get (constants are transposed to match),
and Flatten, Reshape, Transpose, Squeeze and the outputs ask for ONNX's own order: so a
Flatten after convolutions flattens in ONNX's order, as the Dense after it expects.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelmorph import ReadError

from .fold import is_symbolic, run_fold, topological
from .load import DTYPES, Onnx, attributes

_LAYERS = "keras.layers"
_F32_MAX = 3.4028234663852886e38  # stands for -inf in pads a max pool must never pick


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
    def __init__(self, src: Onnx, shapes: dict[str, tuple]):
        self.src, self.path, self.opset, self.shapes = src, src.path, src.opset, shapes
        self.entries: list[dict] = []
        self.weights: dict[str, list[np.ndarray]] = {}
        self.values: dict[str, np.ndarray] = {}  # folded constants (initializers included)
        self.tensors: dict[str, T] = {}  # ONNX name → Keras tensor
        self.names: set[str] = set()
        self.skip: set[int] = set()  # ids of nodes already mapped as part of a pattern
        self.permuted: dict[tuple, T] = {}  # (tensor record id, to channels-last) → the Permute's output
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
              dtype: str = "float32") -> T:
        """Append one layer (or keras.ops operation) call; returns its output as ONNX tensor ``out``."""
        if out in self.output_names and not cl and self.output_names[out] not in {e["name"] for e in self.entries}:
            name = self.output_names[out]  # the graph output's name is the Keras output's
        else:
            name = self.unique(_name(node.name) if node is not None and node.name else
                               _name(f"{node.op_type if node is not None else class_name}").lower())
        is_op = module != _LAYERS
        self.entries.append({
            "module": module, "class_name": class_name, "config": {"name": name, **config},
            "registered_name": class_name if is_op else None, "name": name,
            "inbound_nodes": [{"args": [self._arg(a) for a in args], "kwargs": kwargs or {}}]})
        if weights:
            self.weights[name] = weights
        t = T(self._record(name, shape, cl, dtype), shape, dtype, cl)
        self.alias(out, t)
        return t

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
        batch_shape = list(shape)
        self.entries.append({"module": _LAYERS, "class_name": "InputLayer", "registered_name": None,
                             "config": {"batch_shape": batch_shape, "dtype": dtype, "sparse": False,
                                        "name": layer_name},
                             "name": layer_name, "inbound_nodes": []})
        self.tensors[name] = T(self._record(layer_name, shape, False, dtype), shape, dtype)

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
        for node in order:
            if node.domain not in ("", "ai.onnx"):
                raise self.error(node, f"custom domain {node.domain!r} is not read")
            folded = run_fold(self.path, node, self._constants(node), self.shapes, self.opset)
            if folded is not None:
                for name, value in zip(node.output, folded):
                    self.values[name] = value
                continue
            if id(node) in self.skip:
                continue
            convert = CONVERTERS.get(node.op_type)
            if convert is None:
                raise self.error(node, "no Keras mapping yet (see spec/formats/onnx.md)")
            try:
                convert(self, node, attributes(node))
            except Unsupported as exc:
                raise self.error(node, str(exc)) from None

    def _constants(self, node) -> dict:
        """The values of the node's constant inputs (initializers load here, when first read)."""
        out = {}
        for x in node.input:
            value = self.values.get(x)
            if callable(value):
                value = self.values[x] = value()
            if value is not None:
                out[x] = value
        return out

    def error(self, node, problem: str) -> ReadError:
        return ReadError(self.path, f"node {node.name!r} ({node.op_type}): {problem}")

    # -- lookups for converters ----------------------------------------------------------------
    def const(self, name: str) -> np.ndarray | None:
        if not name:
            return None
        value = self.values.get(name)
        if callable(value):
            value = self.values[name] = value()
        if value is not None and is_symbolic(value):
            raise Unsupported(f"{name!r} depends on a dynamic dimension")
        return value

    def tensor(self, name: str) -> T:
        t = self.tensors.get(name)
        if t is None:
            if name in self.values:
                raise Unsupported(f"input {name!r} is a constant where a computed tensor is expected")
            raise Unsupported(f"input {name!r} is not available")
        return t

    def shape(self, name: str) -> tuple:
        shape = self.shapes.get(name)
        if shape is None:
            raise Unsupported(f"the shape of {name!r} is not known statically")
        return tuple(d if isinstance(d, int) else None for d in shape)

    def alias(self, out: str, t: T) -> None:
        self.tensors[out] = t
        known = self.shapes.get(out)
        if known is None or len(known) != t.rank or any(k is None for k in known[1:]):
            # what we computed is what later Shape nodes fold (dim 0 is the batch everywhere)
            self.shapes[out] = tuple("N" if i == 0 and d is None else d for i, d in enumerate(t.shape))

    # -- the end ---------------------------------------------------------------------------
    def finish(self) -> tuple[list, list, list]:
        """(layers, input_layers, output_layers) of the functional config."""
        graph = self.src.graph
        input_names = [vi.name for vi in graph.input if vi.name not in self.src.tensors]
        outputs = []
        for out in self.outputs:
            want = self.output_names[out]
            t = self.tensors.get(out)
            if t is None:
                raise ReadError(self.path, f"graph output {out!r} is a constant or not computed (not read)")
            layer = t.record["config"]["keras_history"][0]
            if t.cl and t.rank >= 3:
                t = self.to_onnx_order_named(t, want)
            elif layer != want or want in [o[0] for o in outputs]:
                t = self._identity(t, want)
            outputs.append(t.record["config"]["keras_history"])
        inputs = [self.tensors[n].record["config"]["keras_history"] for n in input_names]
        return _keras_order(self.entries, [i[0] for i in inputs], [o[0] for o in outputs]), inputs, outputs

    def to_onnx_order_named(self, t: T, want: str) -> T:
        self.names.discard(want)
        dims = [t.rank - 1, *range(1, t.rank - 1)]
        return self._named(want, "Permute", {"dims": dims}, t, cl=False)

    def _identity(self, t: T, want: str) -> T:
        if want in {e["name"] for e in self.entries}:
            want = self.unique(want)
        return self._named(want, "Identity", {}, t, cl=t.cl)

    def _named(self, name: str, class_name: str, config: dict, t: T, cl: bool) -> T:
        self.names.add(name)
        self.entries.append({"module": _LAYERS, "class_name": class_name, "registered_name": None,
                             "config": {"name": name, **config}, "name": name,
                             "inbound_nodes": [{"args": [t.record], "kwargs": {}}]})
        return T(self._record(name, t.shape, cl, t.dtype), t.shape, t.dtype, cl)


def _keras_order(entries: list[dict], inputs: list[str], outputs: list[str]) -> list[dict]:
    """The layers in the order Keras 3 lists them when it rebuilds the model (its `map_graph`:
    by depth from the outputs, deepest first, ties in first-visit order of a depth-first walk
    from the outputs). Keras saves weights by position in that list, so the config must
    already be in it. Every layer here is called once."""
    by_name = {e["name"]: e for e in entries}

    def parents(name: str) -> list[str]:
        out: list[str] = []

        def walk(value):
            if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
                out.append(value["config"]["keras_history"][0])
            elif isinstance(value, dict):
                for k in sorted(value):  # tree.flatten visits dict keys sorted
                    walk(value[k])
            elif isinstance(value, list):
                for v in value:
                    walk(v)
        for node in by_name[name]["inbound_nodes"]:
            walk(node["args"])
            walk(node["kwargs"])
        return out

    index: dict[str, int] = {}
    finished: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:  # iterative would be kinder to deep graphs; Keras recurses too
        if name in done:
            return
        index.setdefault(name, len(index))
        for parent in parents(name):
            visit(parent)
        done.add(name)
        finished.append(name)

    for name in outputs:
        visit(name)
    node_depth: dict[str, int] = {}
    depth_of: dict[str, int] = {}
    for name in reversed(finished):
        depth = max(node_depth.setdefault(name, 0), depth_of.get(name, 0))
        depth_of[name] = node_depth[name] = depth
        for parent in parents(name):
            node_depth[parent] = max(depth + 1, node_depth.get(parent, 0))
    for name in inputs:
        if name not in depth_of:
            depth_of[name], index[name] = 0, -1
    order = sorted(depth_of, key=lambda n: (-depth_of[n], index[n]))
    return [by_name[n] for n in order]


# -- converters ----------------------------------------------------------------------------------
def _ints(a: dict, key: str, n: int, default: int) -> list[int]:
    values = a.get(key)
    return [int(v) for v in values] if values else [default] * n


def _same_pads(size: int, k: int, s: int, d: int) -> tuple[int, int]:
    """TensorFlow's `same` padding (the odd one at the end)."""
    out = -(-size // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


def _spatial_pads(g: Graph, node, a: dict, x: T, kernel: list, strides: list, dilations: list):
    """(begins, ends) of explicit padding, auto_pad resolved."""
    n = len(kernel)
    auto = a.get("auto_pad", "NOTSET")
    if auto in ("NOTSET", ""):
        pads = _ints(a, "pads", 2 * n, 0)
        return pads[:n], pads[n:]
    if auto == "VALID":
        return [0] * n, [0] * n
    sizes = g.shape(node.input[0])[2:]
    if any(s is None for s in sizes):
        raise Unsupported(f"auto_pad {auto} on dynamic spatial dimensions")
    pairs = [_same_pads(sz, k, s, d) for sz, k, s, d in zip(sizes, kernel, strides, dilations)]
    if auto == "SAME_LOWER":
        pairs = [(e, b) for b, e in pairs]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _padding(g: Graph, node, x: T, begins, ends, kernel, strides, dilations) -> tuple[T, str]:
    """The input and the Keras `padding` for explicit pads: `valid`, `same` where TensorFlow's
    rule gives these very pads, else a ZeroPadding layer before a `valid` one."""
    if not any(begins) and not any(ends):
        return x, "valid"
    sizes = x.shape[2:]
    if all(isinstance(s, int) for s in sizes) and all(
            _same_pads(sz, k, s, d) == (b, e) for sz, k, s, d, b, e in zip(sizes, kernel, strides, dilations, begins, ends)):
        return x, "same"
    if any(p < 0 for p in (*begins, *ends)):
        raise Unsupported("negative pads")
    return _zero_pad(g, node, x, begins, ends), "valid"


def _zero_pad(g: Graph, node, x: T, begins, ends) -> T:
    n = len(begins)
    if n not in (1, 2, 3):
        raise Unsupported(f"padding of {n} spatial dimensions")
    padding = [begins[0], ends[0]] if n == 1 else [[b, e] for b, e in zip(begins, ends)]
    shape = (*x.shape[:2], *[s + b + e if isinstance(s, int) else None for s, b, e in zip(x.shape[2:], begins, ends)])
    return g.layer(node, f"ZeroPadding{n}D", {"padding": padding}, [x], f"{node.output[0]}:pad", shape, cl=True)


def conv(g: Graph, node, a: dict) -> None:
    w = g.const(node.input[1])
    if w is None:
        raise Unsupported("the kernel is computed, not a constant")
    bias = g.const(node.input[2]) if len(node.input) > 2 else None
    n = w.ndim - 2
    if n not in (1, 2, 3):
        raise Unsupported(f"{n}-D convolution")
    kernel = list(w.shape[2:])
    strides, dilations = _ints(a, "strides", n, 1), _ints(a, "dilations", n, 1)
    group = int(a.get("group", 1))
    if any(s > 1 for s in strides) and any(d > 1 for d in dilations):
        raise Unsupported("strides and dilations both above 1 (Keras cannot express it)")
    x = g.to_cl(g.tensor(node.input[0]), node)
    begins, ends = _spatial_pads(g, node, a, x, kernel, strides, dilations)
    x, padding = _padding(g, node, x, begins, ends, kernel, strides, dilations)
    out_channels, in_per_group = w.shape[0], w.shape[1]
    channels = in_per_group * group
    config = {"kernel_size": kernel, "strides": strides, "padding": padding, "dilation_rate": dilations,
              "use_bias": bias is not None, "activation": "linear"}
    spatial = list(range(2, 2 + n))
    if group > 1 and group == channels and in_per_group == 1 and n in (1, 2):
        multiplier = out_channels // channels
        kernel_value = w.reshape(channels, multiplier, *kernel).transpose(*spatial, 0, 1)
        class_name = f"DepthwiseConv{n}D"
        config["depth_multiplier"] = multiplier
    else:
        kernel_value = w.transpose(*spatial, 1, 0)
        class_name = f"Conv{n}D"
        config.update(filters=out_channels, groups=group)
    weights = [kernel_value] + ([bias] if bias is not None else [])
    sizes = [None if sz is None else (-(-sz // s) if padding == "same" else (sz - d * (k - 1) - 1) // s + 1)
             for sz, k, s, d in zip(x.shape[2:], kernel, strides, dilations)]
    g.layer(node, class_name, config, [x], node.output[0], (x.shape[0], out_channels, *sizes), cl=True,
            weights=weights)


def gemm(g: Graph, node, a: dict) -> None:
    if a.get("transA", 0):
        raise Unsupported("transA=1")
    w = g.const(node.input[1])
    if w is None:
        raise Unsupported("the weight matrix is computed, not a constant")
    x = g.tensor(node.input[0])
    kernel = (w.T if a.get("transB", 0) else w) * np.float32(a.get("alpha", 1.0))
    c = g.const(node.input[2]) if len(node.input) > 2 else None
    bias = None
    if c is not None:
        if c.size not in (1, kernel.shape[1]) or (c.ndim == 2 and c.shape[0] != 1):
            raise Unsupported(f"bias of shape {list(c.shape)} (not one per output unit)")
        bias = np.broadcast_to(c.reshape(-1), (kernel.shape[1],)) * np.float32(a.get("beta", 1.0))
    _dense(g, node, x, kernel.astype(w.dtype), bias, node.output[0])


def _dense(g: Graph, node, x: T, kernel: np.ndarray, bias, out: str) -> None:
    x = _flat_order(g, node, x)
    weights = [kernel] + ([np.ascontiguousarray(bias).astype(kernel.dtype)] if bias is not None else [])
    g.layer(node, "Dense", {"units": int(kernel.shape[1]), "activation": "linear", "use_bias": bias is not None},
            [x], out, (*x.shape[:-1], int(kernel.shape[1])), weights=weights)


def matmul(g: Graph, node, a: dict) -> None:
    w = g.const(node.input[1])
    if w is None or w.ndim != 2:
        x, y = g.tensor(node.input[0]), g.tensor(node.input[1])
        g.layer(node, "Matmul", {}, [_flat_order(g, node, x), _flat_order(g, node, y)], node.output[0],
                g.shape(node.output[0]), module="keras.src.ops.numpy")
        return
    x = g.tensor(node.input[0])
    out, bias = node.output[0], None
    users = g.consumers.get(out, [])
    if len(users) == 1 and users[0].op_type == "Add" and out not in g.outputs:  # MatMul + Add → Dense with bias
        add = users[0]
        other = add.input[1] if add.input[0] == out else add.input[0]
        b = g.values.get(other)
        b = b() if callable(b) else b
        if b is not None and not is_symbolic(b) and b.size == w.shape[1] and b.shape[-1] == w.shape[1]:
            bias, out = b.reshape(-1), add.output[0]
            g.skip.add(id(add))
    _dense(g, node, x, w, bias, out)


def _flat_order(g: Graph, node, x: T) -> T:
    """The tensor in ONNX's order, for ops that read axes by position (Dense, Reshape...)."""
    return g.to_onnx_order(x, node)


def batch_norm(g: Graph, node, a: dict) -> None:
    if any(o for o in node.output[1:]) and any(g.consumers.get(o) for o in node.output[1:] if o):
        raise Unsupported("training-mode outputs are used")
    gamma, beta, mean, var = (g.const(n) for n in node.input[1:5])
    if any(v is None for v in (gamma, beta, mean, var)):
        raise Unsupported("statistics or scale are computed, not constants")
    x = g.tensor(node.input[0])
    axis = _keras_axis(x, 1)
    g.layer(node, "BatchNormalization", {"axis": axis, "epsilon": float(a.get("epsilon", 1e-5)), "center": True,
                                         "scale": True}, [x], node.output[0], x.shape, cl=x.cl,
            weights=[gamma, beta, mean, var])


def _keras_axis(x: T, axis: int) -> int:
    axis %= x.rank
    return _perm_cl(x.rank).index(axis) if x.cl and x.rank >= 3 else axis


def _activation(name: str):
    def convert(g: Graph, node, a: dict) -> None:
        x = g.tensor(node.input[0])
        g.layer(node, "Activation", {"activation": name}, [x], node.output[0], x.shape, cl=x.cl)
    return convert


def leaky_relu(g: Graph, node, a: dict) -> None:
    x = g.tensor(node.input[0])
    g.layer(node, "LeakyReLU", {"negative_slope": float(a.get("alpha", 0.01))}, [x], node.output[0], x.shape, cl=x.cl)


def elu(g: Graph, node, a: dict) -> None:
    x = g.tensor(node.input[0])
    alpha = float(a.get("alpha", 1.0))
    if alpha == 1.0:
        g.layer(node, "Activation", {"activation": "elu"}, [x], node.output[0], x.shape, cl=x.cl)
    else:
        g.layer(node, "ELU", {"alpha": alpha}, [x], node.output[0], x.shape, cl=x.cl)


def hard_sigmoid(g: Graph, node, a: dict) -> None:
    alpha, beta = float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))
    if not (abs(alpha - 1 / 6) < 1e-6 and beta == 0.5):
        raise Unsupported(f"alpha={alpha}, beta={beta} (Keras' hard_sigmoid is x/6 + 1/2)")
    _activation("hard_sigmoid")(g, node, a)


def gelu(g: Graph, node, a: dict) -> None:
    if a.get("approximate", "none") != "none":
        raise Unsupported("approximate GELU")
    _activation("gelu")(g, node, a)


def softmax(g: Graph, node, a: dict) -> None:
    x = g.tensor(node.input[0])
    axis = int(a.get("axis", -1 if g.opset >= 13 else 1)) % x.rank
    if g.opset < 13 and axis != x.rank - 1:  # before opset 13 Softmax flattens from `axis` on
        raise Unsupported(f"opset {g.opset} Softmax over axes {axis}.. of a rank-{x.rank} tensor")
    g.layer(node, "Softmax", {"axis": _keras_axis(x, axis)}, [x], node.output[0], x.shape, cl=x.cl)


def clip(g: Graph, node, a: dict) -> None:
    x = g.tensor(node.input[0])
    if g.opset < 11:
        low, high = a.get("min"), a.get("max")
    else:
        low = g.const(node.input[1]) if len(node.input) > 1 and node.input[1] else None
        high = g.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if (len(node.input) > 1 and node.input[1] and low is None) or (len(node.input) > 2 and node.input[2] and high is None):
            raise Unsupported("computed bounds")
    low = None if low is None else float(np.asarray(low).reshape(-1)[0])
    high = None if high is None else float(np.asarray(high).reshape(-1)[0])
    if low == 0.0:
        config = {"max_value": high} if high is not None else {}
        g.layer(node, "ReLU", config, [x], node.output[0], x.shape, cl=x.cl)
        return
    g.layer(node, "Clip", {"x_min": -_F32_MAX if low is None else low, "x_max": _F32_MAX if high is None else high},
            [x], node.output[0], x.shape, cl=x.cl, module="keras.src.ops.numpy")


def _unary_op(class_name: str, module: str = "keras.src.ops.numpy"):
    def convert(g: Graph, node, a: dict) -> None:
        x = g.tensor(node.input[0])
        g.layer(node, class_name, {}, [x], node.output[0], x.shape, cl=x.cl, module=module)
    return convert


def _pool(kind: str):
    def convert(g: Graph, node, a: dict) -> None:
        kernel = [int(k) for k in a["kernel_shape"]]
        n = len(kernel)
        if n not in (1, 2, 3):
            raise Unsupported(f"{n}-D pooling")
        strides, dilations = _ints(a, "strides", n, 1), _ints(a, "dilations", n, 1)
        if any(d != 1 for d in dilations):
            raise Unsupported("dilated pooling")
        if len([o for o in node.output if o]) > 1:
            raise Unsupported("the Indices output")
        x = g.to_cl(g.tensor(node.input[0]), node)
        sizes = x.shape[2:]
        if any(not isinstance(s, int) for s in sizes):
            raise Unsupported("dynamic spatial dimensions")
        begins, ends = _spatial_pads(g, node, a, x, kernel, strides, dilations)
        outs = []
        for sz, k, s, b, e in zip(sizes, kernel, strides, begins, ends):
            span = sz + b + e - k
            o = (-(-span // s) if a.get("ceil_mode") else span // s) + 1
            if a.get("ceil_mode") and (o - 1) * s >= sz + b:  # the last window must start inside
                o -= 1
            outs.append(o)
        out_shape = (*x.shape[:2], *outs)
        # The end padding actually read (ceil_mode may read past the declared pads, floor less).
        used = [(o - 1) * s + k - sz - b for o, s, k, sz, b in zip(outs, strides, kernel, sizes, begins)]
        ends = [max(u, 0) for u in used]
        valid = [(sz - k) // s + 1 for sz, k, s in zip(sizes, kernel, strides)]
        same = [_same_pads(sz, k, s, 1) for sz, k, s in zip(sizes, kernel, strides)]
        include_pad = kind == "Average" and a.get("count_include_pad", 0)
        if not any(begins) and list(outs) == valid:
            padding = "valid"
        elif [(b, e) for b, e in zip(begins, ends)] == same and list(outs) == [-(-sz // s) for sz, s in zip(sizes, strides)] \
                and not include_pad:
            padding = "same"
        elif kind == "Max":
            padded = (*x.shape[:2], *[sz + b + e for sz, b, e in zip(sizes, begins, ends)])
            width = [[0, 0], *[[b, e] for b, e in zip(begins, ends)], [0, 0]]
            x = g.layer(node, "Pad", {"pad_width": width, "mode": "constant"}, [x], f"{node.output[0]}:pad", padded,
                        cl=True, module="keras.src.ops.numpy", kwargs={"constant_values": -_F32_MAX})
            padding = "valid"
        elif include_pad and ends == [e for e in _ints(a, "pads", 2 * n, 0)[n:]]:
            x, padding = _zero_pad(g, node, x, begins, ends), "valid"
        else:
            raise Unsupported("these pads with count_include_pad=0 (or ceil_mode) have no Keras equivalent")
        g.layer(node, f"{kind}Pooling{n}D", {"pool_size": kernel, "strides": strides, "padding": padding}, [x],
                node.output[0], out_shape, cl=True)
    return convert


def _global_pool(kind: str):
    def convert(g: Graph, node, a: dict) -> None:
        x = g.tensor(node.input[0])
        n = x.rank - 2
        if n not in (1, 2, 3):
            raise Unsupported(f"rank {x.rank}")
        x = g.to_cl(x, node)
        g.layer(node, f"Global{kind}Pooling{n}D", {"keepdims": True}, [x], node.output[0],
                (*x.shape[:2], *[1] * n), cl=True)
    return convert


def _reduce(kind: str, op: str):
    def convert(g: Graph, node, a: dict) -> None:
        x = g.tensor(node.input[0])
        if len(node.input) > 1 and node.input[1]:  # axes became an input (opset 18; ReduceSum 13)
            axes = g.const(node.input[1])
            if axes is None:
                raise Unsupported("computed axes")
            axes = [int(v) for v in axes.reshape(-1)]
        else:
            axes = a.get("axes")
        if not axes:
            raise Unsupported("a reduction over every axis (the batch included)")
        axes = sorted(ax % x.rank for ax in axes)
        if 0 in axes:
            raise Unsupported("a reduction over the batch axis")
        keep = bool(a.get("keepdims", 1))
        out_shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape)) if keep else \
            tuple(d for i, d in enumerate(x.shape) if i not in axes)
        if kind and x.rank >= 3 and axes == list(range(2, x.rank)):  # global pooling
            x = g.to_cl(x, node)
            g.layer(node, f"Global{kind}Pooling{x.rank - 2}D", {"keepdims": keep}, [x], node.output[0], out_shape,
                    cl=keep)
            return
        g.layer(node, op, {"axis": [_keras_axis(x, ax) for ax in axes], "keepdims": keep}, [x], node.output[0],
                out_shape, cl=x.cl and keep, module="keras.src.ops.numpy")
    return convert


def flatten(g: Graph, node, a: dict) -> None:
    x = g.tensor(node.input[0])
    axis = int(a.get("axis", 1)) % max(x.rank, 1)
    if axis != 1:
        raise Unsupported(f"axis {axis} (only the batch axis is kept apart)")
    if x.rank == 2:
        g.alias(node.output[0], x)
        return
    if not x.trivial:
        x = g.to_onnx_order(x, node)
    rest = x.shape[1:]
    g.layer(node, "Flatten", {}, [x], node.output[0],
            (x.shape[0], math.prod(rest) if all(isinstance(d, int) for d in rest) else None))


def reshape(g: Graph, node, a: dict) -> None:
    x = g.tensor(node.input[0])
    if g.opset < 5:
        raise Unsupported("opset < 5")
    target = g.values.get(node.input[1])
    if target is None:
        raise Unsupported("the target shape is computed at run time")
    _reshape_to(g, node, x, list(target), node.output[0])


def _reshape_to(g: Graph, node, x: T, target: list, out: str) -> None:
    in_shape = x.shape
    out_shape = g.shapes.get(out)
    first = target[0]
    batch_kept = (first == 0 or (isinstance(first, str) and first == (g.shapes.get(node.input[0]) or [None])[0])
                  or (in_shape[0] is not None and first == in_shape[0]))
    rest = [in_shape[i + 1] if d == 0 else d for i, d in enumerate(target[1:])]
    batch_kept = batch_kept or first == "N"
    if first == -1 and all(isinstance(d, int) and d > 0 for d in rest) and all(isinstance(d, int) for d in in_shape[1:]):
        batch_kept = math.prod(rest) == math.prod(in_shape[1:])
    if not batch_kept or any(not isinstance(d, int) for d in rest):
        raise Unsupported(f"target {[str(d) for d in target]} does not keep the batch dimension apart")
    if -1 in rest and all(isinstance(d, int) for d in in_shape[1:]):
        known = math.prod(d for d in rest if d != -1)
        rest = [math.prod(in_shape[1:]) // known if d == -1 else d for d in rest]
    elif out_shape is not None and all(isinstance(d, int) for d in out_shape[1:]):
        rest = list(out_shape[1:])
    if not x.trivial:
        x = g.to_onnx_order(x, node)
    shape = (x.shape[0], *[d if d != -1 else None for d in rest])
    if list(in_shape[1:]) == rest:
        g.alias(out, T(x.record, shape, x.dtype, False) if x.cl else x)
        return
    g.layer(node, "Reshape", {"target_shape": [int(d) for d in rest]}, [x], out, shape)


def transpose(g: Graph, node, a: dict) -> None:
    x = g.tensor(node.input[0])
    perm = [int(p) for p in a.get("perm", list(range(x.rank))[::-1])]
    if perm[0] != 0:
        raise Unsupported(f"perm {perm} moves the batch axis")
    out_shape = tuple(x.shape[p] for p in perm)
    held = _perm_cl(x.rank) if x.cl and x.rank >= 3 else list(range(x.rank))  # Keras axis i = ONNX axis held[i]
    inverse = [held.index(i) for i in range(x.rank)]
    as_is = [inverse[p] for p in perm]  # output in ONNX order, from the Keras tensor
    if as_is == list(range(x.rank)):
        g.alias(node.output[0], T(x.record, out_shape, x.dtype, False))
        return
    if x.rank >= 3:
        as_cl = [as_is[i] for i in _perm_cl(x.rank)]
        if as_cl == list(range(x.rank)):  # the output, channels-last, is what the Keras tensor holds
            g.alias(node.output[0], T(x.record, out_shape, x.dtype, True))
            return
    g.layer(node, "Permute", {"dims": as_is[1:]}, [x], node.output[0], out_shape)


def squeeze_unsqueeze(g: Graph, node, a: dict) -> None:
    x = g.tensor(node.input[0])
    if len(node.input) > 1 and node.input[1]:
        axes = g.const(node.input[1])
        if axes is None:
            raise Unsupported("computed axes")
        axes = [int(v) for v in axes.reshape(-1)]
    else:
        axes = a.get("axes")
    if axes is None and node.op_type == "Squeeze":
        axes = [i for i, d in enumerate(x.shape) if d == 1]
    rank = x.rank + len(axes) if node.op_type == "Unsqueeze" else x.rank
    axes = sorted(ax % rank for ax in axes)
    if 0 in axes:
        raise Unsupported("the batch axis is squeezed or inserted")
    if node.op_type == "Squeeze":
        out_shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
    else:
        out_shape = list(x.shape)
        for ax in axes:
            out_shape.insert(ax, 1)
    if any(d is None for d in out_shape[1:]):
        raise Unsupported("dynamic dimensions")
    _reshape_to(g, node, x, [0, *out_shape[1:]], node.output[0])


def identity(g: Graph, node, a: dict) -> None:
    if node.op_type == "Dropout" and len(node.output) > 1 and node.output[1] and g.consumers.get(node.output[1]):
        raise Unsupported("the mask output is used")
    g.alias(node.output[0], g.tensor(node.input[0]))


def cast(g: Graph, node, a: dict) -> None:
    x = g.tensor(node.input[0])
    if DTYPES.get(a.get("to")) != x.dtype:
        raise Unsupported(f"cast to ONNX type {a.get('to')} (only no-op casts are read)")
    g.alias(node.output[0], x)


_MERGE = {"Add": "Add", "Sub": "Subtract", "Mul": "Multiply"}
_OPS = {"Add": "Add", "Sub": "Subtract", "Mul": "Multiply", "Div": "Divide", "Pow": "Power", "Max": "Maximum",
        "Min": "Minimum"}


def binary(g: Graph, node, a: dict) -> None:
    if node.op_type == "Div" and _gelu_pattern(g, node):
        return
    if len(node.input) != 2:
        raise Unsupported(f"{len(node.input)} operands")
    names = list(node.input)
    tensors = [g.tensors.get(n) for n in names]
    out_shape = g.shapes.get(node.output[0])
    out_shape = tuple(d if isinstance(d, int) else None for d in out_shape) if out_shape is not None else None
    if all(t is not None for t in tensors):
        x, y = tensors
        if x.rank == y.rank and (x.cl or y.cl):
            x, y = g.to_cl(x, node), g.to_cl(y, node)
        elif x.rank != y.rank:
            x, y = g.to_onnx_order(x, node), g.to_onnx_order(y, node)
        shape = _broadcast(x.shape, y.shape, out_shape)
        same = x.shape == y.shape and node.op_type in _MERGE
        if same:
            g.layer(node, _MERGE[node.op_type], {}, [[x, y]], node.output[0], shape, cl=x.cl)
        else:
            g.layer(node, _OPS[node.op_type], {}, [x, y], node.output[0], shape, cl=x.cl, module="keras.src.ops.numpy")
        return
    index = 0 if tensors[0] is not None else 1
    x = tensors[index]
    if x is None:
        raise Unsupported("no computed operand")
    c = g.const(names[1 - index])
    if c.ndim > x.rank:
        raise Unsupported("a constant of higher rank than the tensor")
    if c.size == 1:
        operand: Any = c.reshape(()).item()
    else:
        c = c.reshape((1,) * (x.rank - c.ndim) + c.shape)
        if x.cl and x.rank >= 3:
            c = c.transpose(_perm_cl(x.rank))
        operand = {"class_name": "__numpy__", "config": {"value": c.tolist(), "dtype": c.dtype.name}}
    args = [x, operand] if index == 0 else [operand, x]
    shape = _broadcast(x.shape, c.shape if c.size > 1 else (), out_shape)
    g.layer(node, _OPS[node.op_type], {}, args, node.output[0], shape, cl=x.cl, module="keras.src.ops.numpy")


def _broadcast(a: tuple, b: tuple, inferred: tuple | None) -> tuple:
    """Numpy's broadcast of two shapes (None: unknown), completed by what inference found."""
    rank = max(len(a), len(b))
    a, b = (None,) * 0 + (1,) * (rank - len(a)) + tuple(a), (1,) * (rank - len(b)) + tuple(b)
    dims = [x if y == 1 else y if x == 1 else x if x is not None else y for x, y in zip(a, b)]
    if inferred is not None and len(inferred) == rank:
        dims = [d if d is not None else i for d, i in zip(dims, inferred)]
    return tuple(dims)


def _gelu_pattern(g: Graph, div) -> bool:
    """PyTorch's exact GELU below opset 20: x/√2 → Erf → +1 → ·x → ·0.5 (→ one Keras gelu)."""
    c = g.values.get(div.input[1])
    x = g.tensors.get(div.input[0])
    if x is None or c is None or callable(c) or is_symbolic(c) or c.size != 1 or abs(float(c.reshape(-1)[0]) - math.sqrt(2)) > 1e-4:
        return False

    def only_user(name: str, op: str):
        users = g.consumers.get(name, [])
        return users[0] if len(users) == 1 and users[0].op_type == op and name not in g.outputs else None

    def const_of(node, value: float, other: str):
        k = [n for n in node.input if n != other]
        v = g.values.get(k[0]) if len(k) == 1 else None
        return v is not None and not callable(v) and not is_symbolic(v) and v.size == 1 and abs(float(v.reshape(-1)[0]) - value) < 1e-6

    erf = only_user(div.output[0], "Erf")
    add = erf and only_user(erf.output[0], "Add")
    if not add or not const_of(add, 1.0, erf.output[0]):
        return False
    mul = only_user(add.output[0], "Mul")
    if not mul or div.input[0] not in mul.input:
        return False
    half = only_user(mul.output[0], "Mul")
    if not half or not const_of(half, 0.5, mul.output[0]):
        return False
    g.skip.update({id(erf), id(add), id(mul), id(half)})
    g.layer(div, "Activation", {"activation": "gelu"}, [x], half.output[0], x.shape, cl=x.cl)
    return True


def concat(g: Graph, node, a: dict) -> None:
    tensors = [g.tensor(n) for n in node.input if n]
    if len(tensors) == 1:
        g.alias(node.output[0], tensors[0])
        return
    rank = tensors[0].rank
    axis = int(a["axis"]) % rank
    if axis == 0:
        raise Unsupported("concatenation along the batch axis")
    if any(t.cl for t in tensors) and all(t.rank == rank for t in tensors):
        tensors = [g.to_cl(t, node) for t in tensors]
    else:
        tensors = [g.to_onnx_order(t, node) for t in tensors]
    sizes = [t.shape[axis] for t in tensors]
    shape = list(tensors[0].shape)
    shape[axis] = sum(sizes) if all(isinstance(d, int) for d in sizes) else None
    g.layer(node, "Concatenate", {"axis": _keras_axis(tensors[0], axis)}, [tensors], node.output[0],
            tuple(shape), cl=tensors[0].cl)


def pad(g: Graph, node, a: dict) -> None:
    x = g.tensor(node.input[0])
    mode = a.get("mode", "constant")
    if g.opset < 11:
        pads, value = a.get("pads"), a.get("value", 0.0)
    else:
        pads = g.const(node.input[1])
        value = g.const(node.input[2]) if len(node.input) > 2 and node.input[2] else 0.0
        if len(node.input) > 3 and node.input[3]:
            raise Unsupported("the axes input")
    if pads is None or mode != "constant" or float(np.asarray(value).reshape(-1)[0] if np.size(value) else 0) != 0.0:
        raise Unsupported(f"mode {mode!r} or a non-zero value (only zero padding is read)")
    pads = [int(p) for p in np.asarray(pads).reshape(-1)]
    r = x.rank
    begins, ends = pads[:r], pads[r:]
    if begins[:2] != [0, 0] or ends[:2] != [0, 0] or r < 3:
        raise Unsupported("padding of the batch or channel axis")
    if any(p < 0 for p in pads):
        raise Unsupported("negative pads (cropping)")
    x = g.to_cl(x, node)
    n = r - 2
    padding = [begins[2], ends[2]] if n == 1 else [[b, e] for b, e in zip(begins[2:], ends[2:])]
    shape = (*x.shape[:2], *[None if d is None else d + b + e for d, b, e in zip(x.shape[2:], begins[2:], ends[2:])])
    g.layer(node, f"ZeroPadding{n}D", {"padding": padding}, [x], node.output[0], shape, cl=True)


def _resize_scales(g: Graph, node, a: dict, x: T) -> list[float]:
    """Per-axis factors from `scales` (an attribute before opset 9, then an input) or `sizes`."""
    if node.op_type == "Upsample" and g.opset < 9:
        return [float(v) for v in a["scales"]]
    index = 1 if node.op_type == "Upsample" or g.opset < 11 else 2
    scales = g.const(node.input[index]) if len(node.input) > index and node.input[index] else None
    if scales is not None and scales.size:
        return [float(v) for v in scales.reshape(-1)]
    sizes = g.const(node.input[3]) if len(node.input) > 3 and node.input[3] else None
    if sizes is None or any(d is None for d in x.shape[1:]):
        raise Unsupported("computed scales or sizes")
    return [1.0] + [float(o) / i for o, i in zip(sizes.reshape(-1)[1:], x.shape[1:])]


def resize(g: Graph, node, a: dict) -> None:
    x = g.tensor(node.input[0])
    mode = a.get("mode", "nearest")
    if mode != "nearest":
        raise Unsupported(f"mode {mode!r} (only nearest is read)")
    if node.op_type == "Resize" and g.opset >= 11:
        ctm = a.get("coordinate_transformation_mode", "half_pixel")
        nearest = a.get("nearest_mode", "round_prefer_floor")
        if (ctm, nearest) != ("asymmetric", "floor"):
            raise Unsupported(f"coordinate_transformation_mode {ctm!r} with nearest_mode {nearest!r}")
    scales = _resize_scales(g, node, a, x)
    if scales[1] != 1 or any(s != int(s) or s < 1 for s in scales[2:]):
        raise Unsupported(f"scales {scales[1:]} (only whole spatial factors are read)")
    n = x.rank - 2
    if n not in (1, 2, 3):
        raise Unsupported(f"rank {x.rank}")
    x = g.to_cl(x, node)
    size = [int(s) for s in scales[2:]]
    config = {"size": size[0]} if n == 1 else {"size": size}
    if n == 2:
        config["interpolation"] = "nearest"
    out_shape = (*x.shape[:2], *[None if d is None else d * s for d, s in zip(x.shape[2:], size)])
    g.layer(node, f"UpSampling{n}D", config, [x], node.output[0], out_shape, cl=True)


CONVERTERS = {
    "Conv": conv, "Gemm": gemm, "MatMul": matmul, "BatchNormalization": batch_norm,
    "Relu": _activation("relu"), "Sigmoid": _activation("sigmoid"), "Tanh": _activation("tanh"),
    "Softplus": _activation("softplus"), "Softsign": _activation("softsign"), "Selu": _activation("selu"),
    "HardSwish": _activation("hard_silu"), "LeakyRelu": leaky_relu, "Elu": elu, "HardSigmoid": hard_sigmoid,
    "Gelu": gelu, "Softmax": softmax, "Clip": clip,
    "Erf": _unary_op("Erf", "keras.src.ops.math"), "Exp": _unary_op("Exp"), "Log": _unary_op("Log"),
    "Sqrt": _unary_op("Sqrt"), "Abs": _unary_op("Absolute"), "Neg": _unary_op("Negative"),
    "Reciprocal": _unary_op("Reciprocal"), "Floor": _unary_op("Floor"), "Ceil": _unary_op("Ceil"),
    "MaxPool": _pool("Max"), "AveragePool": _pool("Average"),
    "GlobalAveragePool": _global_pool("Average"), "GlobalMaxPool": _global_pool("Max"),
    "ReduceMean": _reduce("Average", "Mean"), "ReduceMax": _reduce("Max", "Max"), "ReduceSum": _reduce("", "Sum"),
    "Flatten": flatten, "Reshape": reshape, "Transpose": transpose, "Squeeze": squeeze_unsqueeze,
    "Unsqueeze": squeeze_unsqueeze, "Identity": identity, "Dropout": identity, "Cast": cast,
    "Add": binary, "Sub": binary, "Mul": binary, "Div": binary, "Pow": binary, "Max": binary, "Min": binary,
    "Concat": concat, "Pad": pad, "Resize": resize, "Upsample": resize,
}
