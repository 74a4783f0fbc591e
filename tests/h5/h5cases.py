"""Shared by the h5 tests: the fixture cases and how to run a real library's model on the
inputs recorded with them (``<case>.io.npz`` and the input/output names in MANIFEST.json)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from helpers import assert_close_to_recorded

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

#: tf_keras cases with a `.h5`, `_weights.h5` and `.json` each.
TF_KERAS_CASES = ["mlp_adam", "seq_cnn_bn", "multi_io_shared", "embed_lstm_bigru", "nested_seq", "mha_ln",
                  "mobilenetv2", "tfop_lambda", "mixed_precision"]
#: Keras 3 cases the issue asks to bring back to tf_keras.
KERAS3_CASES = ["mlp_adam", "seq_cnn_bn", "multi_io_shared", "embed_lstm_bigru", "nested_seq", "mha_ln", "mobilenetv2"]
#: Cases trained with an optimizer whose state the tf_keras `.h5` holds.
WITH_OPTIMIZER = ["mlp_adam", "seq_cnn_bn"]


def _manifest() -> dict:
    return json.loads((FIXTURES / "MANIFEST.json").read_text())["cases"]


class Recorded:
    """A case's recorded inputs and outputs, fed and compared the way the case was built."""

    def __init__(self, family: str, case: str):
        info = _manifest()[f"{family}/{case}"]
        arrays = np.load(FIXTURES / family / f"{case}.io.npz")
        self.input_names = [i["name"] for i in info["inputs"]]
        self.output_names = [o["name"] for o in info["outputs"]]
        self.inputs = [arrays[f"in_{i}"] for i in range(len(self.input_names))]
        self.outputs = [arrays[f"out_{i}"] for i in range(len(self.output_names))]

    def assert_predicted_by(self, model) -> None:
        """``model`` predicts the recorded outputs within the tolerance for outputs recorded
        on another machine (or by another library)."""
        feed = self.inputs[0] if len(self.inputs) == 1 else dict(zip(self.input_names, self.inputs))
        predicted = model.predict(feed, verbose=0)
        if isinstance(predicted, dict):
            predicted = [predicted[name] for name in self.output_names]
        elif not isinstance(predicted, (list, tuple)):
            predicted = [predicted]
        assert_close_to_recorded(predicted, self.outputs)
