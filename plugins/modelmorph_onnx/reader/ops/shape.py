"""Ops that move data between axes: Flatten, Reshape, Transpose, Squeeze/Unsqueeze, Concat, Pad, Resize.
Each asks for ONNX's own order where positions matter (see the graph module)."""

from __future__ import annotations

import math

import numpy as np

from ..graph import Graph, T, Unsupported, _keras_shape, _perm_cl
from .common import axes_operand, keras_axis


def flatten(g: Graph, node, a: dict) -> None:
    x = g.tensor(node.input[0])
    axis = int(a.get("axis", 1)) % max(x.rank, 1)
    if axis != 1:
        raise Unsupported(f"axis {axis} (only the batch axis is kept apart)")
    if x.rank == 2:
        g.alias(node.output[0], x)
        return
    _flatten(g, node, x, node.output[0])


def _flatten(g: Graph, node, x: T, out: str) -> None:
    """(batch, n): in Keras' own order where only Dense layers read it (see Graph.flat_source)."""
    source = x
    x, rows = g.flat_source(x, node, out)
    rest = x.shape[1:]
    t = g.layer(node, "Flatten", {}, [x], out,
                (x.shape[0], math.prod(rest) if all(isinstance(d, int) for d in rest) else None))
    if rows is not None:
        t.rows = rows
        g.flat_shapes[id(t.record)] = source.shape


def reshape(g: Graph, node, a: dict) -> None:
    x = g.tensor(node.input[0])
    if g.opset < 5:
        raise Unsupported("opset < 5")
    target = g.values.get(node.input[1])
    if target is None:
        raise Unsupported("the target shape is computed at run time")
    _reshape_to(g, node, x, [d if isinstance(d, str) else int(d) for d in target.reshape(-1)], node.output[0])


def _reshape_to(g: Graph, node, x: T, target: list, out: str) -> None:
    in_shape = x.shape
    first = target[0]
    batch_kept = (first == 0 or (isinstance(first, str) and first == (g.shapes.get(node.input[0]) or [None])[0])
                  or (in_shape[0] is not None and first == in_shape[0]))
    rest = [in_shape[i + 1] if d == 0 else d for i, d in enumerate(target[1:])]
    batch_kept = batch_kept or first == "N"
    if first == -1 and all(isinstance(d, int) and d > 0 for d in rest) and all(isinstance(d, int) for d in in_shape[1:]):
        batch_kept = math.prod(rest) == math.prod(in_shape[1:])
    if not batch_kept or any(not isinstance(d, int) for d in rest):
        raise Unsupported(f"target {[str(d) for d in target]} does not keep the batch dimension apart")
    if -1 in rest and all(isinstance(d, int) for d in in_shape[1:]):
        known = math.prod(d for d in rest if d != -1)
        rest = [math.prod(in_shape[1:]) // known if d == -1 else d for d in rest]
    elif -1 in rest and (out_shape := g.shapes.get(out)) is not None and all(isinstance(d, int) for d in out_shape[1:]):
        rest = list(out_shape[1:])
    if len(rest) == 1 and x.rank >= 3 and rest[0] != -1:  # a flatten (x.view(N, -1))
        _flatten(g, node, x, out)
        return
    if x.cl and not x.trivial and len(rest) >= 2 and isinstance(in_shape[1], int) and rest[0] == in_shape[1]:
        # Channels kept on axis 1, only spatial dims merged or split: the same reshape of the
        # channels-last tensor (each channel's values keep their row-major order), no Permute.
        shape = (x.shape[0], *[d if d != -1 else None for d in rest])
        target = [*rest[1:], rest[0]]
        if target == _keras_shape(in_shape, True)[1:]:
            g.alias(out, T(x.record, shape, x.dtype, True))
        else:
            g.layer(node, "Reshape", {"target_shape": [int(d) for d in target]}, [x], out, shape, cl=True)
        return
    if not x.trivial:
        x = g.to_onnx_order(x, node)
    shape = (x.shape[0], *[d if d != -1 else None for d in rest])
    if list(in_shape[1:]) == rest:
        g.alias(out, T(x.record, shape, x.dtype, False) if x.cl else x)
        return
    g.layer(node, "Reshape", {"target_shape": [int(d) for d in rest]}, [x], out, shape)


def transpose(g: Graph, node, a: dict) -> None:
    x = g.tensor(node.input[0])
    perm = [int(p) for p in a.get("perm", list(range(x.rank))[::-1])]
    if perm[0] != 0:
        raise Unsupported(f"perm {perm} moves the batch axis")
    out_shape = tuple(x.shape[p] for p in perm)
    held = _perm_cl(x.rank) if x.cl and x.rank >= 3 else list(range(x.rank))  # Keras axis i = ONNX axis held[i]
    inverse = [held.index(i) for i in range(x.rank)]
    as_is = [inverse[p] for p in perm]  # output in ONNX order, from the Keras tensor
    if as_is == list(range(x.rank)):
        g.alias(node.output[0], T(x.record, out_shape, x.dtype, False))
        return
    if x.rank >= 3:
        as_cl = [as_is[i] for i in _perm_cl(x.rank)]
        if as_cl == list(range(x.rank)):  # the output, channels-last, is what the Keras tensor holds
            g.alias(node.output[0], T(x.record, out_shape, x.dtype, True))
            return
    g.layer(node, "Permute", {"dims": as_is[1:]}, [x], node.output[0], out_shape)


def squeeze_unsqueeze(g: Graph, node, a: dict) -> None:
    x = g.tensor(node.input[0])
    axes = axes_operand(g, node, a)
    if axes is None and node.op_type == "Squeeze":
        axes = [i for i, d in enumerate(x.shape) if d == 1]
    rank = x.rank + len(axes) if node.op_type == "Unsqueeze" else x.rank
    axes = sorted(ax % rank for ax in axes)
    if 0 in axes:
        raise Unsupported("the batch axis is squeezed or inserted")
    if node.op_type == "Squeeze":
        out_shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
    else:
        out_shape = list(x.shape)
        for ax in axes:
            out_shape.insert(ax, 1)
    if any(d is None for d in out_shape[1:]):
        raise Unsupported("dynamic dimensions")
    _reshape_to(g, node, x, [0, *out_shape[1:]], node.output[0])


def concat(g: Graph, node, a: dict) -> None:
    tensors = [g.tensor(n) for n in node.input if n]
    if len(tensors) == 1:
        g.alias(node.output[0], tensors[0])
        return
    rank = tensors[0].rank
    axis = int(a["axis"]) % rank
    if axis == 0:
        raise Unsupported("concatenation along the batch axis")
    if any(t.cl for t in tensors) and all(t.rank == rank for t in tensors):
        tensors = [g.to_cl(t, node) for t in tensors]
    else:
        tensors = [g.to_onnx_order(t, node) for t in tensors]
    sizes = [t.shape[axis] for t in tensors]
    shape = list(tensors[0].shape)
    shape[axis] = sum(sizes) if all(isinstance(d, int) for d in sizes) else None
    g.layer(node, "Concatenate", {"axis": keras_axis(tensors[0], axis)}, [tensors], node.output[0],
            tuple(shape), cl=tensors[0].cl)


def pad(g: Graph, node, a: dict) -> None:
    x = g.tensor(node.input[0])
    mode = a.get("mode", "constant")
    if g.opset < 11:
        pads, value = a.get("pads"), a.get("value", 0.0)
    else:
        pads = g.const(node.input[1])
        value = g.const(node.input[2]) if len(node.input) > 2 and node.input[2] else 0.0
        if len(node.input) > 3 and node.input[3]:
            raise Unsupported("the axes input")
    if pads is None or mode != "constant" or float(np.asarray(value).reshape(-1)[0] if np.size(value) else 0) != 0.0:
        raise Unsupported(f"mode {mode!r} or a non-zero value (only zero padding is read)")
    pads = [int(p) for p in np.asarray(pads).reshape(-1)]
    r = x.rank
    begins, ends = pads[:r], pads[r:]
    if begins[:2] != [0, 0] or ends[:2] != [0, 0] or r < 3:
        raise Unsupported("padding of the batch or channel axis")
    if any(p < 0 for p in pads):
        raise Unsupported("negative pads (cropping)")
    x = g.to_cl(x, node)
    n = r - 2
    padding = [begins[2], ends[2]] if n == 1 else [[b, e] for b, e in zip(begins[2:], ends[2:])]
    shape = (*x.shape[:2], *[None if d is None else d + b + e for d, b, e in zip(x.shape[2:], begins[2:], ends[2:])])
    g.layer(node, f"ZeroPadding{n}D", {"padding": padding}, [x], node.output[0], shape, cl=True)


def _resize_scales(g: Graph, node, a: dict, x: T) -> list[float]:
    """Per-axis factors from `scales` (an attribute before opset 9, then an input) or `sizes`."""
    if node.op_type == "Upsample" and g.opset < 9:
        return [float(v) for v in a["scales"]]
    index = 1 if node.op_type == "Upsample" or g.opset < 11 else 2
    scales = g.const(node.input[index]) if len(node.input) > index and node.input[index] else None
    if scales is not None and scales.size:
        return [float(v) for v in scales.reshape(-1)]
    sizes = g.const(node.input[3]) if len(node.input) > 3 and node.input[3] else None
    if sizes is None or any(d is None for d in x.shape[1:]):
        raise Unsupported("computed scales or sizes")
    return [1.0] + [float(o) / i for o, i in zip(sizes.reshape(-1)[1:], x.shape[1:])]


def resize(g: Graph, node, a: dict) -> None:
    x = g.tensor(node.input[0])
    mode = a.get("mode", "nearest")
    if mode != "nearest":
        raise Unsupported(f"mode {mode!r} (only nearest is read)")
    if node.op_type == "Resize" and g.opset >= 11:
        ctm = a.get("coordinate_transformation_mode", "half_pixel")
        nearest = a.get("nearest_mode", "round_prefer_floor")
        if (ctm, nearest) != ("asymmetric", "floor"):
            raise Unsupported(f"coordinate_transformation_mode {ctm!r} with nearest_mode {nearest!r}")
    scales = _resize_scales(g, node, a, x)
    if scales[1] != 1 or any(s != int(s) or s < 1 for s in scales[2:]):
        raise Unsupported(f"scales {scales[1:]} (only whole spatial factors are read)")
    n = x.rank - 2
    if n not in (1, 2, 3):
        raise Unsupported(f"rank {x.rank}")
    x = g.to_cl(x, node)
    size = [int(s) for s in scales[2:]]
    config = {"size": size[0]} if n == 1 else {"size": size}
    if n == 2:
        config["interpolation"] = "nearest"
    out_shape = (*x.shape[:2], *[None if d is None else d * s for d, s in zip(x.shape[2:], size)])
    g.layer(node, f"UpSampling{n}D", config, [x], node.output[0], out_shape, cl=True)
