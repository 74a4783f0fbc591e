"""ONNX import gives back the Keras layers a graph spells out in ops: a layer called twice, a
Bidirectional's concatenation, MultiHeadAttention. Keras 3 models built here (random weights)
are exported by modelmorph, imported again, and judged by onnxruntime on the exported file
against Keras 3 predicting from the imported `.keras`, in this process; the layer classes are
asserted. Near misses (a masked attention, equal weights that are not one layer) stay pieces."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import modelmorph
from helpers import assert_close_to_recorded, require

pytestmark = pytest.mark.interop
RTOL = 1e-4


def _models(keras):
    L = keras.layers

    def shared_twice():  # one Dense on two inputs and one Dense on its own output
        a, b = keras.Input((6,), name="a"), keras.Input((6,), name="b")
        shared, again = L.Dense(6, activation="tanh", name="shared"), L.Dense(6, name="again")
        return keras.Model([a, b], L.Add()([again(again(shared(a))), shared(b)]))

    def shared_outputs():  # both calls are model outputs
        a, b = keras.Input((5,), name="a"), keras.Input((5,), name="b")
        shared = L.Dense(3, name="shared")
        return keras.Model([a, b], [shared(a), shared(b)])

    def shared_conv():
        a, b = keras.Input((8, 8, 3), name="a"), keras.Input((8, 8, 3), name="b")
        conv = L.Conv2D(4, 3, padding="same", name="conv")
        return keras.Model([a, b], L.Concatenate()([conv(a), conv(b)]))

    def bidirectional():
        x = keras.Input((5, 4), name="x")
        y = L.Bidirectional(L.LSTM(3, return_sequences=True))(x)
        return keras.Model(x, L.Bidirectional(L.GRU(2))(y))

    def mha_cross():
        q, v = keras.Input((4, 6), name="q"), keras.Input((5, 7), name="v")
        return keras.Model([q, v], L.MultiHeadAttention(num_heads=3, key_dim=4, value_dim=5, output_shape=2)(q, v))

    def mha_key_no_bias():
        q, v, k = keras.Input((3, 6), name="q"), keras.Input((5, 4), name="v"), keras.Input((5, 2), name="k")
        mha = L.MultiHeadAttention(num_heads=2, key_dim=3, use_bias=False)
        return keras.Model([q, v, k], mha(q, v, k))  # key positional: modelmorph's weight check reads no key=k yet

    def mha_causal():  # the mask makes a Where the pattern does not take: pieces, the right numbers
        x = keras.Input((4, 6), name="x")
        return keras.Model(x, L.MultiHeadAttention(num_heads=2, key_dim=3)(x, x, use_causal_mask=True))

    def mixed(activation):  # float16 Dense layers (with and without bias) before a float32 one
        x = keras.Input((6,), name="x")
        y = L.Dense(5, activation=activation, dtype="mixed_float16")(x)
        y = L.Dense(4, use_bias=False, dtype="mixed_float16")(y)
        return keras.Model(x, L.Dense(3)(y))

    def mixed_last():  # a float16 layer's result as the model's output: float32 in the graph, pieces here
        x = keras.Input((6,), name="x")
        return keras.Model(x, L.Dense(4, activation="relu", dtype="mixed_float16")(x))

    return {"mixed_relu": lambda: mixed("relu"), "mixed_sigmoid": lambda: mixed("sigmoid"), "mixed_last": mixed_last,
            "shared_twice": shared_twice, "shared_outputs": shared_outputs, "shared_conv": shared_conv,
            "bidirectional": bidirectional, "mha_cross": mha_cross, "mha_key_no_bias": mha_key_no_bias,
            "mha_causal": mha_causal}


#: Layer classes of the imported model (InputLayers left out), in Keras' order.
CLASSES = {
    "shared_twice": ["Dense", "Dense", "Add"],
    "shared_conv": ["Conv2D", "Concatenate"],
    "shared_outputs": ["Dense", "Identity", "Identity"],
    "bidirectional": ["Bidirectional", "Bidirectional"],
    "mha_cross": ["MultiHeadAttention"],
    "mha_key_no_bias": ["MultiHeadAttention"],
    "mixed_relu": ["Dense", "Dense", "Dense"],
    # TensorFlow's float16 sigmoid is not float32's rounded: the export's Sigmoid and its rounding stay ops
    "mixed_sigmoid": ["Dense", "Activation", "Cast", "Cast", "Dense", "Dense"],
}


def _classes(path) -> list[str]:
    with modelmorph.read(path) as model:
        return [layer.class_name for layer in model.layers if layer.class_name != "InputLayer"]


@pytest.mark.parametrize("case", ["mixed_relu", "mixed_sigmoid", "mixed_last", "shared_twice", "shared_outputs",
                                  "shared_conv", "bidirectional", "mha_cross", "mha_key_no_bias", "mha_causal"])
def test_exported_layers_come_back_whole(case, keras3, tmp_path):
    ort = require("onnxruntime")
    keras3.utils.set_random_seed(zlib.crc32(case.encode()))
    model = _models(keras3)[case]()
    for layer in model.layers:  # biases away from 0
        layer.set_weights([w + np.random.default_rng(1).normal(0, 0.3, w.shape).astype(w.dtype)
                           for w in layer.get_weights()])
    source, exported, back = tmp_path / "m.keras", tmp_path / "m.onnx", tmp_path / "back.keras"
    model.save(source)
    modelmorph.convert(source, exported)
    modelmorph.convert(exported, back)
    rng = np.random.default_rng(0)
    feeds = [rng.normal(size=(2, *t.shape[1:])).astype("float32") for t in model.inputs]
    session = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    want = session.run(None, {i.name: x for i, x in zip(session.get_inputs(), feeds)})
    loaded = keras3.saving.load_model(back, safe_mode=True)
    got = loaded.predict(feeds if len(feeds) > 1 else feeds[0], verbose=0)
    got = [np.asarray(g) for g in (got if isinstance(got, list) else [got])]
    assert_close_to_recorded(got, want, rtol=RTOL)
    assert [g.dtype for g in got] == [w.dtype for w in want]
    original = model.predict(feeds if len(feeds) > 1 else feeds[0], verbose=0)
    if case != "mixed_sigmoid":  # (the export's float32-rounded sigmoid is not Keras' float16 one)
        assert_close_to_recorded(got, [np.asarray(o) for o in (original if isinstance(original, list) else
                                                                [original])], rtol=RTOL)
    classes = _classes(back)
    if case == "mha_causal":
        assert "MultiHeadAttention" not in classes and "Softmax" in classes, classes
        return
    if case == "mixed_last":
        assert "Cast" in classes and {layer.dtype_policy.name for layer in loaded.layers} == {"float32"}, classes
        return
    assert classes == CLASSES[case], classes
    if case.startswith("shared"):  # the original's calls, as inbound nodes
        def calls(m):  # (names may differ: the graph outputs take the original's layer names)
            return sorted(len(layer._inbound_nodes) for layer in m.layers if len(layer._inbound_nodes) > 1)
        assert calls(loaded) == calls(model) != [], calls(loaded)
    if case.startswith("mha"):
        mine, theirs = loaded.layers[-1], model.layers[-1]
        assert [w.shape for w in mine.weights] == [w.shape for w in theirs.weights]
        for a, b in zip(mine.get_weights(), theirs.get_weights()):
            np.testing.assert_array_equal(a, b)  # bit for bit
    if case.startswith("mixed"):
        policies = [layer.dtype_policy.name for layer in loaded.layers if layer.__class__.__name__ == "Dense"]
        assert policies == ["mixed_float16", "mixed_float16", "float32"], policies
    if case == "bidirectional":
        assert [layer.get_config()["merge_mode"] for layer in loaded.layers[1:]] == ["concat", "concat"]


def _onnx_two_matmuls(tmp_path, same_initializer: bool):
    """x → MatMul(W) → Abs → MatMul(W or an equal copy) → y, by a producer other than modelmorph."""
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(3).normal(size=(4, 4)).astype("float32")
    inits = [numpy_helper.from_array(w, "w")] + ([] if same_initializer else [numpy_helper.from_array(w, "w2")])
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="first"), helper.make_node("Abs", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "w" if same_initializer else "w2"], ["y"], name="second")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], initializer=inits)
    path = tmp_path / f"two_{same_initializer}.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    return path


@pytest.mark.parametrize("same_initializer", [True, False])
def test_one_initializer_read_twice_is_one_layer(same_initializer, keras3, tmp_path):
    ort = require("onnxruntime")
    require("onnx")
    source = _onnx_two_matmuls(tmp_path, same_initializer)
    back = tmp_path / "back.keras"
    modelmorph.convert(source, back)
    classes = _classes(back)
    # one initializer: a Dense called twice; two equal ones: two layers (the file does not say they are one)
    assert classes.count("Dense") == (1 if same_initializer else 2), classes
    x = np.random.default_rng(0).normal(size=(3, 4)).astype("float32")
    want = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    got = keras3.saving.load_model(back, safe_mode=True).predict(x, verbose=0)
    assert_close_to_recorded([np.asarray(got)], want, rtol=RTOL)
