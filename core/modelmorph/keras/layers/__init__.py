"""Layer-class descriptors: everything modelmorph knows about one Keras layer class, in one place.

A :class:`LayerClass` says, for a class name:

- ``variables(config)``: its variables in saving order (``trainable + non-trainable``, creation
  order, the same in Keras 2 ``weight_names`` and Keras 3 ``vars/0, 1...``); a variable of a
  sub-object is named by the path to it (``cell/kernel``); one Keras 3 saves by name
  (``vars/idf_weights``) is marked ``named``; ``None`` when they cannot be listed;
- ``child(config, attribute)``: the sub-object a layer keeps under an attribute (an RNN's
  ``cell``, a Bidirectional's ``forward_layer``), with its class, config and the ``.name``
  Keras 3 gives it;
- ``sequences``: attributes holding a list of sub-objects (StackedRNNCells' ``cells``): an
  element's path part is its Keras 3 key (its snake-cased class, made unique in the list:
  ``cells/gru_cell``), checkpoints number it (``cells/0``);
- ``private``: sub-objects whose attribute is private in both Keras versions (checkpoints
  name them so: MultiHeadAttention's ``_query_dense``); ``keras3_attributes``: Keras 3
  attributes that differ from the variable name (Dense's ``_kernel``);
- ``to_keras3(entry)`` / ``to_keras2(entry, out)``: config fixups between the dialects beyond
  the generic argument translation;
- ``call_args``: the names of its positional call arguments (Keras 2 records all but the first
  as keyword arguments);
- ``keras2_inputs_keyword``: the call keyword whose tensors Keras 2 node records list as further
  inputs after the first (an RNN's ``initial_state``: tf_keras flattens ``[inputs, *states]``);
- ``output_shape(config, input_shapes)``: the shape (or shapes) of its outputs, batch dimension
  first, ``None`` for an unknown dimension; ``None`` when it cannot tell;
- ``weight_shapes(config, input_shapes)``: the shape each floating-point variable must have
  (``{"kernel": (None, 16)}``, ``None`` for a dimension it cannot tell; a list of shapes when
  several are valid); variables it leaves out are not checked (see :mod:`..weightcheck`);
- ``converters``: per-format converters (``{"onnx": ...}``), for formats that translate layers.

Built-in classes live in the modules of this package grouped by family; a plugin describes its
own classes through the ``modelmorph_layer_specs`` hook. Plain data: no framework is imported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, NamedTuple, Sequence

Shape = tuple  # of int | None, batch dimension first


class Var(NamedTuple):
    """A variable of a layer: its path (``kernel``, ``cell/bias``) and whether it trains.

    ``named``: Keras 3 saves it under its own name (``vars/idf_weights``, written by the
    class's ``save_own_variables``) instead of by position (``vars/0``); it then takes no
    position among the numbered ones.
    """

    path: str
    trainable: bool = True
    named: bool = False


class Child(NamedTuple):
    """A sub-object a layer keeps under an attribute: its class, config and Keras 3 ``.name``."""

    class_name: str
    config: dict
    name: str


VarsFn = Callable[[dict], "list[Var] | None"]
ShapeFn = Callable[[dict, "list[Shape]"], "Shape | list[Shape] | None"]
WeightShapesFn = Callable[[dict, "list[Shape]"], "dict[str, Shape | list[Shape]]"]


def no_variables(config: dict) -> list[Var]:
    return []


@dataclass(frozen=True)
class LayerClass:
    """What modelmorph knows about Keras layer class ``class_name`` (see the module docs).

    Only ``class_name`` is required: a descriptor that leaves ``variables`` out describes a
    class without variables, one that leaves ``output_shape`` out a class whose shapes are
    not inferred.
    """

    class_name: str
    variables: VarsFn = no_variables
    description: str = ""
    family: str = "custom"
    child: Callable[[dict, str], "Child | None"] | None = None
    sequences: Mapping[str, Callable[[dict], "list[Child]"]] = field(default_factory=dict)
    private: Mapping[str, str] = field(default_factory=dict)
    keras3_attributes: Mapping[str, str] = field(default_factory=dict)
    to_keras3: Callable[[dict], None] | None = None
    to_keras2: Callable[[dict, dict], None] | None = None
    call_args: tuple[str, ...] = ("inputs",)
    keras2_inputs_keyword: str | None = None
    output_shape: ShapeFn | None = None
    output_dtype: Callable[[dict, "list[str | None]"], "str | None"] | None = None
    weight_shapes: WeightShapesFn | None = None
    converters: Mapping[str, Any] = field(default_factory=dict)

    def sub_object(self, config: dict, attribute: str) -> Child | None:
        return self.child(config or {}, attribute) if self.child is not None else None

    def elements(self, config: dict, attribute: str) -> "list[Child] | None":
        """The sub-objects of list attribute ``attribute`` in order; None if it is not one."""
        listed = self.sequences.get(attribute)
        return None if listed is None else listed(config or {})


#: The name the ``modelmorph_layer_specs`` hook has always used; a LayerSpec is a LayerClass.
LayerSpec = LayerClass


def builtin_classes() -> list[LayerClass]:
    """Every built-in descriptor, family by family."""
    from . import activations, attention, conv, core, merging, normalization, pooling, preprocessing
    from . import recurrent, regularization, reshaping, wrappers

    families = (core, activations, regularization, conv, pooling, normalization, recurrent, attention,
                merging, reshaping, preprocessing, wrappers)
    return [cls for family in families for cls in family.CLASSES]


# -- helpers the family modules share ----------------------------------------------------------

def bias(config: dict, key: str = "use_bias") -> list[Var]:
    return [Var("bias")] if config.get(key, True) else []


def kernel_bias(kernel: str = "kernel") -> VarsFn:
    return lambda c: [Var(kernel)] + bias(c)


def same_shape(config: dict, shapes: list[Shape]) -> Shape | None:
    return shapes[0] if shapes else None


def inner_layer(config: dict, key: str) -> tuple[str, dict] | None:
    """(class, config) of a serialized layer kept in ``config[key]`` (a wrapper's ``layer``)."""
    entry = config.get(key)
    if isinstance(entry, dict) and isinstance(entry.get("class_name"), str):
        inner = entry.get("config")
        return entry["class_name"], inner if isinstance(inner, dict) else {}
    return None


def prefixed_variables(prefix: str, inner: tuple[str, dict] | None) -> list[Var] | None:
    """The variables of a serialized inner layer ``(class, config)``, under ``prefix/``; None
    when its class cannot list them."""
    from ..catalogue import variables_of

    found = None if inner is None else variables_of(*inner)
    return None if found is None else [Var(f"{prefix}/{v.path}", v.trainable) for v in found]


def ints(value: Any, rank: int) -> tuple[int, ...] | None:
    """A Keras size argument (an int or a list of ints) as ``rank`` ints; None if malformed."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,) * rank
    if isinstance(value, (list, tuple)) and len(value) == rank and all(isinstance(v, int) for v in value):
        return tuple(value)
    return None


def channels_first(config: dict) -> bool:
    return config.get("data_format") == "channels_first"


def spatial(shape: Shape, rank: int, config: dict) -> tuple[list, Any, Any] | None:
    """Split a ``rank``-D input into (spatial dims, batch, channels); None if it has another rank."""
    if shape is None or len(shape) != rank + 2:
        return None
    if channels_first(config):
        return list(shape[2:]), shape[0], shape[1]
    return list(shape[1:-1]), shape[0], shape[-1]


def join_spatial(batch: Any, dims: Sequence, channels: Any, config: dict) -> Shape:
    return (batch, channels, *dims) if channels_first(config) else (batch, *dims, channels)


def window_length(length: int | None, window: int, padding: str, stride: int, dilation: int = 1) -> int | None:
    """Keras' ``compute_conv_output_length`` (pools too, with dilation 1)."""
    if length is None:
        return None
    if padding in ("same", "causal"):
        return -(-length // stride)
    span = (window - 1) * dilation + 1
    return max((length - span) // stride + 1, 0)


def transposed_length(length: int | None, kernel: int, padding: str, stride: int, dilation: int,
                      output_padding: int | None) -> int | None:
    """Keras' ``compute_conv_transpose_output_length``."""
    if length is None:
        return None
    kernel = kernel + (kernel - 1) * (dilation - 1)
    if output_padding is None:
        if padding == "valid":
            return length * stride + max(kernel - stride, 0)
        if padding == "full":
            return length * stride - (stride + kernel - 2)
        return length * stride
    pad = kernel // 2 if padding == "same" else 0 if padding == "valid" else kernel - 1
    return (length - 1) * stride + kernel - 2 * pad + output_padding


def last_dim(shapes: list, rank: int | None = None) -> int | None:
    """The last dimension of the first input (None if unknown, or if its rank is not ``rank``)."""
    shape = shapes[0] if shapes else None
    if not shape or (rank is not None and len(shape) != rank) or not isinstance(shape[-1], int):
        return None
    return shape[-1]


def int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def product(dims: Sequence) -> int | None:
    return None if any(d is None for d in dims) else math.prod(dims)


def compute_dtype(config: dict) -> str | None:
    """The dtype a layer computes in, from its ``dtype`` policy (``mixed_float16`` → float16)."""
    dtype = config.get("dtype")
    if isinstance(dtype, dict):
        policy = dtype.get("config")
        dtype = policy.get("name") if isinstance(policy, dict) else None
    if not isinstance(dtype, str):
        return None
    if dtype.startswith("mixed_"):
        return dtype[len("mixed_"):]
    return dtype
