"""Keras 3 weights files ↔ the IR: place each stored variable on its layer (reading) and
each IR weight in its ``vars`` group (writing), by the paths :mod:`modelmorph.keras.keras3_layout`
derives from the architecture, as Keras' ``load_weights`` and ``save_weights`` do.
"""

from __future__ import annotations

from modelmorph import Diagnostics, Layer, Model, OptimizerSlot, OptimizerState, ReadError, Weight
from modelmorph.keras import keras3_layout as layout

from .h5store import Group, StoredGroup, VarsStore

# Weights-only layers read from a Keras weights file: the ``vars`` group they came from and
# that group's ``name`` attribute, so that writing them back needs no architecture.
SOURCE_KEY = "keras-weights:group"
SOURCE_NAME = "keras-weights:name"


class PlanError(ValueError):
    """The model's weights cannot be placed where Keras 3 looks for them (message says why)."""


# -- reading ---------------------------------------------------------------------------------
def attach(model: Model, store: VarsStore, diagnostics: Diagnostics, *, strict: bool, keras2: bool = False) -> None:
    """Give ``model``'s layers (in place) the weights ``store`` holds for them, and its optimizer.

    ``strict`` (joining a weights file to a separate architecture): a layer whose variables do
    not match is a ReadError, as in Keras. Otherwise (an archive, whose own config describes its
    weights) such a layer keeps what the file holds by position, with a diagnostic.
    """
    taken: set[str] = set()
    for place in layout.places(model):
        slots = layout.catalogue_slots(place.layer)
        weights = None if slots is None else _named(place, slots, store, taken, diagnostics, strict)
        place.layer.weights = weights if weights is not None else _positional(place.h5_path, store, taken)
    model.optimizer = _optimizer(model, store, diagnostics, keras2, taken)
    taken.add("optimizer")
    dropped = [f"{p}/vars" if p else "vars" for p, g in store.groups.items() if (g.datasets or g.named) and p not in taken]
    dropped += store.strays
    for path in ("optimizer", INNER_OPTIMIZER):  # optimizers number their variables: a named one fits none
        group = store.groups.get(path)
        dropped += [f"{path}/vars/{key}" for key in (group.named if group is not None else ())]
    if dropped:
        diagnostics.add("unsupported", f"{len(dropped)} group(s) or dataset(s) of the weights file belong to "
                                       f"nothing in the architecture and are dropped: {', '.join(dropped[:5])}")


def _lookup(store: VarsStore, path: str, taken: set[str]) -> StoredGroup | None:
    # tf_keras keeps private attributes (MultiHeadAttention's `_query_dense`), and tf_keras 2.13
    # named the layer list `_layer_checkpoint_dependencies`; Keras 3 reads both.
    head, _, sub = path.rpartition("/")
    for candidate in (path, f"{head}/_{sub}" if head else f"_{sub}",
                      "/".join("_layer_checkpoint_dependencies" if p == "layers" else p for p in path.split("/"))):
        if candidate in store.groups:
            taken.add(candidate)
            return store.groups[candidate]
    return None


def _named(place: layout.Place, slots: list[layout.Slot], store: VarsStore, taken: set[str],
           diagnostics: Diagnostics, strict: bool) -> list[Weight] | None:
    weights = []
    for sub in dict.fromkeys(s.sub for s in slots):
        wanted = [s for s in slots if s.sub == sub]
        where = f"{place.h5_path}/{sub}" if sub else place.h5_path
        group = _lookup(store, where, taken)
        found = [str(i) for i in sorted(group.datasets)] + sorted(group.named) if group is not None else []
        numbered = [s.key for s in wanted if s.name is None]
        if found != numbered + sorted(s.name for s in wanted if s.name is not None):
            problem = (f"layer {place.layer_path!r} ({place.layer.class_name}): the file holds {len(found)} variable(s) "
                       f"at {where}/vars where Keras 3 expects {len(wanted)} ({', '.join(s.weight_path for s in wanted)})")
            if (group is not None and group.named) or len(numbered) < len(wanted):
                # stored by name: say which names, the counts alone do not tell
                problem += f" [held: {', '.join(found)}; expected: {', '.join(s.key for s in wanted)}]"
            if strict:
                raise ReadError(store.source, problem)
            diagnostics.add("unsupported", problem + "; they are kept by position", place.layer_path)
            return None
        weights += [store.weight(group.named[s.name] if s.name is not None else group.datasets[s.index],
                                 s.weight_path, s.trainable) for s in wanted]
    return weights


def _positional(h5_path: str, store: VarsStore, taken: set[str]) -> list[Weight]:
    """Everything under a layer of a class the catalogue does not know: ``0``, ``cell/1``...,
    then what is stored by name under its name (``idf_weights``), to be written back so."""
    weights = []
    subs = [p for p in store.groups if p == h5_path or p.startswith(h5_path + "/")]
    for path in sorted(subs, key=layout.visit_key):
        taken.add(path)
        sub = path[len(h5_path) + 1:]
        group = store.groups[path]
        keyed = [(str(i), ds) for i, ds in sorted(group.datasets.items())] + sorted(group.named.items())
        for key, ds in keyed:
            weights.append(store.weight(ds, f"{sub}/{key}" if sub else key))
    return weights


def _optimizer(model: Model, store: VarsStore, diagnostics: Diagnostics, keras2: bool,
               taken: set[str] | None = None) -> OptimizerState | None:
    group = store.groups.get("optimizer")
    if group is None or not group.datasets:
        return None
    config = (model.compile_config or {}).get("optimizer")
    state = _mapped_optimizer(model, store, group, config, keras2)
    if state is not None:
        return state
    # Keras 3 wraps the compiled optimizer of a mixed_float16 model in its LossScaleOptimizer,
    # yet writes the one compiled in the compile config: the wrapper's variables (its own, then
    # the inner optimizer's again) do not fit it, but the inner optimizer's group does.
    inner = store.groups.get(INNER_OPTIMIZER)
    state = _mapped_optimizer(model, store, inner, config, keras2) if inner is not None else None
    if state is not None:
        if taken is not None:
            taken.add(INNER_OPTIMIZER)
        diagnostics.add("lossy", f"the {len(group.datasets)} variables of a loss-scale wrapper around the "
                                 f"{_class_of(config)} are not kept (its loss scale starts again); the "
                                 f"{_class_of(config)}'s own state, in {INNER_OPTIMIZER}, is")
        return state
    state = OptimizerState(config=config)
    state.unmapped = [store.weight(ds, str(i), trainable=False) for i, ds in sorted(group.datasets.items())]
    diagnostics.add("unsupported", f"the {len(group.datasets)} optimizer variables do not match what a Keras 3 "
                                   f"{_class_of(config)} of this model holds; they are kept by position")
    return state


#: Where Keras 3's LossScaleOptimizer keeps the optimizer it wraps.
INNER_OPTIMIZER = "optimizer/inner_optimizer"


def _mapped_optimizer(model: Model, store: VarsStore, group: StoredGroup, config: object,
                      keras2: bool) -> OptimizerState | None:
    datasets = group.ordered()
    entries = layout.optimizer_entries(model, config, keras2=keras2)
    shapes = {path: w.shape for path, _, w in model.iter_weights()}
    if not (entries is not None and len(entries) == len(datasets) and sorted(group.datasets) == list(range(len(datasets)))
            and all(e.variable is None or shapes[e.variable] == ds.shape for e, ds in zip(entries, datasets))):
        return None
    state = OptimizerState(config=config)
    for entry, ds in zip(entries, datasets):
        if entry.variable is None:
            state.variables.append(store.weight(ds, entry.name, trainable=False))
        else:
            weight = store.weight(ds, f"{entry.variable}/{entry.name}", trainable=False)
            state.slots.append(OptimizerSlot(entry.variable, entry.name, weight))
    return state


def _class_of(optimizer: object) -> str:
    name = optimizer.get("class_name") if isinstance(optimizer, dict) else None
    return name if isinstance(name, str) else "optimizer (none compiled)"


def weights_only(store: VarsStore, name: str) -> Model:
    """A model without architecture: one weights-only layer per stored group, named by its h5 path."""
    root = store.groups.get("")
    model = Model(name=(root.name if root is not None and root.name else name), class_name="", has_architecture=False)
    for path, group in sorted(store.groups.items(), key=lambda item: layout.visit_key(item[0])):
        if not group.datasets and not group.named:
            continue
        if path == "optimizer" and not group.named:
            model.optimizer = OptimizerState(unmapped=[store.weight(ds, str(i), False) for i, ds in sorted(group.datasets.items())])
            continue
        key = f"{path}/vars" if path else "vars"
        extra = {SOURCE_KEY: key} | ({SOURCE_NAME: group.name} if group.name is not None else {})
        layer = Layer(name=key, class_name="", extra=extra)
        layer.weights = [store.weight(ds, str(i)) for i, ds in sorted(group.datasets.items())]
        layer.weights += [store.weight(ds, key) for key, ds in sorted(group.named.items())]  # stored by name
        model.layers.append(layer)
    return model


# -- writing ---------------------------------------------------------------------------------
def plan(model: Model, diagnostics: Diagnostics) -> list[Group]:
    """The ``vars`` groups of ``model`` in the order Keras 3 writes them (PlanError if impossible)."""
    if not model.has_architecture:
        return _replay(model)
    groups = [Group("", model.name)]
    for place in layout.places(model):
        groups += _layer_groups(place)
    optimizer = _optimizer_group(model, diagnostics)
    return groups + ([optimizer] if optimizer is not None else [])


def _layer_groups(place: layout.Place) -> list[Group]:
    layer = place.layer
    by_path = {w.path: w for w in layer.weights}
    slots = layout.catalogue_slots(layer)
    if slots is None:
        # as the reader kept them: by position, or by the name they were stored under
        slots = [layout.stored_slot(w.path) for w in layer.weights]
        if None in slots:
            bad = next(w.path for w, s in zip(layer.weights, slots) if s is None)
            raise PlanError(f"layer {place.layer_path!r}: class {layer.class_name!r} is not in the layer catalogue, so "
                            f"its weights must be positional (0, 1, ...), not {bad!r}")
    elif set(by_path) != {s.weight_path for s in slots}:
        raise PlanError(f"layer {place.layer_path!r} ({layer.class_name}) has weights [{', '.join(by_path)}] where "
                        f"Keras 3 expects [{', '.join(s.weight_path for s in slots)}]")
    subs = {""} | {"/".join(s.sub.split("/")[:n]) for s in slots for n in range(1, s.sub.count("/") + 2) if s.sub}
    groups = []
    for sub in sorted(subs, key=layout.visit_key):
        if layout.is_list(layer, sub):
            continue  # Keras saves a list's members, not the list
        indexed = sorted((s for s in slots if s.sub == sub and s.name is None), key=lambda s: s.index)
        if [s.index for s in indexed] != list(range(len(indexed))):
            raise PlanError(f"layer {place.layer_path!r}: positional weights of {sub or 'the layer'} skip an index")
        # the numbered datasets, then those stored by name (as a save_own_variables writes them)
        ordered = indexed + [s for s in slots if s.sub == sub and s.name is not None]
        path = f"{place.h5_path}/{sub}" if sub else place.h5_path
        groups.append(Group(path, layout.sub_object_name(layer, sub), [by_path[s.weight_path] for s in ordered],
                            keys=[s.key for s in ordered]))
    return groups


def _optimizer_group(model: Model, diagnostics: Diagnostics) -> Group | None:
    state = model.optimizer
    if state is None:
        return None
    config = state.config or (model.compile_config or {}).get("optimizer")
    name = layout.optimizer_group_name(config)
    if not state.variables and not state.slots:
        if state.unmapped:
            diagnostics.add("unsupported", "optimizer variables are written by position: Keras 3 loads them only "
                                           "if its optimizer builds the same variables in the same order")
        return Group("optimizer", name, list(state.unmapped))
    own = {w.path: w for w in state.variables}
    slots = {(s.variable, s.name): s.weight for s in state.slots}
    weights = []
    for entry in layout.optimizer_entries(model, config) or [None]:
        if entry is None:
            weight = None
        elif entry.variable is None:
            # tf_keras keeps the learning rate in the config only
            weight = own.pop(entry.name, None) or (_learning_rate(config) if entry.name == "learning_rate" else None)
        else:
            weight = slots.pop((entry.variable, entry.name), None)
        if weight is None:
            diagnostics.add("lossy", f"the optimizer state does not match the variables a Keras 3 {_class_of(config)} "
                                     "of this model has; it is not written")
            return None
        weights.append(weight)
    if own or slots or state.unmapped:
        diagnostics.add("lossy", f"{len(own) + len(slots) + len(state.unmapped)} optimizer variable(s) have no place "
                                 "in a Keras 3 optimizer and are not written")
    return Group("optimizer", name, weights)


def _learning_rate(config: dict | None) -> Weight | None:
    value = ((config or {}).get("config") or {}).get("learning_rate")
    if not isinstance(value, (int, float)):
        return None
    return Weight.scalar("learning_rate", value)


def _replay(model: Model) -> list[Group]:
    """A weights-only model read from a Keras weights file goes back to the paths it came from."""
    if not model.layers or not all(SOURCE_KEY in layer.extra for layer in model.layers):
        raise PlanError("Keras 3 weights are placed by the model's architecture, and this model has weights only "
                        "(give one with --arch)")
    groups = []
    for layer in model.layers:
        slots = [layout.stored_slot(w.path) for w in layer.weights]
        numbered = sorted(s.index for s in slots if s is not None and s.name is None)
        if any(s is None or s.sub for s in slots) or numbered != list(range(len(numbered))):
            raise PlanError(f"weights of {layer.name!r} are not numbered 0, 1, ... as a Keras weights file stores them")
        key = str(layer.extra[SOURCE_KEY])
        path = key.removesuffix("vars").rstrip("/")
        # numbered datasets in order, then those stored by name (vars/idf_weights)
        ordered = sorted(zip(slots, layer.weights), key=lambda t: (t[0].name is not None, t[0].index))
        groups.append(Group(path, layer.extra.get(SOURCE_NAME), [w for _, w in ordered],
                            keys=[s.key for s, _ in ordered]))
    if model.optimizer is not None:
        groups.append(Group("optimizer", None, list(model.optimizer.unmapped)))
    return groups
