"""Reading a TensorFlow checkpoint into the IR.

Alone, a checkpoint holds weights only: the model has one layer per object that owns
variables, named by that object's path (``layer_with_weights-1/cell``, ``model/dense_1``; the
root's own variables go to layer ``.``), each weight named by its attribute (``kernel``), and
remembers every weight's checkpoint key and the object graph, so that writing it back as a
checkpoint keeps both. With an architecture, the weights are joined onto it (:mod:`.join`).
"""

from __future__ import annotations

from pathlib import Path

from modelmorph import DTYPES, Diagnostics, Layer, Model

from .join import join
from .source import Checkpoint

#: Weights-only layers: weight path → checkpoint key, so a checkpoint written back keeps them.
CHECKPOINT_KEYS = "tf-checkpoint:keys"
#: Weights-only models: the source's serialized TrackableObjectGraph, written back with the keys.
OBJECT_GRAPH = "tf-checkpoint:object_graph"
#: Weights-only layers: the object path (key prefix) the layer stands for (see spec/ir.md).
SOURCE_KEY = "tf-checkpoint:object"
#: The layer name of variables the root object holds itself (``save_counter``).
ROOT_LAYER = "."

_VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"


def read(path: Path, *, options: dict, diagnostics: Diagnostics, arch: Model | None = None) -> Model:
    ckpt = Checkpoint(path)
    try:
        model = join(ckpt, arch, diagnostics) if arch is not None else _weights_only(ckpt, diagnostics)
    except BaseException:
        ckpt.close()
        raise
    model.on_close(ckpt.close)
    model.add_check("CRC-32C of every tensor", ckpt.verify_all, start=ckpt.start_checks)
    return model


def _weights_only(ckpt: Checkpoint, diagnostics: Diagnostics) -> Model:
    model = Model(name=Path(ckpt.prefix).name, class_name="", has_architecture=False)
    layers: dict[str, Layer] = {}
    unsupported = []
    for key in ckpt.variable_keys():
        if ckpt.entries[key].dtype not in DTYPES:
            unsupported.append(f"{key} ({ckpt.entries[key].dtype})")
            continue
        owner, name = _split(key)
        layer = layers.get(owner)
        if layer is None:
            layer = layers[owner] = Layer(name=owner, class_name="", extra={SOURCE_KEY: owner, CHECKPOINT_KEYS: {}})
            model.layers.append(layer)
        layer.weights.append(ckpt.weight(key, name))
        layer.extra[CHECKPOINT_KEYS][name] = key
    if ckpt.graph_bytes is not None:
        ckpt.graph.check_all()  # carried to a writer as stored: whole and well-formed
        model.extra[OBJECT_GRAPH] = ckpt.graph_bytes
    if unsupported:
        diagnostics.add("unsupported", f"{len(unsupported)} tensor(s) of a dtype modelmorph does not carry are "
                                       f"dropped: {', '.join(unsupported[:5])}")
    return model


def _split(key: str) -> tuple[str, str]:
    """(owner object path, attribute) of a key. Escaped names hold no ``/`` (it is ``.S``),
    so the last ``/`` separates the owner's path from the variable's own name."""
    full = key[: -len(_VALUE_SUFFIX)] if key.endswith(_VALUE_SUFFIX) else key
    owner, _, name = full.rpartition("/")
    return owner or ROOT_LAYER, name
