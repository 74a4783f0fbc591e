"""Keras 3 model and layer configs → what tf_keras 2.x ``model_from_config`` accepts."""

from __future__ import annotations

from typing import Any

from ...diagnostics import Diagnostics
from .. import catalogue
from .common import copy_config, _LAYER_KEYS, _LAYER_LIST_KEYS, layer_args
from .functions import check_activations, expand_keras3
from .lambdas import _LAMBDA_CALLABLES, _lambda_to_keras2
from .masks import drop_mask_operations
from .nodes import _node_to_keras2, _shift_refs
from .tfops import TFOP_CLASSES, _OPS_MODULE, _operation_to_keras2
from .upgrade import _is_functional


# -- Keras 3 → Keras 2 ---------------------------------------------------------------------
def to_keras2(cfg: dict, diagnostics: Diagnostics | None = None) -> dict:
    """Translate a Keras 3 model config to what tf_keras 2.x ``model_from_config`` accepts."""
    diags = diagnostics if diagnostics is not None else Diagnostics()
    return _model_to_keras2(copy_config(cfg), diags)

def _model_to_keras2(cfg: dict, diags: Diagnostics) -> dict:
    class_name = cfg.get("class_name")
    config = dict(cfg.get("config") or {})
    out: dict[str, Any] = {"class_name": class_name}
    if class_name == "Sequential":
        config["layers"] = [_layer_to_keras2(e, diags, functional=False, seq_names=set()) for e in config.get("layers", [])]
        _dtype_to_keras2(config, diags, config.get("name", "model"))
    elif class_name == "Functional" or "input_layers" in config:
        out["class_name"] = "Functional"
        entries = expand_keras3(config.get("layers", []), {e.get("name") for e in config.get("layers", [])})
        entries = drop_mask_operations(entries, _layer_names(config.get("output_layers")), diags)
        # tf_keras counts a nested model's creation node in every reference (see to_keras3).
        seq_names = {e.get("name") for e in entries if e.get("class_name") == "Sequential"}
        nested = seq_names | {e.get("name") for e in entries if _is_functional(e)}
        config["layers"] = [_layer_to_keras2(e, diags, functional=True, seq_names=nested) for e in entries]
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

def _layer_names(refs: Any) -> set:
    """The layer names in ``input_layers``/``output_layers`` (records ``[name, node, tensor]``)."""
    if isinstance(refs, list) and len(refs) == 3 and isinstance(refs[0], str):
        return {refs[0]}
    if isinstance(refs, (list, dict)):
        return set().union(*(_layer_names(r) for r in (refs.values() if isinstance(refs, dict) else refs)))
    return set()

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
        out = {"class_name": class_name, "config": dict(entry.get("config") or {})}
        described = catalogue.get(class_name)
        if described is not None and described.to_keras2 is not None:  # before the generic drop, as to_keras3
            described.to_keras2(entry, out)
        added = set(out["config"]) - set(entry.get("config") or {})  # a fixup's own keys stay (MHA's build shapes)
        out["config"] = _layer_config_to_keras2(out["class_name"], out["config"], diags, name, keep=added)
        if entry.get("registered_name") and entry.get("registered_name") != class_name:
            out["class_name"] = entry["registered_name"]
    if functional:
        out["name"] = name
        out["inbound_nodes"] = [_node_to_keras2(n, class_name, seq_names, diags, name) for n in entry.get("inbound_nodes", [])]
    return out

def _layer_config_to_keras2(class_name: str, config: dict, diags: Diagnostics, name: str | None,
                            keep: set = frozenset()) -> dict:
    if class_name == "InputLayer":
        if "batch_shape" in config:
            config["batch_input_shape"] = config.pop("batch_shape")
        config.pop("optional", None)
        return config
    _dtype_to_keras2(config, diags, name)
    if class_name == "Lambda":
        _lambda_to_keras2(config)
    check_activations(config, "keras3", diags, name)
    for key, value in list(config.items()):
        config[key] = _value_to_keras2(key, value, diags, name)
    accepted = layer_args()["keras2"].get(class_name)
    if accepted is not None:
        encodings = {k for callable_keys in _LAMBDA_CALLABLES for k in callable_keys[1:]}
        for key in [k for k in config if k not in accepted and k not in encodings and k not in keep]:
            value = config.pop(key)
            if value not in (None, False, {}, []):
                diags.add("lossy", f"Keras 2 {class_name} has no argument {key!r} (was {value!r:.60}); dropped", name)
    return config

def _value_to_keras2(key: str, value: Any, diags: Diagnostics, name: str | None) -> Any:
    if key in _LAYER_LIST_KEYS and isinstance(value, list) and all(
            isinstance(v, dict) and isinstance(v.get("class_name"), str) for v in value):
        return [_layer_to_keras2(v, diags, functional=False, seq_names=set()) for v in value]
    if isinstance(value, dict) and "class_name" in value and "config" in value:
        if key in _LAYER_KEYS:
            return _layer_to_keras2(value, diags, functional=False, seq_names=set())
        if not isinstance(value.get("module", ""), str) or not isinstance(value.get("config") or {}, dict) \
                or not isinstance(value["class_name"], str):
            return value  # not a serialized object: carried as the data it is
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
        policy = dtype.get("config")
        policy_name = str((policy if isinstance(policy, dict) else {}).get("name", "float32"))
        if policy_name.startswith("mixed_"):
            config["dtype"] = {"class_name": "Policy", "config": {"name": policy_name}}
        else:
            config["dtype"] = policy_name