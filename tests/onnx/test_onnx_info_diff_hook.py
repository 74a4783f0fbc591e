"""`modelmorph info` and `diff` on ONNX files, and the plugin hook for importing more ops: a
custom-domain op imported to a third party's Keras layer, judged by Keras 3."""

from __future__ import annotations

import json
import sys
from collections import Counter

import numpy as np
import pytest

import modelmorph
from helpers import FIXTURES, assert_close_to_recorded, require
from modelmorph.cli import main
from modelmorph.errors import EXIT_DIFFERENT, EXIT_READ
from modelmorph.registry import Registry

ONNX = FIXTURES / "onnx"


# -- info ------------------------------------------------------------------------------------------

def test_info_tells_the_onnx_graph(capsys):
    onnx = require("onnx")
    source = ONNX / "small_cnn_op17.onnx"
    proto = onnx.load(source)
    assert main(["info", str(source), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)["format_summary"]
    assert summary["ops"] == dict(Counter(n.op_type for n in proto.graph.node))
    assert summary["parameters"] == sum(int(np.prod(t.dims)) for t in proto.graph.initializer)
    assert summary["opsets"] == {"ai.onnx": 17} and summary["producer"].startswith("pytorch")
    assert summary["inputs"] == [{"name": "input", "shape": ["batch", 3, 14, 14], "dtype": "float32"}]
    assert summary["outputs"] == [{"name": "output", "shape": ["batch", 10], "dtype": "float32"}]
    assert main(["info", str(source), "--no-weights"]) == 0
    text = capsys.readouterr().out
    for line in ("opset ai.onnx 17, producer pytorch", "Inputs:  input float32[batch, 3, 14, 14]",
                 "Outputs: output float32[batch, 10]", "Conv 2", f"Parameters: {summary['parameters']:,}"):
        assert line in text, text
    # the Keras model it imports to has as many parameters as the graph's initializers hold
    assert f"Total params: {summary['parameters']:,}" in text


# -- diff ------------------------------------------------------------------------------------------

def test_diff_of_an_export_against_its_keras_model(tmp_path, capsys):
    """modelmorph's own exports come back with the Keras layer names, so diff pairs the weights."""
    require("onnx")
    source = FIXTURES / "keras3" / "mlp_adam.keras"
    exported = tmp_path / "mlp.onnx"
    modelmorph.convert(source, exported)
    assert main(["diff", str(exported), str(source), "--weights-only"]) == 0
    out = capsys.readouterr().out
    assert "equal: 4 weight(s) compared" in out, out
    # a BatchNormalization exported folded (one Mul, one Add) comes back as the same function with
    # other statistics: diff names exactly those weights
    source = FIXTURES / "keras3" / "seq_cnn_bn.keras"
    exported = tmp_path / "cnn.onnx"
    modelmorph.convert(source, exported)
    assert main(["diff", str(exported), str(source), "--weights-only"]) == EXIT_DIFFERENT
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("weight ")]
    assert {line.split(":")[0] for line in lines} == {f"weight batch_normalization/{v}" for v in
                                                      ("gamma", "beta", "moving_mean", "moving_variance")}


# -- the import hook -------------------------------------------------------------------------------

def _custom_domain_model(tmp_path):
    """Conv → com.example::Scale(x, scale) (x times a vector along the last axis) → output."""
    onnx = require("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(5)
    inits = [numpy_helper.from_array(rng.standard_normal((2, 3, 1, 1)).astype("float32"), "w"),
             numpy_helper.from_array(np.array([0.5, -2.0, 3.0, 1.5, 0.25], "float32"), "s")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("Scale", ["c", "s"], ["y"], name="scale", domain="com.example")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    path = tmp_path / "custom.onnx"
    onnx.save(model, path)
    return path, inits


def _scale_from_onnx(g, node, attributes):
    """com.example::Scale → the Scale layer of tests/fixtures/custom_layers.py (its last axis)."""
    scale = g.const(node.input[1])
    if scale is None:
        raise g.Unsupported("the scale is computed")
    x = g.to_onnx_order(g.tensor(node.input[0]), node)  # Scale runs along the ONNX value's last axis
    g.layer(node, "Scale", {"units": int(scale.size)}, [x], node.output[0], x.shape, weights=[scale],
            module="custom_layers", registered_name="modelmorph_test>Scale")


class ScaleImporter:
    @modelmorph.hookimpl
    def modelmorph_layer_specs(self):
        return [modelmorph.LayerClass(
            "Scale", variables=lambda config: [modelmorph.Var("scale")], output_shape=lambda config, shapes: shapes[0],
            converters={"onnx-import": {("com.example", "Scale"): _scale_from_onnx}})]


@pytest.mark.interop
def test_a_plugin_imports_a_custom_domain_op(keras3, tmp_path, capsys):
    source, inits = _custom_domain_model(tmp_path)
    out = tmp_path / "m.keras"
    code = main(["convert", str(source), str(out)])  # no plugin: one line naming node, op and domain
    err = capsys.readouterr().err.strip()
    assert code == EXIT_READ and len(err.splitlines()) == 1 and "'scale' (Scale)" in err and "com.example" in err
    assert not out.exists()
    modelmorph.convert(source, out, registry=Registry(extra_plugins=[ScaleImporter()]))
    sys.path.insert(0, str(FIXTURES))
    try:
        import custom_layers  # noqa: F401  registers modelmorph_test>Scale with Keras
    finally:
        sys.path.remove(str(FIXTURES))
    model = keras3.saving.load_model(out)
    assert [layer.__class__.__name__ for layer in model.layers][-1] == "Scale"
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 5)).astype("float32")
    w, s = (require("onnx").numpy_helper.to_array(t) for t in inits)
    want = np.einsum("nchw,oc->nohw", x, w[:, :, 0, 0]) * s  # the op's definition, in numpy
    assert_close_to_recorded([model.predict(x, verbose=0)], [want], rtol=1e-5)


def test_a_failing_importer_is_one_line(tmp_path):
    source, _ = _custom_domain_model(tmp_path)

    def broken(g, node, attributes):
        raise KeyError("units")

    class Broken:
        @modelmorph.hookimpl
        def modelmorph_layer_specs(self):
            return [modelmorph.LayerClass("Scale", variables=lambda config: [modelmorph.Var("scale")],
                                          converters={"onnx-import": {("com.example", "Scale"): broken}})]

    with pytest.raises(modelmorph.ReadError, match=r"'scale' \(Scale\): a plugin's importer failed: KeyError"):
        modelmorph.convert(source, tmp_path / "m.keras", registry=Registry(extra_plugins=[Broken()]))
    assert not (tmp_path / "m.keras").exists()
