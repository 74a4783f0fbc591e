"""Activation forms Keras has no layer setting for → keras.ops: tanh-approximate Gelu
(`keras.ops.gelu(approximate=True)`), HardSigmoid with any α, β (clip(αx + β, 0, 1)), Shrink
(hard_shrink when bias is 0, soft_shrink when bias = lambd), IsInf of one sign."""

from __future__ import annotations

from ..graph import Graph, Unsupported


def gelu(inner):
    def convert(g: Graph, node, a: dict) -> None:
        if a.get("approximate", "none") != "tanh":
            return inner(g, node, a)
        x = g.tensor(node.input[0])
        g.layer(node, "Gelu", {"approximate": True}, [x], node.output[0], x.shape, cl=x.cl, module="keras.src.ops.nn")
    return convert


def hard_sigmoid(inner):
    def convert(g: Graph, node, a: dict) -> None:
        alpha, beta = float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))
        if abs(alpha - 1 / 6) < 1e-6 and beta == 0.5:
            return inner(g, node, a)  # Keras' own hard_sigmoid
        x = g.tensor(node.input[0])
        out = node.output[0]
        y = g.layer(node, "Multiply", {}, [x, alpha], f"{out}:a", x.shape, cl=x.cl, module="keras.src.ops.numpy")
        y = g.layer(node, "Add", {}, [y, beta], f"{out}:b", x.shape, cl=x.cl, module="keras.src.ops.numpy")
        g.layer(node, "Clip", {"x_min": 0.0, "x_max": 1.0}, [y], out, x.shape, cl=x.cl, module="keras.src.ops.numpy")
    return convert


def shrink(g: Graph, node, a: dict) -> None:
    lambd, bias = float(a.get("lambd", 0.5)), float(a.get("bias", 0.0))
    x = g.tensor(node.input[0])
    if not x.dtype.startswith("float"):
        raise Unsupported(f"{x.dtype} input")
    if bias == 0.0:
        op = "HardShrink"
    elif bias == lambd:
        op = "SoftShrink"
    else:
        raise Unsupported(f"bias {bias} (Keras has hard_shrink, bias 0, and soft_shrink, bias = lambd)")
    g.layer(node, op, {"threshold": lambd}, [x], node.output[0], x.shape, cl=x.cl, module="keras.src.ops.nn")


def is_inf(g: Graph, node, a: dict) -> None:
    x = g.tensor(node.input[0])
    pos, neg = a.get("detect_positive", 1), a.get("detect_negative", 1)
    out = node.output[0]
    numpy = "keras.src.ops.numpy"
    if pos and neg:
        g.layer(node, "Isinf", {}, [x], out, x.shape, cl=x.cl, module=numpy, dtype="bool")
        return
    if not pos and not neg:
        raise Unsupported("detecting no infinity at all")
    inf = g.layer(node, "Isinf", {}, [x], f"{out}:inf", x.shape, cl=x.cl, module=numpy, dtype="bool")
    sign = g.layer(node, "Greater" if pos else "Less", {}, [x, 0.0], f"{out}:sign", x.shape, cl=x.cl, module=numpy,
                   dtype="bool")
    g.layer(node, "LogicalAnd", {}, [inf, sign], out, x.shape, cl=x.cl, module=numpy, dtype="bool")


def celu(g: Graph, node, a: dict) -> None:
    x = g.tensor(node.input[0])
    g.layer(node, "Celu", {"alpha": float(a.get("alpha", 1.0))}, [x], node.output[0], x.shape, cl=x.cl,
            module="keras.src.ops.nn")


def mish(g: Graph, node, a: dict) -> None:
    x = g.tensor(node.input[0])
    g.layer(node, "Activation", {"activation": "mish"}, [x], node.output[0], x.shape, cl=x.cl)


def thresholded_relu(g: Graph, node, a: dict) -> None:
    """x where x > alpha, else 0: keras.ops.where(x > alpha, x, 0)."""
    x = g.tensor(node.input[0])
    out = node.output[0]
    numpy = "keras.src.ops.numpy"
    above = g.layer(node, "Greater", {}, [x, float(a.get("alpha", 1.0))], f"{out}:above", x.shape, cl=x.cl,
                    module=numpy, dtype="bool")
    g.layer(node, "Where", {}, [above, x, 0.0], out, x.shape, cl=x.cl, module=numpy)


def hardmax(g: Graph, node, a: dict) -> None:
    """1 at the first maximum along the axis (opset ≥ 13), 0 elsewhere: one_hot(argmax)."""
    x = g.tensor(node.input[0])
    if g.opset < 13:
        raise Unsupported("opset < 13 (the input flattened from `axis`)")
    axis = int(a.get("axis", -1)) % x.rank
    if axis == 0:
        raise Unsupported("along the batch axis")
    if x.shape[axis] is None:
        raise Unsupported("an axis of unknown size")
    from .common import keras_axis

    held = keras_axis(x, axis)
    out = node.output[0]
    reduced = tuple(d for i, d in enumerate(x.shape) if i != axis)
    index = g.layer(node, "Argmax", {"axis": held, "keepdims": False}, [x], f"{out}:arg", reduced,
                    module="keras.src.ops.numpy", dtype="int32")
    g.layer(node, "OneHot", {"num_classes": int(x.shape[axis]), "axis": -1 if held == x.rank - 1 else held, "dtype": x.dtype, "sparse": False},
            [index], out, x.shape, cl=x.cl, module="keras.src.ops.nn", dtype=x.dtype)


_SELU = (1.67326319217681884765625, 1.05070102214813232421875)  # ONNX's defaults, Keras' selu constants


def selu(inner):
    """Selu with Keras' constants → the Activation; other α, γ → ELU(α) then · γ."""
    def convert(g: Graph, node, a: dict) -> None:
        alpha, gamma = float(a.get("alpha", _SELU[0])), float(a.get("gamma", _SELU[1]))
        if abs(alpha - _SELU[0]) < 1e-6 and abs(gamma - _SELU[1]) < 1e-6:
            return inner(g, node, a)
        x = g.tensor(node.input[0])
        out = node.output[0]
        y = g.layer(node, "ELU", {"alpha": alpha}, [x], f"{out}:elu", x.shape, cl=x.cl)
        g.layer(node, "Multiply", {}, [y, gamma], out, x.shape, cl=x.cl, module="keras.src.ops.numpy")
    return convert
