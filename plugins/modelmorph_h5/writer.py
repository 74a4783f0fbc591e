"""Writing legacy Keras ``.h5`` files in the Keras 2 dialect: what tf_keras 2.x loads (and
Keras 3's legacy loader reads). Tensors are streamed one at a time."""

from __future__ import annotations

import json
from pathlib import Path

import h5py

from modelmorph import Diagnostics, Layer, Model, Progress, Weight, WriteError
from modelmorph.keras import dialects, kerasconfig
from modelmorph.storage import hdf5

from .attributes import write_list
from .layout import UnknownLayout, group_variables, saved_layers
from .optimizer import keras2_entries, write_state

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
    with h5py.File(path, "w") as file:
        if weights_only:
            _write_weights(file, layers, progress)
            return
        file.attrs["backend"] = BACKEND
        file.attrs["keras_version"] = KERAS_VERSION
        config = dialects.to_keras2(kerasconfig.model_to_config(model, include_compile=False), diagnostics)
        file.attrs["model_config"] = json.dumps(config)
        if model.compile_config is not None:
            file.attrs["training_config"] = json.dumps(dialects.compile_to_keras2(model.compile_config, diagnostics))
        _write_weights(file.create_group("model_weights"), layers, progress)
        if optimizer is not None:
            write_state(file, optimizer, progress)


def _layers(model: Model) -> list[Layer]:
    return saved_layers(model) if model.has_architecture else list(model.layers)


def _stored_weights(layer: Layer, has_architecture: bool, path: Path, diags: Diagnostics) -> list[tuple[str, Weight]]:
    """A layer's (dataset name, weight) pairs in the order Keras 2 assigns them."""
    if not has_architecture:  # groups of weights without classes: keep their order
        return [(f"{layer.name}/{w.path}:0", w) for w in layer.weights]
    try:
        variables = group_variables(layer, count_unknown=len(layer.weights))
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


def _write_weights(group: h5py.Group, layers: list[tuple[Layer, list[tuple[str, Weight]]]], progress: Progress) -> None:
    write_list(group.attrs, "layer_names", [layer.name for layer, _ in layers])
    group.attrs["backend"] = BACKEND
    group.attrs["keras_version"] = KERAS_VERSION
    # Created in name order, as tf_keras does: a group `x` before `x/pad`, which lives inside it.
    for layer, stored in sorted(layers, key=lambda item: item[0].name):
        layer_group = group.create_group(layer.name)
        write_list(layer_group.attrs, "weight_names", [name for name, _ in stored])
        for name, weight in stored:
            hdf5.write_dataset(layer_group, name, weight.read())  # one tensor in memory at a time
            progress.advance(weight.nbytes)
    # Keras writes the model object's own variables here; models built from layers have none.
    write_list(group.create_group("top_level_model_weights").attrs, "weight_names", [])
