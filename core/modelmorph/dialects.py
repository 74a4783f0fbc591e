"""Keras 2 ↔ Keras 3 config dialects.

The IR keeps configs in Keras 3's dialect. Keras 2 files (tf.keras / tf_keras / keras 2.x:
``to_json()``, the ``model_config`` of a legacy ``.h5``, tf-keras ``.keras`` archives) are
translated on the way in by :func:`to_keras3`, and :func:`to_keras2` writes what tf_keras
2.x loads. What one side has and the other cannot hold becomes a diagnostic.

The constructor arguments each side accepts come from ``data/layer_args.json``, read off
the real libraries by ``tests/tools/gen_layer_args.py``.
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from importlib import resources
from typing import Any

from .diagnostics import Diagnostics

FUNCTIONAL_MODULE = "keras.src.models.functional"
_MODEL_CLASSES = ("Functional", "Model", "Sequential")
_OBJECT_KINDS = {"_initializer": "initializers", "_regularizer": "regularizers", "_constraint": "constraints"}
_LAYER_KEYS = ("layer", "backward_layer", "cell")  # config keys that hold a serialized layer


@lru_cache(maxsize=None)
def layer_args() -> dict[str, Any]:
    return json.loads(resources.files("modelmorph").joinpath("data/layer_args.json").read_text())


def detect(cfg: dict) -> str:
    """``"keras2"`` or ``"keras3"``: which dialect a model config is written in."""
    found = _dialect_marks(cfg)
    if "keras2" in found:
        return "keras2"
    if "keras3" in found:
        return "keras3"
    return "keras3" if "module" in cfg else "keras2"


def _dialect_marks(cfg: Any) -> set[str]:
    marks: set[str] = set()
    if not isinstance(cfg, dict):
        return marks
    config = cfg.get("config")
    if isinstance(config, dict):
        if cfg.get("class_name") == "InputLayer":
            marks.add("keras3" if "batch_shape" in config else "keras2" if "batch_input_shape" in config else "")
        nodes = cfg.get("inbound_nodes")
        for node in nodes if isinstance(nodes, list) else []:
            marks.add("keras3" if isinstance(node, dict) else "keras2")
        module = cfg.get("module")
        if isinstance(module, str) and module.startswith("tf_keras"):
            marks.add("keras2")
        layers = config.get("layers")
        for layer in layers if isinstance(layers, list) else []:
            marks |= _dialect_marks(layer)
    marks.discard("")
    return marks


# -- Keras 2 → Keras 3 ---------------------------------------------------------------------
def to_keras3(cfg: dict, diagnostics: Diagnostics | None = None) -> dict:
    """Translate a Keras 2 model config (``{"class_name", "config"}``) to Keras 3's dialect."""
    diags = diagnostics if diagnostics is not None else Diagnostics()
    return _model_to_keras3(copy.deepcopy(cfg), diags)


def _model_to_keras3(cfg: dict, diags: Diagnostics) -> dict:
    class_name = cfg.get("class_name")
    config = cfg.get("config") or {}
    if not isinstance(config, dict) or not isinstance(config.get("layers", []), list):
        raise ValueError(f"{class_name} config must be an object whose layers are a list")
    if class_name == "Sequential":
        return _sequential_to_keras3(cfg, config, diags)
    if class_name in ("Functional", "Model") or isinstance(config.get("layers"), list) and "input_layers" in config:
        return _functional_to_keras3(cfg, config, diags)
    return _object_to_keras3(cfg, "keras.models", diags)


def _functional_to_keras3(cfg: dict, config: dict, diags: Diagnostics) -> dict:
    entries = config.get("layers") or []
    # tf.keras counts a nested Sequential's own creation node, Keras 3 does not.
    seq_names = {e.get("name") for e in entries if isinstance(e, dict) and e.get("class_name") == "Sequential"}
    layers = []
    for entry in entries:
        layers.append(_layer_to_keras3(entry, diags, functional=True, seq_names=seq_names))
    new = {k: v for k, v in config.items() if k not in ("layers", "input_layers", "output_layers")}
    new.setdefault("trainable", True)
    new["layers"] = layers
    new["input_layers"] = _shift_refs(config.get("input_layers"), seq_names, -1)
    new["output_layers"] = _shift_refs(config.get("output_layers"), seq_names, -1)
    _dtype_to_keras3(new, diags)
    if cfg.get("class_name") == "Model":  # old tf.keras name of Functional
        cfg["class_name"] = "Functional"
    out = {"module": FUNCTIONAL_MODULE, "class_name": "Functional", "config": new, "registered_name": "Functional"}
    return _carry_entry_keys(cfg, out)


def _sequential_to_keras3(cfg: dict, config: dict, diags: Diagnostics) -> dict:
    entries = list(config.get("layers") or [])
    layers = [_layer_to_keras3(e, diags, functional=False) for e in entries]
    if layers and layers[0].get("class_name") != "InputLayer":
        first = layers[0]["config"]
        shape = first.pop("batch_input_shape", None)
        if shape is None and first.get("input_shape") is not None:
            shape = [None, *first.pop("input_shape")]
        if shape is not None:  # Keras 2 kept the input shape on the first layer
            dtype = first.get("dtype")
            dtype = dtype["config"]["name"] if isinstance(dtype, dict) else (dtype or "float32")
            if dtype.startswith("mixed_"):
                dtype = "float32"
            layers.insert(0, _input_layer(shape, dtype, f"{layers[0]['config'].get('name', 'layer')}_input"))
    new = {k: v for k, v in config.items() if k != "layers"}
    new.setdefault("trainable", True)
    _dtype_to_keras3(new, diags)
    new["layers"] = layers
    out = {"module": "keras", "class_name": "Sequential", "config": new, "registered_name": None}
    return _carry_entry_keys(cfg, out)


def _input_layer(shape: list, dtype: str, name: str) -> dict:
    return {"module": "keras.layers", "class_name": "InputLayer",
            "config": {"batch_shape": list(shape), "dtype": dtype, "sparse": False, "ragged": False,
                       "name": name, "optional": False},
            "registered_name": None}


def _carry_entry_keys(old: dict, new: dict) -> dict:
    for key in ("name", "inbound_nodes", "build_config", "compile_config", "shared_object_id"):
        if key in old and key not in new:
            new[key] = old[key]
    return new


def _layer_to_keras3(entry: Any, diags: Diagnostics, functional: bool, seq_names: set | None = None) -> dict:
    if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str):
        raise ValueError(f"a layer entry must be an object with a class_name, not {entry!r:.80}")
    class_name = entry["class_name"]
    if class_name in _MODEL_CLASSES:
        out = _model_to_keras3(entry, diags)
    else:
        config = dict(entry.get("config") or {})
        out = {"module": _keras3_layer_module(entry), "class_name": class_name, "config": config,
               "registered_name": _registered(entry)}
        _carry_entry_keys(entry, out)
        # Keras 2 build configs mean other things to Keras 3 builds; the graph rebuilds every layer.
        out.pop("build_config", None)
        if class_name in _FIXUPS_TO3:
            _FIXUPS_TO3[class_name](out)
        out["config"] = _layer_config_to_keras3(class_name, config, diags)
    if functional:
        out["name"] = entry.get("name", out["config"].get("name"))
        out["inbound_nodes"] = [_node_to_keras3(n, class_name, seq_names or set()) for n in entry.get("inbound_nodes") or []]
    else:
        out.pop("inbound_nodes", None)
        out.pop("name", None)
    return out


def _keras3_layer_module(entry: dict) -> str | None:
    module = entry.get("module")
    if module is None or module.startswith(("keras.layers", "tf_keras", "keras.src")) or module == "keras":
        return "keras.layers" if _is_builtin_layer(entry["class_name"]) else module
    return module


def _registered(entry: dict) -> str | None:
    if _is_builtin_layer(entry["class_name"]):
        return None
    return entry.get("registered_name") or entry["class_name"]


def _is_builtin_layer(class_name: str) -> bool:
    return class_name in layer_args()["keras3"] or class_name in layer_args()["keras2"]


def _mha_to_keras3(entry: dict) -> None:
    config = entry["config"]
    shapes = {k: config.pop(k, None) for k in ("query_shape", "value_shape", "key_shape")}
    if shapes["query_shape"] is not None and shapes["value_shape"] is not None:
        entry["build_config"] = {"shapes_dict": {k: v for k, v in shapes.items() if v is not None}}


_FIXUPS_TO3 = {"MultiHeadAttention": _mha_to_keras3}


def _layer_config_to_keras3(class_name: str, config: dict, diags: Diagnostics) -> dict:
    name = config.get("name", class_name)
    if class_name == "InputLayer":
        if "batch_input_shape" in config:
            config["batch_shape"] = config.pop("batch_input_shape")
        config.setdefault("optional", False)
        config.pop("type_spec", None)
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = config["dtype"].get("config", {}).get("name", "float32")
        return config
    _dtype_to_keras3(config, diags)
    if class_name in ("BatchNormalization", "LayerNormalization"):
        axis = config.get("axis")
        if isinstance(axis, list) and len(axis) == 1:
            config["axis"] = axis[0]
    if class_name == "Lambda":
        _lambda_to_keras3(config, diags, name)
    for key, value in list(config.items()):
        config[key] = _value_to_keras3(key, value, diags)
    accepted = layer_args()["keras3"].get(class_name)
    if accepted is not None:
        for key in [k for k in config if k not in accepted]:
            value = config.pop(key)
            if key == "batch_input_shape":
                continue  # becomes an InputLayer (Sequential) or is redundant (Functional)
            if not _is_default_drop(class_name, key, value):
                diags.add("lossy", f"Keras 3 {class_name} has no argument {key!r} (was {value!r:.60}); dropped", name)
    return config


# Arguments Keras 3 rejects whose Keras 2 value is what Keras 3 does anyway.
_HARMLESS = {
    "time_major": (False,), "groups": (1,), "input_length": None, "implementation": None,
    "softmax_robust_masking": None, "fused": None, "virtual_batch_size": (None,), "adjustment": (None,),
    "query_shape": None, "key_shape": None, "value_shape": None, "dynamic": (False,), "sparse": (False,),
}


def _is_default_drop(class_name: str, key: str, value: Any) -> bool:
    if key not in _HARMLESS:
        return False
    allowed = _HARMLESS[key]
    return allowed is None or value in allowed


def _value_to_keras3(key: str, value: Any, diags: Diagnostics) -> Any:
    if isinstance(value, dict) and "class_name" in value and "config" in value:
        if key in _LAYER_KEYS:
            return _layer_to_keras3(value, diags, functional=False)
        for suffix, kind in _OBJECT_KINDS.items():
            if key.endswith(suffix) or (kind == "regularizers" and key == "activity_regularizer"):
                obj = dict(value)
                obj.setdefault("module", f"keras.{kind}")
                obj.setdefault("registered_name", None)
                if obj["module"].startswith("tf_keras") or obj["module"] == f"keras.{kind}":
                    obj["module"] = f"keras.{kind}"
                return obj
    return value


def _object_to_keras3(cfg: dict, default_module: str, diags: Diagnostics) -> dict:
    out = dict(cfg)
    out.setdefault("module", default_module)
    out.setdefault("registered_name", cfg.get("class_name"))
    return out


def _dtype_to_keras3(config: dict, diags: Diagnostics) -> None:
    dtype = config.get("dtype")
    if isinstance(dtype, str):
        config["dtype"] = policy(dtype)
    elif isinstance(dtype, dict) and dtype.get("class_name") in ("Policy", "DTypePolicy", "PolicyV1"):
        config["dtype"] = policy(str((dtype.get("config") or {}).get("name", "float32")))


def policy(name: str) -> dict:
    """A Keras 3 ``DTypePolicy`` for a dtype or policy name."""
    return {"module": "keras", "class_name": "DTypePolicy", "config": {"name": name}, "registered_name": None}


def _node_to_keras3(node: Any, class_name: str, seq_names: set) -> dict:
    """A Keras 2 list-form node (records ``[layer, node, tensor, kwargs]``) as ``{args, kwargs}``."""
    if isinstance(node, dict):
        return node
    if not isinstance(node, list):
        raise ValueError(f"malformed inbound node {node!r:.80}")
    if node and _is_record(node):  # TFOpLambda-style: one record, not a list of records
        node = [node]
    refs, kwargs = [], {}
    for record in node:
        if not _is_record(record):
            raise ValueError(f"malformed inbound node record {record!r:.80}")
        name, node_index, tensor_index = record[0], record[1], record[2]
        if name in seq_names:
            node_index -= 1
        refs.append(_tensor(name, node_index, tensor_index))
        if len(record) > 3 and isinstance(record[3], dict):
            kwargs = record[3]
    kwargs = {k: _kwarg_to_keras3(v, seq_names) for k, v in kwargs.items()}
    args = [refs[0]] if len(refs) == 1 else [refs]
    return {"args": args, "kwargs": kwargs}


def _is_record(value: Any) -> bool:
    return (isinstance(value, list) and 3 <= len(value) <= 4 and isinstance(value[0], str)
            and isinstance(value[1], int) and isinstance(value[2], int))


def _kwarg_to_keras3(value: Any, seq_names: set) -> Any:
    # tf.keras writes a tensor passed as a keyword argument as [layer, node, tensor].
    if _is_record(value) and len(value) == 3:
        node_index = value[1] - 1 if value[0] in seq_names else value[1]
        return _tensor(value[0], node_index, value[2])
    if isinstance(value, list):
        return [_kwarg_to_keras3(v, seq_names) for v in value]
    return value


def _tensor(layer: str, node_index: int, tensor_index: int) -> dict:
    return {"class_name": "__keras_tensor__",
            "config": {"shape": [], "dtype": "float32", "keras_history": [layer, node_index, tensor_index]}}


def _shift_refs(value: Any, names: set, delta: int) -> Any:
    if _is_record(value) and len(value) == 3:
        return [value[0], value[1] + delta if value[0] in names else value[1], value[2]]
    if isinstance(value, list):
        return [_shift_refs(v, names, delta) for v in value]
    if isinstance(value, dict):
        return {k: _shift_refs(v, names, delta) for k, v in value.items()}
    return value


def _lambda_to_keras3(config: dict, diags: Diagnostics, name: str) -> None:
    function = config.get("function")
    if config.get("function_type") == "lambda" and isinstance(function, (list, str)):
        code, defaults, closure = (function + [None, None])[:3] if isinstance(function, list) else (function, None, None)
        config["function"] = {"class_name": "__lambda__", "config": {"code": code, "defaults": defaults, "closure": closure}}
    for key in ("function_type", "module", "output_shape_type", "output_shape_module"):
        config.pop(key, None)


# -- Keras 3 → Keras 2 ---------------------------------------------------------------------
#: Positional call arguments after the first, by class: Keras 2 records carry them as kwargs.
CALL_ARGS = {"MultiHeadAttention": ("query", "value", "key"), "Attention": ("inputs",), "AdditiveAttention": ("inputs",)}


def to_keras2(cfg: dict, diagnostics: Diagnostics | None = None) -> dict:
    """Translate a Keras 3 model config to what tf_keras 2.x ``model_from_config`` accepts."""
    diags = diagnostics if diagnostics is not None else Diagnostics()
    return _model_to_keras2(copy.deepcopy(cfg), diags)


def _model_to_keras2(cfg: dict, diags: Diagnostics) -> dict:
    class_name = cfg.get("class_name")
    config = dict(cfg.get("config") or {})
    out: dict[str, Any] = {"class_name": class_name}
    if class_name == "Sequential":
        config["layers"] = [_layer_to_keras2(e, diags, functional=False, seq_names=set()) for e in config.get("layers", [])]
        _dtype_to_keras2(config, diags, config.get("name", "model"))
    elif class_name == "Functional" or "input_layers" in config:
        out["class_name"] = "Functional"
        entries = config.get("layers", [])
        seq_names = {e.get("name") for e in entries if e.get("class_name") == "Sequential"}
        config["layers"] = [_layer_to_keras2(e, diags, functional=True, seq_names=seq_names) for e in entries]
        config["input_layers"] = _shift_refs(config.get("input_layers"), seq_names, +1)
        config["output_layers"] = _shift_refs(config.get("output_layers"), seq_names, +1)
        config.pop("dtype", None)
    else:
        diags.add("unsupported", f"model class {class_name!r} is carried as is; tf_keras may not know it", config.get("name"))
    out["config"] = config
    for key in ("name", "inbound_nodes"):
        if key in cfg:
            out[key] = cfg[key]
    return out


def _layer_to_keras2(entry: dict, diags: Diagnostics, functional: bool, seq_names: set) -> dict:
    class_name = entry["class_name"]
    name = entry.get("name") or (entry.get("config") or {}).get("name")
    if class_name in ("Functional", "Sequential"):
        out = _model_to_keras2(entry, diags)
    else:
        if class_name not in layer_args()["keras2"]:
            kind = "contains-code" if entry.get("registered_name") else "unsupported"
            diags.add(kind, f"layer class {class_name!r} does not exist in Keras 2; carried as is", name)
        out = {"class_name": class_name,
               "config": _layer_config_to_keras2(class_name, dict(entry.get("config") or {}), diags, name)}
        if class_name in _FIXUPS_TO2:
            _FIXUPS_TO2[class_name](entry, out)
        if entry.get("registered_name") and entry.get("registered_name") != class_name:
            out["class_name"] = entry["registered_name"]
    if functional:
        out["name"] = name
        out["inbound_nodes"] = [_node_to_keras2(n, class_name, seq_names, diags, name) for n in entry.get("inbound_nodes", [])]
    return out


def _mha_to_keras2(entry: dict, out: dict) -> None:
    # tf_keras rebuilds MultiHeadAttention from these three keys (None: build on first call).
    shapes = ((entry.get("build_config") or {}).get("shapes_dict") or {})
    value = shapes.get("value_shape")
    out["config"]["query_shape"] = shapes.get("query_shape")
    out["config"]["value_shape"] = value
    out["config"]["key_shape"] = shapes.get("key_shape", value)


_FIXUPS_TO2 = {"MultiHeadAttention": _mha_to_keras2}


def _layer_config_to_keras2(class_name: str, config: dict, diags: Diagnostics, name: str | None) -> dict:
    if class_name == "InputLayer":
        if "batch_shape" in config:
            config["batch_input_shape"] = config.pop("batch_shape")
        config.pop("optional", None)
        return config
    _dtype_to_keras2(config, diags, name)
    if class_name == "Lambda":
        function = config.get("function")
        if isinstance(function, dict) and function.get("class_name") == "__lambda__":
            inner = function.get("config") or {}
            config["function"] = [inner.get("code"), inner.get("defaults"), inner.get("closure")]
            config["function_type"] = "lambda"
            config.setdefault("module", None)
            config.setdefault("output_shape_type", "raw")
            config.setdefault("output_shape_module", None)
    for key, value in list(config.items()):
        config[key] = _value_to_keras2(key, value, diags, name)
    accepted = layer_args()["keras2"].get(class_name)
    if accepted is not None:
        for key in [k for k in config if k not in accepted and k not in ("function_type", "module", "output_shape_type", "output_shape_module")]:
            value = config.pop(key)
            if value not in (None, False, {}, []):
                diags.add("lossy", f"Keras 2 {class_name} has no argument {key!r} (was {value!r:.60}); dropped", name)
    return config


def _value_to_keras2(key: str, value: Any, diags: Diagnostics, name: str | None) -> Any:
    if isinstance(value, dict) and "class_name" in value and "config" in value:
        if key in _LAYER_KEYS:
            return _layer_to_keras2(value, diags, functional=False, seq_names=set())
        kind = value.get("module", "").rpartition(".")[2]
        out = {"class_name": value["class_name"], "config": dict(value.get("config") or {})}
        accepted = layer_args()["keras2_objects"].get(f"{kind}.{value['class_name']}")
        if accepted is not None:
            for arg in [a for a in out["config"] if a not in accepted]:
                dropped = out["config"].pop(arg)
                if dropped is not None:
                    diags.add("lossy", f"Keras 2 {value['class_name']} has no argument {arg!r}; dropped", name)
        return out
    return value


def _dtype_to_keras2(config: dict, diags: Diagnostics, name: str | None) -> None:
    dtype = config.get("dtype")
    if isinstance(dtype, dict):
        policy_name = str((dtype.get("config") or {}).get("name", "float32"))
        if policy_name.startswith("mixed_"):
            config["dtype"] = {"class_name": "Policy", "config": {"name": policy_name}}
        else:
            config["dtype"] = policy_name


def _node_to_keras2(node: Any, class_name: str, seq_names: set, diags: Diagnostics, name: str | None) -> list:
    if isinstance(node, list):
        return node
    args, kwargs = list(node.get("args") or []), dict(node.get("kwargs") or {})
    inputs = args[0] if args else []
    extra_names = CALL_ARGS.get(class_name, ())[1:]
    for i, value in enumerate(args[1:]):
        if i < len(extra_names):
            kwargs[extra_names[i]] = value
        else:
            diags.add("unsupported", f"call argument {i + 1} cannot be written in Keras 2 node form; dropped", name)
    kwargs = {k: _tensors_to_records(v, seq_names) for k, v in kwargs.items()}
    flat = inputs if isinstance(inputs, list) else [inputs]
    records = []
    for t in flat:
        ref = _history(t)
        if ref is None:
            diags.add("unsupported", "a non-tensor positional input cannot be written in Keras 2 node form; dropped", name)
            continue
        layer, node_index, tensor_index = ref
        records.append([layer, node_index + 1 if layer in seq_names else node_index, tensor_index, kwargs])
    return records


def _history(value: Any) -> list | None:
    if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
        return (value.get("config") or {}).get("keras_history")
    return None


def _tensors_to_records(value: Any, seq_names: set) -> Any:
    ref = _history(value)
    if ref is not None:
        return [ref[0], ref[1] + 1 if ref[0] in seq_names else ref[1], ref[2]]
    if isinstance(value, list):
        return [_tensors_to_records(v, seq_names) for v in value]
    if isinstance(value, dict):
        return {k: _tensors_to_records(v, seq_names) for k, v in value.items()}
    return value
