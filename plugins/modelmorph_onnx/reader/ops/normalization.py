"""BatchNormalization (inference form) → BatchNormalization; LayerNormalization, and the
decomposed form older exporters write, → LayerNormalization."""

from __future__ import annotations

import numpy as np

from ..fold import is_symbolic
from ..graph import Graph, T, Unsupported
from ..load import attributes
from .common import keras_axis


def batch_norm(g: Graph, node, a: dict) -> None:
    if any(o for o in node.output[1:]) and any(g.consumers.get(o) for o in node.output[1:] if o):
        raise Unsupported("training-mode outputs are used")
    gamma, beta, mean, var = (g.const(n) for n in node.input[1:5])
    if any(v is None for v in (gamma, beta, mean, var)):
        raise Unsupported("statistics or scale are computed, not constants")
    x = g.tensor(node.input[0])
    axis = keras_axis(x, 1)
    g.layer(node, "BatchNormalization", {"axis": axis, "epsilon": float(a.get("epsilon", 1e-5)), "center": True,
                                         "scale": True}, [x], node.output[0], x.shape, cl=x.cl,
            weights=[gamma, beta, mean, var])


def layer_norm(g: Graph, node, a: dict) -> None:
    """LayerNormalization (opset 17) → LayerNormalization over the axes from ``axis`` on."""
    if int(a.get("stash_type", 1)) != 1:
        raise Unsupported("stash_type other than float32")
    x = g.tensor(node.input[0])
    if x.dtype != "float32":
        raise Unsupported(f"{x.dtype} input (Keras' LayerNormalization computes in float32 here)")
    scale = g.const(node.input[1])
    bias = g.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if scale is None or (len(node.input) > 2 and node.input[2] and bias is None):
        raise Unsupported("a computed scale or bias")
    axis, epsilon = int(a.get("axis", -1)), float(a.get("epsilon", 1e-5))
    _layer_norm(g, node, x, axis, epsilon, scale, bias, node.output[0])
    stats = [o if o and (g.consumers.get(o) or o in g.outputs) else "" for o in node.output[1:3]]
    if any(stats):  # the statistics too (not Keras' layer's): keras.ops mean and 1/√(var + ε)
        x = g.to_onnx_order(x, node)
        axes = list(range(axis % x.rank, x.rank))
        shape = tuple(d if i < axes[0] else 1 for i, d in enumerate(x.shape))
        if len(stats) > 0 and stats[0]:
            g.layer(node, "Mean", {"axis": axes, "keepdims": True}, [x], stats[0], shape, module=_NUMPY)
        if len(stats) > 1 and stats[1]:
            var = g.layer(node, "Var", {"axis": axes, "keepdims": True}, [x], f"{stats[1]}:var", shape, module=_NUMPY)
            var = g.layer(node, "Add", {}, [var, epsilon], f"{stats[1]}:eps", shape, module=_NUMPY)
            g.layer(node, "Rsqrt", {}, [var], stats[1], shape, module="keras.src.ops.math")


_NUMPY = "keras.src.ops.numpy"


def _layer_norm(g: Graph, node, x: T, axis: int, epsilon: float, scale, bias, out: str) -> None:
    axis %= x.rank
    if axis == 0:
        raise Unsupported("normalization over the batch axis")
    axes = list(range(axis, x.rank))
    shape = tuple(x.shape[axis:])
    if any(not isinstance(d, int) for d in shape):
        raise Unsupported("normalized dimensions of unknown size")
    if x.cl and x.rank >= 3 and not x.trivial:
        x = g.to_onnx_order(x, node)  # the normalized axes as ONNX counts them
    def full(value) -> np.ndarray:  # γ/β over the normalized axes (leading 1s dropped, broadcast)
        value = np.asarray(value, np.float32)
        if value.ndim > len(shape):
            if any(d != 1 for d in value.shape[:value.ndim - len(shape)]):
                raise Unsupported(f"scale or bias of shape {list(value.shape)} for normalized axes {list(shape)}")
            value = value.reshape(value.shape[value.ndim - len(shape):])
        try:
            return np.broadcast_to(value, shape).copy()
        except ValueError:
            raise Unsupported(f"scale or bias of shape {list(value.shape)} for normalized axes {list(shape)}") from None

    weights = [full(scale)] + ([full(bias)] if bias is not None else [])
    config = {"axis": axes[0] if len(axes) == 1 else axes, "epsilon": epsilon, "center": bias is not None,
              "scale": True}
    g.layer(node, "LayerNormalization", config, [x], out, x.shape, cl=x.cl and x.trivial and x.rank < 3,
            weights=weights)


def layer_norm_pattern(inner):
    """ReduceMean's converter, first trying the decomposed LayerNorm older exporters emit:
    ReduceMean → Sub → Pow 2 → ReduceMean → Add ε → Sqrt → Div (→ Mul γ → Add β), over trailing
    axes, every intermediate read by the next step only → one LayerNormalization."""
    def convert(g: Graph, node, a: dict) -> None:
        if not _try_layer_norm(g, node, a):
            inner(g, node, a)
    return convert


def _scalar(g: Graph, name: str) -> float | None:
    value = _value(g, name)
    return float(value.reshape(-1)[0]) if value is not None and value.size == 1 else None


def _value(g: Graph, name: str):
    value = g.values.get(name)
    if value is None:  # a Constant node the walk has not reached yet
        producer = next((n for n in g.src.graph.node if name in n.output), None)
        if producer is None or producer.op_type != "Constant":
            return None
        from ..fold import run_fold

        value = g.values[name] = run_fold(g.path, producer, {}, g.shapes, g.opset)[0]
    if callable(value):
        value = g.load(name)
    return None if is_symbolic(value) else np.asarray(value)


def _reduce_axes(g: Graph, node, a: dict) -> list[int] | None:
    if len(node.input) > 1 and node.input[1]:
        axes = _value(g, node.input[1])
        return None if axes is None else [int(v) for v in axes.reshape(-1)]
    return a.get("axes")


def _try_layer_norm(g: Graph, rm1, a: dict) -> bool:
    x = g.tensors.get(rm1.input[0])
    if x is None or not a.get("keepdims", 1):
        return False

    def sole(name: str, op: str):
        users = g.consumers.get(name, [])
        return users[0] if len(users) == 1 and users[0].op_type == op and name not in g.outputs else None

    axes = _reduce_axes(g, rm1, a)
    if not axes:
        return False
    axes = sorted(ax % x.rank for ax in axes)
    if axes != list(range(axes[0], x.rank)) or axes[0] == 0:
        return False
    sub = sole(rm1.output[0], "Sub")
    if sub is None or list(sub.input) != [rm1.input[0], rm1.output[0]]:
        return False
    users = g.consumers.get(sub.output[0], [])
    if len(users) != 2 or sub.output[0] in g.outputs:
        return False
    pow_ = next((u for u in users if u.op_type == "Pow" and u.input[0] == sub.output[0]), None)
    div = next((u for u in users if u.op_type == "Div" and u.input[0] == sub.output[0]), None)
    if pow_ is None or div is None or _scalar(g, pow_.input[1]) != 2.0:
        return False
    rm2 = sole(pow_.output[0], "ReduceMean")
    if rm2 is None or not attributes(rm2).get("keepdims", 1):
        return False
    axes2 = _reduce_axes(g, rm2, attributes(rm2))
    if axes2 is None or sorted(ax % x.rank for ax in axes2) != axes:
        return False
    add = sole(rm2.output[0], "Add")
    eps_name = add and next((i for i in add.input if i != rm2.output[0]), None)
    epsilon = _scalar(g, eps_name) if eps_name and list(add.input).count(rm2.output[0]) == 1 else None
    if epsilon is None or epsilon < 0:
        return False
    sqrt = sole(add.output[0], "Sqrt")
    if sqrt is None or sole(sqrt.output[0], "Div") is not div or div.input[1] != sqrt.output[0]:
        return False
    done, out = [sub, pow_, rm2, add, sqrt, div], div.output[0]
    scale, bias = np.float32(1.0), None
    shape = tuple(x.shape[axes[0]:])
    mul = sole(out, "Mul")
    if mul is not None:
        gamma = _value(g, mul.input[1] if mul.input[0] == out else mul.input[0])
        if gamma is not None and _trailing(gamma, shape, x.rank):
            scale, out = gamma, mul.output[0]
            done.append(mul)
            plus = sole(out, "Add")
            beta = plus and _value(g, plus.input[1] if plus.input[0] == out else plus.input[0])
            if beta is not None and _trailing(beta, shape, x.rank):
                bias, out = beta, plus.output[0]
                done.append(plus)
    g.skip.update(id(n) for n in done)
    _layer_norm(g, rm1, x, axes[0], epsilon, scale, bias, out)
    return True


def _trailing(value: np.ndarray, shape: tuple, rank: int) -> bool:
    """``value`` (γ or β) broadcasts over the normalized axes ``shape`` only: its leading dims all
    1, its rank at most the tensor's (so the result keeps the tensor's shape)."""
    lead = max(value.ndim - len(shape), 0)
    if value.ndim > rank or any(d != 1 for d in value.shape[:lead]):
        return False
    try:
        return np.broadcast_shapes(value.shape[lead:], shape) == shape
    except ValueError:
        return False
