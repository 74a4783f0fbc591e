"""Folding small op sequences back into the Keras layer they came from, so that what modelmorph
(or TensorFlow) exported comes back as the same layers: an activation after a Dense or a
convolution → its ``activation``; Relu then Min(c) → ``ReLU(max_value=c)``; a per-channel
Mul then Add of constants (a BatchNormalization folded for inference) → BatchNormalization.

Each ``try_*`` returns True when it mapped the node (and the nodes it absorbed), else False
and the node is mapped on its own. A fusion only happens where the intermediate tensor has
no other reader and is no graph output, so the numbers are those of the ops one by one.
"""

from __future__ import annotations

import numpy as np

from ..graph import Graph, T, Unsupported
from .common import keras_axis

#: Layers whose `activation` argument an activation node may fold into.
WITH_ACTIVATION = frozenset({"Dense", "Conv1D", "Conv2D", "Conv3D", "DepthwiseConv1D", "DepthwiseConv2D",
                             "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"})

#: Keras 3's BatchNormalization default epsilon, with a variance that adds to exactly 1.0 in
#: float32 (so rsqrt(variance + epsilon) is 1: the layer computes gamma * x + beta).
_EPSILON = 1e-3
_ONE_LESS_EPSILON = np.float32(1.0) - np.float32(_EPSILON)


def _const(g: Graph, name: str) -> np.ndarray | None:
    """A constant's value (an initializer loads here), None for a computed or symbolic one."""
    if name not in g.values:
        return None
    try:
        return g.const(name)
    except Unsupported:
        return None


def sole_reader(g: Graph, name: str, node) -> bool:
    """``node`` is the only reader of ONNX tensor ``name`` and of every name sharing its Keras
    tensor, none of them a graph output, and no layer reads that Keras tensor yet."""
    t = g.tensors.get(name)
    if t is None:
        return False
    for n in g.aliases(t):
        users = g.consumers.get(n, [])
        if n in g.outputs or any(u is not node for u in users) or (n == name and len(users) != 1):
            return False
    return g.readers(t.record["config"]["keras_history"][0]) == 0


def try_activation(g: Graph, node, activation: str, axis: int | None = None) -> bool:
    """``activation`` (on ONNX ``axis`` for softmax) folded into the Dense/Conv producing the input."""
    x = g.tensors.get(node.input[0])
    if x is None or x.rows is not None or not sole_reader(g, node.input[0], node):
        return False
    entry = g.entry(x)
    if entry is None or entry["class_name"] not in WITH_ACTIVATION or entry["config"].get("activation") != "linear" \
            or entry["config"].get("dtype") is not None:  # a float16 layer's activation (ops/half.py) stays apart
        return False
    if axis is not None and keras_axis(x, axis) != x.rank - 1:
        return False  # Keras' softmax activation is over the last axis
    entry["config"]["activation"] = activation
    g.alias(node.output[0], x)
    return True


def try_relu_max(g: Graph, node) -> bool:
    """Min(relu(x), c) with a scalar constant c ≥ 0 → ReLU(max_value=c) (Keras' ReLU(6.0))."""
    if node.op_type != "Min" or len(node.input) != 2:
        return False
    for i in (0, 1):
        x, c = g.tensors.get(node.input[i]), _const(g, node.input[1 - i])
        if x is None or c is None or c.size != 1 or float(c.reshape(-1)[0]) < 0:
            continue
        entry = g.entry(x)
        if entry is None or not sole_reader(g, node.input[i], node):
            return False
        relu = (entry["class_name"] == "Activation" and entry["config"].get("activation") == "relu") or \
            (entry["class_name"] == "ReLU" and entry["config"].get("max_value") is None
             and not entry["config"].get("negative_slope") and not entry["config"].get("threshold"))
        if not relu:
            return False
        entry["class_name"] = "ReLU"
        entry["config"] = {"name": entry["config"]["name"], "max_value": float(c.reshape(-1)[0]),
                           "negative_slope": 0.0, "threshold": 0.0}
        g.alias(node.output[0], x)
        return True
    return False


def _per_axis(g: Graph, x: T, name: str) -> tuple[int, np.ndarray] | None:
    """(ONNX axis, values) when constant ``name`` varies along one non-batch axis of ``x`` only."""
    c = _const(g, name)
    if c is None or c.ndim > x.rank or c.dtype.kind != "f" or c.size < 2:
        return None
    shape = (1,) * (x.rank - c.ndim) + c.shape
    axes = [i for i, d in enumerate(shape) if d != 1]
    if len(axes) != 1 or axes[0] == 0 or x.shape[axes[0]] != c.size:
        return None
    return axes[0], c.reshape(-1)


def try_affine(g: Graph, mul) -> bool:
    """Mul(x, scale) then Add(·, shift), both per channel → BatchNormalization (mean 0, variance
    1 - epsilon: the layer computes x * scale + shift)."""
    if mul.op_type != "Mul" or len(mul.input) != 2:
        return False
    users = g.consumers.get(mul.output[0], [])
    if len(users) != 1 or users[0].op_type != "Add" or mul.output[0] in g.outputs:
        return False
    add = users[0]
    i = 0 if mul.input[0] in g.tensors else 1
    x = g.tensors.get(mul.input[i])
    if x is None or x.rows is not None or x.dtype != "float32":
        return False
    scale = _per_axis(g, x, mul.input[1 - i])
    other = add.input[1] if add.input[0] == mul.output[0] else add.input[0]
    shift = _per_axis(g, x, other)
    if scale is None or shift is None or scale[0] != shift[0] or other == mul.output[0]:
        return False
    axis, n = scale[0], scale[1].size
    weights = [scale[1].astype("float32"), shift[1].astype("float32"), np.zeros(n, "float32"),
               np.full(n, _ONE_LESS_EPSILON, "float32")]
    g.skip.add(id(add))
    g.layer(mul, "BatchNormalization", {"axis": keras_axis(x, axis), "epsilon": _EPSILON, "center": True,
                                        "scale": True}, [x], add.output[0], x.shape, cl=x.cl, weights=weights)
    return True


#: ONNX activation ops → the Keras activation a Dense or convolution takes.
ACTIVATIONS = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Softplus": "softplus",
               "Softsign": "softsign", "Selu": "selu", "HardSwish": "hard_silu"}


def fused(op: str, convert):
    """``convert`` preceded by the fusion that may absorb an ``op`` node."""
    def convert_fused(g: Graph, node, a: dict) -> None:
        if op in ACTIVATIONS and not a and try_activation(g, node, ACTIVATIONS[op]):
            return
        if op == "Softmax" and g.tensors.get(node.input[0]) is not None:
            rank = g.tensors[node.input[0]].rank
            axis = int(a.get("axis", -1 if g.opset >= 13 else 1)) % rank
            if (g.opset >= 13 or axis == rank - 1) and try_activation(g, node, "softmax", axis):
                return
        if op == "Mul" and try_affine(g, node):
            return
        if op == "Min" and try_relu_max(g, node):
            return
        convert(g, node, a)
    return convert_fused


FUSED_OPS = (*ACTIVATIONS, "Softmax", "Mul", "Min")
