"""``keras.ops`` calls recorded in Keras 3 functional graphs (and tf_keras TFOpLambda layers,
which modelmorph reads as such calls)."""

from __future__ import annotations

import numpy as np

from ..builder import Value
from ..export import Call
from .activations import elementwise as activation_op

_UNARY = {"Absolute": "Abs", "Negative": "Neg", "Exp": "Exp", "Log": "Log", "Sqrt": "Sqrt", "Tanh": "Tanh",
          "Sigmoid": "Sigmoid", "Relu": "Relu", "Floor": "Floor", "Ceil": "Ceil", "Sin": "Sin", "Cos": "Cos",
          "Sign": "Sign", "Reciprocal": "Reciprocal", "Softplus": "Softplus", "Softsign": "Softsign"}
_BINARY = {"Add": "Add", "Subtract": "Sub", "Multiply": "Mul", "TrueDivide": "Div", "Divide": "Div",
           "Maximum": "Max", "Minimum": "Min", "Power": "Pow"}
_REDUCE = {"Mean": "ReduceMean", "Sum": "ReduceSum", "Max": "ReduceMax", "Min": "ReduceMin", "Prod": "ReduceProd"}


def unary(call: Call) -> Value:
    b, x = call.b, call.x
    name = call.layer.class_name
    if name == "Square":
        return b.like(x, b.op1("Mul", [x.name, x.name]))
    if name in ("Silu", "Gelu", "Relu6", "Selu", "Elu"):
        return b.like(x, activation_op(b, x.name, name.lower()))
    return b.like(x, b.op1(_UNARY[name], [x.name]))


def binary(call: Call) -> Value:
    b = call.b
    operands = list(call.args)[:2]
    tensors = [b.channels_last(v) for v in operands if isinstance(v, Value)]
    if len(operands) != 2 or not tensors:
        raise call.fail("takes two operands, one of them a tensor")
    dtype = tensors[0].dtype
    names = [b.channels_last(v).name if isinstance(v, Value) else b.const(np.asarray(v, dtype=dtype), "operand")
             for v in operands]
    shapes = [v.shape for v in operands if isinstance(v, Value)]
    return Value(b.op1(_BINARY[call.layer.class_name], names), shapes[0] if len(shapes) == 1 else None, dtype)


def reduce(call: Call) -> Value:
    b = call.b
    x = b.channels_last(call.x)
    axis, keepdims = call.config.get("axis"), bool(call.config.get("keepdims", False))
    axes = list(range(x.rank)) if axis is None else [a % x.rank for a in ([axis] if isinstance(axis, int) else axis)]
    y = b.reduce(_REDUCE[call.layer.class_name], x.name, axes, keepdims)
    shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape)) if keepdims else \
        tuple(d for i, d in enumerate(x.shape) if i not in axes)
    return Value(y, shape, x.dtype)


def concatenate(call: Call) -> Value:
    b = call.b
    tensors = [b.channels_last(v) for v in call.inputs]
    axis = int(call.config.get("axis", 0)) % tensors[0].rank
    shape = None
    if all(v.shape is not None for v in tensors):
        sizes = [v.shape[axis] for v in tensors]
        shape = tuple((None if None in sizes else sum(sizes)) if i == axis else d for i, d in enumerate(tensors[0].shape))
    return Value(b.op1("Concat", [v.name for v in tensors], axis=axis), shape, tensors[0].dtype)


OPERATIONS = {name: unary for name in (*_UNARY, "Square", "Silu", "Gelu", "Relu6", "Selu", "Elu")}
OPERATIONS.update({name: binary for name in _BINARY})
OPERATIONS.update({name: reduce for name in _REDUCE})
OPERATIONS["Concatenate"] = concatenate
