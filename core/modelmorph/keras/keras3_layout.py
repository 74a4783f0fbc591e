"""Where Keras 3 keeps each variable in a weights file (``.weights.h5``, ``model.weights.h5``).

Keras does not name the groups after layers. Its saving walk visits the object graph from
the model: an object's own variables go to ``<path>/vars/0``, ``1``... (trainable then
non-trainable, creation order); a child held by an attribute is saved under that attribute's
name (``cell``, ``forward_layer``, ``query_dense``; children visited alphabetically, private
names last); the members of a list are named by their snake_cased class made unique in that
list (``dense``, ``dense_1``). A model's ``layers`` list is visited first: Functional's
includes its InputLayers, Sequential's does not, and ``keras.ops`` calls in a graph are not
layers at all. The optimizer is the model's ``optimizer`` child. Each group also gets a
``name`` attribute, the object's ``.name``.

Everything here is derived from the architecture alone (configs and the layer catalogue),
as ``load_weights`` does, so any format holding a Keras 3 architecture can place weights
exactly where Keras 3 looks for them.

A few classes save a variable by name instead (``save_own_variables``): the lookups' tf_idf
weights are ``vars/idf_weights``. The catalogue marks those variables ``named``.
"""

from __future__ import annotations

import re
from typing import Any, Iterator, NamedTuple

from .catalogue import Var, follow, get, variables_of
from ..ir import Layer, Model

#: Config modules of ``keras.ops`` calls recorded in a Functional graph (operations, not layers).
OPERATION_MODULE_PREFIX = "keras.src.ops."



def snake_case(name: str) -> str:
    """Keras' ``naming.to_snake_case``: ``Conv2D`` → ``conv2d``, ``PReLU`` → ``p_re_lu``."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def unique_name(name: str, used: dict[str, int]) -> str:
    """Keras' ``_get_unique_name``: the second ``dense`` of a list is ``dense_1``."""
    if name in used:
        used[name] += 1
        return f"{name}_{used[name]}"
    used[name] = 0
    return name


def visit_key(path: str) -> tuple[str, ...]:
    """Sort key putting sub-object paths in Keras' visiting order (alphabetical, ``_private`` last)."""
    return tuple(f"~{part}" if part.startswith("_") else part for part in path.split("/") if part)


# -- layers ------------------------------------------------------------------------------------
class Place(NamedTuple):
    """A layer and where its object lives in the weights file."""

    h5_path: str  # e.g. "layers/sequential/layers/dense"; its variables are in "<h5_path>/vars"
    layer_path: str  # the layer's path in the IR (Model.iter_layers), e.g. "inner/dense"
    layer: Layer


def is_operation(layer: Layer) -> bool:
    """A ``keras.ops`` call in a Functional graph: serialized like a layer, saved as nothing."""
    return (layer.module or "").startswith(OPERATION_MODULE_PREFIX)


def saved_layers(model: Model) -> list[Layer]:
    """The layers Keras' ``model.layers`` holds, in order: no ops, no Sequential InputLayer."""
    layers = [layer for layer in model.layers if not is_operation(layer)]
    if model.class_name == "Sequential" and layers and layers[0].class_name == "InputLayer":
        layers = layers[1:]
    return layers


def places(model: Model, h5_prefix: str = "", layer_prefix: str = "") -> list[Place]:
    """Every layer (nested models' too) with its object path, in Keras' visiting order."""
    out: list[Place] = []
    used: dict[str, int] = {}
    for layer in saved_layers(model):
        h5_path = f"{h5_prefix}layers/{unique_name(snake_case(layer.class_name), used)}"
        layer_path = f"{layer_prefix}{layer.name}"
        out.append(Place(h5_path, layer_path, layer))
        if layer.submodel is not None:
            out.extend(places(layer.submodel, h5_path + "/", layer_path + "/"))
    return out


class Slot(NamedTuple):
    """Where one variable of a layer goes: group ``<place>/<sub>/vars``, dataset ``key``."""

    weight_path: str  # relative to the layer, as in the IR ("cell/kernel", or "0" by position)
    sub: str  # sub-object path inside the layer ("" for the layer's own variables)
    index: int  # position among the group's numbered datasets; -1 for one stored by name
    trainable: bool = True
    name: str | None = None  # the dataset's name when Keras 3 stores the variable by name ("idf_weights")

    @property
    def key(self) -> str:
        """The dataset's name in ``vars``: ``"0"``, ``"1"``... or the variable's own name."""
        return self.name if self.name is not None else str(self.index)


def catalogue_slots(layer: Layer) -> list[Slot] | None:
    """The slots of the variables the catalogue lists for this layer: none for a nested model
    (its layers hold them), None for a class the catalogue does not know (kept by position)."""
    if layer.submodel is not None:
        return []
    variables = variables_of(layer.class_name, layer.config)
    return None if variables is None else _number(variables)


def _number(variables: list[Var]) -> list[Slot]:
    counters: dict[str, int] = {}
    slots = []
    for var in variables:
        sub, _, last = var.path.rpartition("/")
        if var.named:  # saved by its own name (a save_own_variables), not numbered
            slots.append(Slot(var.path, sub, -1, var.trainable, name=last))
            continue
        index = counters.get(sub, 0)
        counters[sub] = index + 1
        slots.append(Slot(var.path, sub, index, var.trainable))
    return slots


def positional_slot(weight_path: str) -> Slot | None:
    """``"3"`` → own variable 3; ``"cell/1"`` → variable 1 of sub-object ``cell``; else None."""
    sub, _, last = weight_path.rpartition("/")
    # ASCII digits only: str.isdigit also takes "²", which int() refuses
    return Slot(weight_path, sub, int(last)) if last.isascii() and last.isdigit() and last == str(int(last)) else None


def stored_slot(weight_path: str) -> Slot | None:
    """The slot of a weight of a class the catalogue does not know, as the reader kept it:
    positional (``"3"``, ``"cell/1"``) or by the dataset name it was stored under
    (``"idf_weights"``, ``"cell/table"``); None for a path no ``vars`` dataset can have."""
    slot = positional_slot(weight_path)
    if slot is not None:
        return slot
    sub, _, last = weight_path.rpartition("/")
    return Slot(weight_path, sub, -1, name=last) if last and not last.isdigit() else None


def sub_object_name(layer: Layer, sub: str) -> str | None:
    """The ``.name`` Keras gives sub-object ``sub`` of ``layer`` (``""`` is the layer itself);
    None when Keras names it at run time (unknown classes, auto-numbered helpers)."""
    parts = [p for p in sub.split("/") if p]
    if not parts:
        return layer.name
    child = follow(layer.class_name, layer.config or {}, parts).child
    return None if child is None else child.name


def is_list(layer: Layer, sub: str) -> bool:
    """Whether sub-object path ``sub`` names a list of sub-objects (StackedRNNCells' ``cells``):
    Keras saves its members, but no ``vars`` of the list itself."""
    parts = [p for p in sub.split("/") if p]
    if not parts:
        return False
    class_name, config = layer.class_name, layer.config or {}
    if len(parts) > 1:
        owner = follow(class_name, config, parts[:-1]).child
        if owner is None:
            return False
        class_name, config = owner.class_name, owner.config
    described = get(class_name)
    return described is not None and parts[-1] in described.sequences


# -- the optimizer ------------------------------------------------------------------------------
class OptimizerEntry(NamedTuple):
    """One variable of ``optimizer/vars``: the optimizer's own (``variable`` None) or the slot
    ``name`` of model variable ``variable`` (full path, as ``Model.iter_weights`` gives it)."""

    name: str
    variable: str | None = None


def _adam(c: dict) -> list[list[str]]:
    return [["momentum", "velocity"]] + ([["velocity_hat"]] if c.get("amsgrad") else [])


def _rmsprop(c: dict) -> list[list[str]]:
    momentum = c.get("momentum")
    has_momentum = isinstance(momentum, (int, float)) and momentum > 0  # a config may hold anything
    return ([["velocity"]] + ([["momentum"]] if has_momentum else [])
            + ([["average_gradient"]] if c.get("centered") else []))


#: Per optimizer class, its ``build``: lists of slot names created together, interleaved per
#: model variable (Adam: momentum_0, velocity_0, momentum_1, velocity_1...). Names are Keras 3's.
_SLOTS = {
    "SGD": lambda c: [["momentum"]] if c.get("momentum") else [],
    "Adam": _adam,
    "AdamW": _adam,
    "Nadam": lambda c: [["momentum", "velocity"]],
    "Adamax": lambda c: [["momentum", "norm"]],
    "Adadelta": lambda c: [["accumulated_grad", "accumulated_delta_var"]],
    "Adagrad": lambda c: [["accumulator"]],
    "RMSprop": _rmsprop,
    "Ftrl": lambda c: [["accumulator", "linear"]],
    "Lamb": lambda c: [["momentum", "velocity"]],
    "Lion": lambda c: [["momentum"]],
}
#: Variables a class creates after its slots.
_TRAILING = {"Nadam": ["u_product"]}


def slot_groups(optimizer: Any) -> list[list[str]] | None:
    """The slot names a serialized optimizer creates per model variable, in groups created
    together (Adam: ``[["momentum", "velocity"]]``); None for a class not known here."""
    if not isinstance(optimizer, dict) or not isinstance(optimizer.get("class_name"), str) \
            or optimizer["class_name"] not in _SLOTS:
        return None
    return _SLOTS[optimizer["class_name"]](optimizer.get("config") if isinstance(optimizer.get("config"), dict) else {})


def optimizer_entries(model: Model, optimizer: Any, *, keras2: bool = False) -> list[OptimizerEntry] | None:
    """The variables of ``optimizer/vars`` in order, for the serialized ``optimizer``
    (``{"class_name", "config"}``) of ``model``; None for an optimizer class not known here.

    Keras 3: ``iterations``, ``learning_rate`` (absent with a schedule), EMA averages, gradient
    accumulators, the class's slots, then its trailing variables. tf_keras (``keras2``) keeps
    no ``learning_rate`` variable.
    """
    if not isinstance(optimizer, dict) or not isinstance(optimizer.get("class_name"), str) \
            or optimizer["class_name"] not in _SLOTS:
        return None
    class_name = optimizer["class_name"]
    config = optimizer.get("config") if isinstance(optimizer.get("config"), dict) else {}
    entries = [OptimizerEntry("iterations")]
    if not keras2 and isinstance(config.get("learning_rate", 0.001), (int, float)):
        entries.append(OptimizerEntry("learning_rate"))
    groups = [["average"]] if config.get("use_ema") else []
    groups += [["gradient_accumulator"]] if config.get("gradient_accumulation_steps") else []
    groups += _SLOTS[class_name](config)
    variables = trainable_weight_paths(model)
    for names in groups:
        entries += [OptimizerEntry(name, variable) for variable in variables for name in names]
    return entries + [OptimizerEntry(name) for name in _TRAILING.get(class_name, [])]


def optimizer_group_name(optimizer: Any) -> str | None:
    """The ``name`` attribute of ``optimizer/vars``: the optimizer's name (``adam``)."""
    if not isinstance(optimizer, dict):
        return None
    config = optimizer.get("config") if isinstance(optimizer.get("config"), dict) else {}
    if isinstance(config.get("name"), str):
        return config["name"]
    return snake_case(optimizer["class_name"]) if isinstance(optimizer.get("class_name"), str) else None


def trainable_weight_paths(model: Model) -> list[str]:
    """Full weight paths in ``model.trainable_variables`` order: layer by layer in graph order
    (nested models in place), each layer's variables in saving order, frozen ones left out."""
    return list(_trainable(model, "", model.config.get("trainable", True) is not False))


def _trainable(model: Model, prefix: str, trainable: bool) -> Iterator[str]:
    for layer in model.layers:
        layer_trainable = trainable and layer.config.get("trainable", True) is not False
        if layer.submodel is not None:
            yield from _trainable(layer.submodel, f"{prefix}{layer.name}/", layer_trainable)
        elif layer_trainable:
            yield from (f"{prefix}{layer.name}/{w.path}" for w in layer.weights if w.trainable)
