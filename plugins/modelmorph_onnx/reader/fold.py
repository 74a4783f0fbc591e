"""Constant folding with numpy before mapping: every node whose inputs are all known
(initializers, Constants, static shapes) is evaluated at import, so that PyTorch's
Shape→Gather→Unsqueeze→Concat→Reshape chains and computed pads become plain constants.

Shapes with a dynamic (batch) dimension fold too: ``Shape`` gives an object array holding
the dimension's symbol (a ``str``) where the size is unknown. Gather, Slice, Concat,
Unsqueeze... move symbols like numbers; arithmetic on a symbol gives no constant (the
node is then mapped, or refused, like any other)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from modelmorph import ReadError

from .load import DTYPES, attribute_tensor, attributes, tensor_value

#: A folded constant larger than this is refused (it would be a weight no file holds).
MAX_FOLDED = 1 << 26


def topological(path: Path, nodes: list, known: set[str]) -> list:
    """The nodes in an order where each comes after what it reads; a cycle or an input nothing
    produces is an error."""
    produced = {o: i for i, n in enumerate(nodes) for o in n.output if o}
    waiting = {i: {x for x in n.input if x and x in produced} for i, n in enumerate(nodes)}
    for i, n in enumerate(nodes):
        for x in n.input:
            if x and x not in produced and x not in known:
                raise ReadError(path, f"node {n.name!r} ({n.op_type}) reads {x!r}, which nothing produces")
    users: dict[str, list[int]] = {}
    for i, deps in waiting.items():
        for x in deps:
            users.setdefault(x, []).append(i)
    ready = [i for i, deps in waiting.items() if not deps]
    order, done = [], set()
    while ready:
        i = ready.pop(0)
        order.append(nodes[i])
        for o in nodes[i].output:
            for j in users.get(o, ()):
                waiting[j].discard(o)
                if not waiting[j] and j not in done:
                    done.add(j)
                    ready.append(j)
    if len(order) != len(nodes):
        raise ReadError(path, "the graph has a cycle")
    return order


def is_symbolic(value: Any) -> bool:
    return isinstance(value, np.ndarray) and value.dtype == object


def fold(path: Path, node, values: dict[str, np.ndarray], shapes: dict[str, tuple], opset: int) -> list | None:
    """The node's outputs when they can be computed now, else None."""
    op = node.op_type
    a = attributes(node)
    if op == "Constant":
        return [_constant(path, node, a)]
    if op == "Shape":
        shape = _shape_of(node.input[0], values, shapes)
        if shape is None:
            return None
        dims = [d if isinstance(d, int) else (d or f"?{node.input[0]}:{i}") for i, d in enumerate(shape)]
        start, end = a.get("start", 0), a.get("end", len(dims))
        dims = dims[start:end] if "end" in a else dims[start:]
        return [np.array(dims, dtype=object) if any(isinstance(d, str) for d in dims) else np.array(dims, np.int64)]
    if op == "Size":
        shape = _shape_of(node.input[0], values, shapes)
        if shape is None or not all(isinstance(d, int) for d in shape):
            return None
        return [np.array(math.prod(shape), np.int64)]
    inputs = [values.get(x) if x else None for x in node.input]
    if any(x and values.get(x) is None for x in node.input):
        return None
    symbolic = any(is_symbolic(v) for v in inputs)
    fn = _SHAPE_OPS.get(op) if symbolic else (_SHAPE_OPS.get(op) or _NUMERIC.get(op))
    if fn is None:
        return None
    out = fn(inputs, a, opset)
    out = out if isinstance(out, list) else [out]
    out = [v if isinstance(v, np.ndarray) else np.array(v, dtype=object if isinstance(v, str) else None) for v in out]
    out = [v.astype(np.int64) if v.dtype == object and not any(isinstance(e, str) for e in v.flat) else v for v in out]
    for value in out:
        if value.size > MAX_FOLDED:
            raise ReadError(path, f"node {node.name!r} ({op}) computes a constant of {value.size} values (refused)")
    return out


def _shape_of(name: str, values: dict, shapes: dict) -> tuple | None:
    """A constant's own shape (no shape inference needed for it), else the known one."""
    value = values.get(name)
    return tuple(int(d) for d in value.shape) if isinstance(value, np.ndarray) else shapes.get(name)


def _constant(path: Path, node, a: dict) -> np.ndarray:
    if "value" in a:
        return attribute_tensor(path, a["value"])
    for key, dtype in (("value_float", np.float32), ("value_int", np.int64)):
        if key in a:
            return np.array(a[key], dtype)
    for key, dtype in (("value_floats", np.float32), ("value_ints", np.int64)):
        if key in a:
            return np.array(a[key], dtype)
    raise ReadError(path, f"Constant node {node.name!r}: no value attribute that is read")


def _axes(inputs: list, a: dict, index: int) -> list[int] | None:
    if len(inputs) > index and inputs[index] is not None:
        return [int(v) for v in np.asarray(inputs[index]).reshape(-1)]
    return a.get("axes")


def _unsqueeze(inputs, a, opset):
    x = inputs[0]
    axes = _axes(inputs, a, 1)
    rank = x.ndim + len(axes)
    shape = list(x.shape)
    for axis in sorted(ax % rank for ax in axes):
        shape.insert(axis, 1)
    return x.reshape(shape)


def _squeeze(inputs, a, opset):
    x = inputs[0]
    axes = _axes(inputs, a, 1)
    return np.squeeze(x, axis=tuple(ax % x.ndim for ax in axes)) if axes else np.squeeze(x)


def _slice(inputs, a, opset):
    x = inputs[0]
    if opset < 10:
        starts, ends, axes, steps = a.get("starts"), a.get("ends"), a.get("axes"), None
    else:
        starts, ends = [int(v) for v in inputs[1]], [int(v) for v in inputs[2]]
        axes = [int(v) for v in inputs[3]] if len(inputs) > 3 and inputs[3] is not None else None
        steps = [int(v) for v in inputs[4]] if len(inputs) > 4 and inputs[4] is not None else None
    axes = axes if axes is not None else list(range(len(starts)))
    steps = steps or [1] * len(starts)
    key = [slice(None)] * x.ndim
    for s, e, ax, st in zip(starts, ends, axes, steps):
        key[ax % x.ndim] = slice(s, e, st)  # Python slicing clamps as ONNX does
    return x[tuple(key)]


def _reshape(inputs, a, opset):
    x, shape = inputs[0], [int(v) for v in inputs[1]]
    shape = [x.shape[i] if d == 0 and not a.get("allowzero") else d for i, d in enumerate(shape)]
    return x.reshape(shape)


def _cast(inputs, a, opset):
    x = inputs[0]
    dtype = DTYPES.get(a.get("to"))
    if dtype is None or is_symbolic(x):
        return x if is_symbolic(x) and dtype in ("int64", "int32") else _refuse()
    return x.astype(dtype)


def _refuse():
    raise _NoFold()


class _NoFold(Exception):
    pass


def _constant_of_shape(inputs, a, opset):
    shape = [int(v) for v in inputs[0]]
    if math.prod(shape) > MAX_FOLDED:
        raise ValueError(f"ConstantOfShape of {shape} is too large")
    value = np.zeros(1, np.float32) if "value" not in a else _tensor_value(a["value"])
    return np.full(shape, value.reshape(-1)[0], value.dtype)


def _tensor_value(tensor) -> np.ndarray:
    if tensor.data_type not in DTYPES or tensor.data_location == 1:
        raise _NoFold()  # the node is mapped, or refused, as any other
    return tensor_value(tensor)


def _gather(inputs, a, opset):
    return np.take(inputs[0], np.asarray(inputs[1]).astype(np.int64), axis=a.get("axis", 0))


def _concat(inputs, a, opset):
    arrays = [np.asarray(v) for v in inputs if v is not None]
    if any(is_symbolic(v) for v in arrays):
        arrays = [v.astype(object) for v in arrays]
    return np.concatenate(arrays, axis=a.get("axis", 0))


def _binary(fn):
    def run(inputs, a, opset):
        x, y = inputs[0], inputs[1]
        out = fn(x, y)
        return out.astype(np.result_type(x.dtype, y.dtype)) if out.dtype != object else out
    return run


def _div(x, y):
    if x.dtype.kind in "iu" and y.dtype.kind in "iu":
        return np.trunc(x / y).astype(np.result_type(x, y))  # ONNX integer division truncates
    return x / y


_SHAPE_OPS = {
    "Identity": lambda i, a, o: i[0], "Unsqueeze": _unsqueeze, "Squeeze": _squeeze, "Slice": _slice,
    "Gather": _gather, "Concat": _concat, "Cast": _cast, "Reshape": _reshape,
}
_NUMERIC = {
    "Add": _binary(np.add), "Sub": _binary(np.subtract), "Mul": _binary(np.multiply), "Div": _binary(_div),
    "Pow": _binary(np.power), "Sqrt": lambda i, a, o: np.sqrt(i[0]), "Neg": lambda i, a, o: -i[0],
    "Transpose": lambda i, a, o: np.transpose(i[0], a.get("perm")), "ConstantOfShape": _constant_of_shape,
    "Floor": lambda i, a, o: np.floor(i[0]), "Ceil": lambda i, a, o: np.ceil(i[0]),
    "Range": lambda i, a, o: np.arange(i[0], i[1], i[2]).astype(i[0].dtype),
    "Equal": lambda i, a, o: np.equal(i[0], i[1]), "Where": lambda i, a, o: np.where(i[0], i[1], i[2]),
    "Expand": lambda i, a, o: np.broadcast_to(i[0], np.broadcast_shapes(i[0].shape, tuple(int(v) for v in i[1]))).copy()
    if math.prod(np.broadcast_shapes(i[0].shape, tuple(int(v) for v in i[1]))) <= MAX_FOLDED else _refuse(),
    "Max": lambda i, a, o: np.maximum.reduce(i), "Min": lambda i, a, o: np.minimum.reduce(i),
}


def run_fold(path: Path, node, values, shapes, opset) -> list | None:
    """:func:`fold`, with numpy's complaints about a malformed constant as one-line errors."""
    try:
        return fold(path, node, values, shapes, opset)
    except _NoFold:
        return None
    except ReadError:
        raise
    except (ValueError, TypeError, IndexError, OverflowError, MemoryError) as exc:
        raise ReadError(path, f"node {node.name!r} ({node.op_type}) cannot be computed from its constants: {exc}") from None
