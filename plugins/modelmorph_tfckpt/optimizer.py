"""The optimizer's place in a checkpoint, read and written.

tf_keras 2.11+ and Keras 3 optimizers are objects with children ``_iterations``,
``_learning_rate`` and the list ``_variables``: every variable in the order the optimizer
creates them (tf_keras: iterations, then the slots; Keras 3: iterations, learning rate,
then the slots). Slots are matched to model variables by that order, which
:func:`modelmorph.keras.keras3_layout.optimizer_entries` reproduces for known optimizer classes;
when the class is unknown, by the slot names tf_keras records (``Adam/m/dense/kernel``:
the n-th ``m`` belongs to the n-th trainable variable). Legacy optimizers (tf.compat.v1,
``tf_keras.optimizers.legacy``) keep hyperparameters as variables (``iter``, ``beta_1``) and
each slot as a slot variable of the model variable it shadows (``.OPTIMIZER_SLOT`` keys).

IR slot names are Keras 3's (``momentum``, ``velocity``) when the optimizer class is known,
else the names the checkpoint records (``m``, ``v``), as the other formats do.
"""

from __future__ import annotations

from modelmorph import Diagnostics, Model, OptimizerSlot, OptimizerState, Weight
from modelmorph.keras import dialects, keras3_layout

from .bundle import TrackableNode
from .source import Checkpoint

#: The optimizer's own variables by attribute name → IR name (new, legacy and Keras 3 spellings).
_OWN = {"_iterations": "iterations", "iter": "iterations", "iterations": "iterations",
        "_learning_rate": "learning_rate", "learning_rate": "learning_rate", "lr": "learning_rate"}


def _config(model: Model) -> dict | None:
    config = model.optimizer.config if model.optimizer is not None else None
    config = config or (model.compile_config or {}).get("optimizer")
    return config if isinstance(config, dict) else None


# -- reading ---------------------------------------------------------------------------------
def read_state(ckpt: Checkpoint, model: Model, base: int, nodes: dict[int, str], scheme: str,
               diagnostics: Diagnostics) -> tuple[OptimizerState, set[str]] | None:
    """The optimizer state of ``model`` (weights already joined) from the checkpoint, with the
    keys it uses; None when the checkpoint holds none. ``base`` is the model's node and
    ``nodes`` maps each model variable's node to its full IR path."""
    graph = ckpt.graph
    optimizer = graph.children[base].get("optimizer", graph.children[0].get("optimizer"))
    if optimizer is None:
        return None
    config = _config(model)
    state = OptimizerState(config=config)
    keys: set[str] = set()

    def weight(node: int, path: str) -> Weight:
        keys.add(graph.keys[node])
        return ckpt.weight(graph.keys[node], path, trainable=False)

    own = {}
    for name, child in graph.children[optimizer].items():
        if graph.keys[child] is not None and child not in own:
            own[child] = name
            state.variables.append(weight(child, _OWN.get(name, name)))
    listed = graph.children[optimizer].get("_variables")
    members = [] if listed is None else [n for _, n in sorted(
        (int(name), n) for name, n in graph.children[listed].items() if name.isdigit())]
    members = [n for n in dict.fromkeys(members) if graph.keys[n] is not None and n not in own]
    if members:
        placed = (_by_build_order(ckpt, model, config, members, scheme != "keras3")
                  or _by_recorded_names(ckpt, model, config, members))
        if placed is None:
            state.unmapped += [weight(n, f"_variables/{i}") for i, n in enumerate(members)]
        else:
            state.slots += [OptimizerSlot(variable, name, weight(n, f"{variable}/{name}")) for variable, name, n in placed]
    optimizer_class = dialects.optimizer_class(config)
    legacy = []
    for slot in graph.proto.nodes[optimizer].slot_variables:
        if not 0 <= slot.slot_variable_node_id < len(graph.keys):
            continue  # a hostile graph pointing nowhere
        key, variable = graph.keys[slot.slot_variable_node_id], nodes.get(slot.original_variable_node_id)
        if key is None:
            continue
        name = dialects.slot_name_to_keras3(optimizer_class, slot.slot_name)
        if variable is None:
            state.unmapped.append(weight(slot.slot_variable_node_id, f"{slot.slot_name}/{len(state.unmapped)}"))
        else:
            legacy.append(OptimizerSlot(variable, name, weight(slot.slot_variable_node_id, f"{variable}/{name}")))
    state.slots += _interleaved(model, legacy)
    if not keys:
        return None
    if state.unmapped:
        diagnostics.add("unsupported", f"{len(state.unmapped)} optimizer variable(s) could not be matched to the "
                                       "model's variables; they are kept unmapped, by position")
    return state, keys


def _interleaved(model: Model, slots: list[OptimizerSlot]) -> list[OptimizerSlot]:
    """Legacy slots (listed slot by slot) in the order tf_keras 2.11+ and Keras 3 optimizers
    create theirs: each trained variable in turn, its slots in their first-seen order."""
    position = {path: i for i, path in enumerate(keras3_layout.trainable_weight_paths(model))}
    names = list(dict.fromkeys(s.name for s in slots))
    return sorted(slots, key=lambda s: (position.get(s.variable, len(position)), names.index(s.name)))


def _by_build_order(ckpt: Checkpoint, model: Model, config: dict | None, members: list[int],
                    keras2: bool) -> list[tuple[str, str, int]] | None:
    entries = keras3_layout.optimizer_entries(model, config, keras2=keras2)
    if entries is None:
        return None
    wanted = [e for e in entries if e.variable is not None]
    if len(wanted) != len(members):
        return None
    placed = [(e.variable, e.name, n) for e, n in zip(wanted, members)]
    return placed if _shapes_agree(ckpt, model, placed) else None


def _by_recorded_names(ckpt: Checkpoint, model: Model, config: dict | None,
                       members: list[int]) -> list[tuple[str, str, int]] | None:
    trainable = keras3_layout.trainable_weight_paths(model)
    optimizer_class = dialects.optimizer_class(config)
    seen: dict[str, int] = {}
    placed = []
    for n in members:
        parts = ckpt.graph.full_name(n).split("/")  # tf_keras: <optimizer>/<slot>/<variable name>
        if len(parts) < 3 or seen.get(parts[1], 0) >= len(trainable):
            return None
        index = seen[parts[1]] = seen.get(parts[1], 0) + 1
        placed.append((trainable[index - 1], dialects.slot_name_to_keras3(optimizer_class, parts[1]), n))
    if any(count != len(trainable) for count in seen.values()):
        return None
    return placed if _shapes_agree(ckpt, model, placed) else None


def _shapes_agree(ckpt: Checkpoint, model: Model, placed: list[tuple[str, str, int]]) -> bool:
    shapes = {path: tuple(w.shape) for path, _, w in model.iter_weights()}
    return all(tuple(ckpt.entries[ckpt.graph.keys[n]].shape) == shapes.get(variable) for variable, _, n in placed)


# -- writing ---------------------------------------------------------------------------------
def optimizer_object(model: Model, scheme: str, variables: dict[str, TrackableNode],
                     diagnostics: Diagnostics) -> TrackableNode | None:
    """The optimizer's object for ``scheme``, or None when there is no state to write (or it
    cannot be laid out, with a diagnostic). ``variables`` maps full IR paths to their nodes."""
    state = model.optimizer
    if state is None:
        return None
    if scheme == "module":
        return _plain_object(state, variables, diagnostics)
    keras2 = scheme == "keras2"
    who = "tf_keras'" if keras2 else "Keras 3's"
    config = _config(model)
    slots = _slots_in_build_order(model, state, config, keras2)
    if slots is None:
        diagnostics.add("lossy", f"the optimizer state does not match what {who} "
                                 f"{dialects.optimizer_class(config) or 'optimizer'} builds for this model; it is not "
                                 "written (training resumes with a fresh optimizer)")
        return None
    own = {w.path: w for w in state.variables}
    node = TrackableNode()
    listed = node.child("_variables")
    iterations, learning_rate = own.pop("iterations", None), own.pop("learning_rate", None) or _learning_rate(config)
    if iterations is not None:
        listed.add_child("0", node.add_variable("_iterations", iterations, full_name="iteration"))
    if learning_rate is not None:
        lr = node.add_variable("_learning_rate", learning_rate, full_name="learning_rate")
        if not keras2:  # Keras 3 lists it second; tf_keras keeps it out of the list
            listed.add_child("1", lr)
    first = 1 if keras2 or learning_rate is None else 2
    optimizer_class = dialects.optimizer_class(config)
    prefix = ((config or {}).get("config") or {}).get("name") or optimizer_class or "optimizer"
    for index, (variable, name, weight) in enumerate(slots, start=first):
        # tf_keras records "<optimizer>/<slot>/<variable>", which reading falls back on.
        slot_name = dialects.slot_name_to_keras2(optimizer_class, name) if keras2 else name
        listed.add_variable(str(index), weight, full_name=f"{prefix}/{slot_name}/{variable}")
    if not keras2:
        # Keras 3 also lists the variables it trains; TensorFlow then names a Sequential's
        # variables through this shorter path, and so do we.
        trained = node.child("_trainable_variables")
        for index, path in enumerate(keras3_layout.trainable_weight_paths(model)):
            if path in variables:
                trained.add_child(str(index), variables[path])
    if own or state.unmapped:
        diagnostics.add("lossy", f"{len(own) + len(state.unmapped)} optimizer variable(s) have no place in {who} "
                                 "optimizer and are not written")
    return node


def _slots_in_build_order(model: Model, state: OptimizerState, config: dict | None,
                          keras2: bool) -> list[tuple[str, str, Weight]] | None:
    by_variable = {(s.variable, s.name): s.weight for s in state.slots}
    entries = keras3_layout.optimizer_entries(model, config, keras2=keras2)
    if entries is None:
        # The optimizer class is unknown: keep the order the slots were read in (a
        # checkpoint's own order), provided they all belong to trained variables.
        trainable = set(keras3_layout.trainable_weight_paths(model))
        ok = all(s.variable in trainable for s in state.slots)
        return [(s.variable, s.name, s.weight) for s in state.slots] if ok else None
    wanted = [(e.variable, e.name) for e in entries if e.variable is not None]
    if set(wanted) != set(by_variable) or len(wanted) != len(by_variable):
        return None
    return [(variable, name, by_variable[variable, name]) for variable, name in wanted]


def _learning_rate(config: dict | None) -> Weight | None:
    value = ((config or {}).get("config") or {}).get("learning_rate")
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    return Weight.scalar("learning_rate", value)


def _plain_object(state: OptimizerState, variables: dict[str, TrackableNode],
                  diagnostics: Diagnostics) -> TrackableNode:
    """``module`` naming: own variables by name, slots as TensorFlow slot variables."""
    node = TrackableNode()
    for weight in state.variables:
        node.add_variable(weight.path, weight)
    orphans = 0
    for slot in state.slots:
        original = variables.get(slot.variable)
        if original is None:
            orphans += 1
        else:
            node.add_slot_variable(original, slot.name, slot.weight, full_name=f"{slot.variable}/{slot.name}")
    for index, weight in enumerate(state.unmapped):
        node.child("unmapped").add_variable(str(index), weight)
    if orphans:
        diagnostics.add("lossy", f"{orphans} optimizer slot(s) belong to variables the model does not have; not written")
    return node
