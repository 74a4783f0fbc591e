"""Merging layers."""

from __future__ import annotations

from ..builder import Value
from ..export import Call


def _same_layout(call: Call) -> list[Value]:
    """The inputs in one layout: channels-first if all are and share a rank, else channels-last."""
    inputs = call.inputs
    if all(v.channels_first for v in inputs) and len({v.rank for v in inputs}) == 1:
        return inputs
    return [call.b.channels_last(v) for v in inputs]


def _broadcast_shape(shapes: list) -> tuple | None:
    if any(s is None for s in shapes) or len({len(s) for s in shapes}) != 1:
        return None
    out = []
    for dims in zip(*shapes):
        known = [d for d in dims if d not in (None, 1)]
        out.append(known[0] if known else (None if None in dims else 1))
    return tuple(out)


def elementwise(op_type: str):
    def convert(call: Call) -> Value:
        inputs = _same_layout(call)
        if len(inputs) < 2 and op_type != "Mean":
            raise call.fail("needs at least two inputs")
        names = [v.name for v in inputs]
        y = names[0]
        if op_type in ("Add", "Mul", "Sub"):  # binary in ONNX: chained
            for name in names[1:]:
                y = call.b.op1(op_type, [y, name])
        else:  # Max, Min, Mean take any number of inputs
            y = call.b.op1(op_type, names)
        return call.b.like(inputs[0], y, _broadcast_shape([v.shape for v in inputs]))

    return convert


def concatenate(call: Call) -> Value:
    b = call.b
    inputs = _same_layout(call)
    axis = int(call.config.get("axis", -1))
    y = b.op1("Concat", [v.name for v in inputs], axis=b.physical_axis(inputs[0], axis))
    shape = None
    if all(v.shape is not None for v in inputs):
        k = axis % inputs[0].rank
        sizes = [v.shape[k] for v in inputs]
        shape = tuple(None if None in sizes else sum(sizes) if i == k else d for i, d in enumerate(inputs[0].shape))
    return b.like(inputs[0], y, shape)


def dot(call: Call) -> Value:
    b = call.b
    a, c = (b.channels_last(v) for v in call.inputs)
    axes = call.config.get("axes", -1)
    axes = [axes, axes] if isinstance(axes, int) else list(axes)
    ax, cx = axes[0] % a.rank, axes[1] % c.rank
    names = [a.name, c.name]
    if call.config.get("normalize"):
        names = [b.op1("LpNormalization", [names[0]], axis=ax, p=2), b.op1("LpNormalization", [names[1]], axis=cx, p=2)]
    if a.rank == 2 and c.rank == 2:  # (B, n) . (B, n) -> (B, 1)
        y = b.reduce("ReduceSum", b.op1("Mul", names), [1], True)
        return Value(y, (a.shape[0], 1), a.dtype)
    if a.rank != 3 or c.rank != 3:
        raise call.fail("Dot of tensors other than 2-D or 3-D is not exported yet")
    left = names[0] if ax == 2 else b.op1("Transpose", [names[0]], perm=[0, 2, 1])
    right = names[1] if cx == 1 else b.op1("Transpose", [names[1]], perm=[0, 2, 1])
    rows = a.shape[1] if ax == 2 else a.shape[2]
    cols = c.shape[2] if cx == 1 else c.shape[1]
    return Value(b.op1("MatMul", [left, right]), (a.shape[0], rows, cols), a.dtype)


LAYERS = {"Add": elementwise("Add"), "Subtract": elementwise("Sub"), "Multiply": elementwise("Mul"),
          "Maximum": elementwise("Max"), "Minimum": elementwise("Min"), "Average": elementwise("Mean"),
          "Concatenate": concatenate, "Dot": dot}
