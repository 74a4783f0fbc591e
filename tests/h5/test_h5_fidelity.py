"""Keras 2 ↔ Keras 3 cases users hit (issue 15): each model is built here with the real library,
converted, and judged by the other library: predictions against the original's in this run,
or the diagnostic that names what the target cannot hold."""

from __future__ import annotations

import numpy as np
import pytest

import modelmorph
from helpers import assert_close_to_recorded, require_format

pytestmark = pytest.mark.interop

RNG = np.random.RandomState(7)


def _x(*shape):
    return RNG.randn(*shape).astype("float32")


def _to_keras3(tmp_path, tf_keras_model, inputs, keras3, *, weights_only=False):
    """tf_keras model → .h5 → modelmorph → .keras; Keras 3 predicts. Returns (prediction, expected, diagnostics)."""
    require_format("keras")
    source, out = tmp_path / "k2.h5", tmp_path / "k3.keras"
    tf_keras_model.save(source)
    expected = tf_keras_model.predict(inputs, verbose=0)
    diags = modelmorph.convert(source, out, force=True)
    return keras3.saving.load_model(out).predict(inputs, verbose=0), expected, diags


def _to_keras2(tmp_path, keras3_model, inputs, tf_keras):
    """Keras 3 model → .keras → modelmorph → .h5; tf_keras predicts."""
    source, out = tmp_path / "k3.keras", tmp_path / "k2.h5"
    keras3_model.save(source)
    expected = keras3_model.predict(inputs, verbose=0)
    diags = modelmorph.convert(source, out, force=True)
    return tf_keras.models.load_model(out, compile=False).predict(inputs, verbose=0), expected, diags


def _outputs(value):
    return value if isinstance(value, list) else [value]


def _quiet(diags):
    return [d for d in diags if d.kind in ("lossy", "unsupported")]


# -- 3. LeakyReLU: tf_keras `alpha` is Keras 3 `negative_slope` ----------------------------------
def test_leaky_relu_slope_survives_both_ways(tmp_path, tf_keras, keras3):
    inp = tf_keras.Input((6,))
    model = tf_keras.Model(inp, tf_keras.layers.LeakyReLU(alpha=0.05)(tf_keras.layers.Dense(4)(inp)))
    got, expected, diags = _to_keras3(tmp_path, model, _x(16, 6), keras3)
    assert not _quiet(diags), diags.items
    assert_close_to_recorded([got], [expected])

    inp = keras3.Input((6,))
    model = keras3.Model(inp, keras3.layers.LeakyReLU(negative_slope=0.05)(keras3.layers.Dense(4)(inp)))
    got, expected, diags = _to_keras2(tmp_path, model, _x(16, 6), tf_keras)
    assert not _quiet(diags), diags.items
    assert_close_to_recorded([got], [expected])


# -- 13. functions whose names mean different things on each side ---------------------------------
def test_hard_sigmoid_and_thresholded_relu_layers_become_exact_keras3_calls(tmp_path, tf_keras, keras3):
    inp = tf_keras.Input((6,))
    x = tf_keras.layers.Dense(5)(inp)
    shared = tf_keras.layers.Activation("hard_sigmoid", name="hs")
    out = tf_keras.layers.Concatenate()([shared(x), shared(tf_keras.layers.Dense(5)(inp)),
                                         tf_keras.layers.ThresholdedReLU(theta=0.3)(x)])
    inputs = _x(32, 6) * 4  # well past the clipping points
    got, expected, diags = _to_keras3(tmp_path, tf_keras.Model(inp, out), inputs, keras3)
    assert not _quiet(diags), diags.items
    assert_close_to_recorded([got], [expected])


def test_keras3_hard_sigmoid_and_hard_silu_layers_become_exact_tf_calls(tmp_path, tf_keras, keras3):
    inp = keras3.Input((6,))
    x = keras3.layers.Dense(5)(inp)
    out = keras3.layers.Concatenate()([keras3.layers.Activation("hard_sigmoid")(x),
                                       keras3.layers.Activation("hard_silu")(x)])
    got, expected, diags = _to_keras2(tmp_path, keras3.Model(inp, out), _x(32, 6) * 4, tf_keras)
    assert not _quiet(diags), diags.items
    assert_close_to_recorded([got], [expected])


def test_gelu_is_the_exact_form_on_both_sides(tmp_path, tf_keras, keras3):
    """Both libraries' gelu defaults to approximate=False: no diagnostic, the same numbers."""
    model = tf_keras.Sequential([tf_keras.Input((6,)), tf_keras.layers.Dense(5, activation="gelu"),
                                 tf_keras.layers.Activation("gelu")])
    got, expected, diags = _to_keras3(tmp_path, model, _x(32, 6) * 3, keras3)
    assert not _quiet(diags), diags.items
    assert_close_to_recorded([got], [expected])

    model = keras3.Sequential([keras3.Input((6,)), keras3.layers.Dense(5, activation="gelu"),
                               keras3.layers.Activation("gelu")])
    got, expected, diags = _to_keras2(tmp_path, model, _x(32, 6) * 3, tf_keras)
    assert not _quiet(diags), diags.items
    assert_close_to_recorded([got], [expected])


def test_hard_sigmoid_the_target_cannot_express_is_diagnosed(tmp_path, tf_keras, keras3):
    model = tf_keras.Sequential([tf_keras.Input((3, 4)), tf_keras.layers.Dense(4, activation="hard_sigmoid", name="d"),
                                 tf_keras.layers.LSTM(2, recurrent_activation="hard_sigmoid", name="l")])
    _, _, diags = _to_keras3(tmp_path, model, _x(2, 3, 4), keras3)
    named = {(d.where, d.message.split()[0]) for d in diags if d.kind == "lossy" and "numbers will change" in d.message}
    assert named == {("d", "activation"), ("l", "recurrent_activation")}, diags.items

    model = keras3.Sequential([keras3.Input((4,)), keras3.layers.Dense(4, activation="hard_sigmoid", name="d"),
                               keras3.layers.Dense(4, activation="hard_silu", name="e")])
    model.save(tmp_path / "k3.keras")
    diags = modelmorph.convert(tmp_path / "k3.keras", tmp_path / "k2b.h5")
    assert any(d.kind == "lossy" and d.where == "d" and "hard_sigmoid" in d.message for d in diags), diags.items
    assert any(d.kind == "unsupported" and d.where == "e" and "hard_silu" in d.message for d in diags), diags.items


# -- 4 and 5. names with `/` (name scopes) and the .h5 group order -------------------------------
def test_stock_mobilenetv3_converts_both_ways(tmp_path, tf_keras, keras3):
    model = tf_keras.applications.MobileNetV3Small(input_shape=(32, 32, 3), weights=None, classes=5)
    inputs = RNG.rand(2, 32, 32, 3).astype("float32") * 255
    got, expected, diags = _to_keras3(tmp_path, model, inputs, keras3)
    assert_close_to_recorded([got], [expected])
    renames = [d for d in diags if "'/' in layer names" in d.message]
    assert len(renames) == 1 and "'Conv/BatchNorm' → 'Conv_BatchNorm'" in renames[0].message, diags.items
    modelmorph.convert(tmp_path / "k2.h5", tmp_path / "again.h5", force=True)  # .h5 → .h5 too
    again = tf_keras.models.load_model(tmp_path / "again.h5", compile=False)
    assert_close_to_recorded([again.predict(inputs, verbose=0)], [expected])


def test_weights_file_with_a_group_inside_another_layers_group(tmp_path, tf_keras):
    # `blk/d` sorts after `blk` but comes first in the model: its group must not be created first.
    inp = tf_keras.Input((3,))
    model = tf_keras.Model(inp, tf_keras.layers.Dense(2, name="blk")(tf_keras.layers.Dense(4, name="blk/d")(inp)))
    model.save_weights(tmp_path / "w.h5")
    modelmorph.convert(tmp_path / "w.h5", tmp_path / "out.h5")
    expected = model.predict(_x(5, 3) * 0 + 1, verbose=0)
    for layer in model.layers[1:]:
        layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
    model.load_weights(tmp_path / "out.h5")
    assert_close_to_recorded([model.predict(_x(5, 3) * 0 + 1, verbose=0)], [expected])


# -- 1. nested Functional models called in another model ------------------------------------------
def test_shared_nested_functional_model_both_ways(tmp_path, tf_keras, keras3):
    for lib, convert in ((tf_keras, lambda m, x: _to_keras3(tmp_path, m, x, keras3)),
                         (keras3, lambda m, x: _to_keras2(tmp_path, m, x, tf_keras))):
        inner_in = lib.Input((4,))
        encoder = lib.Model(inner_in, lib.layers.Dense(3, name="enc_dense")(inner_in), name="encoder")
        a, b = lib.Input((4,), name="a"), lib.Input((4,), name="b")
        ea, eb = encoder(a), encoder(b)  # siamese: one sub-model, two calls
        model = lib.Model([a, b], [lib.layers.Subtract()([ea, eb]), eb])
        got, expected, diags = convert(model, [_x(8, 4), _x(8, 4)])
        assert not _quiet(diags), diags.items
        assert_close_to_recorded(_outputs(got), _outputs(expected))


# -- 2. RNN initial_state ------------------------------------------------------------------------
def test_rnn_initial_state_both_ways(tmp_path, tf_keras, keras3):
    for lib, convert in ((tf_keras, lambda m, x: _to_keras3(tmp_path, m, x, keras3)),
                         (keras3, lambda m, x: _to_keras2(tmp_path, m, x, tf_keras))):
        source, target = lib.Input((5, 3)), lib.Input((6, 2))
        _, h, c = lib.layers.LSTM(4, return_state=True, name="encoder")(source)
        decoded = lib.layers.LSTM(4, return_sequences=True, name="decoder")(target, initial_state=[h, c])
        both = lib.layers.Bidirectional(lib.layers.GRU(4), name="bi")(target, initial_state=[h, c])
        got, expected, diags = convert(lib.Model([source, target], [decoded, both]), [_x(2, 5, 3), _x(2, 6, 2)])
        assert not _quiet(diags), diags.items
        assert_close_to_recorded(_outputs(got), _outputs(expected))


# -- 6. arguments one side's class does not take ---------------------------------------------------
def test_arguments_a_class_does_not_take_are_dropped_per_class(tmp_path, tf_keras, keras3):
    inputs = _x(4, 5, 3)
    model = tf_keras.Sequential([tf_keras.Input((5, 3)), tf_keras.layers.SpatialDropout1D(0.3),
                                 tf_keras.layers.Discretization(bin_boundaries=[-0.5, 0.0, 0.5])])
    got, expected, diags = _to_keras3(tmp_path, model, inputs, keras3)  # Keras 3 takes no `trainable` for either
    assert not _quiet(diags), diags.items
    np.testing.assert_array_equal(got, expected)

    layer = keras3.layers.Discretization(num_bins=4)
    layer.adapt(inputs.reshape(-1, 1))  # adapted: the config holds num_bins and bin_boundaries
    model = keras3.Sequential([keras3.Input((5, 3)), keras3.layers.SpatialDropout1D(0.3), layer])
    got, expected, diags = _to_keras2(tmp_path, model, inputs, tf_keras)  # tf_keras refuses both together
    assert not _quiet(diags), diags.items
    np.testing.assert_array_equal(got, expected)
