"""Keras 2 model and layer configs → Keras 3's dialect."""

from __future__ import annotations

from typing import Any

from ...diagnostics import Diagnostics
from .. import catalogue
from .common import copy_config, FUNCTIONAL_MODULE, _LAYER_KEYS, _LAYER_LIST_KEYS, _MODEL_CLASSES, _OBJECT_KINDS, _dtype_to_keras3, layer_args
from .functions import check_activations, expand_keras2
from .lambdas import _lambda_to_keras3
from .names import rename_slashes
from .nodes import _node_to_keras3, _shift_refs
from .tfops import TFOP_CLASSES, _tfop_to_keras3


# -- Keras 2 → Keras 3 ---------------------------------------------------------------------
def to_keras3(cfg: dict, diagnostics: Diagnostics | None = None, renamed: dict | None = None) -> dict:
    """Translate a Keras 2 model config (``{"class_name", "config"}``) to Keras 3's dialect.
    Layers whose names Keras 3 refuses are renamed; ``renamed`` (when given) gets old → new."""
    diags = diagnostics if diagnostics is not None else Diagnostics()
    cfg = copy_config(cfg)
    names = rename_slashes(cfg, diags)
    if renamed is not None:
        renamed.update(names)
    return _model_to_keras3(cfg, diags)

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
    taken = {e.get("name") for e in entries if isinstance(e, dict)}
    entries = expand_keras2(entries, taken)
    # tf.keras counts a nested model's own creation node in every reference to it; Keras 3 counts
    # it for neither in call arguments, and in input/output layers for a Functional only.
    seq_names = {e.get("name") for e in entries if isinstance(e, dict) and e.get("class_name") == "Sequential"}
    nested = seq_names | {e.get("name") for e in entries if isinstance(e, dict) and _is_functional(e)}
    layers = []
    for entry in entries:
        layers.append(_layer_to_keras3(entry, diags, functional=True, seq_names=nested))
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

def _is_functional(entry: dict) -> bool:
    config = entry.get("config")
    return (entry.get("class_name") != "Sequential" and isinstance(config, dict)
            and isinstance(config.get("layers"), list) and "input_layers" in config)

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
        described = catalogue.get(class_name)
        if described is not None and described.to_keras3 is not None:
            described.to_keras3(out)
        out["config"] = _layer_config_to_keras3(out["class_name"], config, diags)  # a fixup may rename the class
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
    if class_name == "Lambda":
        _lambda_to_keras3(config)
    check_activations(config, "keras2", diags, name)
    for key, value in list(config.items()):
        if isinstance(value, (dict, list)):  # only these are translated (most values are not: no call for them)
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
    # Keras 3 classes without these arguments (SpatialDropout, Discretization) have no variables to freeze
    # and no noise shape to choose.
    "trainable": None, "noise_shape": (None,),
}

def _is_default_drop(class_name: str, key: str, value: Any) -> bool:
    if key not in _HARMLESS:
        return False
    allowed = _HARMLESS[key]
    return allowed is None or value in allowed

def _value_to_keras3(key: str, value: Any, diags: Diagnostics) -> Any:
    if key in _LAYER_LIST_KEYS and isinstance(value, list) and all(
            isinstance(v, dict) and isinstance(v.get("class_name"), str) for v in value):
        return [_layer_to_keras3(v, diags, functional=False) for v in value]
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