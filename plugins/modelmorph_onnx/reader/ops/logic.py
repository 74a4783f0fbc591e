"""Element-wise ops without a Keras layer → ``keras.ops`` operations: comparisons and logic,
Where, Mod, trigonometry and other unary maths, variadic Sum/Mean/Max/Min (merge layers when
the operands are tensors of one shape), real Casts. Constant operands become ``__numpy__``
arguments laid out like the tensors they meet."""

from __future__ import annotations

import numpy as np

from ..graph import Graph, T, Unsupported, _perm_cl
from ..load import DTYPES
from .common import broadcast

_NUMPY = "keras.src.ops.numpy"

#: ONNX op → keras.ops.numpy class (all binary, numpy broadcasting).
COMPARE = {"Equal": "Equal", "Less": "Less", "Greater": "Greater", "LessOrEqual": "LessEqual",
           "GreaterOrEqual": "GreaterEqual", "And": "LogicalAnd", "Or": "LogicalOr", "Xor": "LogicalXor"}

#: ONNX op → keras.ops.numpy class (unary, exact as TensorFlow computes them).
UNARY = {"Sin": "Sin", "Cos": "Cos", "Tan": "Tan", "Asin": "Arcsin", "Acos": "Arccos", "Atan": "Arctan",
         "Sinh": "Sinh", "Cosh": "Cosh", "Asinh": "Arcsinh", "Acosh": "Arccosh", "Atanh": "Arctanh",
         "Sign": "Sign", "Round": "Round", "IsNaN": "Isnan", "Not": "LogicalNot"}


def operands(g: Graph, node, names: list[str]) -> tuple[list, tuple, bool]:
    """(Keras arguments, output ONNX shape, channels-last) for an element-wise op over ``names``:
    tensors brought to one layout, constants reshaped to the output rank and laid out to match."""
    tensors = {n: g.tensors.get(n) for n in names}
    present = [t for t in tensors.values() if t is not None]
    if not present:
        raise Unsupported("no computed operand")
    rank = max(t.rank for t in present)
    consts = {n: g.const(n) for n in names if tensors[n] is None}
    if any(c is None for c in consts.values()):
        raise Unsupported("an operand is neither computed nor constant")
    if any(c.ndim > rank for c in consts.values()):
        raise Unsupported("a constant of higher rank than the tensors (it would move the batch axis)")
    if all(t.rank == rank for t in present) and any(t.cl for t in present) and rank >= 3:
        aligned = {n: g.to_cl(t, node) for n, t in tensors.items() if t is not None}
        cl = True
    else:
        aligned = {n: g.to_onnx_order(t, node) for n, t in tensors.items() if t is not None}
        cl = False
    shape: tuple = ()
    args = []
    for n in names:
        if n in aligned:
            shape = broadcast(shape, aligned[n].shape, None)
            args.append(aligned[n])
            continue
        c = np.asarray(consts[n])
        shape = broadcast(shape, c.shape, None)
        c = c.reshape((1,) * (rank - c.ndim) + c.shape)
        if cl:
            c = c.transpose(_perm_cl(rank))
        args.append({"class_name": "__numpy__", "config": {"value": c.tolist(), "dtype": c.dtype.name}})
    inferred = g.shapes.get(node.output[0]) if None in shape[1:] else g.shapes.known(node.output[0])
    if inferred is not None and len(inferred) == len(shape):
        shape = tuple(d if d is not None else (i if isinstance(i, int) else None) for d, i in zip(shape, inferred))
    return args, shape, cl


def _dtype_of(g: Graph, name: str) -> str:
    t = g.tensors.get(name)
    if t is not None:
        return t.dtype
    c = g.const(name)
    return c.dtype.name if c is not None else "float32"


def compare(g: Graph, node, a: dict) -> None:
    args, shape, cl = operands(g, node, list(node.input))
    g.layer(node, COMPARE[node.op_type], {}, args, node.output[0], shape, cl=cl, module=_NUMPY, dtype="bool")


def unary(g: Graph, node, a: dict) -> None:
    x = g.tensor(node.input[0])
    dtype = "bool" if node.op_type in ("IsNaN", "Not") else x.dtype
    g.layer(node, UNARY[node.op_type], {}, [x], node.output[0], x.shape, cl=x.cl, module=_NUMPY, dtype=dtype)


def where(g: Graph, node, a: dict) -> None:
    args, shape, cl = operands(g, node, list(node.input))
    g.layer(node, "Where", {}, args, node.output[0], shape, cl=cl, module=_NUMPY,
            dtype=_dtype_of(g, node.input[1]))


def mod(g: Graph, node, a: dict) -> None:
    """fmod=0 is the remainder with the divisor's sign (numpy's mod); fmod=1 the one with the
    dividend's sign (C's fmod): sign(x) · mod(|x|, |y|)."""
    dtype = _dtype_of(g, node.input[0])
    args, shape, cl = operands(g, node, list(node.input))
    if not a.get("fmod", 0):
        g.layer(node, "Mod", {}, args, node.output[0], shape, cl=cl, module=_NUMPY, dtype=dtype)
        return
    out = node.output[0]
    absolute = [g.layer(node, "Absolute", {}, [v], f"{out}:abs{i}", shape, cl=cl, module=_NUMPY, dtype=dtype)
                if isinstance(v, T) else _abs_const(v) for i, v in enumerate(args)]
    rem = g.layer(node, "Mod", {}, absolute, f"{out}:mod", shape, cl=cl, module=_NUMPY, dtype=dtype)
    x = args[0]
    if not isinstance(x, T):
        raise Unsupported("a constant dividend")
    sign = g.layer(node, "Sign", {}, [x], f"{out}:sign", x.shape, cl=cl, module=_NUMPY, dtype=dtype)
    g.layer(node, "Multiply", {}, [sign, rem], out, shape, cl=cl, module=_NUMPY, dtype=dtype)


def _abs_const(v: dict) -> dict:
    value = np.abs(np.asarray(v["config"]["value"], v["config"]["dtype"]))
    return {"class_name": "__numpy__", "config": {"value": value.tolist(), "dtype": value.dtype.name}}


_MERGE = {"Sum": "Add", "Mean": "Average", "Max": "Maximum", "Min": "Minimum"}
_PAIR = {"Sum": "Add", "Mean": "Add", "Max": "Maximum", "Min": "Minimum"}


def variadic(g: Graph, node, a: dict) -> None:
    """Sum/Mean/Max/Min of any number of operands: the merge layer when all are tensors of one
    shape and layout-compatible, else a chain of keras.ops (Mean divides the sum at the end)."""
    names = [n for n in node.input if n]
    if len(names) == 1:
        g.alias(node.output[0], g.tensor(names[0]))
        return
    tensors = [g.tensors.get(n) for n in names]
    dtype = _dtype_of(g, names[0])
    if all(t is not None for t in tensors) and len({t.shape for t in tensors}) == 1 and None not in tensors[0].shape[1:] \
            and dtype.startswith("float"):
        if any(t.cl for t in tensors):
            tensors = [g.to_cl(t, node) for t in tensors]
        g.layer(node, _MERGE[node.op_type], {}, [tensors], node.output[0], tensors[0].shape, cl=tensors[0].cl,
                dtype=dtype)
        return
    args, shape, cl = operands(g, node, names)
    out = node.output[0]
    acc = args[0]
    for i, v in enumerate(args[1:], 1):
        last = i == len(args) - 1 and node.op_type != "Mean"
        acc = g.layer(node, _PAIR[node.op_type], {}, [acc, v], out if last else f"{out}:{i}", shape, cl=cl,
                      module=_NUMPY, dtype=dtype)
    if node.op_type == "Mean":
        g.layer(node, "Divide", {}, [acc, float(len(args))], out, shape, cl=cl, module=_NUMPY, dtype=dtype)


def cast(g: Graph, node, a: dict) -> None:
    """Cast (and CastLike) → keras.ops.cast; a no-op cast is nothing. Only the types a Keras
    tensor holds are read (no strings, float8 or 4-bit types); float → int truncates toward
    zero in TensorFlow as in ONNX."""
    x = g.tensor(node.input[0])
    if node.op_type == "CastLike":
        other = g.tensors.get(node.input[1])
        to = other.dtype if other is not None else _dtype_of(g, node.input[1])
    else:
        to = DTYPES.get(a.get("to"))
        if to is None:
            raise Unsupported(f"cast to ONNX type {a.get('to')} (no Keras dtype holds it)")
    if to == x.dtype:
        g.alias(node.output[0], x)
        return
    g.layer(node, "Cast", {"dtype": to}, [x], node.output[0], x.shape, cl=x.cl, module="keras.src.ops.core",
            dtype=to)
