"""Plugins and the ONNX converter slot: a third party's own layer class exported through the
converter its descriptor carries, and a built-in class's converter overridden."""

from __future__ import annotations

import numpy as np
import pytest

import modelmorph
from helpers import FIXTURES, assert_close_to_recorded, require
from modelmorph.registry import Registry
from test_layer_classes import ScalePlugin

pytestmark = pytest.mark.interop


def _keras_prediction(keras3, path, x):
    import sys

    sys.path.insert(0, str(FIXTURES))
    import custom_layers  # noqa: F401  registers modelmorph_test>Scale with Keras

    return keras3.saving.load_model(path).predict(x, verbose=0)


def test_a_custom_layer_exports_through_its_plugins_converter(keras3, tmp_path):
    ort = require("onnxruntime")
    source, out = FIXTURES / "keras3" / "custom_layer.keras", tmp_path / "custom.onnx"
    with pytest.raises(modelmorph.WriteError, match="'scale' \\(Scale\\)"):
        modelmorph.convert(source, out)  # no plugin: refused in one line, nothing written
    assert not out.exists()
    modelmorph.convert(source, out, registry=Registry(extra_plugins=[ScalePlugin]))
    x = np.load(FIXTURES / "keras3" / "custom_layer.io.npz")["in_0"]
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})
    assert_close_to_recorded(got, [_keras_prediction(keras3, source, x)], rtol=1e-5)


def test_a_plugin_overrides_a_builtin_converter(tmp_path):
    calls = []

    def dense_as_zeros(call):  # an override whose use is easy to see
        calls.append(call.layer.name)
        b, kernel = call.b, call.weight("kernel")
        x = b.channels_last(call.x)
        zeros = b.weight(np.zeros(kernel.shape, np.float32), "zeros")
        return b.like(x, b.op1("MatMul", [x.name, zeros]), (*x.shape[:-1], kernel.shape[-1]))

    class Override:
        @modelmorph.hookimpl
        def modelmorph_layer_specs(self):
            return [modelmorph.LayerClass("Dense", converters={"onnx": dense_as_zeros})]

    modelmorph.convert(FIXTURES / "keras3" / "mlp_adam.keras", tmp_path / "m.onnx",
                       registry=Registry(extra_plugins=[Override()]))
    assert calls == ["dense", "dense_1"]
    modelmorph.convert(FIXTURES / "keras3" / "mlp_adam.keras", tmp_path / "plain.onnx")  # another registry
    assert calls == ["dense", "dense_1"]
