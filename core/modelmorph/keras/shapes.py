"""Shape inference over the IR: every graph edge (:class:`~modelmorph.TensorRef`) whose source
did not record its shape and dtype gets them from the layer-class descriptors.

Keras 3 records each tensor's shape and dtype in a functional config; Keras 2 configs do not.
Inferring them lets a Keras 2 source produce the node shapes Keras 3 itself writes, and lets
formats that need shapes (ONNX) rely on them. Shapes start at the model's inputs (their
``InputLayer`` configs) and flow call by call through each layer's ``output_shape`` rule;
where a rule is missing (a custom class, a ``keras.ops`` call) the shape stays unknown, and so
does everything downstream of it. Recorded shapes are kept as they are.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from typing import Any

from ..ir import Layer, Model, TensorRef
from . import catalogue
from .keras3_layout import OPERATION_MODULE_PREFIX
from .kerasconfig import iter_refs, map_leaves
from .layers import compute_dtype

Key = tuple[str, int, int]
Known = dict[Key, tuple[tuple | None, str | None]]

_FLOATS = ("float16", "bfloat16", "float32", "float64")


def infer_shapes(model: Model) -> None:
    """Fill in the shape and dtype of every edge of ``model`` (nested models too) that can be
    inferred. Changes ``model`` in place."""
    _infer(model, None)


def _infer(model: Model, given: list[tuple[tuple | None, str | None]] | None) -> list[tuple[tuple | None, str | None]]:
    """Annotate ``model``; returns its outputs' (shape, dtype) in order. ``given`` are the
    (shape, dtype) of the inputs it is called on, when it is called as a layer."""
    if model.class_name == "Sequential":
        return _sequential(model, given)
    known: Known = {}
    for layer in model.layers:
        if layer.class_name == "InputLayer":
            known[(layer.name, 0, 0)] = _input(layer)
    for ref, value in zip(iter_refs(model.inputs), given or []):  # the caller's shapes win over placeholders
        if value[0] is not None:
            known[(ref.layer, ref.node_index, ref.tensor_index)] = value
    # Each call runs once, when the shapes of all its inputs are known: linear in the graph's size
    # whatever order the config lists layers in (a hostile config cannot make this quadratic).
    waiting: dict[Key, list[tuple[int, int]]] = {}
    unknown: dict[tuple[int, int], int] = {}
    ready: deque[tuple[int, int]] = deque()
    for li, layer in enumerate(model.layers):
        for ni, node in enumerate(layer.nodes):
            refs = list(iter_refs(node.args))
            missing = {_key(r) for r in refs if _lookup(known, r)[0] is None}
            for key in missing:
                waiting.setdefault(key, []).append((li, ni))
            if missing:
                unknown[(li, ni)] = len(missing)
            elif refs:
                ready.append((li, ni))
    while ready:
        li, ni = ready.popleft()
        layer, node = model.layers[li], model.layers[li].nodes[ni]
        outputs = _call(layer, node, [_lookup(known, ref) for ref in iter_refs(node.args)])
        for k, value in enumerate(outputs):
            key = (layer.name, ni, k)
            if key in known or value[0] is None:
                continue
            known[key] = value
            for waiter in waiting.pop(key, ()):
                unknown[waiter] -= 1
                if not unknown[waiter]:
                    ready.append(waiter)
    for layer in model.layers:
        for node in layer.nodes:
            node.args = _annotate(node.args, known)
            node.kwargs = _annotate(node.kwargs, known)
    model.inputs = _annotate(model.inputs, known)
    model.outputs = _annotate(model.outputs, known)
    return [_lookup(known, ref) for ref in iter_refs(model.outputs)]


def _sequential(model: Model, given: list | None) -> list[tuple[tuple | None, str | None]]:
    layers = list(model.layers)
    if layers and layers[0].class_name == "InputLayer":
        current = _input(layers.pop(0))
    elif given:
        current = given[0]
    else:
        return [(None, None)]
    for layer in layers:
        if current[0] is None:
            break
        outputs = _call(layer, None, [current])
        current = outputs[0] if len(outputs) == 1 else (None, None)
    return [current]


def _call(layer: Layer, node: Any, inputs: list[tuple[tuple, str | None]]) -> list[tuple[tuple | None, str | None]]:
    """(shape, dtype) of each output of one call of ``layer`` on ``inputs``; [] when unknown."""
    if layer.submodel is not None:
        return [v for v in _infer(layer.submodel, inputs) if v is not None]
    if (layer.module or "").startswith(OPERATION_MODULE_PREFIX):
        described = catalogue.operation(layer.class_name)
    else:
        described = catalogue.get(layer.class_name)
    if described is None or described.output_shape is None:
        return []
    try:
        shapes = described.output_shape(layer.config or {}, [tuple(shape) for shape, _ in inputs])
    except (TypeError, ValueError, KeyError, IndexError, ZeroDivisionError):
        return []  # a config the rule does not understand: the shape stays unknown
    if shapes is None:
        return []
    shapes = shapes if isinstance(shapes, list) else [shapes]
    dtypes = [dtype for _, dtype in inputs]
    if described.output_dtype is not None:
        dtype = described.output_dtype(layer.config or {}, dtypes)
    else:  # Keras casts floating inputs to the layer's compute dtype and leaves the others
        first = dtypes[0] if dtypes else None
        dtype = (compute_dtype(layer.config or {}) or "float32") if first in _FLOATS or first is None else first
    return [(tuple(shape), dtype) for shape in shapes]


def _input(layer: Layer) -> tuple[tuple | None, str | None]:
    described = catalogue.get("InputLayer")
    shape = described.output_shape(layer.config or {}, []) if described and described.output_shape else None
    dtype = described.output_dtype(layer.config or {}, []) if described and described.output_dtype else None
    return shape, dtype


def _key(ref: TensorRef) -> Key:
    return ref.layer, ref.node_index, ref.tensor_index


def _lookup(known: Known, ref: TensorRef) -> tuple[tuple | None, str | None]:
    if ref.shape is not None:
        return tuple(ref.shape), ref.dtype or known.get((ref.layer, ref.node_index, ref.tensor_index), (None, None))[1]
    return known.get((ref.layer, ref.node_index, ref.tensor_index), (None, None))


def _annotate(value: Any, known: Known) -> Any:
    def fill(ref: TensorRef) -> TensorRef:
        shape, dtype = known.get(_key(ref), (None, None))
        if ref.shape is None and shape is not None:
            ref = dataclasses.replace(ref, shape=shape)
        if ref.dtype is None and dtype is not None:
            ref = dataclasses.replace(ref, dtype=dtype)
        return ref

    return map_leaves(value, fill)
