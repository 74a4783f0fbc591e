"""Fixture paths and judging helpers shared by the SavedModel tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from helpers import assert_close_to_recorded

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"  # not `from conftest`: several folders have one
SAVEDMODEL = FIXTURES / "savedmodel"

#: tf_keras Functional/Sequential SavedModels: keras_metadata.pb holds their architecture.
KERAS_CASES = ["mlp_adam", "seq_cnn_bn", "multi_io_shared", "embed_lstm_bigru", "nested_seq", "string_lookup",
               "mobilenetv2"]
#: Every tf_keras SavedModel fixture (the subclassed one reads as weights only).
TF_KERAS_CASES = [*KERAS_CASES, "subclassed"]
#: Compiled cases, with the optimizer class tf_keras and Keras 3 share.
OPTIMIZERS = {"mlp_adam": "Adam", "seq_cnn_bn": "SGD", "subclassed": "Adam"}


def case_dir(case: str) -> Path:
    return SAVEDMODEL / case


def arch_for(case: str, suffix: str = ".h5") -> Path | None:
    """The architecture a weights-only case is joined with (`--arch`): the equivalent
    Functional model as `.h5` (compiled: it names the optimizer) or `.json` (architecture only)."""
    return SAVEDMODEL / f"{case}_arch{suffix}" if case == "subclassed" else None


def recorded_io(case: str):
    """The recorded inputs (in the form the model takes them) and outputs."""
    z = np.load(SAVEDMODEL / f"{case}.io.npz")
    inputs = [z[k] for k in sorted(z.files) if k.startswith("in_")]
    outputs = [z[k] for k in sorted(z.files) if k.startswith("out_")]
    if case == "multi_io_shared":
        return {"a": inputs[0], "b": inputs[1]}, outputs
    return (inputs[0] if len(inputs) == 1 else inputs), outputs


def predictions(model, case: str, tf=None) -> list:
    inputs, _ = recorded_io(case)
    if case == "string_lookup":  # string tensors: call the model (predict's adapters differ between Kerases)
        got = model(tf.constant(inputs), training=False)
    else:
        got = model.predict(inputs, verbose=0)
    if isinstance(got, dict):
        got = [got[k] for k in sorted(got)]
    got = got if isinstance(got, (list, tuple)) else [got]
    return [np.asarray(g) for g in got]


def assert_predicts_recorded(model, case: str, tf=None) -> None:
    assert_close_to_recorded(predictions(model, case, tf), recorded_io(case)[1])
