"""The naming tables, judged layer class by layer class: one model holding most built-in
classes with variables, saved by tf_keras and by Keras 3, read back by modelmorph onto its
JSON architecture, written again under the same scheme, and restored by the library."""

from __future__ import annotations

import numpy as np
import pytest

import modelmorph
from ckptcases import checkpoint_tensors

pytestmark = pytest.mark.interop


def _build(K):
    L = K.layers
    seq = K.Input((8, 6), name="seq")
    tokens = K.Input((4,), dtype="int32", name="tokens")
    x = L.Conv1D(4, 3, padding="same")(seq)
    x = L.BatchNormalization()(x)
    x = L.LayerNormalization()(x)
    x = L.SimpleRNN(5, return_sequences=True)(x)
    x = L.GRU(5, return_sequences=True)(x)
    x = L.Bidirectional(L.LSTM(3, return_sequences=True))(x)
    x = L.TimeDistributed(L.Dense(4))(x)
    x = L.MultiHeadAttention(num_heads=2, key_dim=3)(x, x)
    x = L.EinsumDense("abc,cd->abd", output_shape=(8, 5), bias_axes="d")(x)
    x = L.PReLU()(x)
    x = L.Attention(use_scale=True)([x, x])
    x = L.AdditiveAttention()([x, x])
    grid = L.Reshape((8, 5, 1))(x)
    recurrent = L.Flatten()(L.ConvLSTM1D(2, 3, padding="same")(grid))
    img = L.Conv2D(2, 3, padding="same")(grid)
    img = L.DepthwiseConv2D(3, padding="same")(img)
    img = L.SeparableConv2D(2, 3, padding="same")(img)
    img = L.Conv2DTranspose(2, 3, padding="same")(img)
    img = L.GroupNormalization(groups=2)(img)
    embedded = L.Flatten()(L.Embedding(10, 3)(tokens))
    h = L.Concatenate()([L.GlobalAveragePooling2D()(img), recurrent, embedded])
    h = L.Normalization()(h)
    return K.Model([seq, tokens], L.Dense(3)(h), name="many_layers")


def _randomized(model):
    rng = np.random.default_rng(7)  # positive values keep variances and counts valid
    model.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(w.dtype) for w in model.get_weights()])
    return model


def _inputs():
    rng = np.random.default_rng(8)
    return [rng.standard_normal((2, 8, 6)).astype("float32"), rng.integers(0, 10, (2, 4)).astype("int32")]


def _judge(library_ckpt, json_text, tmp_path, naming, restore, predictions):
    (tmp_path / "arch.json").write_text(json_text)
    diags = modelmorph.Diagnostics()
    with modelmorph.read(library_ckpt, arch=tmp_path / "arch.json", diagnostics=diags) as joined:
        assert joined.metadata["checkpoint_naming"] == naming
        assert sum(1 for _ in joined.iter_weights()) > 40
        (tmp_path / "ours").mkdir()
        modelmorph.write(joined, tmp_path / "ours" / "ckpt", "tf-checkpoint", options={"naming": naming})
    assert not [d for d in diags if d.kind == "unsupported"], [str(d) for d in diags]
    assert checkpoint_tensors(tmp_path / "ours" / "ckpt") == checkpoint_tensors(library_ckpt)
    np.testing.assert_allclose(restore(tmp_path / "ours" / "ckpt"), predictions, rtol=1e-5, atol=1e-6)


def test_tf_keras_layer_classes(tmp_path, tf_keras):
    model = _randomized(_build(tf_keras))
    model.save_weights(str(tmp_path / "lib" / "ckpt"))

    def restore(prefix):
        fresh = tf_keras.models.model_from_json(model.to_json())
        fresh.load_weights(str(prefix)).assert_existing_objects_matched()
        return fresh.predict(_inputs(), verbose=0)

    _judge(tmp_path / "lib" / "ckpt", model.to_json(), tmp_path, "keras2", restore, model.predict(_inputs(), verbose=0))


def test_keras3_layer_classes(tmp_path, keras3, tf):
    model = _randomized(_build(keras3))
    tf.train.Checkpoint(model=model).write(str(tmp_path / "lib" / "ckpt"))

    def restore(prefix):
        fresh = keras3.models.model_from_json(model.to_json())
        tf.train.Checkpoint(model=fresh).read(str(prefix)).assert_existing_objects_matched()
        return fresh.predict(_inputs(), verbose=0)

    _judge(tmp_path / "lib" / "ckpt", model.to_json(), tmp_path, "keras3", restore, model.predict(_inputs(), verbose=0))
