"""``keras.ops`` calls recorded in Keras 3 functional graphs (and tf_keras TFOpLambda layers,
which modelmorph reads as such calls)."""

from __future__ import annotations

import numpy as np

from .. import proto
from ..builder import Value
from ..export import Call
from .activations import elementwise as activation_op

_INT64_MAX, _INT64_MIN = np.iinfo(np.int64).max, np.iinfo(np.int64).min

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
    names = [b.channels_last(v).name if isinstance(v, Value) else b.const(_constant(call, v, dtype), "operand")
             for v in operands]
    shapes = [v.shape for v in operands if isinstance(v, Value)]
    return Value(b.op1(_BINARY[call.layer.class_name], names), shapes[0] if len(shapes) == 1 else None, dtype)


def _constant(call: Call, value, dtype: str) -> np.ndarray:
    """A constant operand (a number, a nested list, or Keras 3's ``__numpy__`` record) in ``dtype``."""
    if isinstance(value, dict):
        if value.get("class_name") != "__numpy__":
            raise call.fail(f"an operand {value!r:.60} is not exported")
        value = (value.get("config") or {}).get("value")
    try:
        return np.asarray(value, dtype=dtype)
    except (TypeError, ValueError):
        raise call.fail(f"an operand {value!r:.60} is not exported") from None


def _ints(call: Call, value, what: str) -> list[int]:
    values = [value] if isinstance(value, int) else value
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool)
                                                         for v in values):
        raise call.fail(f"a {what} that is not a list of integers ({value!r:.60}) is not exported")
    return list(values)


def matmul(call: Call) -> Value:
    b = call.b
    operands = list(call.args)[:2]
    if len(operands) != 2 or not all(isinstance(v, Value) for v in operands):
        raise call.fail("a matmul with a constant operand is not exported yet")
    x, y = (b.channels_last(v) for v in operands)
    if x.rank is None or y.rank is None or x.rank < 2 or y.rank < 2:
        raise call.fail("a matmul of vectors is not exported yet")
    shape = None
    if x.shape is not None and y.shape is not None:
        batch = x.shape[:-2] if len(x.shape) >= len(y.shape) else y.shape[:-2]
        shape = (*batch, x.shape[-2], y.shape[-1])
    return Value(b.op1("MatMul", [x.name, y.name]), shape, x.dtype)


def stack(call: Call) -> Value:
    b = call.b
    tensors = [b.channels_last(v) for v in call.inputs]
    rank = tensors[0].rank + 1
    axis = int(call.config.get("axis", 0)) % rank
    expanded = [b.op1("Unsqueeze", [v.name, b.ints([axis], "axes")]) for v in tensors]
    shape = None if tensors[0].shape is None else (*tensors[0].shape[:axis], len(tensors), *tensors[0].shape[axis:])
    return Value(b.op1("Concat", expanded, axis=axis), shape, tensors[0].dtype)


def expand_dims(call: Call) -> Value:
    b = call.b
    x = b.channels_last(call.x)
    given = _ints(call, call.config.get("axis", 0), "axis")
    rank = x.rank + len(given)
    axes = sorted(a % rank for a in given)
    shape = None
    if x.shape is not None:
        dims = iter(x.shape)
        shape = tuple(1 if i in axes else next(dims) for i in range(rank))
    return Value(b.op1("Unsqueeze", [x.name, b.ints(axes, "axes")]), shape, x.dtype)


def squeeze(call: Call) -> Value:
    b = call.b
    x = b.channels_last(call.x)
    axis = call.config.get("axis")
    if axis is None:  # every axis of size 1: known only from the shape
        if x.shape is None or None in x.shape[1:]:
            raise call.fail("squeeze of every size-1 axis on a tensor of unknown shape")
        axes = [i for i, d in enumerate(x.shape) if d == 1]
    else:
        axes = sorted({a % x.rank for a in _ints(call, axis, "axis")})
    if x.shape is not None and any(x.shape[a] not in (1, None) for a in axes):
        raise call.fail(f"squeezing axes {axes} of a tensor shaped {x.shape}")
    shape = None if x.shape is None else tuple(d for i, d in enumerate(x.shape) if i not in axes)
    return Value(b.op1("Squeeze", [x.name, b.ints(axes, "axes")]), shape, x.dtype)


def reshape(call: Call) -> Value:
    b = call.b
    x = b.channels_last(call.x)
    target = _ints(call, call.config.get("newshape", call.config.get("shape")), "shape")
    if 0 in target or target.count(-1) > 1 or any(d < -1 for d in target):
        raise call.fail(f"the shape {target} is not exported")
    shape = tuple(None if d == -1 else d for d in target)  # -1: most often the batch
    return Value(b.op1("Reshape", [x.name, b.ints(target, "shape")]), shape, x.dtype)


def transpose(call: Call) -> Value:
    b = call.b
    x = b.channels_last(call.x)
    axes = call.config.get("axes")
    perm = list(range(x.rank))[::-1] if axes is None else [a % x.rank for a in _ints(call, axes, "axes")]
    shape = None if x.shape is None else tuple(x.shape[p] for p in perm)
    return Value(b.op1("Transpose", [x.name], perm=perm), shape, x.dtype)


def tile(call: Call) -> Value:
    b = call.b
    x = b.channels_last(call.x)
    repeats = _ints(call, call.config.get("repeats"), "repeats")
    name, shape = x.name, x.shape
    if len(repeats) > x.rank:  # numpy: the tensor gains leading axes
        extra = len(repeats) - x.rank
        name = b.op1("Unsqueeze", [name, b.ints(list(range(extra)), "axes")])
        shape = None if shape is None else (1,) * extra + tuple(shape)
    repeats = [1] * (x.rank - len(repeats)) + repeats
    shape = None if shape is None else tuple(None if d is None else d * r for d, r in zip(shape, repeats))
    return Value(b.op1("Tile", [name, b.ints(repeats, "repeats")]), shape, x.dtype)


def clip(call: Call) -> Value:
    b, c, x = call.b, call.config, call.x
    bounds = []
    for key in ("x_min", "x_max"):
        value = c.get(key)
        if value is not None and not isinstance(value, (int, float)):
            raise call.fail(f"a clip bound that is not a number ({value!r:.60}) is not exported")
        bounds.append("" if value is None else b.const(_constant(call, value, x.dtype), key))
    if x.dtype in ("bool", "string"):
        raise call.fail(f"clip of a {x.dtype} tensor is not exported")
    if bounds[0] and bounds[1] and c["x_min"] > c["x_max"]:
        raise call.fail("clip with x_min > x_max is not exported")
    return b.like(x, b.op1("Clip", [x.name, *bounds]))


def cast(call: Call) -> Value:
    b, x = call.b, call.x
    dtype = call.config.get("dtype")
    if isinstance(dtype, dict):  # a serialized DTypePolicy
        dtype = (dtype.get("config") or {}).get("name")
    if dtype not in proto.ELEMENT_TYPES or dtype in ("string", "bfloat16"):
        raise call.fail(f"a cast to {dtype!r} is not exported")
    return b.like(x, b.op1("Cast", [x.name], to=proto.ELEMENT_TYPES[dtype]), dtype=dtype)


def softmax(call: Call) -> Value:
    b, x = call.b, call.x
    axis = call.config.get("axis", -1)
    if not isinstance(axis, int):
        raise call.fail("softmax over several axes is not exported yet")
    op_type = "LogSoftmax" if call.layer.class_name == "LogSoftmax" else "Softmax"
    return b.like(x, b.op1(op_type, [x.name], axis=b.physical_axis(x, axis)))


def rsqrt(call: Call) -> Value:
    b, x = call.b, call.x
    return b.like(x, b.op1("Reciprocal", [b.op1("Sqrt", [x.name])]))


def get_item(call: Call) -> Value:
    """x[key] with integers, slices (any step), an ellipsis and new axes: one Slice, one Squeeze
    for the integer indices, one Unsqueeze for the new axes."""
    b = call.b
    x = b.channels_last(call.x)
    args = list(call.args)
    key = args[1] if len(args) > 1 else call.kwargs.get("key")
    key = list(key) if isinstance(key, (list, tuple)) else [key]
    if x.rank is None:
        raise call.fail("slicing a tensor of unknown rank")
    ellipses = sum(isinstance(k, dict) and k.get("class_name") == "__ellipsis__" for k in key)
    if ellipses > 1:
        raise call.fail("an index with several ellipses")
    consumed = sum(1 for k in key if k is not None and not (isinstance(k, dict) and k.get("class_name") == "__ellipsis__"))
    if consumed > x.rank:
        raise call.fail(f"an index of {consumed} axes on a tensor of rank {x.rank}")
    full = {"class_name": "__slice__", "config": {"start": None, "stop": None, "step": None}}
    expanded = []
    for k in key:
        if isinstance(k, dict) and k.get("class_name") == "__ellipsis__":
            expanded += [full] * (x.rank - consumed)
        else:
            expanded.append(k)
    if not ellipses:  # the axes after the key's are taken whole
        expanded += [full] * (x.rank - consumed)
    axes, starts, ends, steps, dropped, new, shape = [], [], [], [], [], [], []
    axis, out = 0, 0
    for k in expanded:
        if k is None:  # a new axis of size 1
            new.append(out)
            shape.append(1)
            out += 1
            continue
        size = None if x.shape is None else x.shape[axis]
        if isinstance(k, bool) or not (isinstance(k, int) or (isinstance(k, dict) and k.get("class_name") == "__slice__")):
            raise call.fail(f"an index {k!r:.60} is not exported (only integers, slices, ... and None)")
        if isinstance(k, int):
            if size is not None and not -size <= k < size:
                raise call.fail(f"index {k} out of range for an axis of {size}")
            axes.append(axis), starts.append(k), ends.append(_INT64_MAX if k == -1 else k + 1), steps.append(1)
            dropped.append(axis)
        else:
            config = k.get("config") or {}
            start, stop, step = config.get("start"), config.get("stop"), config.get("step")
            if not all(v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in (start, stop, step)):
                raise call.fail("a slice with bounds that are not integers is not exported")
            step = 1 if step is None else step
            if step == 0:
                raise call.fail("a slice step of 0")
            if (start, stop, step) != (None, None, 1):
                axes.append(axis), steps.append(step)
                starts.append(start if start is not None else (0 if step > 0 else _INT64_MAX))
                ends.append(stop if stop is not None else (_INT64_MAX if step > 0 else _INT64_MIN))
            shape.append(None if size is None else len(range(*slice(start, stop, step).indices(size))))
            out += 1
        axis += 1
    y = x.name
    if axes:
        y = b.op1("Slice", [y, b.ints(starts, "starts"), b.ints(ends, "ends"), b.ints(axes, "axes"),
                            b.ints(steps, "steps")])
    if dropped:
        y = b.op1("Squeeze", [y, b.ints(dropped, "axes")])
    if new:
        y = b.op1("Unsqueeze", [y, b.ints(new, "axes")])
    if y == x.name:
        y = b.op1("Identity", [y])
    return Value(y, tuple(shape), x.dtype)


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
OPERATIONS.update({"Concatenate": concatenate, "Matmul": matmul, "Stack": stack, "ExpandDims": expand_dims,
                   "Squeeze": squeeze, "Reshape": reshape, "Transpose": transpose, "Tile": tile, "Clip": clip,
                   "GetItem": get_item, "Cast": cast, "Softmax": softmax, "LogSoftmax": softmax, "Rsqrt": rsqrt})
