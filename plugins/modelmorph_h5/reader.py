"""Reading legacy Keras ``.h5`` files: full models (``model.save``) and weights-only files
(``save_weights``), written by Keras 2 (tf.keras, tf_keras, keras 2.x) or by Keras 3.

Files are read through the one HDF5 interface, :mod:`modelmorph.storage.h5file`: a plain file
(every file h5py writes with its defaults) in pure Python, its weights knowing where their
bytes lie; any other file through h5py and :mod:`modelmorph.storage.hdf5`'s checks.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from modelmorph import Diagnostics, Layer, Model, ReadError, Weight
from modelmorph.keras import dialects, kerasconfig
from modelmorph.keras.join import structure_of
from modelmorph.storage import h5file, hdf5
from modelmorph.storage.safety import parse_json

from .attributes import read_list
from .layout import UnknownLayout, Variable, group_variables, saved_layers
from .optimizer import read_state


def read(path: Path, *, options: dict, diagnostics: Diagnostics, arch: Model | None = None) -> Model:
    by_name = options["by_name"]
    src = open_source(path)
    try:
        model = _read(src, diagnostics, arch, by_name)
    except BaseException:
        src.close()
        raise
    model.on_close(src.close)
    return model


def open_source(path: Path) -> "_Source":
    """The file at ``path``, through the one HDF5 interface (pure Python for the files Keras
    writes, h5py for the others or when ``MODELMORPH_HDF5=h5py``)."""
    return _Source(h5file.open(path), path)


class _Source:
    """The open file (an :class:`~modelmorph.storage.h5file.H5File`) and its name, with lookups
    that fail as one-line read errors."""

    def __init__(self, file: h5file.H5File, path: Path):
        self.file, self.path = file, path

    def close(self) -> None:
        self.file.close()

    def error(self, problem: str) -> ReadError:
        return ReadError(self.path, problem)

    def group(self, parent: h5file.Group, name: str) -> h5file.Group:
        obj = parent.get(name)  # None for names reaching outside ``parent`` ("/x", "..")
        if obj is None or not obj.is_group:
            found = "nothing" if obj is None else "Dataset"
            raise self.error(f"{parent.name.rstrip('/')}/{name}: expected a group of weights, found {found}")
        return obj

    def weight(self, group: h5file.Group, name: str, path: str, trainable: bool = True) -> Weight:
        obj = group.get(name)  # None for names reaching outside the layer's group ("/x", "..")
        if obj is None or obj.is_group:
            raise self.error(f"{group.name}/{name}: weight listed in weight_names is not a dataset")
        return obj.weight(path, trainable)

    def json_attr(self, name: str) -> dict:
        value = parse_json(hdf5.attr_str(self.file.attrs[name]), self.path, name)
        if not isinstance(value, dict):
            raise self.error(f"{name} is JSON {type(value).__name__}, not an object")
        return value


def _read(src: _Source, diags: Diagnostics, arch: Model | None, by_name: bool) -> Model:
    attrs = src.file.attrs
    try:
        if "model_config" in attrs:
            model = _read_full_model(src, diags, arch)
        elif "layer_names" in attrs or "layer_names0" in attrs:
            model = _read_weights_only(src, diags, arch, by_name)
        else:
            raise src.error("not a Keras HDF5 model: the file has neither a model_config nor a layer_names attribute")
        model.metadata.update(_versions(attrs))
    except (ValueError, TypeError, KeyError) as exc:  # wrong types or shapes of attributes and configs
        raise src.error(f"malformed Keras HDF5 file: {exc}") from None
    return model


def _versions(attrs: Any) -> dict:
    out = {}
    for key in ("keras_version", "backend"):
        try:
            out[key] = hdf5.attr_str(attrs[key])
        except (KeyError, ValueError):
            pass  # informative only
    return out


def _read_full_model(src: _Source, diags: Diagnostics, arch: Model | None) -> Model:
    config = src.json_attr("model_config")
    model = kerasconfig.read_model_config(config, diags)
    if arch is not None:
        diags.add("unsupported", "--arch is ignored: this .h5 holds an architecture of its own")
    weights = src.group(src.file, "model_weights")
    layers = {layer.name: layer for layer in saved_layers(model)}
    renamed = model.metadata.get("renamed") or {}  # groups keep the names Keras 3 refuses
    for name in read_list(weights.attrs, "layer_names"):
        group = src.group(weights, name)
        weight_names = read_list(group.attrs, "weight_names")
        if renamed.get(name, name) not in layers:
            if weight_names:
                diags.add("unsupported", f"weights of {name!r} belong to no layer of the model config; dropped", name)
            continue
        _attach(src, layers[renamed.get(name, name)], group, weight_names, diags, strict=False, stored_as=name)
    _note_top_level_weights(src, weights, diags)
    if "training_config" in src.file.attrs:
        model.compile_config = dialects.compile_to_keras3(src.json_attr("training_config"), diags)
        if "optimizer_weights" in src.file:
            model.optimizer = read_state(src.group(src.file, "optimizer_weights"), model,
                                         model.compile_config.get("optimizer"), src.weight, diags)
    return model


def _read_weights_only(src: _Source, diags: Diagnostics, arch: Model | None, by_name: bool) -> Model:
    groups = [(name, src.group(src.file, name)) for name in read_list(src.file.attrs, "layer_names")]
    stored = [(name, group, names) for name, group in groups if (names := read_list(group.attrs, "weight_names"))]
    _note_top_level_weights(src, src.file, diags)
    if arch is None:
        model = Model(name=src.path.stem, class_name="", has_architecture=False)
        for name, group, weight_names in stored:
            layer = Layer(name=name, class_name="", extra={"h5:group": name})
            layer.weights = [src.weight(group, wn, str(i)) for i, wn in enumerate(weight_names)]
            model.layers.append(layer)
        return model
    model = structure_of(arch)  # the weights go to a copy, never to the caller's model
    if by_name:
        layers = {layer.name: layer for layer in saved_layers(model)}
        renamed = model.metadata.get("renamed") or {}  # groups keep the names Keras 3 refuses
        for name, group, weight_names in stored:
            if renamed.get(name, name) not in layers:
                diags.add("unsupported", f"weights of {name!r} match no layer of the architecture by name; dropped", name)
                continue
            _attach(src, layers[renamed.get(name, name)], group, weight_names, diags, strict=True, stored_as=name)
        return model
    # As Keras: the layers that have weights, in order, zipped with the stored groups that have some.
    names_with_weights = {name for name, _, _ in stored}
    layers = [layer for layer in saved_layers(model) if _has_weights(layer, names_with_weights)]
    if len(layers) != len(stored):
        raise src.error(f"the architecture has {len(layers)} layer(s) with weights, the file {len(stored)} "
                        "(join by layer name with -O by_name=true?)")
    for layer, (name, group, weight_names) in zip(layers, stored):
        _attach(src, layer, group, weight_names, diags, strict=True, stored_as=name)
    return model


def _has_weights(layer: Layer, names_with_weights: set[str]) -> bool:
    try:
        return bool(group_variables(layer))
    except UnknownLayout:
        # Nothing tells how many variables an unknown class has: trust a same-named stored group.
        return layer.name in names_with_weights


def _attach(src: _Source, layer: Layer, group: Any, weight_names: list[str], diags: Diagnostics,
            strict: bool, stored_as: str) -> None:
    """Give ``layer`` (and, for a nested model, its sublayers) the stored weights, by position.
    Weights kept by position also keep the names Keras gave them (``stored_as`` is the layer's
    name in the file), which a checkpoint needs to name them as tf_keras does."""
    try:
        variables = group_variables(layer, count_unknown=len(weight_names))
    except UnknownLayout as exc:
        raise src.error(f"cannot place the weights of {layer.name!r}: {exc}") from None
    if len(variables) != len(weight_names):
        problem = (f"layer {layer.name!r} ({layer.class_name}) has {len(variables)} variable(s), "
                   f"the file stores {len(weight_names)} in {group.name!r}")
        if strict:
            raise src.error(problem)
        diags.add("unsupported", problem + "; kept by position", layer.name)
        variables = [Variable(layer, str(i), "", True, True) for i in range(len(weight_names))]
    for var, name in zip(variables, weight_names):
        weight = src.weight(group, name, var.path, var.trainable)
        if var.path.isdigit():  # a class the catalogue does not know
            weight.name = variable_name(stored_as, name)
        var.owner.weights.append(weight)


def variable_name(layer_name: str, weight_name: str) -> str | None:
    """The name Keras 2 gave a layer's variable, from its ``weight_names`` entry: ``ls/gamma:0``
    (or ``scope/ls/gamma:0``) → ``gamma``; None when the entry names it below a sublayer or
    not below the layer at all, where the attribute a checkpoint follows is unknown."""
    head, _, tail = re.sub(r":\d+$", "", weight_name).rpartition("/")
    if tail and (head == layer_name or head.endswith("/" + layer_name)):
        return tail
    return None


def _note_top_level_weights(src: _Source, weights: Any, diags: Diagnostics) -> None:
    if "top_level_model_weights" in weights:
        if read_list(src.group(weights, "top_level_model_weights").attrs, "weight_names"):
            diags.add("unsupported", "variables of the model object itself (top_level_model_weights) are dropped")
