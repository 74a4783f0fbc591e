"""Writing legacy `.h5` files (Keras 2 dialect): IR round trips, and tf_keras loading what we write."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

import modelmorph
from h5cases import FIXTURES, KERAS3_CASES, TF_KERAS_CASES, WITH_OPTIMIZER, Recorded
from helpers import write_read
from modelmorph.progress import Progress
from modelmorph_h5.attributes import HEADER_LIMIT, read_list, write_list

TF_KERAS = FIXTURES / "tf_keras"


def _optimizer_values(state: "modelmorph.OptimizerState") -> dict:
    return {("own", w.path): w.read() for w in state.variables} | {
        (s.variable, s.name): s.weight.read() for s in state.slots}


@pytest.mark.parametrize("case", TF_KERAS_CASES)
def test_round_trip(case, tmp_path):
    with modelmorph.read(TF_KERAS / f"{case}.h5") as model:
        back, diags = write_read(tmp_path, model, "h5", "rt.h5")
        with back:
            assert not diags
            if case in WITH_OPTIMIZER:
                before, after = _optimizer_values(model.optimizer), _optimizer_values(back.optimizer)
                assert before.keys() == after.keys()
                for key, value in before.items():
                    np.testing.assert_array_equal(after[key], value)


@pytest.mark.parametrize("case", ["mlp_adam", "nested_seq"])
def test_weights_only(case, tmp_path):
    out = tmp_path / "weights.h5"
    diags = modelmorph.Diagnostics()
    with modelmorph.read(TF_KERAS / f"{case}.h5") as model:
        modelmorph.write(model, out, options={"weights_only": "true"}, diagnostics=diags)
        with h5py.File(out, "r") as f:
            assert "model_config" not in f.attrs and read_list(f.attrs, "layer_names")
        with modelmorph.read(out, arch=TF_KERAS / f"{case}.json") as back:
            for (path, _, a), (path_b, _, b) in zip(model.iter_weights(), back.iter_weights(), strict=True):
                assert path == path_b
                np.testing.assert_array_equal(a.read(), b.read())
    assert [d.kind for d in diags] == (["lossy"] if case == "mlp_adam" else [])  # the optimizer state


def test_long_name_lists_are_split_as_keras_splits_them(tmp_path):
    names = [f"layer_with_a_rather_long_name_{i:05d}" for i in range(3000)]
    with h5py.File(tmp_path / "names.h5", "w") as f:
        write_list(f.attrs, "layer_names", names)
        assert "layer_names" not in f.attrs and "layer_names1" in f.attrs
        assert all(f.attrs[k].nbytes <= HEADER_LIMIT for k in f.attrs)
        assert read_list(f.attrs, "layer_names") == names


class _Counting(Progress):
    def __init__(self):
        self.total = self.done = 0

    def start(self, total, label=""):
        self.total = total

    def advance(self, amount):
        self.done += amount


def test_progress_counts_every_tensor(tmp_path):
    progress = _Counting()
    with modelmorph.read(TF_KERAS / "mlp_adam.h5") as model:
        modelmorph.write(model, tmp_path / "out.h5", progress=progress)
        expected = sum(w.nbytes for _, _, w in model.iter_weights()) + sum(
            s.weight.nbytes for s in model.optimizer.slots) + model.optimizer.variables[0].nbytes
    assert progress.done == progress.total == expected


def test_a_model_without_weights_is_refused(tmp_path):
    with pytest.raises(modelmorph.ReadError, match="mlp_adam.json: holds an architecture without weights"):
        modelmorph.convert(TF_KERAS / "mlp_adam.json", tmp_path / "out.h5")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.interop
@pytest.mark.parametrize("case", TF_KERAS_CASES)
def test_tf_keras_loads_the_round_trip(case, tmp_path, tf_keras):
    out = tmp_path / f"{case}.h5"
    modelmorph.convert(TF_KERAS / f"{case}.h5", out)
    loaded = tf_keras.models.load_model(out)
    Recorded("tf_keras", case).assert_predicted_by(loaded)
    if case in WITH_OPTIMIZER:
        original = tf_keras.models.load_model(TF_KERAS / f"{case}.h5")
        assert len(loaded.optimizer.variables) == len(original.optimizer.variables)
        for a, b in zip(loaded.optimizer.variables, original.optimizer.variables):
            np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.interop
@pytest.mark.parametrize("case", KERAS3_CASES)
def test_keras3_models_go_back_to_tf_keras(case, tmp_path, tf_keras):
    out = tmp_path / f"{case}.h5"
    diags = modelmorph.convert(FIXTURES / "keras3" / f"{case}.keras", out)
    assert not [d for d in diags if d.kind == "unsupported"], diags.items
    loaded = tf_keras.models.load_model(out)
    Recorded("keras3", case).assert_predicted_by(loaded)


def test_optimizer_state_tf_keras_cannot_take_is_left_out(tmp_path):
    diags = modelmorph.Diagnostics()
    with modelmorph.read(TF_KERAS / "mlp_adam.h5") as model:
        model.optimizer.slots.pop()  # one velocity missing: tf_keras would refuse the whole state
        modelmorph.write(model, tmp_path / "out.h5", diagnostics=diags)
    with h5py.File(tmp_path / "out.h5", "r") as f:
        assert "optimizer_weights" not in f and "training_config" in f.attrs
    assert [d.kind for d in diags] == ["lossy"] and "optimizer" in diags.items[0].message
