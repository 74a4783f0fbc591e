"""ONNX import: `.onnx` → `.keras`, judged by onnxruntime on the original file against Keras 3
predicting from modelmorph's output, on the inputs recorded when the fixtures were generated
(PyTorch exports, tests/fixtures/generate_onnx.py), in this process; then the round trip
`.keras` → ONNX export → onnxruntime; and hostile files: one line, exit 4, nothing written."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import modelmorph
from helpers import FIXTURES, assert_close_to_recorded, require
from modelmorph.cli import main
from modelmorph.errors import EXIT_READ

RTOL = 1e-4  # relative to each output's largest magnitude
ONNX = FIXTURES / "onnx"
CASES = ["small_cnn", "mobile_block", "skip_net", "mlp", "up_reshape", "recurrent", "recurrent_stack", "encoder_block",
         "channel_shuffle", "resnet_block"]
OPSETS = [11, 17]
#: Imports the ONNX exporter cannot write back yet, and why (remove an entry when it can).
ROUND_TRIP_GAPS = {"recurrent": "keras.ops operation Take has no ONNX converter"}  # z[:, -1], h_n[-1]


def _ort_run(ort, path: Path, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})


@pytest.mark.interop
@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("case", CASES)
def test_pytorch_exports_import_as_keras(case, opset, keras3, tmp_path):
    ort = require("onnxruntime")
    source = ONNX / f"{case}_op{opset}.onnx"
    io = np.load(ONNX / f"{case}.io.npz")
    out = tmp_path / f"{case}.keras"
    modelmorph.convert(source, out)
    model = keras3.saving.load_model(out, safe_mode=True)
    # the ONNX graph's interface: same names, same (channels-first) shapes
    session = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    assert [t.name for t in model.inputs] == [i.name for i in session.get_inputs()]
    assert model.output_names == [o.name for o in session.get_outputs()]
    assert tuple(model.inputs[0].shape[1:]) == tuple(session.get_inputs()[0].shape[1:])
    got = np.asarray(model.predict(io["in_0"], verbose=0))
    want = _ort_run(ort, source, io["in_0"])
    assert_close_to_recorded([got], want, rtol=RTOL)
    assert_close_to_recorded([got], [io["out_0"]], rtol=RTOL)
    # the round trip: modelmorph's .keras exported to ONNX again runs as the original does
    back = tmp_path / f"{case}_back.onnx"
    if case in ROUND_TRIP_GAPS:  # a known gap of the exporter: it must still be this one
        with pytest.raises(modelmorph.WriteError, match=ROUND_TRIP_GAPS[case]):
            modelmorph.convert(out, back)
        return
    modelmorph.convert(out, back)
    assert_close_to_recorded(_ort_run(ort, back, io["in_0"]), want, rtol=RTOL)


@pytest.mark.interop
def test_flatten_after_convolutions_keeps_onnx_order(keras3, tmp_path):
    """The onnx2keras bug: x.view(N, -1) after NCHW convolutions must flatten channels first."""
    out = tmp_path / "cnn.keras"
    modelmorph.convert(ONNX / "small_cnn_op17.onnx", out)
    with modelmorph.read(out) as model:
        classes = [layer.class_name for layer in model.layers]
    # one Permute at the NCHW input; the Flatten reads channels-last and the Dense after it takes
    # its kernel rows in that order (the numbers: test_pytorch_exports_import_as_keras)
    assert classes.count("Permute") == 1 and classes.index("Permute") < classes.index("Conv2D"), classes


def test_layers_are_idiomatic_keras():
    with modelmorph.read(ONNX / "mobile_block_op11.onnx") as model:
        classes = {layer.name: layer.class_name for layer in model.layers}
        assert {"Conv2D", "DepthwiseConv2D", "BatchNormalization", "ZeroPadding2D", "Conv1D",
                "AveragePooling1D"} <= set(classes.values()), classes
        assert model.layer("stem_Conv").weight("kernel").shape == (3, 3, 3, 8)
        assert model.metadata["source_format"] == "onnx" and model.metadata["onnx_opset"] == 11
    with modelmorph.read(ONNX / "skip_net_op17.onnx") as model:
        assert model.layer("output").config["activation"] == "gelu"  # PyTorch's Erf form, recognised


@pytest.mark.parametrize("opset", OPSETS)
def test_sequence_models_are_idiomatic_keras(opset):
    """PyTorch's time-major plumbing around LSTM/GRU costs no layer; LayerNorm is one layer at any opset."""
    with modelmorph.read(ONNX / f"recurrent_op{opset}.onnx") as model:
        classes = [layer.class_name for layer in model.layers]
        assert classes[:3] == ["InputLayer", "LSTM", "Bidirectional"], classes
        assert not {"Transpose", "Permute", "Stack"} & set(classes), classes
        gru = model.layers[2]
        assert gru.config["merge_mode"] == "concat" and gru.config["layer"]["class_name"] == "GRU"
        assert gru.config["layer"]["config"]["reset_after"] is True  # PyTorch's linear_before_reset=1
    with modelmorph.read(ONNX / f"encoder_block_op{opset}.onnx") as model:
        classes = [layer.class_name for layer in model.layers]
        assert classes.count("LayerNormalization") == 2 and "Mean" not in classes, classes


#: The models tests/onnx/test_onnx_export.py exports (its KERAS3_CASES and TF_KERAS_CASES, and
#: the float16 one), and how their layers come back: {case: (lost classes, gained classes)}
#: beyond the equivalences _leaves applies. Everything else comes back class for class.
EXPORTED = [*[("keras3", c) for c in ("mlp_adam", "seq_cnn_bn", "multi_io_shared", "embed_lstm_bigru",
                                      "nested_seq", "mha_ln", "mobilenetv2")],
            *[("tf_keras", c) for c in ("mlp_adam", "seq_cnn_bn", "multi_io_shared", "embed_lstm_bigru",
                                        "nested_seq", "mha_ln", "mobilenetv2", "tfop_lambda", "mixed_precision")]]
COME_BACK_DIFFERENT: dict[str, tuple[dict, dict]] = {
    # none left: a shared Dense comes back one layer called twice, Bidirectional(merge_mode="concat")
    # one layer, MultiHeadAttention one layer from its MatMuls, the float16 Dense one Dense with
    # the mixed_float16 policy from its Cast roundings (reader/shared.py, ops/attention.py, ops/half.py)
}


def _leaves(path) -> "dict[str, int]":
    """Layer classes, nested models' layers included (the nesting is not kept in ONNX), with the
    equivalent spellings counted as one: ReLU without bounds and TFOpLambda relu are
    Activation('relu'); Dropout (nothing at inference) and InputLayers are left out."""
    from collections import Counter

    out: Counter[str] = Counter()
    with modelmorph.read(path) as model:
        for _, layer in model.iter_layers():
            name = layer.class_name
            if name in ("Sequential", "Functional", "InputLayer", "Dropout"):
                continue
            if name == "ReLU" and layer.config.get("max_value") is None and not layer.config.get("negative_slope") \
                    and not layer.config.get("threshold"):
                name = "Activation"
            if name in ("TFOpLambda", "Relu") and "relu" in str(layer.config.get("function", name)).lower():
                name = "Activation"
            out[name] += 1
    return out


@pytest.mark.interop
@pytest.mark.parametrize("family, case", EXPORTED)
def test_modelmorph_exports_come_back(family, case, keras3, tmp_path):
    """What the exporter writes (channels-last Keras interface) imports back to the same predictions
    and, for standard layers, the same layer classes (a folded BatchNormalization, an activation
    in a Dense or Conv, ReLU(6.0) come back as such)."""
    ort = require("onnxruntime")
    source = FIXTURES / family / f"{case}{'.keras' if family == 'keras3' else '.h5'}"
    exported = tmp_path / f"{case}.onnx"
    modelmorph.convert(source, exported)
    back = tmp_path / f"{case}.keras"
    modelmorph.convert(exported, back)
    io = np.load(FIXTURES / family / f"{case}.io.npz")
    feeds = [io[k] for k in sorted(io.files) if k.startswith("in_")]
    session = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    want = session.run(None, {i.name: x for i, x in zip(session.get_inputs(), feeds)})
    model = keras3.saving.load_model(back, safe_mode=True)
    got = model.predict(feeds if len(feeds) > 1 else feeds[0], verbose=0)
    got = [np.asarray(g) for g in (got if isinstance(got, (list, tuple)) else [got])]
    assert_close_to_recorded(got, want, rtol=RTOL)
    lost, gained = _leaves(source) - _leaves(back), _leaves(back) - _leaves(source)
    assert (dict(lost), dict(gained)) == COME_BACK_DIFFERENT.get(case, ({}, {}))


# -- sniffing ------------------------------------------------------------------------------------

def test_sniffed_by_content_and_name(tmp_path):
    registry = modelmorph.default_registry()
    assert registry.detect_source(ONNX / "mlp_op17.onnx").name == "onnx"
    other = tmp_path / "model.keras"
    other.write_bytes(b"\x08" + bytes(100))
    assert registry.source_candidates(other)[0].name != "onnx"


# -- hostile files -------------------------------------------------------------------------------

def _convert(capsys, src: Path, tmp_path: Path) -> tuple[int, str, Path]:
    out = tmp_path / "out.keras"
    code = main(["convert", str(src), str(out)])
    err = capsys.readouterr().err.strip()
    return code, err, out


def _assert_read_error(capsys, src: Path, tmp_path: Path, problem: str) -> None:
    code, err, out = _convert(capsys, src, tmp_path)
    assert code == EXIT_READ, err
    assert len(err.splitlines()) == 1 and str(src) in err and problem in err, err
    assert "Traceback" not in err and not out.exists()


def _model_with_initializer(tensor, node_op: str = "Add"):
    onnx = require("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    node = helper.make_node(node_op, ["x", tensor.name], ["y"], name="the_node")
    graph = helper.make_graph([node], "g", [x], [y], initializer=[tensor])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), onnx


@pytest.mark.parametrize("content, problem", [
    (b"\x08\x07\x12\xff\xff\xff\xff\x0f", "malformed protobuf"),
    (b"garbage that is no protobuf at all", "not an ONNX model"),
    (b"", "not an ONNX model"),
])
def test_malformed_files(tmp_path, capsys, content, problem):
    src = tmp_path / "bad.onnx"
    src.write_bytes(content)
    _assert_read_error(capsys, src, tmp_path, problem)


def _external_tensor(location: str, length: int = 16):
    from onnx import TensorProto

    t = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4], data_location=TensorProto.EXTERNAL)
    for key, value in (("location", location), ("offset", "0"), ("length", str(length))):
        entry = t.external_data.add()
        entry.key, entry.value = key, value
    return t


@pytest.mark.parametrize("location, problem", [
    ("../secret.bin", "not a plain relative path"),
    ("/etc/passwd", "not a plain relative path"),
    ("link.bin", "symbolic link"),
    ("missing.bin", "not a regular file"),
    ("short.bin", "does not hold"),
])
def test_external_data_stays_beside_the_model(tmp_path, capsys, location, problem):
    require("onnx")
    (tmp_path / "secret.bin").write_bytes(bytes(16))
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "short.bin").write_bytes(bytes(8))
    os.symlink(tmp_path / "secret.bin", folder / "link.bin")
    model, onnx = _model_with_initializer(_external_tensor(location))
    src = folder / "m.onnx"
    src.write_bytes(model.SerializeToString())
    _assert_read_error(capsys, src, folder, problem)


def test_external_data_beside_the_model_is_read(tmp_path):
    require("onnx")
    (tmp_path / "w.bin").write_bytes(np.arange(4, dtype="<f4").tobytes())
    model, onnx = _model_with_initializer(_external_tensor("w.bin"), "Add")
    src = tmp_path / "m.onnx"
    src.write_bytes(model.SerializeToString())
    with modelmorph.read(src) as read:
        assert [layer.class_name for layer in read.layers] == ["InputLayer", "Add"]


def test_declared_sizes_are_checked_before_allocation(tmp_path, capsys):
    require("onnx")
    from onnx import TensorProto

    huge = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1 << 30, 1 << 30], raw_data=b"\0" * 16)
    model, onnx = _model_with_initializer(huge)
    src = tmp_path / "huge.onnx"
    src.write_bytes(model.SerializeToString())
    _assert_read_error(capsys, src, tmp_path, "holds 16 bytes")


def test_giant_dimensions_are_refused(tmp_path, capsys):
    require("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1 << 40])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1 << 40])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    src = tmp_path / "giant.onnx"
    src.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    _assert_read_error(capsys, src, tmp_path, "dimension")


def test_unsupported_op_names_the_node(tmp_path, capsys):
    require("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    graph = helper.make_graph([helper.make_node("MeanVarianceNormalization", ["x"], ["y"], name="odd")], "g", [x], [y])
    src = tmp_path / "op.onnx"
    src.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    _assert_read_error(capsys, src, tmp_path, "node 'odd' (MeanVarianceNormalization)")


def test_cycles_are_refused(tmp_path, capsys):
    require("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    nodes = [helper.make_node("Add", ["x", "b"], ["a"]), helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("Relu", ["a"], ["y"])]
    src = tmp_path / "cycle.onnx"
    src.write_bytes(helper.make_model(helper.make_graph(nodes, "g", [x], [y]),
                                      opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    _assert_read_error(capsys, src, tmp_path, "cycle")
