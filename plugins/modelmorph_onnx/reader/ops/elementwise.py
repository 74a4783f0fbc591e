"""Binary arithmetic → merge layers or keras.ops (constants laid out like the tensor); Identity, Cast."""

from __future__ import annotations

import math
from typing import Any

from ..fold import is_symbolic
from ..graph import Graph, Unsupported, _perm_cl
from ..load import DTYPES
from .common import broadcast


_MERGE = {"Add": "Add", "Sub": "Subtract", "Mul": "Multiply"}


_OPS = {"Add": "Add", "Sub": "Subtract", "Mul": "Multiply", "Div": "Divide", "Pow": "Power", "Max": "Maximum",
        "Min": "Minimum"}


def _out_shape(g: Graph, node, own: tuple) -> tuple | None:
    """The output's shape from the file or inference, asked of inference only when the operands'
    broadcast (``own``) leaves a dim beyond the batch unknown."""
    out_shape = g.shapes.get(node.output[0]) if None in own[1:] else g.shapes.known(node.output[0])
    return tuple(d if isinstance(d, int) else None for d in out_shape) if out_shape is not None else None


def binary(g: Graph, node, a: dict) -> None:
    if node.op_type == "Div" and _gelu_pattern(g, node):
        return
    if len(node.input) != 2:
        raise Unsupported(f"{len(node.input)} operands")
    names = list(node.input)
    tensors = [g.tensors.get(n) for n in names]
    if all(t is not None for t in tensors):
        x, y = tensors
        if x.rank == y.rank and (x.cl or y.cl):
            x, y = g.to_cl(x, node), g.to_cl(y, node)
        elif x.rank != y.rank:
            x, y = g.to_onnx_order(x, node), g.to_onnx_order(y, node)
        shape = broadcast(x.shape, y.shape, _out_shape(g, node, broadcast(x.shape, y.shape, None)))
        same = x.shape == y.shape and node.op_type in _MERGE
        if same:
            g.layer(node, _MERGE[node.op_type], {}, [[x, y]], node.output[0], shape, cl=x.cl)
        else:
            g.layer(node, _OPS[node.op_type], {}, [x, y], node.output[0], shape, cl=x.cl, module="keras.src.ops.numpy")
        return
    index = 0 if tensors[0] is not None else 1
    x = tensors[index]
    if x is None:
        raise Unsupported("no computed operand")
    c = g.const(names[1 - index])
    if c.ndim > x.rank:
        raise Unsupported("a constant of higher rank than the tensor")
    if c.size == 1:
        operand: Any = c.reshape(()).item()
    else:
        c = c.reshape((1,) * (x.rank - c.ndim) + c.shape)
        if x.cl and x.rank >= 3:
            c = c.transpose(_perm_cl(x.rank))
        operand = {"class_name": "__numpy__", "config": {"value": c.tolist(), "dtype": c.dtype.name}}
    args = [x, operand] if index == 0 else [operand, x]
    own = broadcast(x.shape, c.shape if c.size > 1 else (), None)
    shape = broadcast(x.shape, c.shape if c.size > 1 else (), _out_shape(g, node, own))
    g.layer(node, _OPS[node.op_type], {}, args, node.output[0], shape, cl=x.cl, module="keras.src.ops.numpy")


def _gelu_pattern(g: Graph, div) -> bool:
    """PyTorch's exact GELU below opset 20: x/√2 → Erf → +1 → ·x → ·0.5 (→ one Keras gelu)."""
    c = g.values.get(div.input[1])
    x = g.tensors.get(div.input[0])
    if x is None or c is None or callable(c) or is_symbolic(c) or c.size != 1 or abs(float(c.reshape(-1)[0]) - math.sqrt(2)) > 1e-4:
        return False

    def only_user(name: str, op: str):
        users = g.consumers.get(name, [])
        return users[0] if len(users) == 1 and users[0].op_type == op and name not in g.outputs else None

    def const_of(node, value: float, other: str):
        k = [n for n in node.input if n != other]
        v = g.values.get(k[0]) if len(k) == 1 else None
        return v is not None and not callable(v) and not is_symbolic(v) and v.size == 1 and abs(float(v.reshape(-1)[0]) - value) < 1e-6

    erf = only_user(div.output[0], "Erf")
    add = erf and only_user(erf.output[0], "Add")
    if not add or not const_of(add, 1.0, erf.output[0]):
        return False
    mul = only_user(add.output[0], "Mul")
    if not mul or div.input[0] not in mul.input:
        return False
    half = only_user(mul.output[0], "Mul")
    if not half or not const_of(half, 0.5, mul.output[0]):
        return False
    g.skip.update({id(erf), id(add), id(mul), id(half)})
    g.layer(div, "Activation", {"activation": "gelu"}, [x], half.output[0], x.shape, cl=x.cl)
    return True


def identity(g: Graph, node, a: dict) -> None:
    if node.op_type == "Dropout" and len(node.output) > 1 and node.output[1] and g.consumers.get(node.output[1]):
        raise Unsupported("the mask output is used")
    g.alias(node.output[0], g.tensor(node.input[0]))


def cast(g: Graph, node, a: dict) -> None:
    x = g.tensor(node.input[0])
    if DTYPES.get(a.get("to")) != x.dtype:
        raise Unsupported(f"cast to ONNX type {a.get('to')} (only no-op casts are read)")
    g.alias(node.output[0], x)
