"""Every read model checked before any writer sees it: weights against the architecture,
names, the compile config's objects.

The layer descriptors say, per class, the shape each floating-point variable must have
(``weight_shapes``), from the layer's config and, where shape inference knows them, its
inputs' shapes; a dimension neither tells is not checked. A weights file joined with
``--arch``, or a model file whose weights were edited, otherwise converts to a file Keras
refuses (a Dense(16) kernel of shape ``(3,)``). Called once for every read, by the API.

Optimizer slots shadow one model variable each and have its shape (Adam's ``momentum`` of a
``(4, 16)`` kernel is ``(4, 16)``): a mapped slot of another shape, or one of the optimizer
variables kept by position (``0``, ``1``...) that Keras would assign to a slot of another
shape, is refused the same way: Keras refuses to load it.
"""

from __future__ import annotations

from typing import Any

from ..errors import ReadError
from ..ir import Layer, Model
from . import catalogue, dialects
from .keras3_layout import optimizer_entries
from .kerasconfig import iter_refs
from .shapes import _call, _input

_FLOATS = frozenset({"float16", "bfloat16", "float32", "float64"})
#: Keras 3 dtype policies whose layers store integer (packed) kernels and extra scales.
_QUANTIZED = ("int8", "int4", "float8", "gptq", "awq")


def check_weights(model: Model, source: Any) -> None:
    """Raise :class:`~modelmorph.ReadError` naming ``source`` for a compile config whose
    optimizer config is not an object, two layers of one name, a weight held twice, a variable
    the architecture lists that has no value (in a model that has weights), a weight whose
    shape or dtype class the architecture rules out, or an optimizer slot of another shape than
    its variable: what writers would otherwise fail on (exit 5, naming the output) or write
    into a file Keras refuses."""
    _check_names(model, source, "")
    _check_compile_config(model.compile_config, source)
    if model.optimizer is not None and isinstance(model.optimizer.config, dict):
        _check_compile_config({"optimizer": model.optimizer.config}, source)
    if model.has_architecture:
        if any(True for _ in model.iter_weights()):
            _check_complete(model, source)
        _check_model(model, source, "", None)
        _check_optimizer(model, source)


#: Optimizer classes whose slots do not all have their variable's shape (Adafactor factors a
#: matrix's second moment into a row and a column vector).
_FACTORED = frozenset({"Adafactor"})


def _check_optimizer(model: Model, source: Any) -> None:
    state = model.optimizer
    if state is None:
        return
    config = state.config or (model.compile_config or {}).get("optimizer")  # as the writers take it
    if dialects.optimizer_class(config) in _FACTORED:
        return
    shapes = {path: tuple(w.shape) for path, _, w in model.iter_weights()}
    for slot in state.slots:
        want = shapes.get(slot.variable)
        if want is not None and tuple(slot.weight.shape) != want:
            raise ReadError(source, f"optimizer slot {slot.name!r} of weight {slot.variable!r} has shape "
                                    f"{_shown(tuple(slot.weight.shape))}; the weight has {_shown(want)}")
    _check_positional_optimizer(model, state, config, shapes, source)


def _check_positional_optimizer(model: Model, state: Any, config: Any, shapes: dict, source: Any) -> None:
    """Optimizer variables kept by position (``0``, ``1``... : the reader could not map them)
    are what Keras assigns in its build order on load. When the class is known and they are
    as many as it builds for this model, a slot position holding another shape than its
    variable makes a file Keras refuses; any other count is a layout this cannot judge."""
    if state.slots or state.variables or not state.unmapped:
        return
    if [w.path for w in state.unmapped] != [str(i) for i in range(len(state.unmapped))]:
        return
    keras2 = model.metadata.get("dialect") == "keras2"  # tf_keras keeps no learning_rate variable
    try:
        entries = optimizer_entries(model, config, keras2=keras2)
    except Exception:  # a config the layout does not understand: nothing to check against
        return
    if entries is None or len(entries) != len(state.unmapped):
        return
    for index, (entry, weight) in enumerate(zip(entries, state.unmapped)):
        want = shapes.get(entry.variable) if entry.variable is not None else None
        if want is not None and tuple(weight.shape) != want:
            raise ReadError(source, f"optimizer variable {index} (the {entry.name!r} slot of weight "
                                    f"{entry.variable!r}) has shape {_shown(tuple(weight.shape))}; the weight "
                                    f"has {_shown(want)}")


def _check_compile_config(compile_config: Any, source: Any) -> None:
    """The compile config's serialized objects have object configs, as every writer that
    translates them assumes (the optimizer, its learning-rate schedule)."""
    if compile_config is None:
        return
    if not isinstance(compile_config, dict):
        raise ReadError(source, f"the compile config is JSON {type(compile_config).__name__}, not an object")
    optimizer = compile_config.get("optimizer")
    if not isinstance(optimizer, dict):
        return  # a name ("adam") or absent
    for where, value in (("optimizer", optimizer), ("optimizer's learning_rate",
                                                    (optimizer.get("config") or {}).get("learning_rate")
                                                    if isinstance(optimizer.get("config"), dict) else None)):
        if isinstance(value, dict) and value.get("config") is not None and not isinstance(value["config"], dict):
            raise ReadError(source, f"the compile config's {where} has a config that is JSON "
                                    f"{type(value['config']).__name__}, not an object")


def _check_names(model: Model, source: Any, prefix: str) -> None:
    seen: set[str] = set()
    for layer in model.layers:
        if layer.name in seen:
            raise ReadError(source, f"two layers are named {prefix + layer.name!r}")
        seen.add(layer.name)
        paths: set[str] = set()
        for weight in layer.weights:
            if weight.path in paths:
                raise ReadError(source, f"layer {prefix + layer.name!r} holds weight {weight.path!r} twice")
            paths.add(weight.path)
        if layer.submodel is not None:
            _check_names(layer.submodel, source, f"{prefix}{layer.name}/")


def _check_complete(model: Model, source: Any) -> None:
    """Every variable the catalogue lists for a layer has a value (positional weights, kept
    for a layer whose stored variables did not match, count as none)."""
    for path, layer in model.iter_layers():
        if layer.submodel is not None:
            continue
        try:
            listed = catalogue.variables_of(layer.class_name, layer.config)
        except Exception:  # a plugin's faulty descriptor: nothing to check against
            continue
        held = {w.path for w in layer.weights}
        missing = [v.path for v in listed or () if v.path not in held]
        if missing:
            raise ReadError(source, f"{layer.class_name} layer {path!r} has no value for weight {missing[0]!r}"
                            + (f" (it holds {', '.join(sorted(held))})" if held else ""))


def _check_model(model: Model, source: Any, prefix: str, given: list | None) -> None:
    if model.class_name == "Sequential":
        layers = list(model.layers)
        current = given[0] if given else (None, None)
        if layers and layers[0].class_name == "InputLayer":
            current = _input(layers.pop(0))
        for layer in layers:
            inputs = [current[0]] if current[0] is not None else _built_input(layer)
            _check_layer(layer, source, prefix, inputs)
            try:
                outputs = _call(layer, None, [current]) if current[0] is not None else []
            except Exception:  # shape inference is a help here, never a reason to fail
                outputs = []
            current = outputs[0] if len(outputs) == 1 else (None, None)
        return
    for layer in model.layers:
        refs = _call_inputs(layer)
        inputs = [ref.shape for ref in refs] if refs and all(ref.shape is not None for ref in refs) else []
        _check_layer(layer, source, prefix, [tuple(s) for s in inputs] or _built_input(layer))


def _call_inputs(layer: Layer) -> list:
    """The tensors of the layer's first call in the order of its call arguments: the positional
    ones, then those of the later call arguments its descriptor names that were given by keyword
    (``mha(q, v, key=k)``), up to the first one missing."""
    if not layer.nodes:
        return []
    node = layer.nodes[0]
    refs = list(iter_refs(node.args))
    described = catalogue.get(layer.class_name)
    for name in (described.call_args if described is not None else ())[len(node.args):]:
        given = list(iter_refs((node.kwargs or {}).get(name)))
        if len(given) != 1:
            break
        refs.append(given[0])
    return refs


def _built_input(layer: Layer) -> list:
    """The input shape Keras 3 recorded in the layer's build config, if it is a single one."""
    shape = layer.build_config.get("input_shape") if isinstance(layer.build_config, dict) else None
    if isinstance(shape, list) and all(d is None or (isinstance(d, int) and not isinstance(d, bool)) for d in shape):
        return [tuple(shape)]
    return []


def _check_layer(layer: Layer, source: Any, prefix: str, inputs: list) -> None:
    path = prefix + layer.name
    if layer.submodel is not None:
        _check_model(layer.submodel, source, path + "/", [(s, None) for s in inputs] or None)
        return
    described = catalogue.get(layer.class_name)
    if described is None or described.weight_shapes is None or not layer.weights or _quantized(layer.config):
        return
    try:
        expected = described.weight_shapes(layer.config or {}, inputs)
    except Exception:  # a config the rule does not understand (or a plugin's faulty rule): no check
        return
    if not isinstance(expected, dict):
        return
    for weight in layer.weights:
        want = expected.get(weight.path)
        if want is None:
            continue
        where = f"{layer.class_name} layer {path!r}: weight {weight.path!r}"
        if weight.dtype not in _FLOATS:
            raise ReadError(source, f"{where} has dtype {weight.dtype}; the architecture expects floating point")
        options = [o for o in (want if isinstance(want, list) else [want]) if isinstance(o, tuple)]
        if not options:
            continue
        if not any(_fits(tuple(weight.shape), option) for option in options):
            raise ReadError(source, f"{where} has shape {tuple(weight.shape)}; the architecture expects "
                                    + " or ".join(_shown(option) for option in options))


def _fits(shape: tuple, want: tuple) -> bool:
    return len(shape) == len(want) and all(w is None or s == w for s, w in zip(shape, want))


def _shown(shape: tuple) -> str:
    dims = ["?" if d is None else str(d) for d in shape]
    return f"({dims[0]},)" if len(dims) == 1 else f"({', '.join(dims)})"


def _quantized(config: dict | None) -> bool:
    policy = (config or {}).get("dtype")
    if isinstance(policy, dict):
        inner = policy.get("config")
        name = inner.get("name") if isinstance(inner, dict) else None
        return "Quantiz" in str(policy.get("class_name", "")) or str(name or "").startswith(_QUANTIZED)
    return isinstance(policy, str) and policy.startswith(_QUANTIZED)
