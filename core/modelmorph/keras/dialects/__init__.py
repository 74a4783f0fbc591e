"""Keras 2 ↔ Keras 3 config dialects.

The IR keeps configs in Keras 3's dialect. Keras 2 files (tf.keras / tf_keras / keras 2.x:
``to_json()``, the ``model_config`` of a legacy ``.h5``, tf-keras ``.keras`` archives) are
translated on the way in by :func:`to_keras3`, and :func:`to_keras2` writes what tf_keras
2.x loads. The same holds for compile configs (:func:`compile_to_keras3`,
:func:`compile_to_keras2`) and optimizer slot names (:func:`slot_name_to_keras3`). What one
side has and the other cannot hold becomes a diagnostic.

One module per concern: :mod:`.common` (detection, accepted arguments, dtype policies),
:mod:`.nodes` (graph edges), :mod:`.upgrade` (:func:`to_keras3`) and :mod:`.downgrade` (:func:`to_keras2`) (models and layers),
:mod:`.lambdas`, :mod:`.tfops` (TFOpLambda ↔ ``keras.ops``), :mod:`.functions` (activations whose
names mean different things on each side), :mod:`.names` (layer names Keras 3 refuses), :mod:`.masks` (Keras 3 mask computations tf_keras does not record) and
:mod:`.training` (compile configs and optimizers). What is particular to one layer class lives in its descriptor
(:mod:`modelmorph.keras.layers`).
"""

from __future__ import annotations

from .common import FUNCTIONAL_MODULE, complete_keras3, detect, layer_args, policy

# The translators load on first use (PEP 562): a Keras 3 file written as Keras 3 never needs
# them, and they cost a few milliseconds of start-up (tfops alone defines ~60 ops). No submodule
# may share a name with what it exports: importing a submodule binds its name on the package,
# which would hide the function from __getattr__ (test_dialect_names_are_never_submodules).
_LAZY = {"TF_OPS": "tfops", "TFOP_CLASSES": "tfops", "to_keras2": "downgrade", "to_keras3": "upgrade",
         **dict.fromkeys(("compile_to_keras2", "compile_to_keras3", "keras2_compile_config_to_keras3", "optimizer_class",
                          "optimizer_to_keras2", "optimizer_to_keras3", "slot_name_to_keras2", "slot_name_to_keras3"),
                         "training")}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = ["FUNCTIONAL_MODULE", "TFOP_CLASSES", "TF_OPS", "complete_keras3", "compile_to_keras2", "compile_to_keras3",
           "detect", "keras2_compile_config_to_keras3", "layer_args", "optimizer_class", "optimizer_to_keras2", "optimizer_to_keras3", "policy",
           "slot_name_to_keras2", "slot_name_to_keras3", "to_keras2", "to_keras3"]
