"""A Dense computing in float16 (Keras' ``mixed_float16`` policy), as modelmorph exports it, back
as that layer.

The export keeps the graph float32 and rounds where Keras' float16 layer rounds: a Cast to
float16 and straight back (a *rounding*) on the layer's input and after each of its ops, with
weights already float16 values. So

    R(x) → MatMul(W) → R [→ Add(b) → R] [→ Relu → R]        (R: Cast to 16, Cast to 1)

is ``Dense(dtype="mixed_float16")`` on x: Keras casts x and the weights to float16 and rounds
each op's result to float16, the same numbers (TensorFlow's float16 MatMul sums in float32
and rounds once, as the graph does; its float16 Sigmoid, Tanh... are not float32's rounded, so
another activation stays an op after the layer, never folded into it). Matched from the first Cast, only in full
(every rounding there, each tensor read once and no graph output, W and b float32 holding
float16 values, the result read only by MatMul, Gemm, Cast or an activation op); the layer's output is a float16
Keras tensor (the next float32 Dense casts it back, exactly). Anything else stays Casts.
"""

from __future__ import annotations

import numpy as np

from ..graph import Graph
from ..load import attributes
from .common import flat_order

_FLOAT16, _FLOAT = 10, 1
#: Readers of the float16 result that take it as the float32 value it is: the Dense and Activation
#: layers they become cast their input to their own dtype (a keras.ops matmul promotes it), a Cast
#: casts.
_CASTING_READERS = frozenset({"MatMul", "Gemm", "Cast", "Relu", "Sigmoid", "Tanh", "Softplus", "Softsign"})
MIXED = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "mixed_float16"},
         "registered_name": None}


def _one_reader(g: Graph, name: str):
    users = g.consumers.get(name, [])
    if len(users) != 1 or name in g.outputs:
        return None
    return users[0]


def _rounding(g: Graph, name: str) -> tuple | None:
    """(the two Casts, the float32 result) when ``name``'s one reader is a rounding to float16."""
    first = _one_reader(g, name)
    if first is None or first.op_type != "Cast" or attributes(first).get("to") != _FLOAT16:
        return None
    second = _one_reader(g, first.output[0])
    if second is None or second.op_type != "Cast" or attributes(second).get("to") != _FLOAT:
        return None
    return (first, second), second.output[0]


def _half_values(g: Graph, name: str) -> np.ndarray | None:
    """A float32 constant holding float16 values only, or None."""
    if name not in g.values:
        return None
    value = g.load(name)
    if not isinstance(value, np.ndarray) or value.dtype != np.float32:
        return None
    with np.errstate(over="ignore"):
        exact = np.array_equal(value.astype(np.float16).astype(np.float32), value)
    return value if exact else None


def try_mixed_dense(g: Graph, cast) -> bool:
    """The pattern (see the module) from the input's first Cast ``cast``: one float16 Dense."""
    if cast.op_type != "Cast" or attributes(cast).get("to") != _FLOAT16:
        return False
    x = g.tensors.get(cast.input[0])
    if x is None or x.dtype not in ("float32", "float16") or x.rows is not None or x.rank < 2:
        return False
    found = _rounding(g, cast.input[0])
    if found is None or found[0][0] is not cast:
        return False
    nodes = list(found[0])
    matmul = _one_reader(g, found[1])
    if matmul is None or matmul.op_type != "MatMul" or matmul.input[0] != found[1] or matmul.input[1] == found[1]:
        return False
    kernel = _half_values(g, matmul.input[1])
    if kernel is None or kernel.ndim != 2 or (x.shape[-1] is not None and x.shape[-1] != kernel.shape[0]):
        return False
    found = _rounding(g, matmul.output[0])
    if found is None:
        return False
    nodes += [matmul, *found[0]]
    out, bias, activation = found[1], None, "linear"
    after = _one_reader(g, out)
    if after is not None and after.op_type == "Add":
        other = after.input[1] if after.input[0] == out else after.input[0]
        b = _half_values(g, other)
        rounded = _rounding(g, after.output[0])
        if b is not None and b.shape == (kernel.shape[1],) and other != out and rounded is not None:
            nodes += [after, *rounded[0]]
            out, bias = rounded[1], b
            after = _one_reader(g, out)
    if after is not None and after.op_type == "Relu":  # exact in float16 (TensorFlow's float16 sigmoid,
        # tanh... are not float32's rounded: those stay an op after the layer)
        rounded = _rounding(g, after.output[0])
        if rounded is not None:
            nodes += [after, *rounded[0]]
            out, activation = rounded[1], "relu"
    if out in g.outputs or any(u.op_type not in _CASTING_READERS for u in g.consumers.get(out, [])):
        return False  # a float16 Keras tensor where the graph has float32 (an output, an op mixing dtypes)
    g.skip.update(id(n) for n in nodes)
    x = flat_order(g, matmul, x)
    units = int(kernel.shape[1])
    g.layer(matmul, "Dense", {"units": units, "activation": activation, "use_bias": bias is not None,
                              "dtype": MIXED}, [x], out, (*x.shape[:-1], units),
            weights=[kernel] + ([bias] if bias is not None else []), dtype="float16")
    return True


def mixed_first(convert):
    """The Cast converter ``convert``, after the float16 Dense pattern is tried."""
    def convert_cast(g: Graph, node, a: dict) -> None:
        if try_mixed_dense(g, node):
            return
        convert(g, node, a)
    return convert_cast
