"""ONNX import of the op families beyond the first slice, in small graphs built with onnx's helper:
the Keras layers they become (idiomatic where Keras has one) and Keras 3's predictions against
onnxruntime on the same file, in this process. The conformance test covers each op's forms; here
the ops follow convolutions, as in real models, so they meet channels-last tensors."""

from __future__ import annotations

import numpy as np
import pytest

import modelmorph
from helpers import assert_close_to_recorded, require

RTOL = 1e-4


def _save(tmp_path, nodes, inputs, outputs, initializers, opset=17):
    onnx = require("onnx")
    from onnx import helper

    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model, full_check=True)
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def _judge(keras3, tmp_path, path, feeds: dict) -> list[str]:
    """Keras 3 on modelmorph's .keras against onnxruntime on the file; the layer classes."""
    ort = require("onnxruntime")
    out = tmp_path / "m.keras"
    modelmorph.convert(path, out)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = session.run(None, feeds)
    model = keras3.saving.load_model(out, safe_mode=True)
    got = model([feeds[i.name] for i in session.get_inputs()] if len(feeds) > 1 else next(iter(feeds.values())))
    got = [np.asarray(g) for g in (got if isinstance(got, (list, tuple)) else [got])]
    assert_close_to_recorded(got, want, rtol=RTOL)
    with modelmorph.read(out) as read:
        return [layer.class_name for layer in read.layers]


def _t(name, dims, elem=1):
    from onnx import helper

    return helper.make_tensor_value_info(name, elem, dims)


def _init(name, value):
    from onnx import numpy_helper

    return numpy_helper.from_array(np.asarray(value), name)


@pytest.mark.interop
def test_decoder_block_layers(keras3, tmp_path):
    """ConvTranspose (pads, output_padding) → PRelu → InstanceNormalization → bilinear Resize → LRN."""
    from onnx import helper

    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("ConvTranspose", ["x", "w", "b"], ["up"], name="deconv", strides=[2, 2], pads=[1, 0, 1, 1],
                         output_padding=[1, 1]),
        helper.make_node("PRelu", ["up", "slope"], ["act"], name="prelu"),
        helper.make_node("InstanceNormalization", ["act", "scale", "shift"], ["norm"], name="inorm", epsilon=1e-3),
        helper.make_node("Resize", ["norm", "", "scales"], ["big"], name="resize", mode="linear"),
        helper.make_node("LRN", ["big"], ["y"], name="lrn", size=3, alpha=1e-3, beta=0.75, bias=2.0),
    ]
    inits = [_init("w", rng.standard_normal((3, 4, 3, 3), dtype=np.float32)),
             _init("b", rng.standard_normal(4, dtype=np.float32)),
             _init("slope", rng.uniform(0, 0.5, (4, 1, 1)).astype(np.float32)),
             _init("scale", rng.standard_normal(4, dtype=np.float32)),
             _init("shift", rng.standard_normal(4, dtype=np.float32)),
             _init("scales", np.array([1, 1, 2, 2], np.float32))]
    path = _save(tmp_path, nodes, [_t("x", ["N", 3, 5, 6])], [_t("y", ["N", 4, 20, 26])], inits)
    classes = _judge(keras3, tmp_path, path, {"x": rng.standard_normal((2, 3, 5, 6), dtype=np.float32)})
    assert {"Conv2DTranspose", "Cropping2D", "PReLU", "GroupNormalization", "UpSampling2D"} <= set(classes), classes
    assert classes.count("Permute") == 2, classes  # in and out: every op kept the channels-last layout


@pytest.mark.interop
def test_embedding_lookup_and_sequence_ops(keras3, tmp_path):
    """Gather(table, ids) → Embedding; batched MatMul by a constant; Slice with a step, Split,
    Where/Less, ReduceL2, ArgMax, Cast, Tile."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(1)
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["emb"], name="embed"),
        helper.make_node("MatMul", ["emb", "proj"], ["h"], name="proj"),
        helper.make_node("Slice", ["h", "starts", "ends", "axes", "steps"], ["every2"], name="slice"),
        helper.make_node("Split", ["every2", "parts"], ["a", "b"], name="split", axis=2),
        helper.make_node("Less", ["a", "zero"], ["neg"], name="less"),
        helper.make_node("Where", ["neg", "zero", "a"], ["relu"], name="where"),
        helper.make_node("ReduceL2", ["b"], ["norm"], name="l2", axes=[2], keepdims=1),
        helper.make_node("Mul", ["relu", "norm"], ["mixed"], name="mix"),
        helper.make_node("Tile", ["mixed", "reps"], ["y"], name="tile"),
        helper.make_node("ArgMax", ["h"], ["idx64"], name="argmax", axis=2, keepdims=0, select_last_index=1),
        helper.make_node("Cast", ["idx64"], ["idx"], name="cast", to=TensorProto.INT32),
    ]
    inits = [_init("table", rng.standard_normal((10, 4), dtype=np.float32)),
             _init("proj", rng.standard_normal((1, 4, 6), dtype=np.float32)),
             _init("starts", np.array([1], np.int64)), _init("ends", np.array([1 << 62], np.int64)),
             _init("axes", np.array([1], np.int64)), _init("steps", np.array([2], np.int64)),
             _init("parts", np.array([2, 4], np.int64)), _init("zero", np.array(0, np.float32)),
             _init("reps", np.array([1, 1, 3], np.int64))]
    path = _save(tmp_path, nodes, [_t("ids", ["N", 7], TensorProto.INT64)],
                 [_t("y", ["N", 3, 6]), _t("idx", ["N", 7], TensorProto.INT32)], inits)
    ids = rng.integers(0, 10, (2, 7)).astype(np.int64)
    classes = _judge(keras3, tmp_path, path, {"ids": ids})
    assert "Embedding" in classes and "Matmul" in classes, classes
