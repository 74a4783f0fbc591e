"""Walking a model's graph (nested models inlined) and converting layer calls in order."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from modelmorph import Layer, Model, TensorRef
from modelmorph.keras import catalogue
from modelmorph.keras.keras3_layout import OPERATION_MODULE_PREFIX
from modelmorph.keras.kerasconfig import map_leaves

from .builder import Builder, ConversionError, Value, fail, to_first


@dataclass
class Call:
    """One call of a layer, as a converter sees it."""

    b: Builder
    layer: Layer
    args: list  # the call's positional arguments, tensors as Values
    kwargs: dict
    dialect: str  # "keras2" or "keras3": the defaults of the library that wrote the model
    half: bool = False  # the layer computes in float16 (mixed precision): its weights are rounded to it
    _weights: dict[str, np.ndarray] | None = field(default=None, repr=False)

    @property
    def config(self) -> dict:
        return self.layer.config or {}

    @property
    def inputs(self) -> list[Value]:
        """The tensors among the positional arguments, in order."""
        return [v for v in _leaves(self.args) if isinstance(v, Value)]

    @property
    def x(self) -> Value:
        return self.inputs[0]

    def weight(self, path: str) -> np.ndarray:
        if self._weights is None:
            self._weights = {w.path: w for w in self.layer.weights}
        weight = self._weights.get(path)
        if weight is None:
            raise self.fail(f"has no weight {path!r}")
        value = weight.read()
        if self.half and value.dtype.kind == "f":
            return value.astype(np.float16).astype(value.dtype)
        return value

    def has_weight(self, path: str) -> bool:
        return any(w.path == path for w in self.layer.weights)

    def fail(self, problem: str) -> ConversionError:
        return fail(self.layer, problem)

    def out(self, name: str, like: Value, shape: tuple | None = None, dtype: str | None = None) -> Value:
        return self.b.like(like, name, shape, dtype)


Converter = Callable[[Call], "Value | list[Value]"]


def is_feature_map(shape: tuple | None, dtype: str) -> bool:
    """Whether ``-O layout=nchw`` holds a graph input or output channels-first: float, rank >= 3."""
    return shape is not None and len(shape) >= 3 and dtype.startswith(("float", "bfloat"))


#: Layers Keras computes in float32 even under a float16 policy (for stability): only their
#: inputs and outputs are float16.
FLOAT32_INSIDE = frozenset({"BatchNormalization", "LayerNormalization", "GroupNormalization", "Normalization"})


def _computes_in_float16(layer: Layer) -> bool:
    dtype = (layer.config or {}).get("dtype")
    name = (dtype.get("config") or {}).get("name") if isinstance(dtype, dict) else dtype
    return name in ("mixed_float16", "float16")


def _leaves(value: Any):
    if isinstance(value, (list, tuple)):
        for item in value:
            yield from _leaves(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    else:
        yield value


def _bind(value: Any, known: dict) -> Any:
    """A call's arguments with each TensorRef replaced by its Value (KeyError: not computed yet)."""
    return map_leaves(value, lambda ref: known[(ref.layer, ref.node_index, ref.tensor_index)])


class Exporter:
    def __init__(self, builder: Builder, dialect: str, operations: dict[str, Converter]):
        self.b, self.dialect = builder, dialect
        self.operations = operations  # keras.ops calls: not layers, so not in the descriptors

    def converter(self, layer: Layer) -> Converter:
        if (layer.module or "").startswith(OPERATION_MODULE_PREFIX):
            found = self.operations.get(layer.class_name)
            if found is None:
                raise fail(layer, f"the keras.ops operation {layer.class_name} has no ONNX converter yet")
            return found
        described = catalogue.get(layer.class_name)
        found = described.converters.get("onnx") if described is not None else None
        if found is None:
            kind = "Python code (a Lambda)" if layer.class_name in ("Lambda", "TFOpLambda", "SlicingOpLambda") else \
                "a class with no ONNX converter (a plugin can give it one: spec/layers.md)"
            raise fail(layer, f"is {kind}")
        return found

    # -- models --------------------------------------------------------------------------
    def model(self, model: Model, given: list[Value] | None) -> list[Value]:
        """Convert ``model`` called on ``given`` (its graph inputs when None); returns its outputs."""
        if model.class_name == "Sequential":
            return self._sequential(model, given)
        known: dict[tuple, Value] = {}
        input_refs = [r for r in _leaves(model.inputs) if isinstance(r, TensorRef)]
        if given is not None:
            if len(given) != len(input_refs):
                raise ConversionError(f"model {model.name!r} takes {len(input_refs)} input(s), called with {len(given)}")
            for ref, value in zip(input_refs, given):
                known[(ref.layer, ref.node_index, ref.tensor_index)] = value
        else:
            for ref in input_refs:
                known[(ref.layer, ref.node_index, ref.tensor_index)] = self.graph_input(model.layer(ref.layer))
        pending = [(layer, i, node) for layer in model.layers for i, node in enumerate(layer.nodes)]
        while pending:
            left = []
            for layer, index, node in pending:
                try:
                    args, kwargs = _bind(node.args, known), _bind(node.kwargs, known)
                except KeyError:
                    left.append((layer, index, node))
                    continue
                outputs = self.call(layer, args, kwargs)
                for k, value in enumerate(outputs):
                    known[(layer.name, index, k)] = value
            if len(left) == len(pending):
                missing = ", ".join(sorted({layer.name for layer, _, _ in left})[:5])
                raise ConversionError(f"model {model.name!r}: the inputs of {missing} are never computed")
            pending = left
        try:
            return [_bind(r, known) for r in _leaves(model.outputs) if isinstance(r, TensorRef)]
        except KeyError as exc:
            raise ConversionError(f"model {model.name!r}: output {exc.args[0]} is never computed") from None

    def _sequential(self, model: Model, given: list[Value] | None) -> list[Value]:
        layers = list(model.layers)
        if layers and layers[0].class_name == "InputLayer":
            first = layers.pop(0)
            current = given[0] if given else self.graph_input(first)
        elif given:
            current = given[0]
        else:
            raise ConversionError(f"Sequential model {model.name!r} has no input shape (no InputLayer): ONNX needs one")
        for layer in layers:
            outputs = self.call(layer, [current], {})
            if len(outputs) != 1:
                raise fail(layer, "gives several outputs inside a Sequential model")
            current = outputs[0]
        return [current]

    def graph_input(self, layer: Layer) -> Value:
        config = layer.config or {}
        shape = config.get("batch_shape")
        if not isinstance(shape, list):
            raise fail(layer, "has no batch_shape: the input's shape is unknown")
        dtype = config.get("dtype") if isinstance(config.get("dtype"), str) else "float32"
        shape = tuple(shape)
        if self.channels_first_io and is_feature_map(shape, dtype):  # -O layout=nchw: declared (B, C, ...)
            self.inputs.append((layer.name, tuple(shape[p] for p in to_first(len(shape))), dtype))
            return Value(layer.name, shape, dtype, channels_first=True)
        self.inputs.append((layer.name, shape, dtype))
        return Value(layer.name, shape, dtype)

    inputs: list[tuple[str, tuple, str]]  # the graph's inputs as declared: (name, shape held, dtype)
    channels_first_io: bool = False  # -O layout=nchw

    def call(self, layer: Layer, args: list, kwargs: dict) -> list[Value]:
        if layer.submodel is not None:
            return self.model(layer.submodel, [v for v in _leaves(args) if isinstance(v, Value)])
        converter = self.converter(layer)
        half = _computes_in_float16(layer)
        self.b.scope = layer.name
        try:
            if half:  # Keras casts a float16 layer's float inputs, and its weights, to float16
                args = map_leaves(args, self.b.rounded, Value)
                kwargs = map_leaves(kwargs, self.b.rounded, Value)
            self.b.half = half and layer.class_name not in FLOAT32_INSIDE
            result = converter(Call(self.b, layer, args, kwargs, self.dialect, half=self.b.half))
        finally:
            self.b.scope, self.b.half = "", False
        result = result if isinstance(result, list) else [result]
        if half and layer.class_name in FLOAT32_INSIDE:
            result = [self.b.rounded(v) for v in result]
        return result
