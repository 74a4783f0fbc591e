"""Where each naming scheme puts a model's layers and variables in a checkpoint's object graph.

A TensorFlow checkpoint names a variable by the chain of attribute names (children) that
leads to it from the root object. Which chain depends on who wrote it:

``keras2``
    tf_keras ``model.save_weights(prefix)`` / ``load_weights(prefix)``: the model is the
    root. Layer ``i`` of ``model.layers`` (a Sequential's InputLayer is not one) is child
    ``layer-i`` and, when it has variables, also ``layer_with_weights-k`` (``k`` counts only
    such layers). Keys use the latter: it comes first, and keys follow the first path found
    breadth-first. Variables are children named after ``add_weight(name=...)``; sub-objects
    after the attribute holding them (``cell``, ``forward_layer``, MultiHeadAttention's
    private ``_query_dense``).
``keras3``
    ``tf.train.Checkpoint(model=m)`` of a Keras 3 model (the root's child ``model`` is the
    model object). A Functional's layers and ops are ``_operations/i`` in config order,
    InputLayers included; a Sequential keeps them in its inner ``_functional``. Variables
    are named after the attribute holding them, which is private for some classes
    (Dense's ``_kernel``, Embedding's ``_embeddings``).
``module``
    Plain object paths, as ``tf.train.Checkpoint(model=module)`` writes a ``tf.Module``:
    the IR layer path then the weight path (``dense/kernel``, ``inner/dense/bias``).

The paths here are relative to the model's object; callers anchor them (the ``model`` child
for ``keras3``) and escape them into keys through the bundle library.
"""

from __future__ import annotations

from typing import NamedTuple

from modelmorph.keras import catalogue
from modelmorph import Layer, Model

SCHEMES = ("keras2", "keras3", "module")

Path = tuple[str, ...]

class LayerObject(NamedTuple):
    """One layer of a model level and the child paths reaching it from the model's object.

    ``path`` is the canonical one (keys use it); ``aliases`` also reach the same object
    (Keras 2's ``layer-i``).
    """

    layer: Layer
    layer_path: str
    path: Path
    aliases: tuple[Path, ...] = ()


def layer_objects(model: Model, scheme: str, prefix: str = "") -> list[LayerObject]:
    """The layers of one model level (not nested ones) with their object paths.

    ``prefix`` is the IR path of ``model`` inside its outer model (``"inner/"``).
    """
    if scheme == "module":
        return [LayerObject(layer, prefix + layer.name, tuple(layer.name.split("/"))) for layer in model.layers]
    if scheme == "keras2":
        return _keras2_layers(model, prefix)
    if scheme == "keras3":
        return _keras3_layers(model, prefix)
    raise ValueError(f"unknown naming scheme {scheme!r}")


def _keras2_layers(model: Model, prefix: str) -> list[LayerObject]:
    layers = model.layers
    if model.class_name == "Sequential":
        layers = [layer for layer in layers if layer.class_name != "InputLayer"]
    out, weighted = [], 0
    for index, layer in enumerate(layers):
        positional = (f"layer-{index}",)
        if has_variables(layer):
            out.append(LayerObject(layer, prefix + layer.name, (f"layer_with_weights-{weighted}",), (positional,)))
            weighted += 1
        else:
            out.append(LayerObject(layer, prefix + layer.name, positional))
    return out


def _keras3_layers(model: Model, prefix: str) -> list[LayerObject]:
    if model.class_name == "Sequential":
        # Keras 3 builds a Sequential into an inner Functional whose operation 0 is the
        # InputLayer, whether or not the config lists one.
        offset = 0 if model.layers and model.layers[0].class_name == "InputLayer" else 1
        return [LayerObject(layer, prefix + layer.name, ("_functional", "_operations", str(i + offset)))
                for i, layer in enumerate(model.layers)]
    return [LayerObject(layer, prefix + layer.name, ("_operations", str(i))) for i, layer in enumerate(model.layers)]


def has_variables(layer: Layer) -> bool:
    """Whether Keras gives the layer variables: by its class and config, as the live layer
    has them whether or not this model carries their values (or by its weights, for a class
    the catalogue does not know)."""
    if layer.submodel is not None:
        return any(has_variables(sub) for sub in layer.submodel.layers)
    return bool(layer.weights) or bool(catalogue.variables_of(layer.class_name, layer.config))


def is_positional(layer: Layer) -> bool:
    """A layer whose class the catalogue does not know: its IR weights are named ``0``, ``1``...
    by position, and no scheme knows the attribute names its class gives them."""
    return layer.submodel is None and catalogue.variables_of(layer.class_name, layer.config) is None


def untracked(layer: Layer, weight_path: str, scheme: str) -> bool:
    """Whether ``scheme``'s Keras keeps no checkpoint path to the variable: Keras 3 tracks no
    list of sub-objects for TensorFlow (``tf.train.Checkpoint`` of a Keras 3 model omits the
    variables of StackedRNNCells' cells)."""
    parts = weight_path.split("/")
    return (scheme == "keras3" and not is_positional(layer)
            and catalogue.follow(layer.class_name, layer.config or {}, parts[:-1]).through_list)


def recorded_names(layer: Layer) -> dict[str, str] | None:
    """Positional weight path → the name Keras 2 gave the variable, when the source recorded
    a distinct name for each of the layer's variables (a legacy ``.h5``'s ``weight_names``).
    tf_keras' ``add_weight(name=...)`` makes the variable a child of that name, which
    checkpoint keys follow. None if any is missing: then no name can be trusted."""
    names = {w.path: w.name for w in layer.weights}
    if not names or any(not n or "/" in n for n in names.values()) or len(set(names.values())) != len(names):
        return None
    return names


def variable_path(layer: Layer, weight_path: str, scheme: str) -> Path | None:
    """Child names from ``layer``'s object to the variable at IR ``weight_path``; None when
    the scheme cannot name it (a positional weight of a class the catalogue does not know,
    unless the source recorded the names Keras 2 gave its variables)."""
    return variable_paths(layer, [weight_path], scheme)[0]


def variable_paths(layer: Layer, weight_paths: "list[str]", scheme: str) -> "list[Path | None]":
    """:func:`variable_path` of each of ``layer``'s ``weight_paths``. A join asks for all of a
    layer's variables at once: whether its class is known is then looked up once per layer,
    not once per variable (for a BatchNormalization that builds its variable list each time)."""
    if scheme == "module":
        return [tuple(path.split("/")) for path in weight_paths]
    if is_positional(layer):
        named = recorded_names(layer) if scheme == "keras2" else None
        return [(named[path],) if named is not None and path in named else None for path in weight_paths]
    return [_attribute_path(layer, path, scheme) for path in weight_paths]


def _attribute_path(layer: Layer, weight_path: str, scheme: str) -> Path:
    """The child names to a variable of a class the catalogue knows: its sub-objects' (private)
    attributes, then the variable's own attribute name."""
    parts = weight_path.split("/")
    out, child, _ = catalogue.follow(layer.class_name, layer.config or {}, parts[:-1])
    owner = layer.class_name if len(parts) == 1 else child.class_name if child is not None else None
    described = catalogue.get(owner) if owner is not None else None
    names = described.keras3_attributes if scheme == "keras3" and described is not None else {}
    return (*out, names.get(parts[-1], parts[-1]))
