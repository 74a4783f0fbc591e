"""Activation functions whose names mean different things on each side, or exist on one only.

Keras 2 ``hard_sigmoid`` is ``clip(0.2 x + 0.5, 0, 1)``, Keras 3's is ``relu6(x + 3) / 6``; Keras 3
``hard_silu`` has no Keras 2 name. (``gelu`` is the exact form on both sides: ``approximate=False``.) An
``Activation`` layer of a Functional graph is replaced by the calls that compute the source's
function exactly (TFOpLambda records on the Keras 2 side, ``keras.ops`` calls on the Keras 3
side, so the usual operation translation carries them across); anywhere else (a Dense's
``activation``, an LSTM's ``recurrent_activation``, a Sequential) the name is kept and a
``lossy`` diagnostic says the numbers will change.
"""

from __future__ import annotations

from typing import Any

from ...diagnostics import Diagnostics

#: Names each side reads differently: name → what the source side computes (for the message).
_DIFFERENT = {
    "keras2": {"hard_sigmoid": "clip(0.2x + 0.5, 0, 1)"},
    "keras3": {"hard_sigmoid": "relu6(x + 3) / 6"},
}

#: Keras 3 activation names tf_keras does not know (it refuses to load them).
_KERAS3_ONLY = frozenset({"hard_silu", "hard_swish", "celu", "glu", "hard_tanh", "hard_shrink", "squareplus",
                          "sparse_plus", "soft_shrink", "tanh_shrink", "threshold", "sparse_sigmoid", "log_sigmoid",
                          "sparsemax"})

#: An activation computed exactly by a chain of calls: (TF function as TFOpLambda names it,
#: Keras 3 operation module, class, constant second operand or "x" for the layer's input).
_KERAS2_CHAINS = {"hard_sigmoid": (("math.multiply", "numpy", "Multiply", 0.2), ("__operators__.add", "numpy", "Add", 0.5),
                                   ("clip_by_value", "numpy", "Clip", None))}
_KERAS3_CHAINS = {"hard_sigmoid": (("numpy", "Add", 3.0), ("nn", "Relu6", None), ("numpy", "TrueDivide", 6.0))}
_KERAS3_CHAINS["hard_silu"] = _KERAS3_CHAINS["hard_swish"] = (*_KERAS3_CHAINS["hard_sigmoid"], ("numpy", "Multiply", "x"))


def activation_name(value: Any) -> str | None:
    """The name of a serialized built-in activation (a string, or Keras 3's function object)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and value.get("class_name") == "function" and isinstance(value.get("config"), str):
        return value["config"]
    return None


def check_activations(config: dict, source: str, diags: Diagnostics, name: str | None) -> None:
    """Diagnose every activation argument of a layer config (``source`` dialect) that the other
    side computes differently or does not have."""
    for key, value in config.items():
        if key != "activation" and not key.endswith("_activation"):
            continue
        function = activation_name(value)
        if function in _DIFFERENT[source]:
            other = "keras3" if source == "keras2" else "keras2"
            diags.add("lossy", f"{key} {function!r} is {_DIFFERENT[source][function]} in Keras {source[-1]} but "
                      f"{_DIFFERENT[other][function]} in Keras {other[-1]}: the numbers will change", name)
        elif source == "keras3" and function in _KERAS3_ONLY:
            diags.add("unsupported", f"{key} {function!r} does not exist in Keras 2; carried as is "
                      "(tf_keras cannot load it)", name)


def expand_keras2(entries: list, taken: set) -> list:
    """Keras 2 layer entries of a Functional config with each ``Activation`` whose function Keras 3
    reads differently replaced by the TFOpLambda calls that compute it exactly."""
    out = []
    for entry in entries:
        function = _expandable(entry)
        chain = _KERAS2_CHAINS.get(function) if entry.get("class_name") == "Activation" else None
        records = all(isinstance(n, list) and n and isinstance(n[0], list) and len(n[0]) >= 3
                      for n in entry.get("inbound_nodes") or [])
        if chain is None or _mixed(entry) or not records:  # not list-form: left for the generic translation
            out.append(entry)
            continue
        names = _step_names(entry["name"], len(chain), taken)
        nodes = entry.get("inbound_nodes") or []
        for step, ((fn, _, _, operand), step_name) in enumerate(zip(chain, names)):
            kwargs = {"y": operand} if fn != "clip_by_value" else {"clip_value_min": 0.0, "clip_value_max": 1.0}
            records = []
            for index, node in enumerate(nodes):
                source = node[0] if step == 0 else [names[step - 1], index, 0]
                records.append([source[0], source[1], source[2], {**kwargs, "name": None}])
            out.append({"class_name": "TFOpLambda", "name": step_name, "inbound_nodes": records,
                        "config": {"name": step_name, "trainable": True, "dtype": "float32", "function": fn}})
    return out


def expand_keras3(entries: list, taken: set) -> list:
    """Keras 3 layer entries of a Functional config with each ``Activation`` whose function Keras 2
    reads differently or lacks replaced by the ``keras.ops`` calls that compute it exactly."""
    out = []
    for entry in entries:
        function = _expandable(entry)
        chain = _KERAS3_CHAINS.get(function) if entry.get("class_name") == "Activation" else None
        calls = all(isinstance(n, dict) for n in entry.get("inbound_nodes") or [])
        if chain is None or _mixed(entry) or not calls:
            out.append(entry)
            continue
        names = _step_names(entry["name"], len(chain), taken)
        nodes = entry.get("inbound_nodes") or []
        for step, ((module, op, operand), step_name) in enumerate(zip(chain, names)):
            calls = []
            for index, node in enumerate(nodes):
                x = (node.get("args") or [None])[0]
                previous = x if step == 0 else _keras_tensor(names[step - 1], index)
                args = [previous] if operand is None else [previous, x if operand == "x" else operand]
                calls.append({"args": args, "kwargs": {}})
            out.append({"module": f"keras.src.ops.{module}", "class_name": op, "registered_name": op,
                        "config": {"name": step_name}, "name": step_name, "inbound_nodes": calls})
    return out


def _expandable(entry: Any) -> str | None:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        return None
    return activation_name((entry.get("config") or {}).get("activation"))


def _mixed(entry: dict) -> bool:
    # The calls compute in their input's dtype: a layer that casts first (mixed precision) stays.
    dtype = (entry.get("config") or {}).get("dtype")
    if isinstance(dtype, dict):
        dtype = (dtype.get("config") or {}).get("name")
    return isinstance(dtype, str) and dtype.startswith("mixed_")


def _step_names(name: str, count: int, taken: set) -> list[str]:
    """Names for the calls: fresh ones for all but the last, which keeps the layer's name so
    every reference to its output stays valid."""
    names = []
    for step in range(count - 1):
        candidate, n = f"{name}_{step}", 0
        while candidate in taken:
            n += 1
            candidate = f"{name}_{step}_{n}"
        taken.add(candidate)
        names.append(candidate)
    return names + [name]


def _keras_tensor(layer: str, node_index: int) -> dict:
    return {"class_name": "__keras_tensor__", "config": {"keras_history": [layer, node_index, 0]}}
