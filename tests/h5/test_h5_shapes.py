"""Keras 2 `.h5` → `.keras` writes the node shapes and dtypes Keras 3 itself writes: the
shape inference over the IR judged against Keras 3 re-saving modelmorph's output."""

from __future__ import annotations

import json
import zipfile

import pytest

import modelmorph
from h5cases import FIXTURES, TF_KERAS_CASES
from helpers import require_format

pytestmark = pytest.mark.interop


def _node_tensors(cfg: dict, prefix: str = "") -> dict:
    """{(layer path, node index): [(shape, dtype) of each tensor argument]} of a model config."""
    out = {}

    def tensors(value, found):
        if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
            found.append((tuple(value["config"]["shape"]), value["config"]["dtype"]))
        elif isinstance(value, dict):
            for item in value.values():
                tensors(item, found)
        elif isinstance(value, list):
            for item in value:
                tensors(item, found)
        return found

    for layer in cfg["config"].get("layers", []):
        name = prefix + (layer.get("name") or layer["config"]["name"])
        for i, node in enumerate(layer.get("inbound_nodes", [])):
            out[(name, i)] = tensors(node, [])
        if layer["class_name"] in ("Functional", "Sequential"):
            out.update(_node_tensors(layer, name + "/"))
    return out


@pytest.mark.parametrize("case", TF_KERAS_CASES)
def test_node_shapes_are_the_ones_keras3_writes(case, tmp_path, keras3):
    require_format("keras")
    ours = tmp_path / "ours.keras"
    modelmorph.convert(FIXTURES / "tf_keras" / f"{case}.h5", ours)
    resaved = tmp_path / "resaved.keras"
    keras3.saving.load_model(ours).save(resaved)
    got, expected = (_node_tensors(json.loads(zipfile.ZipFile(p).read("config.json"))) for p in (ours, resaved))
    assert got == expected
    if case not in ("mlp_adam", "seq_cnn_bn"):  # Sequential configs record no nodes
        assert any(shape for tensors in expected.values() for shape, _ in tensors)
