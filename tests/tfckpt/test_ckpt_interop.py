"""TensorFlow, tf_keras and Keras 3 judge what the tf-checkpoint plugin reads and writes."""

from __future__ import annotations

import numpy as np
import pytest

import modelmorph
from ckptcases import (KERAS2_CKPT_CASES, KERAS2_H5_CASES, KERAS3, KERAS3_CASES, TF_CHECKPOINTS, TF_KERAS,
                       assert_predicts_recorded, assert_same_checkpoint, checkpoint_tensors, keras2_ckpt,
                       require_format)
from helpers import assert_models_equal

pytestmark = pytest.mark.interop


def _tf_keras_model(tf_keras, case):
    return tf_keras.models.model_from_json((TF_KERAS / f"{case}.json").read_text())


# -- TensorFlow's checkpoints, round trip ----------------------------------------------------------
@pytest.mark.parametrize("case", sorted(TF_CHECKPOINTS))
def test_tensorflow_reads_the_round_trip_identically(case, tmp_path, tf):
    source = TF_CHECKPOINTS[case]
    modelmorph.convert(source, tmp_path / "ckpt", to_format="tf-checkpoint")
    assert_same_checkpoint(tf, tf.train.latest_checkpoint(str(source)) if source.is_dir() else source,
                           tmp_path / "ckpt")
    assert tf.train.latest_checkpoint(str(tmp_path)) == str(tmp_path / "ckpt")


@pytest.mark.parametrize("case", KERAS2_CKPT_CASES)
def test_tf_keras_restores_the_round_trip(case, tmp_path, tf_keras):
    modelmorph.convert(keras2_ckpt(case), tmp_path / "ckpt", to_format="tf-checkpoint")
    model = _tf_keras_model(tf_keras, case)
    model.load_weights(str(tmp_path / "ckpt")).assert_existing_objects_matched()
    assert_predicts_recorded(model, "tf_keras", case)


# -- tf_keras ------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", KERAS2_H5_CASES)
def test_h5_to_checkpoint_loads_in_tf_keras(case, tmp_path, tf_keras):
    require_format("h5")
    modelmorph.convert(TF_KERAS / f"{case}.h5", tmp_path / "ckpt", to_format="tf-checkpoint")
    model = _tf_keras_model(tf_keras, case)
    model.load_weights(str(tmp_path / "ckpt")).assert_existing_objects_matched()
    assert_predicts_recorded(model, "tf_keras", case)


@pytest.mark.parametrize("case", ["mlp_adam", "seq_cnn_bn"])
def test_optimizer_state_restores_in_a_compiled_tf_keras_model(case, tmp_path, tf, tf_keras):
    modelmorph.convert(keras2_ckpt(case), tmp_path / "ckpt", to_format="tf-checkpoint", arch=TF_KERAS / f"{case}.json")
    model = _tf_keras_model(tf_keras, case)
    optimizer = tf_keras.optimizers.Adam() if case == "mlp_adam" else tf_keras.optimizers.SGD(momentum=0.9)
    model.compile(optimizer=optimizer, loss="mse")
    status = model.load_weights(str(tmp_path / "ckpt"))
    model.optimizer.build(model.trainable_variables)  # slots are created, then restored
    status.assert_existing_objects_matched()
    source = tf.train.load_checkpoint(str(keras2_ckpt(case)))
    assert model.optimizer.iterations.numpy() == source.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE") > 0
    slots = model.optimizer.variables[1:]
    assert len(slots) in (4, 8)
    for i, variable in enumerate(slots, start=1):
        np.testing.assert_array_equal(variable.numpy(), source.get_tensor(f"optimizer/_variables/{i}/.ATTRIBUTES/VARIABLE_VALUE"))


def test_legacy_optimizer_slots_are_read_and_rewritten_for_the_new_optimizer(tmp_path, tf_keras):
    model = _tf_keras_model(tf_keras, "mlp_adam")
    model.compile(optimizer=tf_keras.optimizers.legacy.Adam(), loss="mse")
    rng = np.random.default_rng(0)
    model.fit(rng.standard_normal((8, 8)), rng.standard_normal((8, 4)), epochs=2, verbose=0)
    model.save_weights(str(tmp_path / "legacy" / "ckpt"))
    with modelmorph.read(tmp_path / "legacy" / "ckpt", arch=TF_KERAS / "mlp_adam.json") as joined:
        state = joined.optimizer
        assert state.variables[0].path == "iterations" and state.variables[0].read() == 2
        assert [(s.variable, s.name) for s in state.slots][:2] == [("dense/kernel", "m"), ("dense/kernel", "v")]
        by_name = {v.name.split(":")[0]: v for v in model.trainable_variables}
        for slot in state.slots:
            expected = model.optimizer.get_slot(by_name[slot.variable], slot.name).numpy()
            np.testing.assert_array_equal(slot.weight.read(), expected)
        diags = modelmorph.Diagnostics()
        (tmp_path / "new").mkdir()
        modelmorph.write(joined, tmp_path / "new" / "ckpt", "tf-checkpoint", diagnostics=diags)
    assert "3 optimizer variable(s) have no place in tf_keras' optimizer and are not written" in \
        [d.message for d in diags]  # beta_1, beta_2, decay
    fresh = _tf_keras_model(tf_keras, "mlp_adam")
    fresh.compile(optimizer=tf_keras.optimizers.Adam(), loss="mse")
    status = fresh.load_weights(str(tmp_path / "new" / "ckpt"))
    fresh.optimizer.build(fresh.trainable_variables)
    status.assert_existing_objects_matched()
    assert fresh.optimizer.iterations.numpy() == 2
    for k, variable in enumerate(model.trainable_variables):  # new Adam: iterations, then m and v per variable
        np.testing.assert_array_equal(fresh.optimizer.variables[1 + 2 * k].numpy(),
                                      model.optimizer.get_slot(variable, "m").numpy())
        np.testing.assert_array_equal(fresh.optimizer.variables[2 + 2 * k].numpy(),
                                      model.optimizer.get_slot(variable, "v").numpy())


# -- Keras 3 ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", KERAS2_CKPT_CASES)
def test_keras2_checkpoint_and_its_json_to_keras3(case, tmp_path, keras3):
    require_format("keras")
    modelmorph.convert(keras2_ckpt(case), tmp_path / "model.keras", arch=TF_KERAS / f"{case}.json")
    assert_predicts_recorded(keras3.saving.load_model(tmp_path / "model.keras"), "tf_keras", case)


@pytest.mark.parametrize("case", ["mlp_adam", "seq_cnn_bn"])
def test_keras3_model_and_optimizer_to_a_tf_keras_checkpoint(case, tmp_path, keras3, tf_keras):
    """Keras 3 names its slots momentum/velocity; tf_keras' optimizer finds them as m/v by position."""
    require_format("keras")
    modelmorph.convert(KERAS3 / f"{case}.keras", tmp_path / "ckpt", to_format="tf-checkpoint")
    modelmorph.convert(KERAS3 / f"{case}.keras", tmp_path / "arch.json", options={"dialect": "keras2"})
    model = tf_keras.models.model_from_json((tmp_path / "arch.json").read_text())
    model.compile(optimizer=tf_keras.optimizers.Adam() if case == "mlp_adam" else tf_keras.optimizers.SGD(momentum=0.9),
                  loss="mse")
    status = model.load_weights(str(tmp_path / "ckpt"))
    model.optimizer.build(model.trainable_variables)
    status.assert_existing_objects_matched()
    assert_predicts_recorded(model, "keras3", case)
    source = keras3.saving.load_model(KERAS3 / f"{case}.keras").optimizer.variables
    assert model.optimizer.iterations.numpy() == source[0].numpy() > 0
    slots = model.optimizer.variables[1:]  # Keras 3 keeps learning_rate second; tf_keras does not list it
    assert len(slots) == len(source) - 2
    for ours, theirs in zip(slots, source[2:]):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


@pytest.fixture(scope="session")
def keras3_checkpoints(tmp_path_factory, keras3, tf):
    """tf.train.Checkpoint(model=m).write() of each Keras 3 fixture model (compiled ones with
    their optimizer, whose variables then shorten some keys)."""
    folder = tmp_path_factory.mktemp("keras3_ckpt")
    for case in KERAS3_CASES:
        model = keras3.saving.load_model(KERAS3 / f"{case}.keras")
        tf.train.Checkpoint(model=model).write(str(folder / case / "ckpt"))
    return folder


@pytest.mark.parametrize("case", KERAS3_CASES)
def test_keras3_checkpoint_joined_to_its_json_has_the_archive_weights(case, keras3_checkpoints):
    require_format("keras")
    diags = modelmorph.Diagnostics()
    with modelmorph.read(keras3_checkpoints / case / "ckpt", arch=KERAS3 / f"{case}.json", diagnostics=diags) as joined, \
            modelmorph.read(KERAS3 / f"{case}.keras") as archive:
        assert joined.metadata["checkpoint_naming"] == "keras3"
        assert_models_equal(joined, archive, architecture=False)
        if archive.optimizer is not None:
            assert [(s.variable, s.name) for s in joined.optimizer.slots] == \
                   [(s.variable, s.name) for s in archive.optimizer.slots]
            for a, b in zip(joined.optimizer.slots + joined.optimizer.variables,
                            archive.optimizer.slots + archive.optimizer.variables):
                a, b = getattr(a, "weight", a), getattr(b, "weight", b)
                np.testing.assert_array_equal(a.read(), b.read())
    assert not diags


@pytest.mark.parametrize("case", KERAS3_CASES)
def test_keras3_naming_writes_the_keys_tensorflow_writes(case, tmp_path, keras3_checkpoints):
    require_format("keras")
    modelmorph.convert(KERAS3 / f"{case}.keras", tmp_path / "ckpt", to_format="tf-checkpoint",
                       options={"naming": "keras3"})
    assert checkpoint_tensors(tmp_path / "ckpt") == checkpoint_tensors(keras3_checkpoints / case / "ckpt")


@pytest.mark.parametrize("case", KERAS3_CASES)
def test_keras3_restores_keras3_naming(case, tmp_path, keras3, tf):
    require_format("keras")
    modelmorph.convert(KERAS3 / f"{case}.keras", tmp_path / "ckpt", to_format="tf-checkpoint",
                       options={"naming": "keras3"})
    model = keras3.saving.load_model(KERAS3 / f"{case}.keras")  # compiled ones with a built optimizer
    optimizer = getattr(model, "optimizer", None)
    variables = model.weights + (list(optimizer.variables) if optimizer is not None else [])
    reference = [v.numpy() for v in variables]
    for variable in variables:
        variable.assign(np.zeros(variable.shape, variable.dtype))
    tf.train.Checkpoint(model=model).read(str(tmp_path / "ckpt")).assert_existing_objects_matched()
    for variable, want in zip(variables, reference):
        np.testing.assert_array_equal(variable.numpy(), want)
    assert_predicts_recorded(model, "keras3", case)
