"""Normalization layers at inference."""

from __future__ import annotations

import numpy as np

from ..builder import Value
from ..export import Call


def _axis(call: Call, x: Value) -> int:
    axis = call.config.get("axis", -1)
    if isinstance(axis, list):
        if len(axis) != 1:
            raise call.fail("normalization over several axes is not exported yet")
        axis = axis[0]
    return int(axis)


def batch_normalization(call: Call) -> Value:
    """Folded into one Mul and one Add (any layout): gamma / sqrt(var + eps), beta - mean * that."""
    b, x, c = call.b, call.x, call.config
    mean, var = call.weight("moving_mean").astype(np.float64), call.weight("moving_variance").astype(np.float64)
    gamma = call.weight("gamma").astype(np.float64) if c.get("scale", True) else np.ones_like(mean)
    beta = call.weight("beta").astype(np.float64) if c.get("center", True) else np.zeros_like(mean)
    scale = gamma / np.sqrt(var + float(c.get("epsilon", 1e-3)))
    shift = beta - mean * scale
    axis = b.physical_axis(x, _axis(call, x))
    shape = [1] * (x.rank - 1)
    shape[axis - 1] = -1  # no batch axis in the constants
    y = b.op1("Mul", [x.name, b.weight(scale.astype(np.float32).reshape(shape), "scale")])
    y = b.op1("Add", [y, b.weight(shift.astype(np.float32).reshape(shape), "shift")])
    return b.like(x, y)


def layer_normalization(call: Call) -> Value:
    b, c = call.b, call.config
    x = b.channels_last(call.x)
    if _axis(call, x) % x.rank != x.rank - 1:
        raise call.fail("LayerNormalization over an axis other than the last is not exported yet")
    if c.get("rms_scaling"):
        raise call.fail("rms_scaling is not exported yet")
    size = x.shape[-1]
    gamma = call.weight("gamma") if c.get("scale", True) else np.ones(size, np.float32)
    beta = call.weight("beta") if c.get("center", True) else np.zeros(size, np.float32)
    epsilon = float(c.get("epsilon", 1e-3))
    if b.opset >= 17:
        y = b.op1("LayerNormalization", [x.name, b.weight(gamma, "gamma"), b.weight(beta, "beta")],
                  axis=-1, epsilon=epsilon)
        return b.like(x, y)
    mean = b.reduce("ReduceMean", x.name, [-1], True)
    centred = b.op1("Sub", [x.name, mean])
    var = b.reduce("ReduceMean", b.op1("Mul", [centred, centred]), [-1], True)
    std = b.op1("Sqrt", [b.op1("Add", [var, b.const(np.float32(epsilon), "epsilon")])])
    y = b.op1("Add", [b.op1("Mul", [b.op1("Div", [centred, std]), b.weight(gamma, "gamma")]), b.weight(beta, "beta")])
    return b.like(x, y)


def rescaling(call: Call) -> Value:
    b, x, c = call.b, call.x, call.config
    scale, offset = c.get("scale", 1.0), c.get("offset", 0.0)
    if not isinstance(scale, (int, float)) or not isinstance(offset, (int, float)):
        raise call.fail("a per-channel scale or offset is not exported yet")
    y = b.op1("Mul", [x.name, b.const(np.float32(scale), "scale")])
    if offset:
        y = b.op1("Add", [y, b.const(np.float32(offset), "offset")])
    return b.like(x, y)


LAYERS = {"BatchNormalization": batch_normalization, "LayerNormalization": layer_normalization,
          "Rescaling": rescaling}
