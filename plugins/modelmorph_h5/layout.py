"""Where Keras 2 puts a model's variables in a legacy ``.h5``, shared by the reader and the writer.

Each top-level layer has a group listing its ``weight_names``; Keras assigns the values by
position to ``layer.trainable_weights + layer.non_trainable_weights``. For a plain layer that
is the catalogue's saving order. A nested model's group holds all its sublayers' variables:
first every trainable one, then every non-trainable one, sublayer by sublayer — where a
frozen layer (``trainable: false``) makes all of its own and its sublayers' variables
non-trainable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from modelmorph.keras import catalogue
from modelmorph import Layer, Model


@dataclass(frozen=True)
class Variable:
    """One variable of a top-level layer's group.

    ``owner`` is the IR layer holding it (a sublayer for a nested model), ``path`` its weight
    path there, ``prefix`` the owner's path below the top-level layer (``""`` or ``"dense/"``),
    ``trainable`` the catalogue's flag, ``in_training`` whether the model trains it.
    """

    owner: Layer
    path: str
    prefix: str
    trainable: bool
    in_training: bool

    @property
    def relative_path(self) -> str:
        """The path below the top-level layer: ``kernel``, ``dense/kernel`` in a nested model."""
        return self.prefix + self.path


class UnknownLayout(Exception):
    """A layer's variables cannot be listed (its class is not in the catalogue)."""

    def __init__(self, layer: Layer):
        self.layer = layer
        super().__init__(f"layer {layer.name!r} has class {layer.class_name!r}, which the layer catalogue does not know")


def group_variables(layer: Layer, count_unknown: int | None = None) -> list[Variable]:
    """A top-level layer's variables in the order Keras 2 saves them.

    A layer of an unknown class has ``count_unknown`` variables named by position (``0``,
    ``1``...), as the file says; inside a nested model an unknown class raises
    :class:`UnknownLayout`, since nothing then tells where its variables start.
    """
    if layer.submodel is None and catalogue.variables_of(layer.class_name, layer.config) is None:
        if count_unknown is None:
            raise UnknownLayout(layer)
        return [Variable(layer, str(i), "", True, _trains(layer)) for i in range(count_unknown)]
    variables = list(_creation_order(layer, "", True))
    return [v for v in variables if v.in_training] + [v for v in variables if not v.in_training]


def _creation_order(layer: Layer, prefix: str, enclosing_trains: bool) -> Iterator[Variable]:
    trains = enclosing_trains and _trains(layer)
    if layer.submodel is not None:
        for sub in layer.submodel.layers:
            yield from _creation_order(sub, f"{prefix}{sub.name}/", trains)
        return
    known = catalogue.variables_of(layer.class_name, layer.config)
    if known is None:
        raise UnknownLayout(layer)
    for var in known:
        yield Variable(layer, var.path, prefix, var.trainable, trains and var.trainable)


def _trains(layer: Layer) -> bool:
    return layer.config.get("trainable", True) is not False


def saved_layers(model: Model) -> list[Layer]:
    """The layers Keras 2 lists in ``layer_names``: a Sequential's InputLayer is not one of them."""
    if model.class_name == "Sequential":
        return [layer for layer in model.layers if layer.class_name != "InputLayer"]
    return list(model.layers)
