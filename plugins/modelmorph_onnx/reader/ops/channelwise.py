"""Per-channel layers: PRelu → PReLU (slope broadcast to the layer's alpha, `shared_axes` where
it is 1), InstanceNormalization → GroupNormalization with one group per channel, LRN →
keras.ops (the channel-window sum of squares a keras.ops.conv with a constant band kernel)."""

from __future__ import annotations

import numpy as np

from ..graph import Graph, Unsupported, _perm_cl


def prelu(g: Graph, node, a: dict) -> None:
    x = g.tensor(node.input[0])
    slope = g.const(node.input[1])
    if slope is None:
        raise Unsupported("a computed slope")
    if slope.ndim > x.rank or (slope.ndim == x.rank and slope.shape[0] != 1):
        raise Unsupported("a slope over the batch axis")
    if any(d is None for d in x.shape[1:]):
        raise Unsupported("dynamic dimensions (PReLU's alpha has the input's shape)")
    full = np.asarray(slope, np.float32).reshape((1,) * (x.rank - slope.ndim) + slope.shape)
    if x.cl and x.rank >= 3:
        full = full.transpose(_perm_cl(x.rank))
    held = [x.shape[i] for i in _perm_cl(x.rank)] if x.cl and x.rank >= 3 else list(x.shape)
    alpha = full[0]
    shared = [i + 1 for i, d in enumerate(alpha.shape) if d == 1 and held[i + 1] != 1]
    alpha = np.broadcast_to(alpha, [1 if i + 1 in shared else held[i + 1] for i in range(x.rank - 1)]).copy()
    g.layer(node, "PReLU", {"shared_axes": shared or None}, [x], node.output[0], x.shape, cl=x.cl, weights=[alpha])


def instance_norm(g: Graph, node, a: dict) -> None:
    x = g.tensor(node.input[0])
    if x.rank < 3:
        raise Unsupported(f"rank {x.rank} (no spatial axes to normalize over)")
    scale, bias = g.const(node.input[1]), g.const(node.input[2])
    if scale is None or bias is None:
        raise Unsupported("computed scale or bias")
    channels = int(scale.size)
    x = g.to_cl(x, node)
    g.layer(node, "GroupNormalization", {"groups": channels, "axis": -1, "epsilon": float(a.get("epsilon", 1e-5)),
                                         "center": True, "scale": True}, [x], node.output[0], x.shape, cl=True,
            weights=[scale.reshape(-1), bias.reshape(-1)])


def lrn(g: Graph, node, a: dict) -> None:
    """y = x / (bias + alpha/size · Σ x² over the channel window)^beta; the window sum is a
    keras.ops.conv of x² with a constant (size × C × C) band kernel over the channel axis."""
    x = g.tensor(node.input[0])
    if x.rank < 3:
        raise Unsupported(f"rank {x.rank}")
    size = int(a["size"])
    alpha, beta, bias = float(a.get("alpha", 1e-4)), float(a.get("beta", 0.75)), float(a.get("bias", 1.0))
    channels = x.shape[1]
    if channels is None:
        raise Unsupported("an unknown channel count")
    x = g.to_cl(x, node)
    out = node.output[0]
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    band = np.zeros((channels, channels), np.float32)  # band[c_in, c_out]: c_in in c_out's window
    for c in range(channels):
        band[max(0, c - lo):min(channels, c + hi + 1), c] = alpha / size
    kernel = band.reshape((1,) * (x.rank - 2) + band.shape)
    square = g.layer(node, "Square", {}, [x], f"{out}:sq", x.shape, cl=True, module="keras.src.ops.numpy")
    windowed = g.layer(node, "Conv", {"strides": 1, "padding": "valid", "data_format": "channels_last",
                                      "dilation_rate": 1},
                       [square, {"class_name": "__numpy__", "config": {"value": kernel.tolist(), "dtype": "float32"}}],
                       f"{out}:sum", x.shape, cl=True, module="keras.src.ops.nn")
    shifted = g.layer(node, "Add", {}, [windowed, bias], f"{out}:bias", x.shape, cl=True, module="keras.src.ops.numpy")
    powered = g.layer(node, "Power", {}, [shifted, beta], f"{out}:pow", x.shape, cl=True, module="keras.src.ops.numpy")
    g.layer(node, "Divide", {}, [x, powered], out, x.shape, cl=True, module="keras.src.ops.numpy")

