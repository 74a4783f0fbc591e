"""tf_keras models built here and saved as Keras 2 `.h5`, exported to ONNX and judged by onnxruntime
against tf_keras' own prediction in this process: the raw TF calls tf_keras records as
TFOpLambda/SlicingOpLambda layers (modelmorph reads them as ``keras.ops`` calls), and the layers
whose Keras 2 semantics differ from Keras 3's (``hard_sigmoid``, LeakyReLU ``alpha``, GRU
``reset_after``); at opsets 13, 17 and 21."""

from __future__ import annotations

import numpy as np
import pytest

import modelmorph
from helpers import assert_close_to_recorded, require

pytestmark = pytest.mark.interop

OPSETS = [13, 17, 21]


def _cases(K, tf):
    L = K.layers

    def tensor_ops():
        x, y = K.Input((4, 6), name="x"), K.Input((6, 5), name="y")
        h = L.Dense(6, name="h")(x)
        s = tf.expand_dims(h, axis=1)  # (B, 1, 4, 6)
        return K.Model([x, y], [
            tf.linalg.matmul(h, y),
            tf.stack([h, h * 2.0, x], axis=1),
            tf.stack([h, x], axis=-1),
            tf.expand_dims(h, axis=-1),
            tf.squeeze(s, axis=1),
            tf.squeeze(tf.expand_dims(s, axis=-1), axis=[1, 4]),
            tf.reshape(h, (-1, 3, 8)),
            tf.reshape(h, [-1, 24]),
            tf.transpose(h, perm=[0, 2, 1]),
            tf.transpose(s, perm=[0, 3, 1, 2]),
            tf.tile(h, [1, 2, 3]),
            tf.clip_by_value(h, -0.5, 0.25),
            tf.cast(h * 3.0, "int32"),
            tf.cast(tf.cast(h * 3.0, "int64"), "float32") + 0.5,
            tf.nn.softmax(h, axis=1),
            tf.nn.softmax(h),
            tf.math.rsqrt(tf.abs(h) + 1.0),
            tf.nn.relu6(h * 4.0),
            tf.nn.relu(h),
            tf.nn.sigmoid(h),
            tf.math.sigmoid(h),
            tf.math.square(h) - tf.math.sqrt(tf.abs(h)),
            tf.math.reduce_max(h, axis=1),
            tf.math.reduce_min(h, axis=[1, 2], keepdims=True),
            tf.concat([h, x], axis=1),
        ], name="tensor_ops")

    def slicing():
        x = K.Input((5, 6, 3), name="x")
        h = L.Dense(3, name="h")(x)
        return K.Model(x, [
            h[:, 1:3, ::2],
            h[:, 0],
            h[..., -1],
            h[:, ::-1, 1:-1:2, :],
            h[:, -2:, tf.newaxis, 0],
            h[:, 4:1:-2],
            h[:, 1, ..., 0:2],
            h[..., tf.newaxis],
        ], name="slicing")

    def cnn_with_tf_ops():
        """TF calls among channels-first work: the layouts must come back right."""
        x = K.Input((8, 8, 3), name="x")
        c = L.Conv2D(4, 3, padding="same", name="conv")(x)
        r = tf.nn.relu6(c)
        t = tf.transpose(r, perm=[0, 3, 1, 2])  # Keras' order, not the held one
        p = L.MaxPooling2D(name="pool")(c)
        q = tf.reshape(p, (-1, 16, 4))
        s = p[:, 1:, :2, 1:3]
        m = tf.math.reduce_mean(c, axis=[1, 2])
        return K.Model(x, [t, q, s, m, tf.concat([c, r], axis=-1)], name="cnn_with_tf_ops")

    def keras2_semantics():
        """Layers whose Keras 2 meaning differs from Keras 3's."""
        x, s = K.Input((7,), name="x"), K.Input((5, 3), name="s")
        h = L.Dense(6, activation="hard_sigmoid", name="hard")(x)
        h = L.Dense(6, name="pre")(h)
        h = L.LeakyReLU(alpha=0.1, name="leaky")(h)
        h2 = L.LeakyReLU(name="leaky_default")(L.Dense(4, name="pre2")(x))  # tf_keras' default alpha 0.3
        g1 = L.GRU(4, reset_after=False, name="gru_before")(s)
        g2 = L.GRU(4, reset_after=True, return_sequences=True, name="gru_after")(s)
        g3 = L.GRU(3, reset_after=False, recurrent_activation="hard_sigmoid", name="gru_hard")(s)
        lstm = L.LSTM(3, recurrent_activation="hard_sigmoid", name="lstm_hard")(s)
        a = L.Activation("hard_sigmoid", name="act_hard")(L.Dense(5, name="pre3")(x) * 4.0)
        return K.Model([x, s], [h, h2, g1, g2, g3, lstm, a], name="keras2_semantics")

    def keras2_layers():
        """This issue's layers as tf_keras writes them (Keras 2 names, weights and defaults)."""
        q, v, i = K.Input((4, 6), name="q"), K.Input((5, 6), name="v"), K.Input((8, 9, 3), name="i")
        flat = L.Flatten
        return K.Model([q, v, i], [
            flat()(L.Attention(use_scale=True, score_mode="concat")([q, v])),
            flat()(L.Attention()([q, v, L.Dense(6)(v)])),
            flat()(L.AdditiveAttention()([q, v])),
            flat()(L.TimeDistributed(L.Dense(3, activation="hard_sigmoid"))(q)),
            flat()(L.EinsumDense("abc,cd->abd", output_shape=(4, 5), bias_axes="d", activation="relu")(q)),
            flat()(L.UnitNormalization()(q)),
            flat()(L.GroupNormalization(3)(L.Dense(6)(q))),
            flat()(L.Resizing(5, 6)(i)),
            flat()(L.Resizing(11, 13, interpolation="nearest")(i)),
            flat()(L.CenterCrop(5, 4)(i)),
        ], name="keras2_layers")

    return {"tensor_ops": tensor_ops, "slicing": slicing, "cnn_with_tf_ops": cnn_with_tf_ops,
            "keras2_semantics": keras2_semantics, "keras2_layers": keras2_layers}


CASES = ["tensor_ops", "slicing", "cnn_with_tf_ops", "keras2_semantics", "keras2_layers"]


def _inputs(model, rng) -> dict:
    return {t.name.split(":")[0]: rng.standard_normal((3, *t.shape[1:])).astype(np.float32) for t in model.inputs}


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("case", CASES)
def test_tf_keras_models_export(case, opset, tf_keras, tmp_path):
    ort, onnx, tf = require("onnxruntime"), require("onnx"), require("tensorflow")
    tf_keras.utils.set_random_seed(7)
    model = _cases(tf_keras, tf)[case]()
    rng = np.random.default_rng(5)
    for variable in model.weights:  # biases, scales and offsets away from their 0/1 initial values
        if variable.name.split("/")[-1].split(":")[0] in ("bias", "gamma", "beta", "scale", "concat_score_weight"):
            variable.assign(rng.uniform(-1.5, 1.5, variable.shape).astype("float32"))
    source = tmp_path / f"{case}.h5"
    model.save(source)
    out = tmp_path / f"{case}.onnx"
    modelmorph.convert(source, out, options={"opset": opset})
    onnx.checker.check_model(str(out), full_check=True)
    inputs = _inputs(model, rng)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == list(inputs)
    got = session.run(None, inputs)
    want = model.predict(inputs if len(inputs) > 1 else next(iter(inputs.values())), verbose=0)
    want = want if isinstance(want, list) else [want]
    assert [g.dtype for g in got] == [np.asarray(w).dtype for w in want]
    assert_close_to_recorded(got, want, rtol=1e-4)


def test_the_leaky_relu_slope_survives_the_keras2_file(tf_keras, tmp_path):
    """tf_keras writes ``alpha``; whatever key the dialect translation leaves, the slope is 0.1."""
    onnx = require("onnx")
    x = tf_keras.Input((3,), name="x")
    model = tf_keras.Model(x, tf_keras.layers.LeakyReLU(alpha=0.1, name="leaky")(x))
    model.save(tmp_path / "l.h5")
    modelmorph.convert(tmp_path / "l.h5", tmp_path / "l.onnx")
    [node] = [n for n in onnx.load(str(tmp_path / "l.onnx")).graph.node if n.op_type == "LeakyRelu"]
    assert [round(a.f, 6) for a in node.attribute if a.name == "alpha"] == [0.1]


@pytest.mark.parametrize("library", ["tf_keras", "keras3"])
def test_unit_normalization_bounds_tiny_norms_as_each_keras_does(library, request, tmp_path):
    """Keras 3 divides by the norm down to 1e-12; tf_keras' l2_normalize bounds the squared norm
    by 1e-12 (the norm by 1e-6): on vectors that small the two differ by orders of magnitude."""
    ort = require("onnxruntime")
    K = request.getfixturevalue(library)
    x = K.Input((4,), name="x")
    model = K.Model(x, K.layers.UnitNormalization(name="unit")(x))
    source = tmp_path / ("u.h5" if library == "tf_keras" else "u.keras")
    model.save(source)
    modelmorph.convert(source, tmp_path / "u.onnx")
    tiny = np.random.default_rng(1).standard_normal((3, 4)).astype("float32") * np.float32(1e-8)
    tiny[2] = 0.0
    got = ort.InferenceSession(str(tmp_path / "u.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": tiny})
    want = model.predict(tiny, verbose=0)
    assert_close_to_recorded(got, [want], rtol=1e-4)
    assert np.max(np.abs(want)) > 0.4 if library == "keras3" else np.max(np.abs(want)) < 0.1
