"""Building an ONNX graph while walking a Keras model: nodes, weights, and tensor layouts.

Keras is channels-last; ONNX's spatial operators (Conv, pools, Resize) are channels-first.
Every tensor is a :class:`Value` that knows its logical Keras shape and whether it is held
channels-first. A converter asks for the layout it needs (:meth:`Builder.channels_last`,
:meth:`Builder.channels_first`); the Transpose is made once per tensor, and element-wise
converters keep whatever layout they are given, so a plain CNN pays one Transpose at its input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np

from modelmorph import Layer

from . import proto


@dataclass(frozen=True)
class Value:
    """A tensor of the graph: its ONNX name, its Keras shape (batch first, None unknown), dtype,
    and whether it is held channels-first (Keras axis -1 at physical axis 1)."""

    name: str
    shape: tuple | None
    dtype: str = "float32"
    channels_first: bool = False

    @property
    def rank(self) -> int | None:
        return None if self.shape is None else len(self.shape)


class ConversionError(Exception):
    """A layer the export cannot express (the writer names the layer and its class)."""


#: Ops whose outputs are not float results to round (indices, shapes, casts).
_NOT_ROUNDED = frozenset({"Cast", "Shape", "Size", "ArgMax", "ArgMin", "NonZero"})


def to_first(rank: int) -> list[int]:
    return [0, rank - 1, *range(1, rank - 1)]


def to_last(rank: int) -> list[int]:
    return [0, *range(2, rank), 1]


@dataclass
class Builder:
    """Collects the nodes and initializers of one graph."""

    opset: int
    add_weight: Callable[..., None]  # (name, array, weight=True): streams an initializer out
    nodes: list = field(default_factory=list)  # NodeProto
    _names: set[str] = field(default_factory=set)
    _layouts: dict[tuple[str, bool], Value] = field(default_factory=dict)
    _constants: dict[tuple, str] = field(default_factory=dict)
    scope: str = ""  # the Keras layer being converted: names its nodes
    # Within a layer computing in float16 (mixed precision), every op's float result is rounded
    # to float16: the graph stays float32 but gives Keras' float16 numbers (TensorFlow's CPU
    # kernels compute each float16 op in float32 and round once).
    half: bool = False

    # -- names -----------------------------------------------------------------------------
    def fresh(self, hint: str) -> str:
        base = hint.replace(":", "_") or "t"
        name, i = base, 1
        while name in self._names:
            name, i = f"{base}_{i}", i + 1
        self._names.add(name)
        return name

    def reserve(self, name: str) -> None:
        self._names.add(name)

    # -- nodes ---------------------------------------------------------------------------
    def op(self, op_type: str, inputs: Iterable[str], outputs: int | list[str] = 1, **attrs: Any) -> list[str]:
        """Add one node; returns its output names (fresh ones unless given)."""
        prefix = f"{self.scope}/{op_type}" if self.scope else op_type
        names = outputs if isinstance(outputs, list) else [self.fresh(f"{prefix}:{i}" if outputs > 1 else prefix)
                                                           for i in range(outputs)]
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(proto.node(op_type, inputs, names, self.fresh(prefix), **attrs))
        if self.half and not isinstance(outputs, list) and op_type not in _NOT_ROUNDED:
            return [self._round(name) for name in names]
        return names

    def _round(self, name: str) -> str:
        """``name`` rounded to float16 and held as float32 again: what Keras' float16 op gives."""
        half = self.fresh(f"{name}:f16")
        back = self.fresh(f"{name}:rounded")
        self.nodes.append(proto.node("Cast", [name], [half], self.fresh(f"{half}/Cast"), to=10))
        self.nodes.append(proto.node("Cast", [half], [back], self.fresh(f"{back}/Cast"), to=1))
        return back

    def rounded(self, value: Value) -> Value:
        """A float value rounded to float16 (a mixed-precision layer's inputs and outputs)."""
        if value.dtype not in ("float32", "float16"):
            return value
        return Value(self._round(value.name), value.shape, value.dtype, value.channels_first)

    def op1(self, op_type: str, inputs: Iterable[str], **attrs: Any) -> str:
        return self.op(op_type, inputs, 1, **attrs)[0]

    # -- constants and weights ------------------------------------------------------------
    def const(self, array: Any, hint: str = "const", dtype: Any = None) -> str:
        """A small constant (shapes, axes, scalars), shared by value."""
        array = np.asarray(array, dtype=dtype)
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._constants:
            name = self.fresh(f"{self.scope}/{hint}" if self.scope else hint)
            self.add_weight(name, array, weight=False)
            self._constants[key] = name
        return self._constants[key]

    def ints(self, values: Iterable[int], hint: str = "shape") -> str:
        return self.const(np.asarray(list(values), dtype=np.int64), hint)

    def weight(self, array: np.ndarray, hint: str) -> str:
        """A layer's weight (one tensor, written out at once: never kept)."""
        name = self.fresh(f"{self.scope}/{hint}" if self.scope else hint)
        self.add_weight(name, np.ascontiguousarray(array))
        return name

    # -- layouts -------------------------------------------------------------------------
    def channels_last(self, value: Value) -> Value:
        return self._layout(value, False)

    def channels_first(self, value: Value) -> Value:
        return self._layout(value, True)

    def _layout(self, value: Value, first: bool) -> Value:
        if value.channels_first == first or value.rank is None or value.rank < 3:
            return value if value.channels_first == first else Value(value.name, value.shape, value.dtype, first)
        key = (value.name, first)
        if key not in self._layouts:
            perm = to_first(value.rank) if first else to_last(value.rank)
            self._layouts[key] = Value(self.op1("Transpose", [value.name], perm=perm), value.shape, value.dtype, first)
        return self._layouts[key]

    def physical_axis(self, value: Value, axis: int) -> int:
        """The axis of the held tensor where Keras axis ``axis`` lies."""
        rank = value.rank
        if rank is None:
            raise ConversionError("a tensor of unknown rank")
        axis %= rank
        if not value.channels_first or rank < 3:
            return axis
        return to_first(rank).index(axis)  # held[p] is Keras axis to_first[p]

    def like(self, value: Value, name: str, shape: tuple | None = None, dtype: str | None = None) -> Value:
        """A new value in ``value``'s layout."""
        return Value(name, value.shape if shape is None else shape, dtype or value.dtype, value.channels_first)

    # -- reductions (their axes moved from an attribute to an input in opset 18) ---------------
    def reduce(self, op_type: str, x: str, axes: list[int], keepdims: bool) -> str:
        if self.opset >= 18 or op_type == "ReduceSum":  # ReduceSum moved at 13, the minimum we write
            return self.op1(op_type, [x, self.ints(axes, "axes")], keepdims=int(keepdims))
        return self.op1(op_type, [x], axes=axes, keepdims=int(keepdims))


def fail(layer: Layer, problem: str) -> ConversionError:
    return ConversionError(f"layer {layer.name!r} ({layer.class_name}): {problem}")
