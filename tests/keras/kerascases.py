"""What the Keras 3 format tests share: the fixture cases, and Keras 3 as the judge of the output."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from helpers import assert_close_to_recorded, assert_same_values

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
KERAS3 = FIXTURES / "keras3"
CASES = ["mlp_adam", "seq_cnn_bn", "multi_io_shared", "embed_lstm_bigru", "nested_seq", "mha_ln", "mobilenetv2",
         "custom_layer", "lambda_layer"]
COMPILED = {"mlp_adam", "seq_cnn_bn", "mobilenetv2"}  # fixtures saved with optimizer state
# The max_shard_size (in GB, Keras' unit: GiB) Keras' sharded fixtures were saved with, as a modelmorph size.
SHARDED_GB = {"mlp_adam": "0.0000005GB", "mobilenetv2": "0.0006GB"}

if str(FIXTURES) not in sys.path:
    sys.path.insert(0, str(FIXTURES))  # generate.py (feeding helpers) and custom_layers.py


class Judge:
    """Keras 3 loading modelmorph's output and predicting on a fixture's recorded inputs."""

    def __init__(self, keras):
        import custom_layers  # noqa: F401  registers modelmorph_test>Scale
        import generate

        self.keras = keras
        self.generate = generate

    def load(self, path, case: str):
        return self.keras.saving.load_model(path, safe_mode=case != "lambda_layer")

    def recorded(self, case: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
        io = np.load(KERAS3 / f"{case}.io.npz")
        count = lambda prefix: sum(1 for k in io.files if k.startswith(prefix))  # noqa: E731
        return [io[f"in_{i}"] for i in range(count("in_"))], [io[f"out_{i}"] for i in range(count("out_"))]

    def predict(self, model, case: str) -> list[np.ndarray]:
        ins, _ = self.recorded(case)
        return self.generate._flat_outputs(model, model.predict(self.generate._feed(model, ins), verbose=0))

    def assert_same_model(self, model, case: str) -> None:
        """``model`` (modelmorph's output as Keras 3 loaded it) against the fixture's original
        loaded in this process: every variable bit for bit, predictions exactly (same process,
        same processor), and the outputs recorded at generation within a tolerance."""
        original = self.load(KERAS3 / f"{case}.keras", case)
        assert_same_variables(model, original)
        got = self.predict(model, case)
        assert_same_values(got, self.predict(original, case))
        assert_close_to_recorded(got, self.recorded(case)[1])

    def scrambled(self, case: str):
        """The fixture's model with every variable (optimizer's too) overwritten by a sentinel,
        so that only what a weights file loads afterwards can make it predict as recorded."""
        model = self.load(KERAS3 / f"{case}.keras", case)
        for v in model.variables + (list(model.optimizer.variables) if getattr(model, "optimizer", None) else []):
            v.assign(np.full(v.shape, 7, dtype=v.dtype))
        return model


def assert_same_variables(model, original) -> None:
    """Every variable of ``model`` equals the original's, same path, bit for bit."""
    paths = [v.path for v in model.weights]
    assert paths == [v.path for v in original.weights] and paths
    assert_same_values([v.numpy() for v in model.weights], [v.numpy() for v in original.weights], paths)


def optimizer_values(model) -> list[tuple[tuple, np.ndarray]]:
    return [(tuple(v.shape), np.asarray(v.numpy())) for v in model.optimizer.variables]


def assert_same_optimizer(values: list[tuple[tuple, np.ndarray]], expected: list[tuple[tuple, np.ndarray]]) -> None:
    """Same optimizer variables (``optimizer_values``): count, shapes and every value exactly."""
    assert [shape for shape, _ in values] == [shape for shape, _ in expected] and len(expected) >= 2
    for (_, value), (_, ref) in zip(values, expected):
        np.testing.assert_array_equal(value, ref)
