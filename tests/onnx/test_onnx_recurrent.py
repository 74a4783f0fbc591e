"""ONNX LSTM/GRU/RNN → Keras LSTM/GRU/SimpleRNN (Bidirectional), judged by onnxruntime on the same
graph in this process: every direction, both layouts, both GRU reset forms, initial states given
as graph inputs, the graph outputs Y/Y_h/Y_c as ONNX shapes them; and what Keras cannot express
is refused with one line naming the node."""

from __future__ import annotations

import numpy as np
import pytest

import modelmorph
from helpers import assert_close_to_recorded, require
from modelmorph.cli import main
from modelmorph.errors import EXIT_READ

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
SEQ, BATCH, FEATURES, HIDDEN = 5, 3, 4, 6


def _model(kind: str, *, direction="forward", layout=0, outputs=("Y", "Y_h", "Y_c"), states=False, seed=0,
           batch="N", opset=14, lens=False, **attrs):
    """One recurrent node; X (and the initial states) graph inputs, the chosen outputs graph outputs."""
    require("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    d = 2 if direction == "bidirectional" else 1
    g = GATES[kind]
    inits = [numpy_helper.from_array((rng.standard_normal(shape) * 0.5).astype(np.float32), name)
             for name, shape in (("W", (d, g * HIDDEN, FEATURES)), ("R", (d, g * HIDDEN, HIDDEN)),
                                 ("B", (d, 2 * g * HIDDEN)))]
    x_shape = [SEQ, batch, FEATURES] if layout == 0 else [batch, SEQ, FEATURES]
    state_shape = [d, batch, HIDDEN] if layout == 0 else [batch, d, HIDDEN]
    inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, x_shape)]
    node_inputs = ["X", "W", "R", "B", "", "", ""][: 7 if kind == "LSTM" else 6]
    if states:
        node_inputs[5] = "h0"
        inputs.append(helper.make_tensor_value_info("h0", TensorProto.FLOAT, state_shape))
        if kind == "LSTM":
            node_inputs[6] = "c0"
            inputs.append(helper.make_tensor_value_info("c0", TensorProto.FLOAT, state_shape))
    if lens:
        node_inputs[4] = "lens"
        inputs.append(helper.make_tensor_value_info("lens", TensorProto.INT32, [batch]))
    while node_inputs and not node_inputs[-1]:
        node_inputs.pop()
    names = ["Y", "Y_h", "Y_c"][: 3 if kind == "LSTM" else 2]
    node_outputs = [n if n in outputs else "" for n in names]
    while not node_outputs[-1]:
        node_outputs.pop()
    if layout:
        attrs["layout"] = 1
    node = helper.make_node(kind, node_inputs, node_outputs, name=f"the_{kind.lower()}", hidden_size=HIDDEN,
                            direction=direction, **attrs)
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in node_outputs if n]
    graph = helper.make_graph([node], "rnn", inputs, outs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    feed = {"X": rng.standard_normal([SEQ, BATCH, FEATURES] if layout == 0 else [BATCH, SEQ, FEATURES])
            .astype(np.float32)}
    for name in ("h0", "c0"):
        if name in node_inputs:
            shape = [d, BATCH, HIDDEN] if layout == 0 else [BATCH, d, HIDDEN]
            feed[name] = rng.standard_normal(shape).astype(np.float32)
    if lens:
        feed["lens"] = np.array([SEQ, 2, 1][:BATCH], np.int32)
    return model, feed


def _ort(model, feed, tmp_path) -> list[np.ndarray]:
    """onnxruntime's outputs. It runs only layout 0, so a layout-1 graph is judged by its layout-0
    twin on the transposed inputs, outputs transposed back (the spec defines layout 1 so)."""
    ort = require("onnxruntime")
    twin = type(model)()
    twin.CopyFrom(model)
    node = twin.graph.node[0]
    layout = next((a.i for a in node.attribute if a.name == "layout"), 0)
    if layout:
        keep = [a for a in node.attribute if a.name != "layout"]
        del node.attribute[:]
        node.attribute.extend(keep)
        for value in (*twin.graph.input, *twin.graph.output):
            value.type.tensor_type.ClearField("shape")
        feed = {k: v.transpose(1, 0, 2) for k, v in feed.items()}
    path = tmp_path / "twin.onnx"
    path.write_bytes(twin.SerializeToString())
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outs = session.run(None, feed)
    if not layout:
        return outs
    names = [o.name for o in session.get_outputs()]
    return [o.transpose(2, 0, 1, 3) if n == "Y" else o.transpose(1, 0, 2) for n, o in zip(names, outs)]


def _judge(model, feed, tmp_path, keras3):
    src = tmp_path / "rnn.onnx"
    src.write_bytes(model.SerializeToString())
    want = _ort(model, feed, tmp_path)
    out = tmp_path / "rnn.keras"
    modelmorph.convert(src, out)
    k = keras3.saving.load_model(out, safe_mode=True)
    got = k([feed[t.name] for t in k.inputs] if len(k.inputs) > 1 else feed[k.inputs[0].name])
    got = [np.asarray(g) for g in (got if isinstance(got, (list, tuple)) else [got])]
    assert [g.shape for g in got] == [w.shape for w in want]
    assert_close_to_recorded(got, want, rtol=1e-5)
    with modelmorph.read(out) as read:
        return [layer.class_name for layer in read.layers]


@pytest.mark.interop
@pytest.mark.parametrize("layout", [0, 1])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_every_direction_and_layout(kind, direction, layout, keras3, tmp_path):
    model, feed = _model(kind, direction=direction, layout=layout)
    classes = _judge(model, feed, tmp_path, keras3)
    keras_class = {"LSTM": "LSTM", "GRU": "GRU", "RNN": "SimpleRNN"}[kind]
    assert (keras_class if direction != "bidirectional" else "Bidirectional") in classes


@pytest.mark.interop
@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_initial_states_from_graph_inputs(kind, direction, keras3, tmp_path):
    model, feed = _model(kind, direction=direction, states=True, seed=1, layout=1 if kind == "GRU" else 0)
    _judge(model, feed, tmp_path, keras3)


@pytest.mark.interop
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_sequence_lengths_as_a_mask(kind, direction, keras3, tmp_path):
    """sequence_lens (a graph input) → Keras' mask: steps past a length leave the state alone, Y 0 there."""
    model, feed = _model(kind, direction=direction, lens=True, states=kind == "GRU", seed=5)
    _judge(model, feed, tmp_path, keras3)


@pytest.mark.interop
@pytest.mark.parametrize("lbr", [0, 1])
def test_gru_reset_forms(lbr, keras3, tmp_path):
    model, feed = _model("GRU", direction="bidirectional", linear_before_reset=lbr, seed=2)
    _judge(model, feed, tmp_path, keras3)
    with modelmorph.read(tmp_path / "rnn.keras") as read:
        inner = read.layer("the_gru").config["layer"]["config"]  # the node's name
        assert inner["reset_after"] is bool(lbr)


@pytest.mark.interop
@pytest.mark.parametrize("kind, activations", [("LSTM", ["Sigmoid", "Relu", "Relu"]), ("GRU", ["Sigmoid", "Softsign"]),
                                               ("RNN", ["Relu"])])
def test_other_activations(kind, activations, keras3, tmp_path):
    model, feed = _model(kind, activations=activations, outputs=("Y_h",), seed=3)
    _judge(model, feed, tmp_path, keras3)


@pytest.mark.interop
@pytest.mark.parametrize("outputs", [("Y",), ("Y_h",), ("Y_c",)])
def test_only_some_outputs(outputs, keras3, tmp_path):
    model, feed = _model("LSTM", direction="reverse", outputs=outputs, seed=4)
    _judge(model, feed, tmp_path, keras3)


@pytest.mark.parametrize("attrs, problem", [
    ({"clip": 3.0}, "clip"),
    ({"input_forget": 1}, "input_forget"),
    ({"activations": ["HardSigmoid", "Tanh", "Tanh"]}, "'HardSigmoid'"),
    ({"activations": ["Sigmoid", "Tanh", "Relu"]}, "uses one for both"),
    ({"activation_alpha": [0.5]}, "activation_alpha"),
])
def test_what_keras_cannot_express_is_refused(attrs, problem, tmp_path, capsys):
    model, _ = _model("LSTM", **attrs)
    src = tmp_path / "m.onnx"
    src.write_bytes(model.SerializeToString())
    out = tmp_path / "out.keras"
    code = main(["convert", str(src), str(out)])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_READ and len(err.splitlines()) == 1, err
    assert "node 'the_lstm' (LSTM)" in err and problem in err and not out.exists(), err
