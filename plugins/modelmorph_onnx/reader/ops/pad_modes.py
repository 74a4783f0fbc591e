"""Pad beyond zero padding of the spatial axes (which stays ZeroPadding, in the shape module):
any constant value, `reflect`, and `edge` (repeated one-wide `symmetric` pads: each copies the
edge element) → keras.ops.pad on any non-batch axes, in the tensor's layout; negative pads
(cropping) → a slice after."""

from __future__ import annotations

import numpy as np

from ..graph import Graph, Unsupported, _perm_cl
from .common import keras_axis

_NUMPY = "keras.src.ops.numpy"
MAX_EDGE = 16  # one keras.ops.pad per element of edge padding: wider ones are refused


def _pads(g: Graph, node, a: dict, rank: int) -> tuple[list[int], float]:
    if g.opset < 11:
        pads, value = a.get("pads"), a.get("value", 0.0)
    else:
        pads = g.const(node.input[1])
        if pads is None:
            raise Unsupported("computed pads")
        value = g.const(node.input[2]) if len(node.input) > 2 and node.input[2] else 0.0
        if value is None:
            raise Unsupported("a computed padding value")
    pads = [int(p) for p in np.asarray(pads).reshape(-1)]
    axes = g.const(node.input[3]) if len(node.input) > 3 and node.input[3] else None
    if len(node.input) > 3 and node.input[3] and axes is None:
        raise Unsupported("computed axes")
    if axes is not None:
        axes = [int(v) % rank for v in np.asarray(axes).reshape(-1)]
        full = [0] * (2 * rank)
        for i, ax in enumerate(axes):
            full[ax], full[rank + ax] = pads[i], pads[len(axes) + i]
        pads = full
    value = np.asarray(value).reshape(-1)
    return pads, (value[0].item() if value.size else 0)


def pad(inner):
    def convert(g: Graph, node, a: dict) -> None:
        x = g.tensor(node.input[0])
        mode = a.get("mode", "constant")
        pads, value = _pads(g, node, a, x.rank)
        r = x.rank
        begins, ends = pads[:r], pads[r:]
        if mode == "constant" and value == 0 and r >= 3 and begins[:2] == [0, 0] and ends[:2] == [0, 0] \
                and min(pads) >= 0 and (len(node.input) < 4 or not node.input[3]):
            return inner(g, node, a)  # ZeroPadding
        if mode not in ("constant", "reflect", "edge"):
            raise Unsupported(f"mode {mode!r}")
        if begins[0] or ends[0]:
            raise Unsupported("padding the batch axis")
        if not any(pads):
            g.alias(node.output[0], x)
            return
        out = node.output[0]
        grow = [(max(b, 0), max(e, 0)) for b, e in zip(begins, ends)]
        shape = tuple(None if d is None else d + b + e for d, (b, e) in zip(x.shape, grow))
        held = _perm_cl(r) if x.cl and r >= 3 else list(range(r))
        cropping = any(p < 0 for p in pads)
        if mode == "reflect" and any(d is not None and (b >= d or e >= d) for d, (b, e) in zip(x.shape, grow)):
            raise Unsupported("reflect pads as wide as the axis")
        y = x
        steps = [[(b, e) for b, e in grow]] if mode != "edge" else _edge_steps(grow)
        for i, step in enumerate(steps):
            last = i == len(steps) - 1 and not cropping
            width = [list(step[k]) for k in held]
            kwargs = {"constant_values": value} if mode == "constant" else {"constant_values": None}
            keras_mode = {"constant": "constant", "reflect": "reflect", "edge": "symmetric"}[mode]
            done = [tuple(sum(s[k][j] for s in steps[:i + 1]) for j in (0, 1)) for k in range(r)]
            sub = tuple(None if d is None else d + b + e for d, (b, e) in zip(x.shape, done))
            y = g.layer(node, "Pad", {"pad_width": width, "mode": keras_mode}, [y], out if last else f"{out}:pad{i}",
                        sub, cl=x.cl, module=_NUMPY, kwargs=kwargs, dtype=x.dtype)
        if cropping:
            key = [{"class_name": "__slice__", "config": {"start": None, "stop": None, "step": None}} for _ in range(r)]
            final = list(shape)
            for axis, (b, e) in enumerate(zip(begins, ends)):
                if b < 0 or e < 0:
                    key[keras_axis(x, axis)] = {"class_name": "__slice__", "config": {
                        "start": -b if b < 0 else None, "stop": e if e < 0 else None, "step": None}}
                    final[axis] = None if shape[axis] is None else shape[axis] + min(b, 0) + min(e, 0)
            g.layer(node, "GetItem", {}, [y, key], out, tuple(final), cl=x.cl, module=_NUMPY, dtype=x.dtype)
    return convert


def _edge_steps(grow: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    widest = max(max(b, e) for b, e in grow)
    if widest > MAX_EDGE:
        raise Unsupported(f"edge pads wider than {MAX_EDGE}")
    return [[(int(b > i), int(e > i)) for b, e in grow] for i in range(widest)]
