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
    """Folded into one Mul and one Add (any layout) as TensorFlow folds it, in float32:
    inv = rsqrt(var + eps) * gamma, then x * inv + (beta - mean * inv)."""
    b, x, c = call.b, call.x, call.config
    f32 = np.float32
    mean, var = call.weight("moving_mean").astype(f32), call.weight("moving_variance").astype(f32)
    gamma = call.weight("gamma").astype(f32) if c.get("scale", True) else np.ones_like(mean)
    beta = call.weight("beta").astype(f32) if c.get("center", True) else np.zeros_like(mean)
    scale = (f32(1) / np.sqrt(var + f32(c.get("epsilon", 1e-3)))) * gamma
    shift = beta - mean * scale
    axis = b.physical_axis(x, _axis(call, x))
    shape = [1] * (x.rank - 1)
    shape[axis - 1] = -1  # no batch axis in the constants
    y = b.op1("Mul", [x.name, b.weight(scale.reshape(shape), "scale")])
    y = b.op1("Add", [y, b.weight(shift.reshape(shape), "shift")])
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


def group_normalization(call: Call) -> Value:
    """Keras' GroupNormalization along the channel axis: the channels split into ``groups``,
    each normalized over its channels and every other non-batch axis; either layout."""
    b, c, x = call.b, call.config, call.x
    if x.rank is None or x.rank < 2:
        raise call.fail("an input of unknown rank")
    if _axis(call, x) % x.rank != x.rank - 1:
        raise call.fail("GroupNormalization over an axis other than the last (channels) is not exported yet")
    channels, groups = x.shape[-1], int(c.get("groups", 32))
    if channels is None:
        raise call.fail("an input with an unknown number of channels")
    if groups == -1:
        groups = channels
    if channels % groups:
        raise call.fail(f"{channels} channels in {groups} groups")
    epsilon = float(c.get("epsilon", 1e-3))
    first = x.channels_first and x.rank >= 3
    # channels-first (B, C, ...) -> (B, G, rest); channels-last (B, ..., C) -> (B, rest, G, C/G)
    target, axes = ([0, groups, -1], [2]) if first else ([0, -1, groups, channels // groups], [1, 3])
    grouped = b.op1("Reshape", [x.name, b.ints(target, "groups")])
    mean = b.reduce("ReduceMean", grouped, axes, True)
    centred = b.op1("Sub", [grouped, mean])
    var = b.reduce("ReduceMean", b.op1("Mul", [centred, centred]), axes, True)
    inv = b.op1("Reciprocal", [b.op1("Sqrt", [b.op1("Add", [var, b.const(np.float32(epsilon), "epsilon")])])])
    y = b.op1("Reshape", [b.op1("Mul", [centred, inv]), b.op1("Shape", [x.name])])
    shape = [channels] + [1] * (x.rank - 2) if first else [channels]  # broadcast over the channel axis
    if c.get("scale", True):
        y = b.op1("Mul", [y, b.weight(call.weight("gamma").reshape(shape), "gamma")])
    if c.get("center", True):
        y = b.op1("Add", [y, b.weight(call.weight("beta").reshape(shape), "beta")])
    return b.like(x, y)


def unit_normalization(call: Call) -> Value:
    """x / ||x|| along ``axis``, the norm bounded below as each Keras does it: Keras 3
    ``x * min(rsqrt(sum(x²)), 1e12)``, tf_keras ``x * rsqrt(max(sum(x²), 1e-12))``."""
    b, c, x = call.b, call.config, call.x
    if x.rank is None:
        raise call.fail("an input of unknown rank")
    axis = c.get("axis", -1)
    axes = sorted({b.physical_axis(x, int(a)) for a in ([axis] if isinstance(axis, int) else axis)})
    squares = b.reduce("ReduceSum", b.op1("Mul", [x.name, x.name]), axes, True)
    if call.dialect == "keras2":
        inv = b.op1("Reciprocal", [b.op1("Sqrt", [b.op1("Max", [squares, b.const(np.float32(1e-12), "epsilon")])])])
    else:
        inv = b.op1("Min", [b.op1("Reciprocal", [b.op1("Sqrt", [squares])]), b.const(np.float32(1e12), "max_inverse")])
    return b.like(x, b.op1("Mul", [x.name, inv]))


def rescaling(call: Call) -> Value:
    b, x, c = call.b, call.x, call.config
    scale, offset = c.get("scale", 1.0), c.get("offset", 0.0)
    if not isinstance(scale, (int, float)) or not isinstance(offset, (int, float)):
        raise call.fail("a per-channel scale or offset is not exported yet")
    y = b.op1("Mul", [x.name, b.const(np.float32(scale), "scale")])
    if offset:
        y = b.op1("Add", [y, b.const(np.float32(offset), "offset")])
    return b.like(x, y)


def normalization(call: Call) -> Value:
    """Keras' adapted Normalization: (x - mean) / max(sqrt(variance), 1e-7) along its axes."""
    b, c = call.b, call.config
    if c.get("invert"):
        raise call.fail("invert=True is not exported yet")
    if c.get("mean") is not None and c.get("variance") is not None:
        mean, var = np.asarray(c["mean"], np.float64), np.asarray(c["variance"], np.float64)
    else:
        mean, var = call.weight("mean").astype(np.float64), call.weight("variance").astype(np.float64)
    x = b.channels_last(call.x)
    axis = c.get("axis", -1)
    axes = [axis] if isinstance(axis, int) else list(axis or [])
    shape = [1] * (x.rank - 1)  # the statistics broadcast over Keras' kept axes (no batch axis)
    for a in axes:
        shape[a % x.rank - 1] = x.shape[a % x.rank]
    mean, scale = mean.reshape(shape), 1.0 / np.maximum(np.sqrt(var), 1e-7).reshape(shape)
    y = b.op1("Mul", [b.op1("Sub", [x.name, b.weight(mean.astype(np.float32), "mean")]),
                      b.weight(scale.astype(np.float32), "inverse_std")])
    return b.like(x, y)


LAYERS = {"Normalization": normalization, "BatchNormalization": batch_normalization, "LayerNormalization": layer_normalization,
          "Rescaling": rescaling, "GroupNormalization": group_normalization, "UnitNormalization": unit_normalization}
