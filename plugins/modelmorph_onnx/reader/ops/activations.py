"""Activations → Activation layers, the parametrised ones → their layers; unary maths → keras.ops."""

from __future__ import annotations

import numpy as np

from ..graph import Graph, Unsupported
from .common import F32_MAX, keras_axis


def activation(name: str):
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
    activation("hard_sigmoid")(g, node, a)


def gelu(g: Graph, node, a: dict) -> None:
    if a.get("approximate", "none") != "none":
        raise Unsupported("approximate GELU")
    activation("gelu")(g, node, a)


def softmax(g: Graph, node, a: dict) -> None:
    x = g.tensor(node.input[0])
    axis = int(a.get("axis", -1 if g.opset >= 13 else 1)) % x.rank
    if g.opset < 13 and axis != x.rank - 1:  # before opset 13 Softmax flattens from `axis` on
        raise Unsupported(f"opset {g.opset} Softmax over axes {axis}.. of a rank-{x.rank} tensor")
    g.layer(node, "Softmax", {"axis": keras_axis(x, axis)}, [x], node.output[0], x.shape, cl=x.cl)


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
    g.layer(node, "Clip", {"x_min": -F32_MAX if low is None else low, "x_max": F32_MAX if high is None else high},
            [x], node.output[0], x.shape, cl=x.cl, module="keras.src.ops.numpy")


def unary_op(class_name: str, module: str = "keras.src.ops.numpy"):
    def convert(g: Graph, node, a: dict) -> None:
        x = g.tensor(node.input[0])
        g.layer(node, class_name, {}, [x], node.output[0], x.shape, cl=x.cl, module=module)
    return convert
