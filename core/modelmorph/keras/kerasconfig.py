"""Keras 3 serialized configs ↔ the IR.

A Keras 3 model config (``config.json`` of a ``.keras`` archive, ``model.to_json()``) is
``{module, class_name, config, registered_name, build_config, compile_config}``. This module
turns one into a :class:`~modelmorph.ir.Model` (architecture only: format readers attach
weights) and back. Keras 2 configs are first translated by :mod:`modelmorph.keras.dialects`.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from .catalogue import MODEL_CLASSES
from ..ir import Layer, Model, Node, TensorRef

if TYPE_CHECKING:
    from ..diagnostics import Diagnostics

KERAS_TENSOR = "__keras_tensor__"
#: Keras 3's record of a numpy constant in a call's arguments: ``{"class_name": "__numpy__",
#: "config": {"value": nested lists, "dtype": ...}}``. It holds numbers only, so the walks over
#: call arguments below treat it as a leaf: an imported constant may hold millions of them.
NUMPY_CONSTANT = "__numpy__"
_GRAPH_KEYS = ("layers", "input_layers", "output_layers")
_ENTRY_KEYS = ("module", "class_name", "config", "registered_name", "build_config", "name", "inbound_nodes")
_EXTRA = "keras:"  # namespace of top-level entry keys we carry without understanding


class ConfigError(ValueError):
    """The config is not a Keras model config (the message says where)."""


def is_model_entry(entry: dict) -> bool:
    config = entry.get("config")
    return entry.get("class_name") in MODEL_CLASSES or (isinstance(config, dict) and isinstance(config.get("layers"), list))


# -- config → IR ---------------------------------------------------------------------------
def read_model_config(cfg: Any, diagnostics: "Diagnostics | None" = None) -> Model:
    """The IR of a serialized model config in either dialect: what every reader of an
    architecture calls. Detects the dialect (``model.metadata["dialect"]``), translates a Keras 2
    config, gives a Keras 3 legacy config its modules, builds the IR and infers the shapes of
    the graph's edges that the source left out. Raises :class:`ConfigError` (or ``ValueError``)
    for a malformed config."""
    from . import dialects
    from .shapes import infer_shapes

    if not isinstance(cfg, dict) or not isinstance(cfg.get("class_name"), str) or "config" not in cfg:
        raise ConfigError("not a Keras model config: expected an object with 'class_name' and 'config'")
    dialect = dialects.detect(cfg)
    renamed: dict[str, str] = {}
    translated = dialects.to_keras3(cfg, diagnostics, renamed) if dialect == "keras2" else dialects.complete_keras3(cfg)
    model = model_from_config(translated)
    model.metadata["dialect"] = dialect
    if renamed:  # readers that find weights by layer name look the source's names up here
        model.metadata["renamed"] = renamed
    if dialect == "keras2" and model.compile_config:  # a tf-keras archive's compile settings
        model.compile_config = dialects.keras2_compile_config_to_keras3(model.compile_config, diagnostics)
    infer_shapes(model)
    return model


def model_from_config(cfg: Any, where: str = "model") -> Model:
    """Build the IR of a Keras 3 dialect model config (no weights)."""
    _expect_dict(cfg, where)
    class_name = _expect_str(cfg.get("class_name"), f"{where}.class_name")
    config = cfg.get("config")
    _expect_dict(config, f"{where}.config")
    model = Model(
        name=str(config.get("name", "model")),
        class_name=class_name,
        config={k: v for k, v in config.items() if k not in _GRAPH_KEYS},
        module=cfg.get("module"),
        registered_name=cfg.get("registered_name"),
        build_config=cfg.get("build_config"),
        compile_config=cfg.get("compile_config") or None,
    )
    layers = config.get("layers")
    if layers is None:  # a subclassed model: its config is all we have
        return model
    if not isinstance(layers, list):
        raise ConfigError(f"{where}.config.layers must be a list, not {type(layers).__name__}")
    names = set()
    for i, entry in enumerate(layers):
        layer = layer_from_entry(entry, f"{where}.layers[{i}]")
        if layer.name in names:
            raise ConfigError(f"{where}: two layers are named {layer.name!r}")
        names.add(layer.name)
        model.layers.append(layer)
    # Keras 3 numbers a nested Functional's calls from 1 in input/output layers (from 0 in call
    # arguments); the IR numbers them as they sit in `Layer.nodes`, from 0 everywhere.
    functional = {layer.name for layer in model.layers if _is_functional(layer)}
    if "input_layers" in config:
        model.inputs = _shift(_refs_from_config(config["input_layers"], f"{where}.input_layers"), functional, -1)
    if "output_layers" in config:
        model.outputs = _shift(_refs_from_config(config["output_layers"], f"{where}.output_layers"), functional, -1)
    for ref in iter_refs((model.inputs, model.outputs, [n.args for l in model.layers for n in l.nodes],
                           [n.kwargs for l in model.layers for n in l.nodes])):
        if ref.layer not in names:
            raise ConfigError(f"{where}: a tensor refers to layer {ref.layer!r}, which the model does not have")
    return model


#: Config keys that hold a serialized layer (a wrapper's ``layer``, an RNN's ``cell``), or a list of them.
_INNER_LAYER_KEYS, _INNER_LAYER_LIST_KEYS = ("layer", "backward_layer", "cell"), ("cells",)


def _expect_inner_layers(config: dict, where: str) -> None:
    """A serialized layer inside a layer's config must have an object config, as every writer
    that translates it assumes (anything else is malformed input, refused on read)."""
    for key in _INNER_LAYER_KEYS + _INNER_LAYER_LIST_KEYS:
        value = config.get(key)
        entries = value if key in _INNER_LAYER_LIST_KEYS and isinstance(value, list) else [value]
        for i, inner in enumerate(entries):
            if isinstance(inner, dict) and "class_name" in inner and "config" in inner:
                at = f"{where}.{key}" + (f"[{i}]" if key in _INNER_LAYER_LIST_KEYS else "")
                if inner["config"] is not None:
                    _expect_dict(inner["config"], f"{at}.config")
                    _expect_inner_layers(inner["config"], f"{at}.config")


def layer_from_entry(entry: Any, where: str) -> Layer:
    _expect_dict(entry, where)
    class_name = _expect_str(entry.get("class_name"), f"{where}.class_name")
    config = entry.get("config")
    if config is None:
        config = {}
    _expect_dict(config, f"{where}.config")
    _expect_inner_layers(config, f"{where}.config")
    name = entry.get("name", config.get("name"))
    name = _expect_str(name, f"{where}.name")
    nodes_data = entry.get("inbound_nodes") or []
    if not isinstance(nodes_data, list):
        raise ConfigError(f"{where}.inbound_nodes must be a list")
    nodes = []
    for j, node in enumerate(nodes_data):
        if not isinstance(node, dict):
            raise ConfigError(f"{where}.inbound_nodes[{j}] is not in the Keras 3 form {{args, kwargs}}")
        args, kwargs = node.get("args", []), node.get("kwargs", {})
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise ConfigError(f"{where}.inbound_nodes[{j}]: args must be a list and kwargs a dict")
        nodes.append(Node(decode_tensors(args), decode_tensors(kwargs)))
    layer = Layer(
        name=name,
        class_name=class_name,
        config=config,
        module=entry.get("module"),
        registered_name=entry.get("registered_name"),
        build_config=entry.get("build_config"),
        nodes=nodes,
        extra={_EXTRA + k: v for k, v in entry.items() if k not in _ENTRY_KEYS},
    )
    if is_model_entry(entry):
        layer.submodel = model_from_config(entry, where)
        layer.config = layer.submodel.config
    return layer


def decode_tensors(value: Any) -> Any:
    """Replace ``__keras_tensor__`` dicts by :class:`TensorRef` throughout a structure."""
    if isinstance(value, list):
        return [decode_tensors(v) for v in value]
    if isinstance(value, dict):
        if value.get("class_name") == KERAS_TENSOR:
            cfg = value.get("config") or {}
            history = cfg.get("keras_history")
            if not (isinstance(history, list) and len(history) == 3 and isinstance(history[0], str)
                    and isinstance(history[1], int) and isinstance(history[2], int)):
                raise ConfigError(f"a keras tensor has a malformed keras_history: {history!r}")
            shape = cfg.get("shape")
            return TensorRef(history[0], history[1], history[2],
                             tuple(shape) if isinstance(shape, list) else None, cfg.get("dtype"))
        if value.get("class_name") == NUMPY_CONSTANT:
            return value
        return {k: decode_tensors(v) for k, v in value.items()}
    return value


def _refs_from_config(value: Any, where: str) -> Any:
    if _is_ref_triple(value):
        return TensorRef(value[0], value[1], value[2])
    if isinstance(value, list):
        return [_refs_from_config(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _refs_from_config(v, f"{where}.{k}") for k, v in value.items()}
    raise ConfigError(f"{where}: expected [layer_name, node_index, tensor_index], got {value!r}")


def _is_ref_triple(value: Any) -> bool:
    return (isinstance(value, list) and len(value) == 3 and isinstance(value[0], str)
            and isinstance(value[1], int) and isinstance(value[2], int))


def is_constant(value: Any) -> bool:
    """Whether ``value`` is a ``__numpy__`` constant record (see :data:`NUMPY_CONSTANT`)."""
    return isinstance(value, dict) and value.get("class_name") == NUMPY_CONSTANT


def map_leaves(value: Any, fn: Any, leaf_type: type = TensorRef) -> Any:
    """``value`` with every ``leaf_type`` leaf (a :class:`TensorRef` unless said) replaced by
    ``fn(leaf)``: the lists, tuples and dicts of a call's arguments rebuilt around them."""
    if isinstance(value, leaf_type):
        return fn(value)
    if isinstance(value, list):
        return [map_leaves(v, fn, leaf_type) for v in value]
    if isinstance(value, tuple):
        return tuple(map_leaves(v, fn, leaf_type) for v in value)
    if isinstance(value, dict) and not is_constant(value):
        return {k: map_leaves(v, fn, leaf_type) for k, v in value.items()}
    return value


def iter_refs(value: Any):
    """Every :class:`TensorRef` in a structure."""
    if isinstance(value, TensorRef):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from iter_refs(v)
    elif isinstance(value, dict) and not is_constant(value):
        for v in value.values():
            yield from iter_refs(v)


# -- IR → config ---------------------------------------------------------------------------
def model_to_config(model: Model, include_compile: bool = True) -> dict[str, Any]:
    """The Keras 3 dialect config of a model (``to_json()``/``config.json`` content)."""
    config = dict(model.config)
    config.setdefault("name", model.name)
    if model.layers or model.class_name in MODEL_CLASSES:
        config["layers"] = [layer_to_entry(layer, functional=model.class_name != "Sequential") for layer in model.layers]
    functional = {layer.name for layer in model.layers if _is_functional(layer)}
    if model.inputs is not None:
        config["input_layers"] = _refs_to_config(_shift(model.inputs, functional, +1))
    if model.outputs is not None:
        config["output_layers"] = _refs_to_config(_shift(model.outputs, functional, +1))
    out: dict[str, Any] = {
        "module": model.module,
        "class_name": model.class_name,
        "config": config,
        "registered_name": model.registered_name,
    }
    if model.build_config is not None:
        out["build_config"] = model.build_config
    if include_compile and model.compile_config is not None:
        out["compile_config"] = model.compile_config
    return out


def layer_to_entry(layer: Layer, functional: bool = True) -> dict[str, Any]:
    if layer.submodel is not None:
        entry = model_to_config(layer.submodel, include_compile=False)
        entry["module"] = layer.module if layer.module is not None else entry["module"]
        entry["registered_name"] = layer.registered_name
    else:
        entry = {"module": layer.module, "class_name": layer.class_name, "config": layer.config,
                 "registered_name": layer.registered_name}
    if layer.build_config is not None:
        entry["build_config"] = layer.build_config
    for key, value in layer.extra.items():
        if key.startswith(_EXTRA):
            entry[key[len(_EXTRA):]] = value
    if functional:
        entry["name"] = layer.name
        entry["inbound_nodes"] = [{"args": encode_tensors(n.args), "kwargs": encode_tensors(n.kwargs)} for n in layer.nodes]
    return entry


def encode_tensors(value: Any) -> Any:
    """Replace :class:`TensorRef` by Keras 3 ``__keras_tensor__`` dicts throughout a structure."""
    if isinstance(value, TensorRef):
        # Keras resolves a tensor by its keras_history; the shape is informative only, and
        # when the source did not record it a rank-0 placeholder keeps the config loadable.
        shape = list(value.shape) if value.shape is not None else []
        return {"class_name": KERAS_TENSOR,
                "config": {"shape": shape, "dtype": value.dtype or "float32",
                           "keras_history": [value.layer, value.node_index, value.tensor_index]}}
    if isinstance(value, list):
        return [encode_tensors(v) for v in value]
    if isinstance(value, tuple):
        return [encode_tensors(v) for v in value]
    if isinstance(value, dict) and not is_constant(value):
        return {k: encode_tensors(v) for k, v in value.items()}
    return value


def _is_functional(layer: Layer) -> bool:
    return layer.submodel is not None and layer.submodel.class_name != "Sequential" and layer.submodel.inputs is not None


def _shift(value: Any, names: set, delta: int) -> Any:
    if isinstance(value, TensorRef):
        return dataclasses.replace(value, node_index=value.node_index + delta) if value.layer in names else value
    if isinstance(value, (list, tuple)):
        return [_shift(v, names, delta) for v in value]
    if isinstance(value, dict) and not is_constant(value):
        return {k: _shift(v, names, delta) for k, v in value.items()}
    return value


def _refs_to_config(value: Any) -> Any:
    if isinstance(value, TensorRef):
        return [value.layer, value.node_index, value.tensor_index]
    if isinstance(value, (list, tuple)):
        return [_refs_to_config(v) for v in value]
    if isinstance(value, dict):
        return {k: _refs_to_config(v) for k, v in value.items()}
    raise TypeError(f"not a tensor structure: {value!r}")


def _expect_dict(value: Any, where: str) -> None:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be an object, not {type(value).__name__}")


def _expect_str(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} must be a non-empty string, not {value!r}")
    return value
