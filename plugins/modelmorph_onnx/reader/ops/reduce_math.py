"""The reductions without a pooling layer (ReduceMin/Prod/L1/L2/LogSum/LogSumExp/SumSquare) and
ArgMax/ArgMin → keras.ops reductions over the axes as the tensor's layout holds them."""

from __future__ import annotations

from ..graph import Graph, T, Unsupported
from .common import axes_operand, keras_axis

_NUMPY = "keras.src.ops.numpy"


def reduce_axes(g: Graph, node, a: dict, x: T) -> list[int] | None:
    """The ONNX axes reduced (sorted, non-negative); None for none at all (noop_with_empty_axes)."""
    axes = axes_operand(g, node, a)
    if not axes:
        if a.get("noop_with_empty_axes", 0):
            return None
        raise Unsupported("a reduction over every axis (the batch axis included)")
    axes = sorted({ax % x.rank for ax in axes})
    if 0 in axes:
        raise Unsupported("a reduction over the batch axis")
    return axes


#: ONNX op → (keras.ops applied first, the reduction, keras.ops applied after), each (module, class).
_PLAN = {
    "ReduceMin": (None, (_NUMPY, "Min"), None),
    "ReduceProd": (None, (_NUMPY, "Prod"), None),
    "ReduceL1": ((_NUMPY, "Absolute"), (_NUMPY, "Sum"), None),
    "ReduceL2": ((_NUMPY, "Square"), (_NUMPY, "Sum"), (_NUMPY, "Sqrt")),
    "ReduceSumSquare": ((_NUMPY, "Square"), (_NUMPY, "Sum"), None),
    "ReduceLogSum": (None, (_NUMPY, "Sum"), (_NUMPY, "Log")),
    "ReduceLogSumExp": (None, ("keras.src.ops.math", "Logsumexp"), None),
}


def reduce_math(g: Graph, node, a: dict) -> None:
    x = g.tensor(node.input[0])
    axes = reduce_axes(g, node, a, x)
    if axes is None:
        g.alias(node.output[0], x)
        return
    keep = bool(a.get("keepdims", 1))
    out_shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape)) if keep else \
        tuple(d for i, d in enumerate(x.shape) if i not in axes)
    cl = x.cl and keep and x.rank >= 3
    before, reduction, after = _PLAN[node.op_type]
    out = node.output[0]
    if before:
        x = g.layer(node, before[1], {}, [x], f"{out}:pre", x.shape, cl=x.cl, module=before[0], dtype=x.dtype)
    config = {"axis": [keras_axis(x, ax) for ax in axes], "keepdims": keep}
    if reduction[1] == "Min":
        config["initial"] = None
    if reduction[1] == "Prod":
        config["dtype"] = None
    y = g.layer(node, reduction[1], config, [x], f"{out}:red" if after else out, out_shape, cl=cl,
                module=reduction[0], dtype=x.dtype)
    if after:
        g.layer(node, after[1], {}, [y], out, out_shape, cl=cl, module=after[0], dtype=x.dtype)


def arg_reduce(g: Graph, node, a: dict) -> None:
    """ArgMax/ArgMin (first index of the extreme, as TensorFlow returns it) → keras.ops.argmax/argmin
    and a cast to ONNX's int64; select_last_index=1: the first index in the reversed axis,
    counted back from the end."""
    x = g.tensor(node.input[0])
    axis = int(a.get("axis", 0)) % x.rank
    if axis == 0:
        raise Unsupported("an index along the batch axis")
    last = bool(a.get("select_last_index", 0))
    if last and x.shape[axis] is None:
        raise Unsupported("select_last_index=1 on a dimension of unknown size")
    keep = bool(a.get("keepdims", 1))
    out_shape = tuple(1 if i == axis else d for i, d in enumerate(x.shape)) if keep else \
        tuple(d for i, d in enumerate(x.shape) if i != axis)
    cl = x.cl and keep and x.rank >= 3
    out = node.output[0]
    if last:
        key = [{"class_name": "__slice__", "config": {"start": None, "stop": None, "step": None}} for _ in range(x.rank)]
        key[keras_axis(x, axis)] = {"class_name": "__slice__", "config": {"start": None, "stop": None, "step": -1}}
        x = g.layer(node, "GetItem", {}, [x, key], f"{out}:rev", x.shape, cl=x.cl, module=_NUMPY, dtype=x.dtype)
    y = g.layer(node, "Argmax" if node.op_type == "ArgMax" else "Argmin", {"axis": keras_axis(x, axis), "keepdims": keep},
                [x], f"{out}:arg", out_shape, cl=cl, module=_NUMPY, dtype="int32")
    y = g.layer(node, "Cast", {"dtype": "int64"}, [y], f"{out}:rev_index" if last else out, out_shape, cl=cl,
                module="keras.src.ops.core", dtype="int64")
    if last:
        g.layer(node, "Subtract", {}, [x.shape[axis] - 1, y], out, out_shape, cl=cl, module=_NUMPY, dtype="int64")


def cumsum(g: Graph, node, a: dict) -> None:
    """CumSum → keras.ops.cumsum; `reverse` between two flips, `exclusive` minus the input."""
    x = g.tensor(node.input[0])
    axis = g.const(node.input[1])
    if axis is None:
        raise Unsupported("a computed axis")
    axis = int(axis.reshape(-1)[0]) % x.rank
    if axis == 0:
        raise Unsupported("a running sum along the batch axis")
    held = keras_axis(x, axis)
    out = node.output[0]
    reverse, exclusive = bool(a.get("reverse", 0)), bool(a.get("exclusive", 0))
    steps = ["Cumsum"] + (["Subtract"] if exclusive else []) + (["Flip"] if reverse else [])
    src = x
    if reverse:
        src = g.layer(node, "Flip", {"axis": held}, [x], f"{out}:flip", x.shape, cl=x.cl, module=_NUMPY,
                      dtype=x.dtype)
    y = src
    for i, step in enumerate(steps):
        name = out if i == len(steps) - 1 else f"{out}:{i}"
        config = {"axis": held, "dtype": None} if step == "Cumsum" else {"axis": held} if step == "Flip" else {}
        args = [y, src] if step == "Subtract" else [y]
        y = g.layer(node, step, config, args, name, x.shape, cl=x.cl, module=_NUMPY, dtype=x.dtype)
