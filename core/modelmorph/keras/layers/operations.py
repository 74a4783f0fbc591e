"""``keras.ops`` calls recorded in a Functional graph (module ``keras.src.ops.*``): operations,
not layers. Their class names can equal a layer's (``Multiply``, ``Concatenate``) with other
call conventions, so they are described apart from the layers (:func:`operation`)."""

from __future__ import annotations

from . import LayerClass, same_shape
from .merging import _broadcast

FAMILY = "operations"


def _reduce(config: dict, shapes: list):
    shape = shapes[0] if shapes else None
    if shape is None:
        return None
    axis = config.get("axis")
    axes = set(range(len(shape))) if axis is None else {a % len(shape) for a in ([axis] if isinstance(axis, int) else axis)}
    if config.get("keepdims"):
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def _concatenate(config: dict, shapes: list):
    from .merging import _concatenate as layer_rule

    return layer_rule({"axis": config.get("axis", 0)}, shapes)


def _expand_dims(config: dict, shapes: list):
    shape, axis = (shapes[0] if shapes else None), config.get("axis")
    if shape is None or not isinstance(axis, int):
        return None
    axis = axis % (len(shape) + 1)
    return (*shape[:axis], 1, *shape[axis:])


def _squeeze(config: dict, shapes: list):
    shape, axis = (shapes[0] if shapes else None), config.get("axis")
    if shape is None:
        return None
    axes = {i for i, d in enumerate(shape) if d == 1} if axis is None else \
        {a % len(shape) for a in ([axis] if isinstance(axis, int) else axis)}
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def _transpose(config: dict, shapes: list):
    shape, axes = (shapes[0] if shapes else None), config.get("axes")
    if shape is None:
        return None
    axes = list(reversed(range(len(shape)))) if axes is None else axes
    return tuple(shape[a] for a in axes) if len(axes) == len(shape) else None


_UNARY = ("Relu", "Relu6", "Sigmoid", "Tanh", "Softplus", "Softsign", "Silu", "Gelu", "Elu", "Selu", "LeakyRelu",
          "HardSigmoid", "Exp", "Log", "Abs", "Absolute", "Negative", "Sqrt", "Square", "Sin", "Cos", "Floor", "Ceil",
          "Round", "Sign", "Reciprocal", "Rsqrt", "Softmax", "LogSoftmax", "Clip")
_BINARY = ("Add", "Subtract", "Multiply", "Divide", "TrueDivide", "Maximum", "Minimum", "Power", "Mod")
_REDUCE = ("Mean", "Sum", "Max", "Min", "Prod", "Any", "All")

CLASSES = [
    *(LayerClass(name, family=FAMILY, output_shape=same_shape) for name in _UNARY),
    *(LayerClass(name, family=FAMILY, output_shape=_broadcast) for name in _BINARY),
    *(LayerClass(name, family=FAMILY, output_shape=_reduce) for name in _REDUCE),
    LayerClass("Concatenate", family=FAMILY, output_shape=_concatenate),
    LayerClass("ExpandDims", family=FAMILY, output_shape=_expand_dims),
    LayerClass("Squeeze", family=FAMILY, output_shape=_squeeze),
    LayerClass("Transpose", family=FAMILY, output_shape=_transpose),
]
