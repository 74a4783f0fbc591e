"""A registered Keras 3 custom layer that owns sublayers (issue 15, item 8), from the
``custom_sublayers`` fixture (tests/fixtures/generate_fidelity.py; the class is
``custom_layers.Block``): written to ``.h5`` and to a TF checkpoint, every one of its weights
is there bit for bit, the class is carried as data with a warning, and tf_keras given the same
class (defined here) loads the ``.h5`` and predicts what Keras 3 recorded."""

from __future__ import annotations

import io
import zipfile

import h5py
import numpy as np
import pytest

import modelmorph
from helpers import FIXTURES, assert_close_to_recorded, assert_same_values, require_format

pytestmark = pytest.mark.interop

SOURCE = FIXTURES / "fidelity" / "custom_sublayers.keras"
#: Where Keras 3 saved each variable of `blk`, in the order the .h5 must hold them: the layer's
#: own, then each sublayer's by attribute (the order Keras 3 visits and this class creates).
BLOCK_VARS = ["vars/0", "dense_in/vars/0", "dense_in/vars/1", "dense_out/vars/0", "dense_out/vars/1"]


def _keras3_values(paths: list[str], layer: str = "block") -> list[np.ndarray]:
    with zipfile.ZipFile(SOURCE) as archive, h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as f:
        return [f[f"layers/{layer}/{p}"][()] for p in paths]


def _h5_values(path, layer: str) -> list[np.ndarray]:
    with h5py.File(path, "r") as f:
        group = f["model_weights"][layer]
        return [group[name][()] for name in group.attrs["weight_names"]]


def _tf_keras_block(tf_keras):
    """The same class for tf_keras: its variables are created in the same order."""

    class Block(tf_keras.layers.Layer):
        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.units = int(units)
            self.dense_in = tf_keras.layers.Dense(self.units, activation="relu")
            self.dense_out = tf_keras.layers.Dense(self.units)

        def build(self, input_shape):
            self.scale = self.add_weight(name="scale", shape=(self.units,), initializer="ones")
            self.dense_in.build(input_shape)
            self.dense_out.build((*input_shape[:-1], self.units))

        def call(self, inputs):
            return self.dense_out(self.dense_in(inputs)) * self.scale

        def get_config(self):
            return {**super().get_config(), "units": self.units}

    return Block


def test_custom_layer_with_sublayers_to_h5_keeps_every_weight(tmp_path, tf_keras):
    require_format("keras")
    diags = modelmorph.convert(SOURCE, tmp_path / "out.h5")
    assert any(d.kind == "contains-code" and d.where == "blk" for d in diags), diags.items
    order = [d for d in diags if d.kind == "unsupported" and d.where == "blk"]
    assert len(order) == 1 and "dense_in, dense_out" in order[0].message, diags.items  # the order it assumed, named

    assert_same_values(_h5_values(tmp_path / "out.h5", "blk"), _keras3_values(BLOCK_VARS), BLOCK_VARS)
    assert_same_values(_h5_values(tmp_path / "out.h5", "dense"), _keras3_values(["vars/0", "vars/1"], "dense"))

    model = tf_keras.models.load_model(tmp_path / "out.h5", compile=False,
                                       custom_objects={"modelmorph_test>Block": _tf_keras_block(tf_keras)})
    recorded = np.load(FIXTURES / "fidelity" / "custom_sublayers.keras3.io.npz")
    assert_close_to_recorded([model.predict(recorded["in_0"], verbose=0)], [recorded["out_0"]])


def test_custom_layer_with_sublayers_to_a_checkpoint_keeps_every_weight(tmp_path, tf):
    require_format("keras")
    diags = modelmorph.convert(SOURCE, tmp_path / "ckpt", to_format="tf-checkpoint")
    # the names its class gives the variables are unknown: written by position, and said so
    assert any(d.kind == "unsupported" and d.where == "blk" and "positions" in d.message for d in diags), diags.items
    reader = tf.train.load_checkpoint(str(tmp_path / "ckpt"))
    keys = [f"layer_with_weights-0/{p}/.ATTRIBUTES/VARIABLE_VALUE"
            for p in ("0", "dense_in/0", "dense_in/1", "dense_out/0", "dense_out/1")]
    assert_same_values([reader.get_tensor(k) for k in keys], _keras3_values(BLOCK_VARS), keys)
    dense = ["layer_with_weights-1/kernel/.ATTRIBUTES/VARIABLE_VALUE", "layer_with_weights-1/bias/.ATTRIBUTES/VARIABLE_VALUE"]
    assert_same_values([reader.get_tensor(k) for k in dense], _keras3_values(["vars/0", "vars/1"], "dense"))
