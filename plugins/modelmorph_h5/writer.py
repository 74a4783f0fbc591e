"""Writing legacy Keras ``.h5`` files in the Keras 2 dialect: what tf_keras 2.x loads (and
Keras 3's legacy loader reads). The file is first planned as groups of attributes and datasets
(:class:`.plainwriter.H5Group`), then written by the pure-Python writer, tensor bytes copied file
to file (:mod:`.plainwriter`), or by h5py when the plan needs it (strings, booleans...; or
``MODELMORPH_HDF5=h5py``), one tensor in memory at a time."""

from __future__ import annotations

import json
from pathlib import Path

from modelmorph import Diagnostics, Layer, Model, Progress, Weight, WriteError
from modelmorph.keras import catalogue, dialects, kerasconfig, vocabularies
from modelmorph.storage import h5file

from .attributes import write_list
from .layout import UnknownLayout, group_variables, saved_layers
from .optimizer import keras2_entries
from .plainwriter import H5Group, can_write, write_plain

#: The tf_keras release whose loader this layout was checked against. Loaders only look at
#: it to convert Keras 1 files ("1"), so any 2.x value reads the same.
KERAS_VERSION = "2.21.0"
BACKEND = "tensorflow"


def write(model: Model, path: Path, *, options: dict, diagnostics: Diagnostics, progress: Progress) -> None:
    weights_only = options["weights_only"] or not model.has_architecture
    layers = [(layer, _stored_weights(layer, model.has_architecture, path, diagnostics)) for layer in _layers(model)]
    optimizer = None
    if weights_only:
        if model.optimizer is not None:
            diagnostics.add("lossy", "a weights-only .h5 holds no optimizer state; it is not written")
    elif model.optimizer is not None and model.compile_config is not None:
        optimizer = keras2_entries(model, diagnostics)
    total = sum(w.nbytes for _, stored in layers for _, w in stored) + sum(w.nbytes for _, w in optimizer or ())
    progress.start(total, f"writing {path.name}")
    if weights_only:
        groups = _weight_groups("", layers)
    else:
        root = H5Group("", {"backend": BACKEND, "keras_version": KERAS_VERSION})
        # tf_keras keeps a lookup's vocabulary in its config, Keras 3 in an asset file.
        config = vocabularies.inline(kerasconfig.model_to_config(model, include_compile=False),
                                     vocabularies.vocabularies(model, diagnostics))
        config = dialects.to_keras2(config, diagnostics)
        root.attrs["model_config"] = json.dumps(config)
        if model.compile_config is not None:
            root.attrs["training_config"] = json.dumps(dialects.compile_to_keras2(model.compile_config, diagnostics))
        groups = [root] + _weight_groups("model_weights", layers)
        if optimizer is not None:
            groups.append(H5Group("optimizer_weights", {"weight_names": [name for name, _ in optimizer]}, optimizer))
    if h5file.write_backend(can_write(groups), path) == "plain":
        if write_plain(path, groups, progress):
            return
        if h5file.setting() == "plain":
            raise WriteError(path, f"a name or attribute of this file is outside the plain HDF5 subset, and "
                                   f"{h5file.ENV}=plain forbids h5py")
    _write_h5py(path, groups, progress)


def _layers(model: Model) -> list[Layer]:
    return saved_layers(model) if model.has_architecture else list(model.layers)


def _stored_weights(layer: Layer, has_architecture: bool, path: Path, diags: Diagnostics) -> list[tuple[str, Weight]]:
    """A layer's (dataset name, weight) pairs in the order Keras 2 assigns them."""
    if not has_architecture:  # groups of weights without classes: keep their order
        return [(f"{layer.name}/{w.path}:0", w) for w in layer.weights]
    if layer.submodel is None and catalogue.variables_of(layer.class_name, layer.config) is None:
        return _unknown_class_weights(layer, diags)
    try:
        variables = group_variables(layer)
    except UnknownLayout as exc:
        raise WriteError(path, f"cannot lay out the weights of nested model {layer.name!r}: {exc}") from None
    out = []
    for var in variables:
        try:
            weight = var.owner.weight(var.path)
        except KeyError:
            raise WriteError(path, f"layer {layer.name}/{var.relative_path} has no value: a .h5 model needs "
                                   "every weight (give them, e.g. with --arch and a weights file)") from None
        # Keras 2 names a nested model's variables after their own layer, without the model's name.
        out.append((f"{var.relative_path if var.prefix else f'{layer.name}/{var.path}'}:0", weight))
    held = len(layer.weights) + (len(list(layer.submodel.iter_weights())) if layer.submodel is not None else 0)
    if held > len(out):
        diags.add("lossy", f"{held - len(out)} weight(s) Keras 2 does not give this layer were not written", layer.name)
    return out


#: The layer that stands for the root object's own variables in a weights-only IR model
#: (a checkpoint's ``save_counter``; see spec/ir.md): no HDF5 group can have this name.
ROOT_LAYER = "."


def _unknown_class_weights(layer: Layer, diags: Diagnostics) -> list[tuple[str, Weight]]:
    """A class the catalogue does not know keeps its weights in the order the source holds
    them, under the names Keras gave them when the source recorded them (a legacy ``.h5``)."""
    nested = sorted({w.path.rpartition("/")[0] for w in layer.weights if "/" in w.path})
    if nested:
        # A Keras 3 file keeps a layer's own variables, then each sub-object's under the attribute
        # holding it, visited alphabetically; Keras 2 assigns them by position, trainable ones first,
        # in the order the class creates them, which nothing in the file tells.
        diags.add("unsupported", f"class {layer.class_name!r} is not in the layer catalogue: its {len(layer.weights)} "
                                 f"weights, some held by sub-objects ({', '.join(nested)}), are written in the order "
                                 f"the source keeps them (its own, then its sub-objects' alphabetically); Keras 2 loads "
                                 f"them by position, so its class must create them in that order", layer.name)
    names = [w.name or w.path for w in layer.weights]
    if len(set(names)) != len(names):  # a recorded name equal to another weight's position
        names = [w.path for w in layer.weights]
    return [(f"{layer.name}/{name}:0", w) for name, w in zip(names, layer.weights)]


def _weight_groups(top: str, layers: list[tuple[Layer, list[tuple[str, Weight]]]]) -> list[H5Group]:
    """The group ``top`` listing the layers, then one group per layer."""
    within = (lambda name: f"{top}/{name}") if top else (lambda name: name)
    own = [item for layer, stored in layers if layer.name == ROOT_LAYER for item in stored]
    layers = [(layer, stored) for layer, stored in layers if layer.name != ROOT_LAYER]
    groups = [H5Group(top, {"layer_names": [layer.name for layer, _ in layers], "backend": BACKEND,
                            "keras_version": KERAS_VERSION})]
    # Created in name order, as tf_keras does: a group `x` before `x/pad`, which lives inside it.
    for layer, stored in sorted(layers, key=lambda item: item[0].name):
        groups.append(H5Group(within(layer.name), {"weight_names": [name for name, _ in stored]}, stored))
    # Keras writes the model object's own variables here; models built from layers have none.
    stored = [(name.removeprefix(ROOT_LAYER + "/"), weight) for name, weight in own]
    groups.append(H5Group(within("top_level_model_weights"), {"weight_names": [name for name, _ in stored]}, stored))
    return groups


def _write_h5py(path: Path, groups: list[H5Group], progress: Progress) -> None:
    import h5py

    from modelmorph.storage.hdf5 import write_weight

    with h5py.File(path, "w") as file:
        for group in groups:
            obj = file.create_group(group.path) if group.path else file
            for name, value in group.attrs.items():
                if isinstance(value, list):
                    write_list(obj.attrs, name, value)
                else:
                    obj.attrs[name] = value
            for name, weight in group.datasets:
                write_weight(obj, name, weight)  # one tensor (or a piece of one) in memory at a time
                progress.advance(weight.nbytes)
