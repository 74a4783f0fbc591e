"""Optimizer state Keras 2 files hold in forms Keras 3 does not write (issue 15, items 10 and 14):
tf_keras' loss-scale wrapper (mixed precision), Keras 2.0.x files (slots unnamed, one kind after
the other), tf_keras Nadam. Each model is trained here with tf_keras, converted to `.keras`, and
Keras 3 loads it: the optimizer variables must equal the originals bit for bit, and what cannot
be recovered is named by a diagnostic."""

from __future__ import annotations

import numpy as np
import pytest

import modelmorph
from helpers import assert_close_to_recorded, require_format

pytestmark = pytest.mark.interop

X = np.random.RandomState(0).randn(8, 4).astype("float32")
Y = np.random.RandomState(1).randn(8, 2).astype("float32")


def _slots(optimizer, keras3_model):
    """Keras 3 optimizer variables by (model variable's position, slot) → value, plus iterations."""
    out = {("iterations", ""): optimizer.iterations.numpy()}
    for i, variable in enumerate(keras3_model.trainable_variables):
        for slot in ("momentum", "velocity"):
            name = f"{variable.path.replace('/', '_')}_{slot}"
            found = [v for v in optimizer.variables if v.path.endswith("/" + name)]
            if found:
                out[(i, slot)] = found[0].numpy()
    return out


def _tf_keras_slots(optimizer, tf_keras_model, prefix):
    """The same from a tf_keras optimizer (``<prefix>m/dense/kernel:0``)."""
    values = {v.name: v.numpy() for v in optimizer.variables()}
    out = {("iterations", ""): optimizer.iterations.numpy()}
    for i, variable in enumerate(tf_keras_model.trainable_variables):
        for slot, k2 in (("momentum", "m"), ("velocity", "v")):
            out[(i, slot)] = values[f"{prefix}{k2}/{variable.name}"]
    return out


def _assert_bit_equal(got: dict, expected: dict) -> None:
    assert sorted(got, key=str) == sorted(expected, key=str), (sorted(got, key=str), sorted(expected, key=str))
    for key, value in expected.items():
        np.testing.assert_array_equal(got[key], value, err_msg=str(key))
        assert np.asarray(got[key]).dtype == np.asarray(value).dtype or key[0] == "iterations", key


def _convert(tmp_path, source):
    require_format("keras")
    return modelmorph.convert(source, tmp_path / "k3.keras", force=True)


# -- 10. mixed precision --------------------------------------------------------------------------
def test_loss_scale_optimizer_becomes_its_inner_optimizer_with_its_state(tmp_path, tf_keras, keras3):
    tf_keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Dense(3, activation="relu"),
                                     tf_keras.layers.Dense(2, dtype="float32")])
        model.compile(optimizer=tf_keras.optimizers.Adam(0.01), loss="mse")
    finally:
        tf_keras.mixed_precision.set_global_policy("float32")
    assert type(model.optimizer).__name__ == "LossScaleOptimizerV3"  # what the case is about
    model.fit(X, Y, epochs=1, batch_size=4, verbose=0)
    model.save(tmp_path / "k2.h5")
    diags = _convert(tmp_path, tmp_path / "k2.h5")
    assert [d.kind for d in diags if "LossScaleOptimizerV3" in d.message] == ["lossy"], diags.items
    assert not [d for d in diags if "LossScaleOptimizerV3" not in d.message], diags.items

    loaded = keras3.saving.load_model(tmp_path / "k3.keras")
    assert type(loaded.optimizer).__name__ == "Adam"
    _assert_bit_equal(_slots(loaded.optimizer, loaded), _tf_keras_slots(model.optimizer, model, ""))
    assert_close_to_recorded([loaded.predict(X, verbose=0)], [model.predict(X, verbose=0)])


# -- 14. Keras 2.0.x files ------------------------------------------------------------------------
@pytest.mark.parametrize("sorted_names", [False, True], ids=["creation-order", "name-order"])
def test_keras_2_0_optimizer_slots_are_mapped_by_creation_order(tmp_path, tf_keras, keras3, sorted_names):
    from fixtures.old_keras import write_keras_2_0  # mimics what Keras 2.0.5 save_model wrote

    inp = tf_keras.Input((4,), name="input_1")
    hidden = tf_keras.layers.Dense(3, activation="relu", name="dense_1")(inp)
    hidden = tf_keras.layers.Dense(3, activation="relu", name="dense_2")(hidden)
    model = tf_keras.Model(inp, tf_keras.layers.Dense(2, name="dense_3")(hidden), name="model_1")
    optimizer = tf_keras.optimizers.Adam(0.01)
    model.compile(optimizer=optimizer, loss="mse")
    model.fit(X, Y, epochs=1, batch_size=4, verbose=0)
    write_keras_2_0(model, optimizer, tmp_path / "old.h5", sorted_names=sorted_names)  # 12 slots: Variable_11
    diags = _convert(tmp_path, tmp_path / "old.h5")
    assert not [d for d in diags if d.kind in ("lossy", "unsupported")], diags.items

    loaded = keras3.saving.load_model(tmp_path / "k3.keras")
    assert type(loaded.optimizer).__name__ == "Adam"
    assert loaded.optimizer.iterations.dtype == "int64"
    _assert_bit_equal(_slots(loaded.optimizer, loaded), _tf_keras_slots(optimizer, model, "Adam/"))
    assert_close_to_recorded([loaded.predict(X, verbose=0)], [model.predict(X, verbose=0)])


def test_tf_keras_nadam_keeps_its_slots_and_diagnoses_the_schedule_product(tmp_path, tf_keras, keras3):
    model = tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Dense(3, activation="relu"),
                                 tf_keras.layers.Dense(2)])
    model.compile(optimizer=tf_keras.optimizers.Nadam(0.01), loss="mse")
    model.fit(X, Y, epochs=3, batch_size=4, verbose=0)
    model.save(tmp_path / "k2.h5")
    diags = _convert(tmp_path, tmp_path / "k2.h5")
    assert [d.kind for d in diags if "u_product" in d.message] == ["lossy"], diags.items

    loaded = keras3.saving.load_model(tmp_path / "k3.keras")
    assert type(loaded.optimizer).__name__ == "Nadam"
    _assert_bit_equal(_slots(loaded.optimizer, loaded), _tf_keras_slots(model.optimizer, model, "Nadam/"))
    # The product is what Keras 3's own Nadam holds after as many steps (to float32 rounding:
    # TensorFlow's pow and numpy's differ in the last bit).
    twin = keras3.Sequential([keras3.Input((4,)), keras3.layers.Dense(2)])
    twin.compile(optimizer=keras3.optimizers.Nadam(0.01), loss="mse")
    twin.fit(X, Y, epochs=3, batch_size=4, verbose=0)
    np.testing.assert_allclose(loaded.optimizer._u_product.numpy(), twin.optimizer._u_product.numpy(), rtol=1e-6)
    assert loaded.optimizer._u_product.numpy() != 1.0


def test_keras3_loss_scale_wrapper_gives_its_inner_optimizer_state(tmp_path, tf_keras, keras3):
    keras3.config.set_dtype_policy("mixed_float16")
    try:
        model = keras3.Sequential([keras3.Input((4,)), keras3.layers.Dense(3, activation="relu"),
                                   keras3.layers.Dense(2, dtype="float32")])
    finally:
        keras3.config.set_dtype_policy("float32")
    model.compile(optimizer=keras3.optimizers.Adam(0.01), loss="mse")
    assert type(model.optimizer).__name__ == "LossScaleOptimizer"  # Keras 3 wrapped it: what the case is about
    model.fit(X, Y, epochs=1, batch_size=4, verbose=0)
    model.save(tmp_path / "k3.keras")
    inner = model.optimizer.inner_optimizer
    expected = [v.numpy() for v in inner.variables if not v.path.endswith("learning_rate")]  # tf_keras: in the config
    require_format("h5")
    diags = modelmorph.convert(tmp_path / "k3.keras", tmp_path / "k2.h5")
    noted = [d for d in diags if d.kind in ("lossy", "unsupported")]
    assert [d.kind for d in noted] == ["lossy"] and "loss-scale wrapper" in noted[0].message, diags.items
    reloaded = tf_keras.models.load_model(tmp_path / "k2.h5")
    got = [v.numpy() for v in reloaded.optimizer.variables()]
    assert len(got) == len(expected) == 9
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g, e)
    assert_close_to_recorded([reloaded.predict(X, verbose=0)], [model.predict(X, verbose=0)])
