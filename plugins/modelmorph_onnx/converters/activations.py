"""Activation functions (as Keras names them) and the activation layers."""

from __future__ import annotations

import math

import numpy as np

from ..builder import Builder, ConversionError, Value
from ..export import Call


def _name(activation) -> str:
    if isinstance(activation, dict):  # a serialized function: {"class_name": "function", "config": "relu"}
        activation = activation.get("config") if isinstance(activation.get("config"), str) else activation.get("class_name")
    return str(activation or "linear").lower()


def apply(b: Builder, x: Value, activation, dialect: str = "keras3") -> Value:
    """``activation(x)`` for a Keras activation name; element-wise ones keep ``x``'s layout."""
    name = _name(activation)
    if name in ("linear", "none", ""):
        return x
    if name == "softmax" or name == "log_softmax":
        axis = b.physical_axis(x, -1)
        return b.like(x, b.op1("Softmax" if name == "softmax" else "LogSoftmax", [x.name], axis=axis))
    if name == "glu":  # a * sigmoid(b), the two halves of the last axis
        x = b.channels_last(x)
        halves = b.op("Split", [x.name, b.ints([x.shape[-1] // 2] * 2, "halves")], 2, axis=-1)
        shape = (*x.shape[:-1], x.shape[-1] // 2)
        return Value(b.op1("Mul", [halves[0], b.op1("Sigmoid", [halves[1]])]), shape, x.dtype)
    if name == "sparsemax":
        return _sparsemax(b, b.channels_last(x))
    return b.like(x, elementwise(b, x.name, name, dialect))


def _sparsemax(b: Builder, x: Value) -> Value:
    """Keras' sparsemax over the last axis, step by step as its TensorFlow backend computes it."""
    size = x.shape[-1]
    if size is None:
        raise ConversionError("sparsemax over an axis of unknown size")
    f32 = np.float32
    ordered = b.op("TopK", [x.name, b.ints([size], "k")], 2, axis=-1, largest=1, sorted=1)[0]  # descending
    total = b.op1("CumSum", [ordered, b.const(np.int64(-1), "last_axis")])
    steps = b.const(np.arange(1, size + 1, dtype=f32), "one_to_n")
    excess = b.op1("Div", [b.op1("Sub", [total, b.const(f32(1), "one")]), steps])
    support = b.op1("Greater", [b.op1("Sub", [ordered, excess]), b.const(f32(0), "zero")])
    kept = b.op1("Where", [support, total, b.const(f32(0), "zero")])
    count = b.reduce("ReduceSum", b.op1("Cast", [support], to=1), [-1], True)
    tau = b.op1("Div", [b.op1("Sub", [b.reduce("ReduceSum", kept, [-1], True), b.const(f32(1), "one")]), count])
    return b.like(x, b.op1("Max", [b.op1("Sub", [x.name, tau]), b.const(f32(0), "zero")]))


def elementwise(b: Builder, x: str, name: str, dialect: str = "keras3") -> str:
    simple = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "softplus": "Softplus", "softsign": "Softsign",
              "exponential": "Exp", "selu": "Selu"}
    if name in simple:
        return b.op1(simple[name], [x])
    if name == "elu":
        return b.op1("Elu", [x], alpha=1.0)
    if name == "mish":  # an operator from opset 18: x * tanh(softplus(x)) before
        return b.op1("Mish", [x]) if b.opset >= 18 else b.op1("Mul", [x, b.op1("Tanh", [b.op1("Softplus", [x])])])
    if name == "relu6":
        return b.op1("Clip", [x, b.const(np.float32(0), "zero"), b.const(np.float32(6), "six")])
    if name in ("swish", "silu"):
        return b.op1("Mul", [x, b.op1("Sigmoid", [x])])
    if name == "leaky_relu":
        return b.op1("LeakyRelu", [x], alpha=0.2)  # keras.activations.leaky_relu's default slope
    if name == "hard_sigmoid":
        # Keras 3: relu6(x + 3) / 6; Keras 2: clip(0.2 x + 0.5, 0, 1)
        return b.op1("HardSigmoid", [x], alpha=0.2 if dialect == "keras2" else 1 / 6, beta=0.5)
    if name in ("hard_silu", "hard_swish"):
        return b.op1("Mul", [x, b.op1("HardSigmoid", [x], alpha=1 / 6, beta=0.5)])
    if name == "gelu":  # Keras' gelu defaults to the exact form
        if b.opset >= 20:
            return b.op1("Gelu", [x])
        half = b.op1("Mul", [x, b.const(np.float32(0.5), "half")])
        erf = b.op1("Erf", [b.op1("Mul", [x, b.const(np.float32(1 / math.sqrt(2)), "rsqrt2")])])
        return b.op1("Mul", [half, b.op1("Add", [erf, b.const(np.float32(1), "one")])])
    return _more(b, x, name)


def _more(b: Builder, x: str, name: str) -> str:
    """Keras 3's other activations, as its TensorFlow backend defines them."""
    f32 = np.float32
    if name == "celu":
        return b.op1("Celu", [x], alpha=1.0)
    if name == "hard_tanh":
        return b.op1("Clip", [x, b.const(f32(-1), "minus_one"), b.const(f32(1), "one")])
    if name == "log_sigmoid":  # -softplus(-x)
        return b.op1("Neg", [b.op1("Softplus", [b.op1("Neg", [x])])])
    if name == "tanh_shrink":
        return b.op1("Sub", [x, b.op1("Tanh", [x])])
    if name == "soft_shrink":  # x -/+ 0.5 beyond +/-0.5, else 0
        return b.op1("Shrink", [x], bias=0.5, lambd=0.5)
    if name == "hard_shrink":  # x where |x| > 0.5, else 0
        return b.op1("Where", [b.op1("Greater", [b.op1("Abs", [x]), b.const(f32(0.5), "half")]), x,
                               b.const(f32(0), "zero")])
    if name == "squareplus":  # (x + sqrt(x^2 + 4)) / 2
        root = b.op1("Sqrt", [b.op1("Add", [b.op1("Mul", [x, x]), b.const(f32(4), "four")])])
        return b.op1("Div", [b.op1("Add", [x, root]), b.const(f32(2), "two")])
    if name == "sparse_sigmoid":  # clip((x + 1) / 2, 0, 1)
        half = b.op1("Mul", [b.op1("Add", [x, b.const(f32(1), "one")]), b.const(f32(0.5), "half")])
        return b.op1("Clip", [half, b.const(f32(0), "zero"), b.const(f32(1), "one")])
    if name == "sparse_plus":  # 0 below -1, x from 1, (x + 1)^2 / 4 between
        shifted = b.op1("Add", [x, b.const(f32(1), "one")])
        middle = b.op1("Mul", [b.op1("Mul", [shifted, shifted]), b.const(f32(0.25), "quarter")])
        upper = b.op1("Where", [b.op1("Less", [x, b.const(f32(1), "one")]), middle, x])
        return b.op1("Where", [b.op1("LessOrEqual", [x, b.const(f32(-1), "minus_one")]), b.const(f32(0), "zero"),
                               upper])
    raise ConversionError(f"the activation {name!r} has no ONNX form here yet")


# -- layers --------------------------------------------------------------------------------------

def activation(call: Call) -> Value:
    return apply(call.b, call.x, call.config.get("activation"), call.dialect)


def relu(call: Call) -> Value:
    b, x, c = call.b, call.x, call.config
    slope = c.get("negative_slope") or 0.0
    threshold = c.get("threshold") or 0.0
    max_value = c.get("max_value")
    if threshold:  # Keras: x from the threshold on, else negative_slope * (x - threshold)
        below = b.op1("Mul", [b.op1("Sub", [x.name, b.const(np.float32(threshold), "threshold")]),
                              b.const(np.float32(slope), "negative_slope")])
        out = b.op1("Where", [b.op1("GreaterOrEqual", [x.name, b.const(np.float32(threshold), "threshold")]),
                              x.name, below])
    else:
        out = b.op1("LeakyRelu", [x.name], alpha=float(slope)) if slope else b.op1("Relu", [x.name])
    if max_value is not None:
        out = b.op1("Min", [out, b.const(np.float32(max_value), "max_value")])
    return b.like(x, out)


def leaky_relu(call: Call) -> Value:
    c = call.config
    slope = c.get("negative_slope", c.get("alpha", 0.3))  # Keras 3 negative_slope, tf_keras alpha
    return call.b.like(call.x, call.b.op1("LeakyRelu", [call.x.name], alpha=float(0.3 if slope is None else slope)))


def elu(call: Call) -> Value:
    return call.b.like(call.x, call.b.op1("Elu", [call.x.name], alpha=float(call.config.get("alpha", 1.0))))


def softmax(call: Call) -> Value:
    b, x = call.b, call.x
    axis = call.config.get("axis", -1)
    if not isinstance(axis, int):
        raise call.fail("Softmax over several axes has no ONNX form here yet")
    return b.like(x, b.op1("Softmax", [x.name], axis=b.physical_axis(x, axis)))


def prelu(call: Call) -> Value:
    b = call.b
    x = b.channels_last(call.x)  # alpha broadcasts over Keras' trailing axes
    alpha = call.weight("alpha")
    return b.like(x, b.op1("PRelu", [x.name, b.weight(alpha, "alpha")]))


def thresholded_relu(call: Call) -> Value:
    theta = call.config.get("theta", 1.0)
    return call.b.like(call.x, call.b.op1("ThresholdedRelu", [call.x.name], alpha=float(theta)))


LAYERS = {"Activation": activation, "ReLU": relu, "LeakyReLU": leaky_relu, "ELU": elu, "Softmax": softmax,
          "PReLU": prelu, "ThresholdedReLU": thresholded_relu}
