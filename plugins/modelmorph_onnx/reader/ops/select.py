"""Ops that pick or repeat elements: Slice and Split (→ ``x[...]`` GetItem slices, steps
included), Gather (constant indices → ``keras.ops.take``; rows of a constant table by computed
ids → Embedding), Tile and Expand. The batch axis is never sliced, gathered, tiled or expanded."""

from __future__ import annotations

import numpy as np

from ..graph import Graph, T, Unsupported, _perm_cl
from .common import keras_axis

_NUMPY = "keras.src.ops.numpy"
_BIG = 1 << 62  # ONNX's "to the end" is INT64_MAX (or MIN): anything past the dimension


def _slice_bounds(start: int, end: int, step: int, dim: int | None) -> tuple[int | None, int | None, int]:
    """ONNX's clamped bounds as a Python slice of the same elements."""
    if step == 0:
        raise Unsupported("a step of 0")
    if dim is None:  # unknown size: only what Python's slicing clamps alike
        if step > 0 and start >= 0 and end >= 0:
            return start, (None if end >= _BIG else end), step
        raise Unsupported("negative or reversed bounds on a dimension of unknown size")
    start = start + dim if start < 0 else start
    end = end + dim if end < 0 else end
    if step > 0:
        start, end = min(max(start, 0), dim), min(max(end, 0), dim)
        return start, end, step
    start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
    return start, (None if end < 0 else end), step


def _length(start, end, step, dim) -> int | None:
    if dim is None:
        return None
    return len(range(dim)[slice(start, end, step)])


def _get_item(g: Graph, node, x: T, slices: dict[int, tuple], out: str) -> T:
    """``x[key]`` with a slice per ONNX axis in ``slices`` (axis → (start, stop, step))."""
    key = [{"class_name": "__slice__", "config": {"start": None, "stop": None, "step": None}} for _ in range(x.rank)]
    shape = list(x.shape)
    for axis, (start, stop, step) in slices.items():
        key[keras_axis(x, axis)] = {"class_name": "__slice__", "config": {"start": start, "stop": stop,
                                                                           "step": None if step == 1 else step}}
        shape[axis] = _length(start, stop, step, x.shape[axis])
    return g.layer(node, "GetItem", {}, [x, key], out, tuple(shape), cl=x.cl, module=_NUMPY, dtype=x.dtype)


def _ints(g: Graph, name: str, what: str) -> list[int] | None:
    if not name:
        return None
    value = g.const(name)
    if value is None:
        raise Unsupported(f"computed {what}")
    return [int(v) for v in np.asarray(value).reshape(-1)]


def slice_op(g: Graph, node, a: dict) -> None:
    x = g.tensor(node.input[0])
    if g.opset < 10:
        starts, ends, axes, steps = a.get("starts"), a.get("ends"), a.get("axes"), None
    else:
        names = list(node.input) + [""] * 5
        starts, ends = _ints(g, names[1], "starts"), _ints(g, names[2], "ends")
        axes, steps = _ints(g, names[3], "axes"), _ints(g, names[4], "steps")
    axes = list(axes) if axes is not None else list(range(len(starts)))
    steps = list(steps) if steps is not None else [1] * len(starts)
    slices: dict[int, tuple] = {}
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis = int(axis) % x.rank
        dim = x.shape[axis]
        bounds = _slice_bounds(int(start), int(end), int(step), dim)
        if axis == 0:
            if dim is None and bounds[0] == 0 and bounds[1] is None and bounds[2] == 1:
                continue
            if dim is not None and bounds[2] == 1 and _length(*bounds, dim) == dim:
                continue
            raise Unsupported("a slice of the batch axis")
        if dim is not None and bounds[2] == 1 and _length(*bounds, dim) == dim:
            continue
        slices[axis] = bounds
    if not slices:
        g.alias(node.output[0], x)
        return
    _get_item(g, node, x, slices, node.output[0])


def split(g: Graph, node, a: dict) -> None:
    x = g.tensor(node.input[0])
    axis = int(a.get("axis", 0)) % x.rank
    if axis == 0:
        raise Unsupported("a split of the batch axis")
    dim = x.shape[axis]
    outputs = list(node.output)
    sizes = _ints(g, node.input[1], "split") if len(node.input) > 1 and node.input[1] else a.get("split")
    if not sizes:
        if dim is None:
            raise Unsupported("an even split of a dimension of unknown size")
        n = int(a.get("num_outputs", len(outputs)))
        chunk = -(-dim // n)  # opset 18: the last part is the smaller one
        sizes = [min(chunk, dim - i * chunk) for i in range(n)]
    if len(sizes) != len(outputs):
        raise Unsupported(f"{len(sizes)} split sizes for {len(outputs)} outputs")
    start = 0
    for size, out in zip(sizes, outputs):
        if out:
            _get_item(g, node, x, {axis: (start, start + int(size), 1)}, out)
        start += int(size)


def gather(g: Graph, node, a: dict) -> None:
    axis = int(a.get("axis", 0))
    data = g.tensors.get(node.input[0])
    if data is None:
        _embedding(g, node, axis)
        return
    indices = g.const(node.input[1])
    if indices is None:
        raise Unsupported("computed indices into a computed tensor")
    axis %= data.rank
    if axis == 0:
        raise Unsupported("a gather along the batch axis")
    dim = data.shape[axis]
    indices = np.asarray(indices).astype(np.int64)
    if dim is not None:
        if indices.size and (indices.min() < -dim or indices.max() >= dim):
            raise Unsupported("indices out of range")
        indices = np.where(indices < 0, indices + dim, indices)
    elif indices.size and indices.min() < 0:
        raise Unsupported("negative indices on a dimension of unknown size")
    out_shape = (*data.shape[:axis], *indices.shape, *data.shape[axis + 1:])
    if indices.ndim != 1:  # the tensor's rank changes: positions in ONNX's order
        data = g.to_onnx_order(data, node)
    value = {"class_name": "__numpy__", "config": {"value": indices.tolist(), "dtype": "int64"}}
    g.layer(node, "Take", {"axis": keras_axis(data, axis)}, [data, value], node.output[0], out_shape,
            cl=data.cl, module=_NUMPY, dtype=data.dtype)


def _embedding(g: Graph, node, axis: int) -> None:
    """Gather(constant table, computed ids): an Embedding for rows of a 2-D table, else
    keras.ops.take on the constant."""
    table = g.const(node.input[0])
    ids = g.tensor(node.input[1])
    if table is None:
        raise Unsupported("a table that is neither computed nor constant")
    axis %= table.ndim
    out_shape = (*table.shape[:axis], *ids.shape, *table.shape[axis + 1:])
    ids = g.to_onnx_order(ids, node)
    if axis != 0:
        raise Unsupported("a gather from a constant along another axis than its first (the batch would move)")
    if table.ndim == 2 and table.dtype.kind == "f":
        g.layer(node, "Embedding", {"input_dim": int(table.shape[0]), "output_dim": int(table.shape[1])}, [ids],
                node.output[0], out_shape, weights=[table], dtype=table.dtype.name)
        return
    value = {"class_name": "__numpy__", "config": {"value": table.tolist(), "dtype": table.dtype.name}}
    g.layer(node, "Take", {"axis": 0}, [value, ids], node.output[0], out_shape, module=_NUMPY, dtype=table.dtype.name)


def tile(g: Graph, node, a: dict) -> None:
    x = g.tensor(node.input[0])
    repeats = _ints(g, node.input[1], "repeats")
    if len(repeats) != x.rank:
        raise Unsupported(f"{len(repeats)} repeats for a rank-{x.rank} tensor")
    if repeats[0] != 1:
        raise Unsupported("tiling the batch axis")
    out_shape = tuple(None if d is None else d * r for d, r in zip(x.shape, repeats))
    held = [repeats[i] for i in _perm_cl(x.rank)] if x.cl and x.rank >= 3 else repeats
    g.layer(node, "Tile", {"repeats": held}, [x], node.output[0], out_shape, cl=x.cl, module=_NUMPY,
            dtype=x.dtype)


def expand(g: Graph, node, a: dict) -> None:
    """Expand → broadcasting against zeros of the target shape (the batch dimension stays as it is)."""
    x = g.tensor(node.input[0])
    shape = _ints(g, node.input[1], "shape")
    if len(shape) > x.rank:
        raise Unsupported("new leading axes (the batch axis would move)")
    shape = [1] * (x.rank - len(shape)) + shape
    if shape[0] not in (1, x.shape[0]) and x.shape[0] != shape[0]:
        raise Unsupported("broadcasting the batch axis")
    out_shape = tuple(d if s == 1 else s for d, s in zip(x.shape, shape))
    if out_shape == x.shape:
        g.alias(node.output[0], x)
        return
    ones = np.zeros([1, *shape[1:]], dtype=x.dtype)
    if x.cl and x.rank >= 3:
        ones = ones.transpose(_perm_cl(x.rank))
    value = {"class_name": "__numpy__", "config": {"value": ones.tolist(), "dtype": ones.dtype.name}}
    op = "LogicalOr" if x.dtype == "bool" else "Add"
    g.layer(node, op, {}, [x, value], node.output[0], out_shape, cl=x.cl, module=_NUMPY, dtype=x.dtype)
