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
    return b.like(x, elementwise(b, x.name, name, dialect))


def elementwise(b: Builder, x: str, name: str, dialect: str = "keras3") -> str:
    simple = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "softplus": "Softplus", "softsign": "Softsign",
              "exponential": "Exp", "selu": "Selu", "mish": "Mish"}
    if name in simple:
        return b.op1(simple[name], [x])
    if name == "elu":
        return b.op1("Elu", [x], alpha=1.0)
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
    raise ConversionError(f"the activation {name!r} has no ONNX form here yet")


# -- layers --------------------------------------------------------------------------------------

def activation(call: Call) -> Value:
    return apply(call.b, call.x, call.config.get("activation"), call.dialect)


def relu(call: Call) -> Value:
    b, x, c = call.b, call.x, call.config
    slope = c.get("negative_slope") or 0.0
    threshold = c.get("threshold") or 0.0
    max_value = c.get("max_value")
    if threshold:
        raise call.fail("ReLU with a threshold has no ONNX form here yet")
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
