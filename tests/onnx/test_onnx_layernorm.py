"""ONNX LayerNormalization (opset 17) and the decomposed form older exporters write
(ReduceMean → Sub → Pow → ReduceMean → Add ε → Sqrt → Div → Mul γ → Add β) → one Keras
LayerNormalization, judged by onnxruntime on the same graph in this process; a near miss of the
pattern stays the ops it is, with the same numbers."""

from __future__ import annotations

import numpy as np
import pytest

import modelmorph
from helpers import assert_close_to_recorded, require
from modelmorph.cli import main
from modelmorph.errors import EXIT_READ


def _graph(nodes, x_shape, inits, opset, outputs=("y",)):
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)
    outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs]
    initializers = [numpy_helper.from_array(v, k) for k, v in inits.items()]
    graph = helper.make_graph(nodes, "ln", [x], outs, initializer=initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _layer_norm_op(shape, axis, bias=True, conv=False, outputs=("y",)):
    """LayerNormalization over the axes from `axis` on (after a Conv when `conv`: a channels-last tensor)."""
    from onnx import helper

    rng = np.random.default_rng(5)
    norm = tuple(shape[axis:])
    inits = {"g": rng.uniform(0.5, 1.5, norm).astype(np.float32)}
    if bias:
        inits["b"] = rng.uniform(-0.5, 0.5, norm).astype(np.float32)
    nodes = []
    src = "x"
    if conv:
        inits["w"] = rng.standard_normal((shape[1], shape[1], 1, 1)).astype(np.float32)
        nodes.append(helper.make_node("Conv", ["x", "w"], ["c"], name="conv"))
        src = "c"
    nodes.append(helper.make_node("LayerNormalization", [src, "g", "b"] if bias else [src, "g"],
                                  list(outputs), name="ln", axis=axis, epsilon=1e-3))
    return _graph(nodes, ["N", *shape[1:]], inits, 17, outputs)


def _decomposed(shape, axes, *, power=2.0, eps=1e-5, affine=True, opset=13, lead=0):
    """PyTorch's opset < 17 LayerNorm, node for node (axes as ReduceMean attributes before opset 18)."""
    from onnx import helper

    rng = np.random.default_rng(6)
    norm = tuple(shape[axes[0]:])
    inits = {"two": np.array(power, np.float32), "eps": np.array(eps, np.float32),
             "g": rng.uniform(0.5, 1.5, (1,) * lead + norm).astype(np.float32),
             "b": rng.uniform(-0.5, 0.5, (1,) * lead + norm).astype(np.float32)}
    nodes = [helper.make_node("ReduceMean", ["x"], ["m"], name="mean", axes=axes),
             helper.make_node("Sub", ["x", "m"], ["d"]), helper.make_node("Pow", ["d", "two"], ["p"]),
             helper.make_node("ReduceMean", ["p"], ["v"], axes=axes), helper.make_node("Add", ["v", "eps"], ["ve"]),
             helper.make_node("Sqrt", ["ve"], ["s"]),
             helper.make_node("Div", ["d", "s"], ["n" if affine else "y"])]
    if affine:
        nodes += [helper.make_node("Mul", ["n", "g"], ["ng"]), helper.make_node("Add", ["ng", "b"], ["y"])]
    return _graph(nodes, ["N", *shape[1:]], inits, opset)


def _judge(model, shape, tmp_path, keras3, optimize=True) -> list[str]:
    ort = require("onnxruntime")
    src = tmp_path / "ln.onnx"
    src.write_bytes(model.SerializeToString())
    x = np.random.default_rng(7).standard_normal(shape).astype(np.float32) * 3 + 1
    options = ort.SessionOptions()
    if not optimize:  # onnxruntime's own LayerNorm fusion takes Pow 3 for Pow 2 (1.32): judge op by op
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    want = ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    out = tmp_path / "ln.keras"
    modelmorph.convert(src, out)
    got = np.asarray(keras3.saving.load_model(out, safe_mode=True).predict(x, verbose=0))
    assert got.shape == want[0].shape
    assert np.array_equal(np.isnan(got), np.isnan(want[0]))  # √ of a negative "variance" (Pow 3)
    assert_close_to_recorded([np.nan_to_num(got)], [np.nan_to_num(want[0])], rtol=1e-5)
    with modelmorph.read(out) as read:
        return [layer.class_name for layer in read.layers]


@pytest.mark.interop
@pytest.mark.parametrize("shape, axis, bias, conv", [
    ((2, 5, 8), -1, True, False), ((2, 5, 8), 1, True, False), ((2, 5, 8), -1, False, False),
    ((2, 4, 3, 3), 1, True, True), ((2, 4, 3, 3), -1, True, True),
])
def test_layer_normalization(shape, axis, bias, conv, keras3, tmp_path):
    require("onnx")
    classes = _judge(_layer_norm_op(shape, axis, bias, conv), shape, tmp_path, keras3)
    assert classes.count("LayerNormalization") == 1, classes
    with modelmorph.read(tmp_path / "ln.keras") as read:
        layer = next(layer for layer in read.layers if layer.class_name == "LayerNormalization")
        assert layer.config["epsilon"] == pytest.approx(1e-3) and layer.config["center"] is bias


@pytest.mark.interop
@pytest.mark.parametrize("shape, axes, affine, opset, lead", [
    ((2, 5, 8), [-1], True, 13, 0), ((2, 5, 8), [-1], False, 11, 0), ((2, 3, 4, 5), [2, 3], True, 13, 0),
    ((2, 5, 8), [-1], True, 13, 2),  # γ, β shaped (1, 1, 8)
])
def test_decomposed_form_becomes_one_layer(shape, axes, affine, opset, lead, keras3, tmp_path):
    require("onnx")
    classes = _judge(_decomposed(shape, axes, affine=affine, opset=opset, lead=lead), shape, tmp_path, keras3)
    assert classes == ["InputLayer", "LayerNormalization"], classes


@pytest.mark.interop
@pytest.mark.parametrize("variation", ["power 3", "axis 1", "mean minus x"])
def test_near_misses_stay_ops_with_the_same_numbers(variation, keras3, tmp_path):
    require("onnx")
    shape = (2, 5, 8)
    model = _decomposed(shape, [1] if variation == "axis 1" else [-1], power=3.0 if variation == "power 3" else 2.0)
    if variation == "mean minus x":
        sub = model.graph.node[1]
        sub.input[0], sub.input[1] = sub.input[1], sub.input[0]
    classes = _judge(model, shape, tmp_path, keras3, optimize=False)
    assert "LayerNormalization" not in classes, classes


@pytest.mark.interop
def test_statistics_outputs(keras3, tmp_path):
    """Mean and InvStdDev read too: computed beside the layer with keras.ops, as ONNX defines them."""
    require("onnx")
    ort = require("onnxruntime")
    model = _layer_norm_op((2, 5, 8), 1, outputs=("y", "mean", "inv"))
    src = tmp_path / "ln.onnx"
    src.write_bytes(model.SerializeToString())
    x = np.random.default_rng(8).standard_normal((2, 5, 8)).astype(np.float32) * 2 + 1
    want = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    modelmorph.convert(src, tmp_path / "ln.keras")
    got = keras3.saving.load_model(tmp_path / "ln.keras", safe_mode=True).predict(x, verbose=0)
    assert [g.shape for g in got] == [w.shape for w in want] == [(2, 5, 8), (2, 1, 1), (2, 1, 1)]
    assert_close_to_recorded([np.asarray(g) for g in got], want, rtol=1e-5)


def test_batch_axis_is_refused(tmp_path, capsys):
    require("onnx")
    model = _layer_norm_op((2, 5, 8), 0)
    src = tmp_path / "ln.onnx"
    src.write_bytes(model.SerializeToString())
    code = main(["convert", str(src), str(tmp_path / "out.keras")])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_READ and "node 'ln' (LayerNormalization)" in err and "batch axis" in err, err
