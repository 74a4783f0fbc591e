"""What both directions share: which dialect a config is in, the constructor arguments each side accepts (``data/layer_args.json``, read off the real libraries by ``tests/tools/gen_layer_args.py``), and dtype policies."""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from typing import Any

from ...diagnostics import Diagnostics


FUNCTIONAL_MODULE = "keras.src.models.functional"

_MODEL_CLASSES = ("Functional", "Model", "Sequential")

_OBJECT_KINDS = {"_initializer": "initializers", "_regularizer": "regularizers", "_constraint": "constraints"}

_LAYER_KEYS = ("layer", "backward_layer", "cell")  # config keys that hold a serialized layer
_LAYER_LIST_KEYS = ("cells",)  # config keys that hold a list of them (StackedRNNCells)


def nested_layers(config: dict) -> list:
    """The serialized layers a layer config holds (wrapped layers, RNN cells, stacked cells)."""
    out = [config.get(key) for key in _LAYER_KEYS]
    for key in _LAYER_LIST_KEYS:
        out += config.get(key) if isinstance(config.get(key), list) else []
    return out

@lru_cache(maxsize=None)
def layer_args() -> dict[str, Any]:
    import pkgutil  # not importlib.resources, which imports zipfile's readers (~6 ms); both read zip installs

    return json.loads(pkgutil.get_data("modelmorph.keras", "data/layer_args.json"))

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

#: Types of the JSON values that are immutable: shared by a copy, not copied.
_ATOMS = frozenset({str, int, float, bool, type(None)})


def copy_config(value: Any) -> Any:
    """A deep copy of config data (dicts, lists, tuples of JSON values): what ``copy.deepcopy``
    gives for it, in less than half its time (no memo: a config holds no shared or cyclic parts). Any
    other object goes to ``copy.deepcopy``."""
    # Parsed JSON (plain dicts and lists, most values strings and numbers): its values are taken
    # as they are without a call each, a third less time than the general case below.
    kind = type(value)
    if kind is dict:
        return {key: item if type(item) in _ATOMS else copy_config(item) for key, item in value.items()}
    if kind is list:
        return [item if type(item) in _ATOMS else copy_config(item) for item in value]
    if isinstance(value, dict):
        return {key: copy_config(item) for key, item in value.items()}
    if isinstance(value, list):
        return [copy_config(item) for item in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, tuple):
        return tuple(copy_config(item) for item in value)
    return copy.deepcopy(value)


def complete_keras3(cfg: dict) -> dict:
    """Give the entries of a Keras 3 *legacy* config (Keras 3's own ``.h5`` writer leaves out
    ``module`` and ``registered_name``) the modules ``.keras`` loading needs to find them."""
    if not _incomplete(cfg):  # a .keras config: nothing to add, and no copy (it costs ~50 ms on ResNet50)
        return cfg
    out = copy_config(cfg)
    _complete_entry(out)
    return out


def _incomplete(entry: Any) -> bool:
    """Whether an entry, or one nested in it, lacks the ``module`` key ``_complete_entry`` adds."""
    if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str):
        return False
    if "module" not in entry:
        return True
    config = entry.get("config")
    if not isinstance(config, dict):
        return False
    layers = config.get("layers") if isinstance(config.get("layers"), list) else []
    return any(_incomplete(layer) for layer in layers) or any(_incomplete(inner) for inner in nested_layers(config))

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
        for inner in nested_layers(config):  # wrapped layers: Bidirectional, TimeDistributed, RNN cells
            _complete_entry(inner)

def _dtype_to_keras3(config: dict, diags: Diagnostics) -> None:
    dtype = config.get("dtype")
    if isinstance(dtype, str):
        config["dtype"] = policy(dtype)
    elif isinstance(dtype, dict) and dtype.get("class_name") in ("Policy", "DTypePolicy", "PolicyV1"):
        config["dtype"] = policy(str((dtype.get("config") or {}).get("name", "float32")))

def policy(name: str) -> dict:
    """A Keras 3 ``DTypePolicy`` for a dtype or policy name."""
    return {"module": "keras", "class_name": "DTypePolicy", "config": {"name": name}, "registered_name": None}