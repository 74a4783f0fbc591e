"""A layer of a class the catalogue does not know, from a legacy ``.h5`` to a TF checkpoint
(issue 15, item 12): its variables are named from the ``weight_names`` the file stores
(``ls/gamma:0`` → ``gamma``), as tf_keras names them, not by position. The ``custom_names``
fixture (tests/fixtures/generate_fidelity.py) is judged by tf_keras restoring the checkpoint
into the model with the class defined here."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

import modelmorph
from helpers import FIXTURES, assert_close_to_recorded, require_format

pytestmark = pytest.mark.interop

SOURCE = FIXTURES / "fidelity" / "custom_names.h5"


def _layer_scale(tf_keras):
    """The fixture's class: `offset` holds the variable named `beta`; `count` is frozen."""

    class LayerScale(tf_keras.layers.Layer):
        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.units = units

        def build(self, input_shape):
            self.gamma = self.add_weight(name="gamma", shape=(self.units,), initializer="zeros")
            self.offset = self.add_weight(name="beta", shape=(self.units,), initializer="zeros")
            self.count = self.add_weight(name="count", shape=(), initializer="zeros", trainable=False)

        def call(self, x):
            return x * self.gamma + self.offset * self.count

        def get_config(self):
            return {**super().get_config(), "units": self.units}

    return LayerScale


def _zeroed_model(tf_keras):
    model = tf_keras.models.load_model(SOURCE, compile=False, custom_objects={"LayerScale": _layer_scale(tf_keras)})
    for variable in model.weights:
        variable.assign(np.zeros(variable.shape, variable.dtype.as_numpy_dtype))
    return model


def test_unknown_class_variables_are_named_as_tf_keras_names_them(tmp_path, tf, tf_keras):
    require_format("tf-checkpoint")
    diags = modelmorph.convert(SOURCE, tmp_path / "ckpt", to_format="tf-checkpoint")
    assert not [d for d in diags if d.kind == "unsupported"], diags.items
    model = _zeroed_model(tf_keras)
    model.load_weights(str(tmp_path / "ckpt")).assert_existing_objects_matched()
    recorded = np.load(FIXTURES / "fidelity" / "custom_names.tf_keras.io.npz")
    assert_close_to_recorded([model.predict(recorded["in_0"], verbose=0)], [recorded["out_0"]])
    model.save_weights(str(tmp_path / "reference" / "ckpt"))  # the keys tf_keras writes itself
    ours = dict(tf.train.list_variables(str(tmp_path / "ckpt")))
    assert ours == dict(tf.train.list_variables(str(tmp_path / "reference" / "ckpt")))
    assert "layer_with_weights-0/beta/.ATTRIBUTES/VARIABLE_VALUE" in ours  # its name, not its attribute `offset`


def test_unknown_class_keeps_its_weight_names_in_h5(tmp_path):
    require_format("h5")
    modelmorph.convert(SOURCE, tmp_path / "out.h5")
    with h5py.File(tmp_path / "out.h5", "r") as f:
        assert [n.decode() for n in f["model_weights/ls"].attrs["weight_names"]] == ["ls/gamma:0", "ls/beta:0", "ls/count:0"]


def test_keras3_naming_of_an_unknown_class_is_diagnosed(tmp_path):
    """A Keras 3 checkpoint names variables after the attributes holding them (`offset`), which
    nothing in the file records: still by position, and said so."""
    require_format("tf-checkpoint")
    diags = modelmorph.convert(SOURCE, tmp_path / "ckpt", to_format="tf-checkpoint", options={"naming": "keras3"})
    assert any(d.kind == "unsupported" and d.where == "ls" and "positions" in d.message for d in diags), diags.items


def test_only_names_directly_below_the_layer_are_taken():
    from modelmorph_h5.reader import variable_name

    assert variable_name("ls", "ls/gamma:0") == "gamma"
    assert variable_name("ls", "outer_scope/ls/gamma:0") == "gamma"
    assert variable_name("x/ls", "x/ls/gamma:0") == "gamma"  # a tf_keras name with `/`
    assert variable_name("ls", "ls/dense/kernel:0") is None  # a sublayer's: its attribute is unknown
    assert variable_name("ls", "other/gamma:0") is None
    assert variable_name("ls", "ls/:0") is None
