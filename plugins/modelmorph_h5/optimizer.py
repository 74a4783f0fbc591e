"""The ``optimizer_weights`` group ↔ :class:`modelmorph.OptimizerState`.

Keras restores optimizer state by position: its own variables (``iteration``), then the slots
it creates over ``model.trainable_variables``. Reading maps the i-th value of each slot name to
the i-th trainable variable, which holds for every layout Keras used (slots interleaved per
variable, or one slot after the other); the stored names only tell which slot a value is:
tf_keras 2.11+ writes ``Adam/m/dense/kernel:0``, Keras 2.10 and older ``Adam/dense/kernel/m:0``,
Keras 3 ``adam/dense_kernel_momentum``. Writing lays the slots out as tf_keras builds them
(:func:`modelmorph.keras.keras3_layout.optimizer_entries` with ``keras2=True``) under tf_keras' names.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Callable

from modelmorph import Diagnostics, Model, OptimizerSlot, OptimizerState, Progress, Weight
from modelmorph.keras import dialects, keras3_layout
from modelmorph.storage.hdf5 import write_dataset

from .attributes import read_list, write_list

if TYPE_CHECKING:
    import h5py

#: The optimizer's own variables by the last part of their stored name → IR name.
_OWN = {"iteration": "iterations", "iter": "iterations", "iterations": "iterations",
        "learning_rate": "learning_rate", "lr": "learning_rate"}


def read_state(group: Any, model: Model, config: dict | None,
               dataset: Callable[[Any, str, str], Weight], diags: Diagnostics) -> OptimizerState:
    """The optimizer state in ``group`` (``optimizer_weights``: an h5py group or a plain view of
    one), its slots mapped onto ``model``.
    ``dataset(group, stored name, weight path)`` gives the lazy weight of one dataset."""
    stored = [(name, dataset(group, name, name.removesuffix(":0"))) for name in read_list(group.attrs, "weight_names")]
    state = OptimizerState(config=config)
    while stored and _leaf(stored[0][0]) in _OWN:
        name, weight = stored.pop(0)
        weight.path = _OWN[_leaf(name)]
        state.variables.append(weight)
    learning_rate = ((config or {}).get("config") or {}).get("learning_rate")
    if isinstance(learning_rate, (int, float)) and all(v.path != "learning_rate" for v in state.variables):
        # Keras 3 keeps the learning rate as an optimizer variable; tf_keras keeps it in the config.
        state.variables.append(Weight.scalar("learning_rate", learning_rate))
    slots = _map_slots(stored, model, config)
    if slots is None:
        state.unmapped = [weight for _, weight in stored]
        diags.add("lossy", f"{len(stored)} optimizer slot variable(s) do not match the model's trainable "
                  "variables; kept unmapped, by position")
    else:
        state.slots = slots
        _integer_iterations(state)
        _nadam_u_product(state, config, diags)
    return state


def _integer_iterations(state: OptimizerState) -> None:
    """Keras 2.0-2.2 counted iterations in a float variable; Keras 3 and tf_keras in an int64 one."""
    for i, weight in enumerate(state.variables):
        if weight.path == "iterations" and weight.shape == () and weight.dtype.startswith("float"):
            state.variables[i] = Weight("iterations", (), "int64", False,
                                        loader=lambda w=weight: w.read().round().astype("int64"))


def _nadam_u_product(state: OptimizerState, config: dict | None, diags: Diagnostics) -> None:
    """Nadam's running product of momentum factors is in no .h5 (tf_keras keeps it outside its
    variable list, Keras 2.0 as ``m_schedule`` outside its weights); Keras 3 restores it with the
    others. Written as Keras 3 computes it after as many steps; tf_keras' own drifts from that
    (it multiplies again for every variable whose update misses its cache), so it is diagnosed."""
    if dialects.optimizer_class(config) != "Nadam" or any(v.path == "u_product" for v in state.variables):
        return
    iterations = next((v for v in state.variables if v.path == "iterations"), None)
    if iterations is None:
        return
    beta_1 = ((config or {}).get("config") or {}).get("beta_1", 0.9)
    if not isinstance(beta_1, (int, float)):
        return

    def u_product() -> "Any":
        import numpy as np

        one, steps = np.float32(1.0), int(iterations.read())
        product = one
        for t in range(1, min(steps, 100_000) + 1):  # past ~500 steps it is 0.0 in float32 anyway
            # In Keras 3's order: (u_product * beta_1) * (1 - 0.5 * 0.96 ** t), float32 throughout.
            factor = one - np.float32(0.5) * np.power(np.float32(0.96), np.float32(t))
            product = np.float32(np.float32(product * np.float32(beta_1)) * factor)
        return np.asarray(product, dtype=np.float32)

    state.variables.append(Weight("u_product", (), "float32", False, loader=u_product))
    diags.add("lossy", "Nadam's momentum-schedule product (u_product) is not in a .h5; written as Keras 3 computes "
              "it for this step count, which differs from the value the source optimizer had")


def _leaf(name: str) -> str:
    return name.removesuffix(":0").rsplit("/", 1)[-1]


def _map_slots(stored: list[tuple[str, Weight]], model: Model, config: dict | None) -> list[OptimizerSlot] | None:
    if not stored:
        return []
    weights = {path: weight for path, _, weight in model.iter_weights()}
    variables = [(path, weights[path]) for path in keras3_layout.trainable_weight_paths(model)]
    if not variables:
        return None
    if all(_UNNAMED.fullmatch(name) for name, _ in stored):
        return _map_unnamed(stored, variables, model, config)
    # Names start with the optimizer's name (``Adam/m/...``), except under tf_keras' loss-scale
    # wrapper, whose inner optimizer's slots are written without it (``m/dense/kernel:0``).
    for skip in (1, 0):
        slots = _map_named(stored, variables, model, config, skip)
        if slots is not None:
            return slots
    return None


def _map_named(stored: list[tuple[str, Weight]], variables: list[tuple[str, Weight]], model: Model,
               config: dict | None, skip: int) -> list[OptimizerSlot] | None:
    optimizer = dialects.optimizer_class(config)
    style = _naming_style(stored[0][0], variables[0][1].path.rsplit("/", 1)[-1], skip)
    keras3_names = {e.name for e in keras3_layout.optimizer_entries(model, config) or () if e.variable}
    seen: dict[str, int] = {}
    slots = []
    for name, weight in stored:
        slot = _slot_of(name, style, keras3_names, skip)
        index = seen.get(slot, 0) if slot else len(variables)
        if index >= len(variables) or weight.shape != variables[index][1].shape:
            return None
        seen[slot] = index + 1
        ir_name = slot if style == "keras3" else dialects.slot_name_to_keras3(optimizer, slot)
        slots.append(OptimizerSlot(variables[index][0], ir_name, weight))
    return slots if all(count == len(variables) for count in seen.values()) else None


#: Keras 2.0-2.2 slots: unnamed backend variables (``Variable_7:0``; ``param_7`` when nameless).
_UNNAMED = re.compile(r"(?:.*/)?(?:Variable(?:_(\d+))?|param_(\d+))(?::0)?")


def _map_unnamed(stored: list[tuple[str, Weight]], variables: list[tuple[str, Weight]], model: Model,
                 config: dict | None) -> list[OptimizerSlot] | None:
    """Keras 2.0-2.2 optimizers list their slots one kind after the other (``ms + vs``), each
    over the trainable variables in order, under names numbered in creation order; the kinds
    come in the order Keras 3 creates them (Adam: ``momentum`` then ``velocity``)."""
    def number(name: str) -> int:
        match = _UNNAMED.fullmatch(name)
        return int(match.group(1) or match.group(2) or 0)

    stored = sorted(stored, key=lambda item: number(item[0]))
    config = config if isinstance(config, dict) else {}
    groups = keras3_layout.slot_groups(config)
    if groups is None:
        return None
    kinds = [name for group in groups for name in group]
    # Keras 2.1.3+ Adam without amsgrad still makes a placeholder `vhat` of shape (1,) per variable.
    n = len(variables)
    if dialects.optimizer_class(config) in ("Adam", "AdamW") and len(stored) == (len(kinds) + 1) * n \
            and all(w.shape == (1,) for _, w in stored[len(kinds) * n:]):
        stored = stored[:len(kinds) * n]
    if len(stored) != len(kinds) * n:
        return None
    slots = []
    for k, kind in enumerate(kinds):
        for (path, variable), (_, weight) in zip(variables, stored[k * n:(k + 1) * n]):
            if weight.shape != variable.shape:
                return None
            slots.append(OptimizerSlot(path, kind, weight))
    return slots


def _naming_style(first: str, leaf: str, skip: int = 1) -> str:
    """How slots are named, told from the first one, which always belongs to the first variable."""
    parts = first.removesuffix(":0").split("/")[skip:]
    if len(parts) >= 2 and parts[-1] == leaf:
        return "slot-first"  # tf_keras 2.11+: Adam/m/dense/kernel:0
    if len(parts) >= 2 and parts[-2] == leaf:
        return "slot-last"  # keras <= 2.10: Adam/dense/kernel/m:0
    return "keras3"  # adam/dense_kernel_momentum


def _slot_of(name: str, style: str, keras3_names: set[str], skip: int = 1) -> str | None:
    parts = name.removesuffix(":0").split("/")[skip:]
    if style == "keras3":
        tail = parts[-1] if parts else ""
        return next((s for s in sorted(keras3_names, key=len, reverse=True) if tail.endswith("_" + s)), None)
    if len(parts) < 2:
        return None
    return parts[0] if style == "slot-first" else parts[-1]


def keras2_entries(model: Model, diags: Diagnostics) -> list[tuple[str, Weight]] | None:
    """The ``optimizer_weights`` datasets tf_keras expects, in its order, or None (with a
    diagnostic) when the state cannot be laid out for tf_keras."""
    state = model.optimizer
    if state is None:  # no optimizer: nothing to lay out
        return []
    config = dialects.optimizer_to_keras2(state.config, Diagnostics()) if isinstance(state.config, dict) else None
    optimizer = dialects.optimizer_class(config)
    entries = keras3_layout.optimizer_entries(model, config, keras2=True)
    own = {v.path: v for v in state.variables}
    slots = {(s.variable, s.name): s.weight for s in state.slots}
    prefix = str((config or {}).get("config", {}).get("name") or optimizer)
    out = []
    for entry in entries or ():
        if entry.variable is None:
            if entry.name != "iterations":
                continue  # tf_keras keeps such variables (Nadam's u_product) outside its optimizer's list
            weight, name = own.get("iterations"), "iteration:0"
        else:
            weight = slots.pop((entry.variable, entry.name), None)
            name = f"{prefix}/{dialects.slot_name_to_keras2(optimizer, entry.name)}/{entry.variable}:0"
        if weight is None:
            entries = None
            break
        out.append((name, weight))
    if not entries:
        diags.add("lossy", f"the optimizer state does not match what tf_keras' {optimizer or 'optimizer'} builds for "
                  "this model; it is not written (training resumes with a fresh optimizer)")
        return None
    dropped = len(slots) + len(state.unmapped) + len([v for v in own if v not in ("iterations", "learning_rate")])
    if dropped:
        diags.add("lossy", f"{dropped} optimizer variable(s) tf_keras' {optimizer} does not have were not written")
    return out


def write_state(file: "h5py.File", entries: list[tuple[str, Weight]], progress: Progress) -> None:
    group = file.create_group("optimizer_weights")
    write_list(group.attrs, "weight_names", [name for name, _ in entries])
    for name, weight in entries:
        write_dataset(group, name, weight.read())
        progress.advance(weight.nbytes)
