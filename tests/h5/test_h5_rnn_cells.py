"""The generic ``RNN(cell)`` over each built-in cell and over ``StackedRNNCells`` (issue 15,
item 7), from the ``rnn_cells`` fixtures (tests/fixtures/generate_fidelity.py): tf_keras
``.h5`` → ``.keras``, Keras 3 ``.keras`` → ``.h5``, both → TF checkpoint. Judged by the other
library predicting what the original recorded, by the variables bit for bit, and by the
checkpoint keys against what tf_keras and TensorFlow write themselves."""

from __future__ import annotations

import io
import zipfile

import h5py
import numpy as np
import pytest

import modelmorph
from helpers import FIXTURES, assert_close_to_recorded, assert_same_values, require_format

pytestmark = pytest.mark.interop

FIDELITY = FIXTURES / "fidelity"
STACK = ["GRUCell", "LSTMCell", "SimpleRNNCell"]


def _recorded(family: str):
    z = np.load(FIDELITY / f"rnn_cells.{family}.io.npz")
    return z["in_0"], z["out_0"]


def _quiet(diags):
    return [d for d in diags if d.kind in ("lossy", "unsupported")]


def _h5_values(path, layer: str) -> list[np.ndarray]:
    """A layer's variables in a legacy .h5, in weight_names order (how Keras assigns them)."""
    with h5py.File(path, "r") as f:
        group = f["model_weights"][layer]
        return [group[name][()] for name in group.attrs["weight_names"]]


def _cells(config: dict) -> list[str]:
    return [c["class_name"] for c in config["cell"]["config"]["cells"]]


def _tf_keras_model(tf_keras):
    """The fixture's architecture in tf_keras with every variable zeroed (so a load must fill it)."""
    model = tf_keras.models.load_model(FIDELITY / "rnn_cells.h5", compile=False)
    for variable in model.weights:
        variable.assign(np.zeros(variable.shape, variable.dtype.as_numpy_dtype))
    return model


def test_tf_keras_rnn_cells_to_keras3(tmp_path, keras3):
    require_format("keras")
    diags = modelmorph.convert(FIDELITY / "rnn_cells.h5", tmp_path / "out.keras")
    assert not _quiet(diags), diags.items
    model = keras3.saving.load_model(tmp_path / "out.keras")
    x, y = _recorded("tf_keras")
    assert_close_to_recorded([model.predict(x, verbose=0)], [y])
    assert _cells(model.get_layer("rnn_stack").get_config()) == STACK
    for name in ("rnn_simple", "rnn_lstm", "rnn_stack"):
        assert_same_values([w.numpy() for w in model.get_layer(name).weights], _h5_values(FIDELITY / "rnn_cells.h5", name),
                           [w.path for w in model.get_layer(name).weights])


def test_keras3_rnn_cells_to_tf_keras(tmp_path, keras3, tf_keras):
    diags = modelmorph.convert(FIDELITY / "rnn_cells.keras", tmp_path / "out.h5")
    assert not _quiet(diags), diags.items
    model = tf_keras.models.load_model(tmp_path / "out.h5", compile=False)
    x, y = _recorded("keras3")
    assert_close_to_recorded([model.predict(x, verbose=0)], [y])
    assert _cells(model.get_layer("rnn_stack").get_config()) == STACK
    source = keras3.saving.load_model(FIDELITY / "rnn_cells.keras")
    for name in ("rnn_simple", "rnn_lstm", "rnn_stack"):
        assert_same_values([w.numpy() for w in model.get_layer(name).weights],
                           [w.numpy() for w in source.get_layer(name).weights])


@pytest.mark.parametrize("source,family", [("rnn_cells.h5", "tf_keras"), ("rnn_cells.keras", "keras3")])
def test_rnn_cells_to_a_checkpoint_tf_keras_restores(source, family, tmp_path, tf, tf_keras):
    require_format("tf-checkpoint")
    modelmorph.convert(FIDELITY / source, tmp_path / "ckpt", to_format="tf-checkpoint")
    model = _tf_keras_model(tf_keras)
    model.load_weights(str(tmp_path / "ckpt")).assert_existing_objects_matched()
    x, y = _recorded(family)
    assert_close_to_recorded([model.predict(x, verbose=0)], [y])
    # the keys are those tf_keras writes itself (stacked cells numbered: cell/cells/0/kernel)
    model.save_weights(str(tmp_path / "reference" / "ckpt"))
    ours = dict(tf.train.list_variables(str(tmp_path / "ckpt")))
    assert ours == dict(tf.train.list_variables(str(tmp_path / "reference" / "ckpt")))
    assert "layer_with_weights-2/cell/cells/1/recurrent_kernel/.ATTRIBUTES/VARIABLE_VALUE" in ours


def test_rnn_cells_to_a_keras3_checkpoint_keras3_restores(tmp_path, keras3, tf):
    """Keras 3 tracks no list of sub-objects for TensorFlow: its own checkpoint has no key for
    the stacked cells. They are still written (under ``cells/0``...), and a diagnostic says
    Keras 3 will not restore them; everything Keras 3 tracks is restored."""
    require_format("tf-checkpoint")
    diags = modelmorph.convert(FIDELITY / "rnn_cells.keras", tmp_path / "ckpt", to_format="tf-checkpoint",
                               options={"naming": "keras3"})
    untracked = {d.message.split(" under ")[1].split(",")[0] for d in diags if d.kind == "unsupported"}
    assert untracked == {f"cell/cells/{i}" for i in range(3)}, diags.items
    model = keras3.saving.load_model(FIDELITY / "rnn_cells.keras")
    tf.train.Checkpoint(model=model).write(str(tmp_path / "reference" / "ckpt"))
    ours = dict(tf.train.list_variables(str(tmp_path / "ckpt")))
    reference = dict(tf.train.list_variables(str(tmp_path / "reference" / "ckpt")))
    stacked = {k: v for k, v in ours.items() if k not in reference}
    assert {k: v for k, v in ours.items() if k in reference} == reference
    assert len(stacked) == 9 and all(k.startswith("model/_operations/3/cell/cells/") for k in stacked), stacked
    tracked = model.get_layer("rnn_simple").weights + model.get_layer("rnn_lstm").weights
    expected = [v.numpy() for v in tracked]
    for variable in tracked:
        variable.assign(np.zeros(variable.shape, variable.dtype))
    tf.train.Checkpoint(model=model).read(str(tmp_path / "ckpt")).assert_existing_objects_matched()
    assert_same_values([v.numpy() for v in tracked], expected)


def _layout(group) -> dict:
    """Every group and dataset of a Keras 3 weights file: its ``name`` attribute or its shape."""
    out = {}
    group.visititems(lambda path, obj: out.__setitem__(path, obj.attrs.get("name") if isinstance(obj, h5py.Group)
                                                       else obj.shape))
    return out


def test_rnn_cells_keras3_layout_is_what_keras3_saves(tmp_path):
    """Keras 3 keeps stacked cells under their snake-cased class (``cells/lstm_cell``), names each
    group after the cell's ``.name`` (``lstm_cell_1``) and keeps no group for the list itself:
    the tf_keras model converted is laid out as Keras 3 saved the same architecture."""
    require_format("keras")
    modelmorph.convert(FIDELITY / "rnn_cells.h5", tmp_path / "ours.keras")
    with zipfile.ZipFile(tmp_path / "ours.keras") as ours, zipfile.ZipFile(FIDELITY / "rnn_cells.keras") as keras3:
        with h5py.File(io.BytesIO(ours.read("model.weights.h5")), "r") as a, \
                h5py.File(io.BytesIO(keras3.read("model.weights.h5")), "r") as b:
            ours, theirs = _layout(a), _layout(b)
            assert (ours.pop("layers/input_layer/vars"), theirs.pop("layers/input_layer/vars")) == ("input_1", "input_layer")
            assert ours == theirs  # (tf_keras named its Input `input_1`, Keras 3 `input_layer`)
            assert b["layers/rnn_2/cell/cells/lstm_cell/vars"].attrs["name"] == "lstm_cell_1"


def test_tf_keras_checkpoint_of_rnn_cells_joined_to_its_architecture(tmp_path, tf_keras, keras3):
    """The reverse: tf_keras' own checkpoint (``cell/cells/0/kernel``...) read with the .h5 as
    architecture, written as .keras, predicts what tf_keras recorded."""
    require_format("tf-checkpoint")
    tf_keras.models.load_model(FIDELITY / "rnn_cells.h5", compile=False).save_weights(str(tmp_path / "k2" / "ckpt"))
    diags = modelmorph.convert(tmp_path / "k2" / "ckpt", tmp_path / "out.keras", arch=FIDELITY / "rnn_cells.h5")
    assert not _quiet(diags), diags.items
    x, y = _recorded("tf_keras")
    assert_close_to_recorded([keras3.saving.load_model(tmp_path / "out.keras").predict(x, verbose=0)], [y])
