"""Fixture paths and judging helpers shared by the tf-checkpoint tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from modelmorph_tfckpt.bundle import BundleReader

from helpers import assert_close_to_recorded, require_format  # noqa: F401  (re-exported)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"  # not `from conftest`: several folders have one
TF = FIXTURES / "tf"
TF_KERAS = FIXTURES / "tf_keras"
KERAS3 = FIXTURES / "keras3"

#: tf_keras cases with a save_weights checkpoint fixture (ckpt/<case>/ckpt).
KERAS2_CKPT_CASES = ["mlp_adam", "seq_cnn_bn", "multi_io_shared", "nested_seq", "embed_lstm_bigru", "mobilenetv2"]
#: Checkpoints TensorFlow wrote, as a user names them (prefix, or folder with a state file).
TF_CHECKPOINTS = {
    "module_ckpt": TF / "module_ckpt" / "ckpt",
    "module_save": TF / "module_save",
    "dtypes_ckpt": TF / "dtypes_ckpt" / "ckpt",
    "sharded_ckpt": TF / "sharded_ckpt" / "ckpt",
    **{f"tf_keras-{case}": TF_KERAS / "ckpt" / case / "ckpt" for case in KERAS2_CKPT_CASES},
}

#: tf_keras cases with a full-model .h5 fixture.
KERAS2_H5_CASES = [*KERAS2_CKPT_CASES, "mha_ln", "tfop_lambda", "mixed_precision"]
#: Keras 3 cases the tests turn into tf.train.Checkpoint(model=m) checkpoints.
KERAS3_CASES = ["mlp_adam", "seq_cnn_bn", "multi_io_shared", "nested_seq", "embed_lstm_bigru", "mha_ln", "mobilenetv2"]


def keras2_ckpt(case: str) -> Path:
    return TF_KERAS / "ckpt" / case / "ckpt"


def checkpoint_tensors(prefix) -> dict[str, tuple[str, tuple[int, ...]]]:
    """key → (dtype, shape) of every tensor of a checkpoint, as its index records them."""
    with BundleReader(prefix) as r:
        return {key: (e.dtype, tuple(e.shape)) for key, e in r.entries().items()}


def recorded_io(family: str, case: str):
    """The fixture's recorded inputs (in the form the model takes them) and outputs."""
    z = np.load(FIXTURES / family / f"{case}.io.npz")
    inputs = [z[k] for k in sorted(z) if k.startswith("in_")]
    outputs = [z[k] for k in sorted(z) if k.startswith("out_")]
    if case == "multi_io_shared":
        return {"a": inputs[0], "b": inputs[1]}, outputs
    return (inputs[0] if len(inputs) == 1 else inputs), outputs


def assert_predicts_recorded(model, family: str, case: str) -> None:
    """A Keras model (tf_keras or Keras 3) predicts what the fixture recorded."""
    inputs, outputs = recorded_io(family, case)
    got = model.predict(inputs, verbose=0)
    if isinstance(got, dict):
        got = [got[k] for k in sorted(got)]
    got = got if isinstance(got, list) else [got]
    assert_close_to_recorded(got, outputs)


def assert_same_checkpoint(tf, a, b) -> None:
    """TensorFlow reads the same keys, dtypes and values from both checkpoints."""
    ra, rb = tf.train.load_checkpoint(str(a)), tf.train.load_checkpoint(str(b))
    dtypes_a, dtypes_b = ra.get_variable_to_dtype_map(), rb.get_variable_to_dtype_map()
    assert set(dtypes_a) == set(dtypes_b)
    assert len(dtypes_a) > 1
    for key, dtype in dtypes_a.items():
        assert dtypes_b[key] == dtype, key
        x, y = np.asarray(ra.get_tensor(key)), np.asarray(rb.get_tensor(key))
        if x.dtype == object:
            assert x.shape == y.shape and list(x.ravel()) == list(y.ravel()), key
        else:
            np.testing.assert_array_equal(x, y, err_msg=key)
