"""Keras 2 ↔ Keras 3 config dialects.

The IR keeps configs in Keras 3's dialect. Keras 2 files (tf.keras / tf_keras / keras 2.x:
``to_json()``, the ``model_config`` of a legacy ``.h5``, tf-keras ``.keras`` archives) are
translated on the way in by :func:`to_keras3`, and :func:`to_keras2` writes what tf_keras
2.x loads. The same holds for compile configs (:func:`compile_to_keras3`,
:func:`compile_to_keras2`) and optimizer slot names (:func:`slot_name_to_keras3`). What one
side has and the other cannot hold becomes a diagnostic.

The constructor arguments each side accepts come from ``data/layer_args.json``, read off
the real libraries by ``tests/tools/gen_layer_args.py``.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from ..diagnostics import Diagnostics

FUNCTIONAL_MODULE = "keras.src.models.functional"
_MODEL_CLASSES = ("Functional", "Model", "Sequential")
_OBJECT_KINDS = {"_initializer": "initializers", "_regularizer": "regularizers", "_constraint": "constraints"}
_LAYER_KEYS = ("layer", "backward_layer", "cell")  # config keys that hold a serialized layer


@lru_cache(maxsize=None)
def layer_args() -> dict[str, Any]:
    return json.loads(resources.files("modelmorph.keras").joinpath("data/layer_args.json").read_text())


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


def complete_keras3(cfg: dict) -> dict:
    """Give the entries of a Keras 3 *legacy* config (Keras 3's own ``.h5`` writer leaves out
    ``module`` and ``registered_name``) the modules ``.keras`` loading needs to find them."""
    out = copy.deepcopy(cfg)
    _complete_entry(out)
    return out


def _complete_entry(entry: Any) -> None:
    if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str):
        return
    class_name = entry["class_name"]
    if "module" not in entry:
        if class_name in ("Functional", "Model"):
            entry.update(module=FUNCTIONAL_MODULE, registered_name="Functional")
        elif class_name == "Sequential" or class_name in layer_args()["keras3"]:
            entry.update(module="keras" if class_name == "Sequential" else "keras.layers", registered_name=None)
    config = entry.get("config")
    if isinstance(config, dict):
        for layer in config.get("layers") if isinstance(config.get("layers"), list) else []:
            _complete_entry(layer)
        for key in _LAYER_KEYS:  # wrapped layers: Bidirectional, TimeDistributed, RNN cells
            _complete_entry(config.get(key))


# -- Keras 2 → Keras 3 ---------------------------------------------------------------------
def to_keras3(cfg: dict, diagnostics: Diagnostics | None = None) -> dict:
    """Translate a Keras 2 model config (``{"class_name", "config"}``) to Keras 3's dialect."""
    diags = diagnostics if diagnostics is not None else Diagnostics()
    return _model_to_keras3(copy.deepcopy(cfg), diags)


def _model_to_keras3(cfg: dict, diags: Diagnostics) -> dict:
    class_name = cfg.get("class_name")
    config = cfg.get("config") or {}
    if class_name == "Sequential" and isinstance(config, list):  # keras <= 2.2.4: the config is the layer list
        config = {"name": cfg.get("name", "sequential"), "layers": config}
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
        first = entries[0].get("config") or {}  # the Keras 2 entry: its translation drops these keys
        shape = first.get("batch_input_shape")
        if shape is None and first.get("input_shape") is not None:
            shape = [None, *first["input_shape"]]
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
    if class_name in TFOP_CLASSES:
        return _tfop_to_keras3(entry, diags, seq_names or set())
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
        _lambda_to_keras3(config)
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


#: A Lambda's callables, each with the keys Keras 2 keeps its encoding and module in.
_LAMBDA_CALLABLES = (("function", "function_type", "module"),
                     ("output_shape", "output_shape_type", "output_shape_module"),
                     ("mask", "mask_type", "mask_module"))


def _lambda_to_keras3(config: dict) -> None:
    """Re-encode a Lambda's callables: Keras 2 ``[code, defaults, closure]`` + ``*_type`` keys
    become Keras 3 ``__lambda__`` objects (the bytecode is copied, never unmarshalled)."""
    for key, type_key, module_key in _LAMBDA_CALLABLES:
        kind, module = config.pop(type_key, None), config.pop(module_key, None)
        value = config.get(key)
        if kind == "lambda":
            code, defaults, closure = (list(value) + [None, None])[:3] if isinstance(value, list) else (value, None, None)
            config[key] = {"class_name": "__lambda__", "config": {"code": code, "defaults": defaults, "closure": closure}}
        elif kind == "function":  # a named function: Keras 3 imports it by module and name
            config[key] = {"module": module, "class_name": "function", "config": value, "registered_name": value}
        elif value is None and key != "function":
            config.pop(key, None)  # Keras 3 leaves an unset output_shape or mask out


def _lambda_to_keras2(config: dict) -> None:
    for key, type_key, module_key in _LAMBDA_CALLABLES:
        value = config.get(key)
        if isinstance(value, dict) and value.get("class_name") == "__lambda__":
            inner = value.get("config") or {}
            config[key] = [inner.get("code"), inner.get("defaults"), inner.get("closure")]
            config[type_key], config[module_key] = "lambda", None
        elif isinstance(value, dict) and value.get("class_name") == "function":
            config[key], config[type_key], config[module_key] = value.get("config"), "function", value.get("module")
        elif key in config or key != "mask":  # tf_keras requires the function and output_shape keys
            config.setdefault(key, None)
            config[type_key], config[module_key] = "raw", None


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
    if class_name in TFOP_CLASSES or str(entry.get("module")).startswith(_OPS_MODULE):
        return _operation_to_keras2(entry, diags, seq_names, name)
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
        _lambda_to_keras2(config)
    for key, value in list(config.items()):
        config[key] = _value_to_keras2(key, value, diags, name)
    accepted = layer_args()["keras2"].get(class_name)
    if accepted is not None:
        encodings = {k for callable_keys in _LAMBDA_CALLABLES for k in callable_keys[1:]}
        for key in [k for k in config if k not in accepted and k not in encodings]:
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


# -- TFOpLambda ↔ keras.ops ----------------------------------------------------------------
# tf_keras records a `tf.*` call on symbolic tensors as a TFOpLambda layer naming the function
# (`"function": "math.multiply"`); its node keeps the first argument's structure, with the
# other arguments as keywords on every record. Keras 3 records a `keras.ops` call as an
# operation (`{"module": "keras.src.ops.numpy", "class_name": "Multiply"}`) whose constructor
# takes the options (axis...) and whose call takes the tensors. Functions with an equivalent
# operation are translated both ways; the others are carried with an `unsupported` diagnostic.
TFOP_CLASSES = ("TFOpLambda", "SlicingOpLambda")
_OPS_MODULE = "keras.src.ops."
_CONSTANT = "_CONSTANT_VALUE"  # tf_keras' record of a non-tensor first argument


@dataclass(frozen=True)
class _Op:
    """The Keras 3 operation ``keras.src.ops.<module>.<name>`` equivalent to a TF function.

    ``operands``: the TF keyword names of the further call arguments, in the operation's call
    order. ``options``: TF keyword → the operation's constructor argument.
    """

    module: str
    name: str
    operands: tuple[str, ...] = ()
    options: tuple[tuple[str, str], ...] = ()


_AXIS = (("axis", "axis"),)
_REDUCE = (("axis", "axis"), ("keepdims", "keepdims"))

#: TF function (as TFOpLambda names it) → Keras 3 operation. The first function listed for
#: an operation is the one written back for it.
TF_OPS: dict[str, _Op] = {
    **{fn: _Op("numpy", name) for fn, name in (
        ("math.abs", "Absolute"), ("math.negative", "Negative"), ("math.exp", "Exp"), ("math.log", "Log"),
        ("math.sqrt", "Sqrt"), ("math.square", "Square"), ("math.tanh", "Tanh"))},
    **{fn: _Op("numpy", name, ("y",)) for fn, name in (
        ("__operators__.add", "Add"), ("math.add", "Add"), ("math.subtract", "Subtract"),
        ("math.multiply", "Multiply"), ("math.truediv", "TrueDivide"), ("math.divide", "TrueDivide"),
        ("math.maximum", "Maximum"), ("math.minimum", "Minimum"), ("math.pow", "Power"))},
    **{fn: _Op("numpy", name, options=_REDUCE) for fn, name in (
        ("math.reduce_sum", "Sum"), ("math.reduce_mean", "Mean"), ("math.reduce_max", "Max"),
        ("math.reduce_min", "Min"))},
    "linalg.matmul": _Op("numpy", "Matmul", ("b",)),
    "concat": _Op("numpy", "Concatenate", options=_AXIS),
    "stack": _Op("numpy", "Stack", options=_AXIS),
    "expand_dims": _Op("numpy", "ExpandDims", options=_AXIS),
    "squeeze": _Op("numpy", "Squeeze", options=_AXIS),
    "compat.v1.squeeze": _Op("numpy", "Squeeze", options=_AXIS),
    "reshape": _Op("numpy", "Reshape", options=(("shape", "newshape"),)),
    "transpose": _Op("numpy", "Transpose", options=(("perm", "axes"),)),
    "compat.v1.transpose": _Op("numpy", "Transpose", options=(("perm", "axes"),)),
    "tile": _Op("numpy", "Tile", options=(("multiples", "repeats"),)),
    "clip_by_value": _Op("numpy", "Clip", options=(("clip_value_min", "x_min"), ("clip_value_max", "x_max"))),
    "__operators__.getitem": _Op("numpy", "GetItem", ("slice_spec",)),
    "cast": _Op("core", "Cast", options=(("dtype", "dtype"),)),
    "nn.relu": _Op("nn", "Relu"),
    "nn.relu6": _Op("nn", "Relu6"),
    "math.sigmoid": _Op("nn", "Sigmoid"),
    "nn.sigmoid": _Op("nn", "Sigmoid"),
    "nn.softmax": _Op("nn", "Softmax", options=_AXIS),
    "math.rsqrt": _Op("math", "Rsqrt"),
}
_TF_FUNCTION_OF: dict[tuple[str, str], str] = {}
for _fn, _op in TF_OPS.items():
    _TF_FUNCTION_OF.setdefault((_op.module, _op.name), _fn)

#: Keyword arguments of TF functions that change nothing with these values (None: any value).
_NEUTRAL_KWARGS = {"name": None, "conjugate": (False,), "transpose_a": (False,), "transpose_b": (False,),
                   "adjoint_a": (False,), "adjoint_b": (False,), "a_is_sparse": (False,), "b_is_sparse": (False,)}


def _tfop_to_keras3(entry: dict, diags: Diagnostics, seq_names: set) -> dict:
    config = dict(entry.get("config") or {})
    name = entry.get("name", config.get("name"))
    function = config.get("function")
    calls = [_tfop_call(node, seq_names) for node in entry.get("inbound_nodes") or []]
    op = TF_OPS.get(function) if isinstance(function, str) else None
    operation = _operation(op, name, calls) if op is not None else None
    if operation is not None:
        return operation
    diags.add("unsupported", f"{entry['class_name']} calling tf.{function} has no Keras 3 operation modelmorph "
              "knows to be equivalent; carried as is (Keras 3 cannot load it)", name)
    return {"module": entry.get("module"), "class_name": entry["class_name"], "config": config,
            "registered_name": entry.get("registered_name") or entry["class_name"], "name": name,
            "inbound_nodes": [{"args": [first], "kwargs": kwargs} for first, kwargs in calls]}


def _tfop_call(node: Any, seq_names: set) -> tuple[Any, dict]:
    """The first argument (its structure kept) and the keyword arguments of one TFOpLambda call."""
    kwargs: dict = {}

    def first_argument(value: Any) -> Any:
        if isinstance(value, list) and 3 <= len(value) <= 4 and value[:2] == [_CONSTANT, -1]:
            kwargs.update(value[3] if len(value) == 4 and isinstance(value[3], dict) else {})
            return value[2]
        if _is_record(value):
            kwargs.update(value[3] if len(value) == 4 and isinstance(value[3], dict) else {})
            return _tensor(value[0], value[1] - 1 if value[0] in seq_names else value[1], value[2])
        if isinstance(value, list):
            return [first_argument(v) for v in value]
        if isinstance(value, dict):
            return {k: first_argument(v) for k, v in value.items()}
        raise ValueError(f"malformed TFOpLambda inbound node {value!r:.80}")

    first = first_argument(node)
    return first, {k: _kwarg_to_keras3(v, seq_names) for k, v in kwargs.items()}


def _operation(op: _Op, name: str, calls: list[tuple[Any, dict]]) -> dict | None:
    """The Keras 3 operation entry for TFOpLambda calls, or None when one cannot be expressed."""
    options: dict | None = None
    nodes = []
    for first, kwargs in calls:
        kwargs = dict(kwargs)
        if any(k not in kwargs for k in op.operands):
            return None
        operands = [_slice_key_to_keras3(kwargs.pop(k)) if k == "slice_spec" else _constant_to_keras3(kwargs.pop(k))
                    for k in op.operands]
        call_options = {k3: kwargs.pop(tf) for tf, k3 in op.options if tf in kwargs}
        neutral = all(k in _NEUTRAL_KWARGS and (_NEUTRAL_KWARGS[k] is None or v in _NEUTRAL_KWARGS[k])
                      for k, v in kwargs.items())
        # Keras 3 options belong to the operation, TF ones to each call: every call must agree.
        if not neutral or (options is not None and call_options != options):
            return None
        options = call_options
        nodes.append({"args": [first, *operands], "kwargs": {}})
    return {"module": _OPS_MODULE + op.module, "class_name": op.name, "config": {"name": name, **(options or {})},
            "registered_name": op.name, "name": name, "inbound_nodes": nodes}


def _constant_to_keras3(value: Any) -> Any:
    """tf_keras writes a constant tensor operand as a nested list, which Keras 3 operations
    cannot take: they get the ``__numpy__`` array Keras 3 writes (its dtype is not recorded:
    float32 for floats, as TF made them, else int32 or bool)."""
    if not isinstance(value, list) or any(_history(v) is not None for v in _leaves(value)):
        return value
    leaves = list(_leaves(value))
    dtype = ("float32" if any(isinstance(v, float) for v in leaves)
             else "bool" if leaves and all(isinstance(v, bool) for v in leaves) else "int32")
    return {"class_name": "__numpy__", "config": {"value": value, "dtype": dtype}}


def _leaves(value: Any):
    if isinstance(value, list):
        for v in value:
            yield from _leaves(v)
    else:
        yield value


def _slice_key_to_keras3(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"start", "stop", "step"}:
        return {"class_name": "__slice__", "config": dict(value)}
    if isinstance(value, list):
        return [_slice_key_to_keras3(v) for v in value]
    return value


def _slice_key_to_keras2(value: Any) -> Any:
    if isinstance(value, dict) and value.get("class_name") == "__slice__":
        return dict(value.get("config") or {})
    if isinstance(value, list):
        return [_slice_key_to_keras2(v) for v in value]
    return value


def _operation_to_keras2(entry: dict, diags: Diagnostics, seq_names: set, name: str | None) -> dict:
    """A Keras 3 operation (or a carried TFOpLambda) as the TFOpLambda tf_keras builds."""
    config = dict(entry.get("config") or {})
    nodes = entry.get("inbound_nodes") or []
    if entry["class_name"] in TFOP_CLASSES:
        class_name, function = entry["class_name"], config.get("function")
        calls = [((n.get("args") or [None])[0], dict(n.get("kwargs") or {})) for n in nodes]
    else:
        module = str(entry.get("module"))[len(_OPS_MODULE):]
        function = _TF_FUNCTION_OF.get((module, entry["class_name"]))
        calls = _tf_calls(TF_OPS[function], config, nodes) if function is not None else None
        if calls is None:
            diags.add("unsupported", f"Keras 3 operation {entry['class_name']!r} has no tf_keras equivalent "
                      "modelmorph knows; carried as is (tf_keras cannot load it)", name)
            return {"class_name": entry["class_name"], "config": config, "module": entry.get("module"), "name": name,
                    "inbound_nodes": [_node_to_keras2(n, entry["class_name"], seq_names, diags, name) for n in nodes]}
        class_name = "SlicingOpLambda" if function == "__operators__.getitem" else "TFOpLambda"
    tf_config = {"name": name, "trainable": config.get("trainable", True), "dtype": "float32", "function": function}
    return {"class_name": class_name, "config": tf_config, "name": name,
            "inbound_nodes": [_tfop_node(first, kwargs, seq_names) for first, kwargs in calls]}


def _tf_calls(op: _Op, config: dict, nodes: list) -> list[tuple[Any, dict]] | None:
    options = {tf: config[k3] for tf, k3 in op.options if k3 in config}
    calls = []
    for node in nodes:
        args = list(node.get("args") or [])
        if len(args) != 1 + len(op.operands) or node.get("kwargs"):
            return None
        operands = {k: _slice_key_to_keras2(v) if k == "slice_spec" else _constant_to_keras2(v)
                    for k, v in zip(op.operands, args[1:])}
        calls.append((args[0], {**operands, **options}))
    return calls


def _constant_to_keras2(value: Any) -> Any:
    if isinstance(value, dict) and value.get("class_name") == "__numpy__":
        return (value.get("config") or {}).get("value")
    return value


def _tfop_node(first: Any, kwargs: dict, seq_names: set) -> Any:
    """A TFOpLambda node: the first argument's structure, each leaf a record carrying the keywords."""
    kwargs = {k: _tensors_to_records(v, seq_names) for k, v in kwargs.items()}

    def record(value: Any) -> Any:
        ref = _history(value)
        if ref is not None:
            return [ref[0], ref[1] + 1 if ref[0] in seq_names else ref[1], ref[2], kwargs]
        if isinstance(value, list):
            return [record(v) for v in value]
        if isinstance(value, dict):
            return {k: record(v) for k, v in value.items()}
        return [_CONSTANT, -1, value, kwargs]

    return record(first)


# -- Compile configs and optimizers --------------------------------------------------------
#: Optimizer slot names tf_keras gives differently from Keras 3 (Keras 3 name → tf_keras name),
#: by class. Both create the same slots in the same order (``keras3_layout.optimizer_entries``).
_KERAS2_SLOT_NAMES: dict[str, dict[str, str]] = {
    "SGD": {"momentum": "m"},
    "Adam": {"momentum": "m", "velocity": "v", "velocity_hat": "vhat"},
    "AdamW": {"momentum": "m", "velocity": "v", "velocity_hat": "vhat"},
    "Nadam": {"momentum": "m", "velocity": "v"},
    "Adamax": {"momentum": "m", "norm": "u"},
    "Lion": {"momentum": "m"},
}


#: The optimizer classes both libraries provide under the same name.
_KERAS3_OPTIMIZERS = frozenset({"SGD", "Adam", "AdamW", "Nadam", "Adamax", "Lion", "RMSprop", "Adagrad",
                                "Adadelta", "Ftrl", "Adafactor"})

#: Optimizer arguments only one side has, with the values that mean "not used".
_OPTIMIZER_KERAS2_ONLY = {"jit_compile": None, "is_legacy_optimizer": None, "decay": (None, 0, 0.0)}
_OPTIMIZER_KERAS3_ONLY = {"loss_scale_factor": (None,), "gradient_accumulation_steps": (None,)}


def optimizer_class(cfg: Any) -> str | None:
    """The class of a serialized optimizer, without tf_keras' ``Custom>`` registration prefix."""
    name = cfg.get("class_name") if isinstance(cfg, dict) else None
    return name.removeprefix("Custom>") if isinstance(name, str) else None


def slot_name_to_keras2(optimizer: str | None, keras3_name: str) -> str:
    return _KERAS2_SLOT_NAMES.get(optimizer or "", {}).get(keras3_name, keras3_name)


def slot_name_to_keras3(optimizer: str | None, keras2_name: str) -> str:
    names = _KERAS2_SLOT_NAMES.get(optimizer or "", {})
    return next((k3 for k3, k2 in names.items() if k2 == keras2_name), keras2_name)


def compile_to_keras3(training_config: dict, diagnostics: Diagnostics | None = None) -> dict:
    """A Keras 2 ``training_config`` (legacy ``.h5``) as a Keras 3 ``compile_config``."""
    diags = diagnostics if diagnostics is not None else Diagnostics()
    optimizer = training_config.get("optimizer_config")
    return {
        "optimizer": optimizer_to_keras3(optimizer, diags) if isinstance(optimizer, dict) else optimizer,
        "loss": _objects_to_keras3(training_config.get("loss"), "losses"),
        "loss_weights": training_config.get("loss_weights"),
        "metrics": _objects_to_keras3(training_config.get("metrics"), "metrics"),
        "weighted_metrics": _objects_to_keras3(training_config.get("weighted_metrics"), "metrics"),
        # Keras 3's own legacy .h5 writer keeps these three; Keras 2 has no such settings.
        "run_eagerly": training_config.get("run_eagerly", False),
        "steps_per_execution": training_config.get("steps_per_execution", 1),
        "jit_compile": training_config.get("jit_compile", False),
    }


def compile_to_keras2(compile_config: dict, diagnostics: Diagnostics | None = None) -> dict:
    """A Keras 3 ``compile_config`` as the ``training_config`` tf_keras reads from a ``.h5``."""
    diags = diagnostics if diagnostics is not None else Diagnostics()
    optimizer = compile_config.get("optimizer")
    return {
        "loss": _objects_to_keras2(compile_config.get("loss")),
        "metrics": _objects_to_keras2(compile_config.get("metrics")),
        "weighted_metrics": _objects_to_keras2(compile_config.get("weighted_metrics")),
        "loss_weights": compile_config.get("loss_weights"),
        "optimizer_config": optimizer_to_keras2(optimizer, diags) if isinstance(optimizer, dict) else optimizer,
    }


def optimizer_to_keras3(cfg: dict, diagnostics: Diagnostics | None = None) -> dict:
    diags = diagnostics if diagnostics is not None else Diagnostics()
    class_name = optimizer_class(cfg) or "Optimizer"
    config = dict(cfg.get("config") or {})
    if "lr" in config and "learning_rate" not in config:  # keras < 2.3 spelling
        config["learning_rate"] = config.pop("lr")
    _drop_arguments(config, _OPTIMIZER_KERAS2_ONLY, f"Keras 3 {class_name}", diags)
    if isinstance(config.get("learning_rate"), dict):
        config["learning_rate"] = _object_to_module(config["learning_rate"], "keras.optimizers.schedules")
    builtin = class_name in _KERAS3_OPTIMIZERS
    return {"module": "keras.optimizers" if builtin else cfg.get("module"), "class_name": class_name,
            "config": config, "registered_name": None if builtin else class_name}


def optimizer_to_keras2(cfg: dict, diagnostics: Diagnostics | None = None) -> dict:
    diags = diagnostics if diagnostics is not None else Diagnostics()
    class_name = optimizer_class(cfg) or "Optimizer"
    config = dict(cfg.get("config") or {})
    _drop_arguments(config, _OPTIMIZER_KERAS3_ONLY, f"Keras 2 {class_name}", diags)
    if isinstance(config.get("learning_rate"), dict):
        schedule = config["learning_rate"]
        config["learning_rate"] = {"class_name": schedule.get("class_name"), "config": schedule.get("config")}
    # tf_keras would otherwise build the legacy optimizer, whose variables are laid out differently.
    config["is_legacy_optimizer"] = False
    return {"class_name": class_name, "config": config}


def _drop_arguments(config: dict, unknown: dict, where: str, diags: Diagnostics) -> None:
    for key, unused in unknown.items():
        if key in config:
            value = config.pop(key)
            if unused is not None and value not in unused:
                diags.add("lossy", f"{where} has no argument {key!r} (was {value!r:.60}); dropped")


def _object_to_module(obj: dict, module: str) -> dict:
    out = dict(obj)
    out["module"] = module
    out.setdefault("registered_name", None)
    return out


def _objects_to_keras3(value: Any, kind: str) -> Any:
    """Losses and metrics: serialized objects get their Keras 3 module; strings stay names."""
    if isinstance(value, dict) and "class_name" in value and "config" in value:
        out = _object_to_module(value, f"keras.{kind}")
        if isinstance(out["config"], dict) and out["config"].get("reduction") == "auto":
            # tf_keras' "auto" is what Keras 3 calls sum_over_batch_size
            out["config"] = {**out["config"], "reduction": "sum_over_batch_size"}
        return out
    if isinstance(value, list):
        return [_objects_to_keras3(v, kind) for v in value]
    if isinstance(value, dict):
        return {k: _objects_to_keras3(v, kind) for k, v in value.items()}
    return value


def _objects_to_keras2(value: Any) -> Any:
    if isinstance(value, dict) and "class_name" in value and "config" in value:
        if value["class_name"] == "function":  # a plain function is named, as tf_keras names it
            return value["config"]
        config = {k: v for k, v in (value.get("config") or {}).items() if not (k == "dtype" and v is None)}
        return {"class_name": value["class_name"], "config": config}
    if isinstance(value, list):
        return [_objects_to_keras2(v) for v in value]
    if isinstance(value, dict):
        return {k: _objects_to_keras2(v) for k, v in value.items()}
    return value
