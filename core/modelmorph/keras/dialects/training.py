"""Compile configs and optimizers in both dialects: classes, arguments and slot names."""

from __future__ import annotations

from typing import Any

from ...diagnostics import Diagnostics


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

#: tf_keras compile settings Keras 3 rejects: optimizer arguments it does not have, and None
#: where Keras 3 needs a value (None meant tf_keras' defaults, which these are).
_TF_KERAS_OPTIMIZER_ARGS = ("jit_compile", "is_legacy_optimizer")
_KERAS3_COMPILE_DEFAULTS = {"run_eagerly": False, "steps_per_execution": 1, "jit_compile": False}


def keras2_compile_config_to_keras3(compile_config: dict, diagnostics: Diagnostics | None = None) -> dict:
    """A tf_keras ``compile_config`` (tf-keras ``.keras`` archives) as Keras 3 accepts it."""
    out = dict(compile_config)
    optimizer = out.get("optimizer")
    if optimizer_class(optimizer) in _LOSS_SCALE_WRAPPERS:  # mixed precision: the inner optimizer
        optimizer = out["optimizer"] = optimizer_to_keras3(optimizer, diagnostics)
    if isinstance(optimizer, dict) and isinstance(optimizer.get("config"), dict):
        config = {k: v for k, v in optimizer["config"].items() if k not in _TF_KERAS_OPTIMIZER_ARGS}
        out["optimizer"] = {**optimizer, "config": config}
    for key, default in _KERAS3_COMPILE_DEFAULTS.items():
        if out.get(key) is None:
            out[key] = default
    return out


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

#: tf_keras' loss-scale wrappers (mixed precision) and their settings' defaults, which are
#: Keras 3's ``LossScaleOptimizer`` defaults too.
_LOSS_SCALE_WRAPPERS = ("LossScaleOptimizer", "LossScaleOptimizerV3")
_LOSS_SCALE_DEFAULTS = {"dynamic": True, "initial_scale": 2.0 ** 15, "dynamic_growth_steps": 2000}


def optimizer_to_keras3(cfg: dict, diagnostics: Diagnostics | None = None) -> dict:
    diags = diagnostics if diagnostics is not None else Diagnostics()
    class_name = optimizer_class(cfg) or "Optimizer"
    inner = (cfg.get("config") or {}).get("inner_optimizer") if class_name in _LOSS_SCALE_WRAPPERS else None
    if isinstance(inner, dict):
        # Keras 3 keeps the inner optimizer in a compile config (it writes its own that way) and
        # wraps it in its LossScaleOptimizer when compiling a model whose own policy is
        # mixed_float16; a Keras 2 model's policy is its layers', so Keras 3 does not wrap it. Its
        # LossScaleOptimizer has other variables, which the inner optimizer's state would not fit.
        # The wrapper's own state (current scale, good steps) is in no .h5.
        changed = {k: v for k, v in (cfg.get("config") or {}).items()
                   if k in _LOSS_SCALE_DEFAULTS and v != _LOSS_SCALE_DEFAULTS[k]}
        diags.add("lossy", f"{class_name} is written as its inner optimizer (its state kept): Keras 3 scales the "
                  "loss only for models whose own dtype policy is mixed_float16, so training continues without "
                  f"loss scaling{f'; its settings {changed} are dropped' if changed else ''}")
        return optimizer_to_keras3(inner, diags)
    if class_name in _LOSS_SCALE_WRAPPERS:
        diags.add("unsupported", f"{class_name} without an inner optimizer; carried as is (Keras 3 cannot load it)")
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