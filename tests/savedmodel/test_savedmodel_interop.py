"""Keras 3 and tf_keras judge what modelmorph makes of tf_keras SavedModel directories."""

from __future__ import annotations

import numpy as np
import pytest

import modelmorph
from helpers import require_format
from smcases import (OPTIMIZERS, TF_KERAS_CASES, arch_for, assert_predicts_recorded, case_dir,
                     recorded_io)

pytestmark = pytest.mark.interop


def _convert(case, destination, **kwargs):
    return modelmorph.convert(case_dir(case), destination, arch=arch_for(case), **kwargs)


@pytest.mark.parametrize("case", TF_KERAS_CASES)
def test_keras3_predicts_what_tf_keras_predicted(case, tmp_path, keras3, tf):
    require_format("keras")
    _convert(case, tmp_path / "model.keras")
    model = keras3.saving.load_model(tmp_path / "model.keras")
    assert_predicts_recorded(model, case, tf)


@pytest.mark.parametrize("case", TF_KERAS_CASES)
def test_tf_keras_predicts_the_same_from_h5(case, tmp_path, tf_keras, tf):
    require_format("h5")
    _convert(case, tmp_path / "model.h5")
    model = tf_keras.models.load_model(tmp_path / "model.h5", compile=False)
    assert_predicts_recorded(model, case, tf)


def _checkpoint_slots(tf, case):
    """iterations and the optimizer's slot variables, in creation order, from the SavedModel."""
    reader = tf.train.load_checkpoint(str(case_dir(case) / "variables" / "variables"))
    keys = reader.get_variable_to_shape_map()
    listed = sorted((int(k.split("/")[2]), k) for k in keys if k.startswith("optimizer/_variables/"))
    return (int(reader.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE")),
            [np.asarray(reader.get_tensor(k)) for _, k in listed])


@pytest.mark.parametrize("case", sorted(OPTIMIZERS))
def test_optimizer_state_reaches_keras3(case, tmp_path, keras3, tf):
    require_format("keras")
    _convert(case, tmp_path / "model.keras")
    model = keras3.saving.load_model(tmp_path / "model.keras")
    iterations, slots = _checkpoint_slots(tf, case)
    assert type(model.optimizer).__name__ == OPTIMIZERS[case]
    assert int(model.optimizer.iterations.numpy()) == iterations > 0
    got = [np.asarray(v.numpy()) for v in model.optimizer.variables[2:]]  # after iterations, learning_rate
    assert len(got) == len(slots) > 0
    for g, s in zip(got, slots):
        np.testing.assert_array_equal(g, s)


@pytest.mark.parametrize("case", sorted(OPTIMIZERS))
def test_optimizer_state_reaches_tf_keras_through_h5(case, tmp_path, tf_keras, tf):
    require_format("h5")
    _convert(case, tmp_path / "model.h5")
    model = tf_keras.models.load_model(tmp_path / "model.h5")  # compiled, optimizer weights restored
    iterations, slots = _checkpoint_slots(tf, case)
    assert type(model.optimizer).__name__ == OPTIMIZERS[case]
    assert int(model.optimizer.iterations.numpy()) == iterations > 0
    got = [np.asarray(v.numpy()) for v in model.optimizer.variables[1:]]
    assert len(got) == len(slots)
    for g, s in zip(got, slots):
        np.testing.assert_array_equal(g, s)


def test_subclassed_joins_an_architecture_from_json(tmp_path, keras3, tf_keras, tf):
    """An architecture-only --arch (to_json() of the Functional twin): weights join, and the
    optimizer state, which no optimizer class claims, is left out with a diagnostic."""
    require_format("keras")
    diagnostics = modelmorph.convert(case_dir("subclassed"), tmp_path / "model.keras",
                                     arch=arch_for("subclassed", ".json"))
    assert [d.kind for d in diagnostics] == ["lossy"] and "optimizer" in diagnostics.items[0].message
    assert_predicts_recorded(keras3.saving.load_model(tmp_path / "model.keras"), "subclassed", tf)
    modelmorph.convert(case_dir("subclassed"), tmp_path / "model.h5", arch=arch_for("subclassed", ".json"))
    assert_predicts_recorded(tf_keras.models.load_model(tmp_path / "model.h5"), "subclassed", tf)


@pytest.mark.parametrize("case", [*TF_KERAS_CASES, "tf_module"])
def test_keras3_load_model_refuses_savedmodel_directories(case, keras3):
    """What this format is for: Keras 3 cannot load these directories itself."""
    with pytest.raises((ValueError, OSError)):
        keras3.saving.load_model(case_dir(case))


def test_tf_module_weights_join_a_keras_architecture(tmp_path, tf, tf_keras):
    """A plain tf.Module has no Keras metadata: its variables read as weights only, and a Keras
    architecture named after its attributes takes them (module naming)."""
    x = tf_keras.Input(shape=(4,), name="x")
    model = tf_keras.Model(x, tf_keras.layers.Dense(3, name="dense")(x))
    (tmp_path / "arch.json").write_text(model.to_json())
    with modelmorph.read(case_dir("tf_module")) as weights:
        assert not weights.has_architecture
        assert {p for p, _, _ in weights.iter_weights()} == {"./w", "./b", "inner/w"}
        inputs, outputs = recorded_io("tf_module")
        values = {p: w.read() for p, _, w in weights.iter_weights()}
    hidden = np.maximum(inputs @ values["./w"] + values["./b"], 0)
    np.testing.assert_allclose(hidden @ values["inner/w"], outputs[0], rtol=1e-5, atol=1e-5)
