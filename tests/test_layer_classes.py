"""Layer-class descriptors: one per class, held by a registry's catalogue, and a third-party
plugin describing its own class end to end (the worked example of spec/layers.md)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import modelmorph
from helpers import FIXTURES, assert_models_equal
from modelmorph.keras import catalogue
from modelmorph.keras.shapes import infer_shapes
from modelmorph.registry import Registry

CUSTOM = FIXTURES / "keras3" / "custom_layer.keras"  # Input(6) -> Dense(4) -> Scale(4) -> Dense(2)


# The worked example of spec/layers.md is a real plugin, examples/modelmorph-scale-layer: tested as is.
sys.path.insert(0, str(FIXTURES.parents[1] / "examples" / "modelmorph-scale-layer"))
import modelmorph_scale_layer as ScalePlugin  # noqa: E402  (a module is a plugin object)
from modelmorph_scale_layer import scale_to_onnx  # noqa: E402


def _strip_shapes(model: modelmorph.Model) -> None:
    for layer in model.layers:
        for node in layer.nodes:
            node.args = [dataclasses.replace(a, shape=None, dtype=None) if isinstance(a, modelmorph.TensorRef) else a
                         for a in node.args]


def test_a_plugin_describes_its_layer_class_end_to_end(tmp_path):
    reg = Registry(extra_plugins=[ScalePlugin])
    with modelmorph.read(CUSTOM, registry=reg) as model:
        assert [w.path for w in model.layer("scale").weights] == ["scale"]  # named, not by position
        _strip_shapes(model)
        with catalogue.activate(reg.catalogue):
            infer_shapes(model)
        after_scale = model.layers[-1].nodes[0].args[0]
        assert (after_scale.layer, after_scale.shape, after_scale.dtype) == ("scale", (None, 4), "float32")
        modelmorph.write(model, tmp_path / "copy.keras", registry=reg)
        with modelmorph.read(tmp_path / "copy.keras", registry=reg) as back:
            assert_models_equal(model, back)
    assert reg.catalogue.get("Scale").converters["onnx"] is scale_to_onnx
    # the default registry (no plugin) keeps the class unknown: its weight by position, its output unknown
    with modelmorph.read(CUSTOM) as plain:
        assert [w.path for w in plain.layer("scale").weights] == ["0"]
        _strip_shapes(plain)
        infer_shapes(plain)
        assert plain.layers[-1].nodes[0].args[0].shape is None


def test_builtin_classes_cannot_be_redefined():
    cat = catalogue.Catalogue()
    try:
        cat.register(modelmorph.LayerClass("Dense"))
    except ValueError as exc:
        assert "built into the catalogue" in str(exc)
    else:
        raise AssertionError("a plugin redefined Dense")


def test_each_builtin_class_is_described_in_one_module():
    """`grep` finds a class's knowledge in one place: one descriptor per class name, and the
    tables that used to be spread over the core and the plugins are gone."""
    from modelmorph.keras.layers import builtin_classes

    names = [cls.class_name for cls in builtin_classes()]
    assert len(names) == len(set(names)) > 90
    root = FIXTURES.parents[1]
    # A format's converters (modelmorph_onnx/converters/) name the classes they convert; they
    # reach the descriptors' converter slot through the catalogue. Keras knowledge is not there.
    plugins = [str(p) for p in (root / "plugins").iterdir() if p.is_dir() and p.name != "modelmorph_onnx"]
    stale = subprocess.run(["grep", "-rnE", "_RNN_CELL_NAMES|_ATTENTION_DENSE_NAMES|_FIXUPS_TO|CALL_ARGS|"
                            "_SUB_OBJECTS|_KERAS3_VARIABLES", str(root / "core"), *plugins],
                           capture_output=True, text=True).stdout
    assert stale == ""
    places = subprocess.run(["grep", "-rl", '"MultiHeadAttention"', str(root / "core"), *plugins,
                             "--include=*.py"], capture_output=True, text=True).stdout.split()  # in code, not prose
    assert [p.rsplit("/", 2)[-2:] for p in places] == [["layers", "attention.py"]]
