"""Helpers every format's tests reuse: one generic round trip and model comparison."""

from __future__ import annotations

import copy
import importlib
import os
from pathlib import Path

import numpy as np
import pytest

import modelmorph
from modelmorph.keras import kerasconfig
from modelmorph.commands.diff import diff_models


#: The fixture files (tests/fixtures). Import it from here, not from `conftest`: several test
#: folders have a conftest of their own, and which one `import conftest` finds depends on the run.
FIXTURES = Path(__file__).resolve().parent / "fixtures"

# -- what a test needs: skipped on a developer's machine without it, a failure in CI ----------

def missing(reason: str):
    """Skip saying why; under CI (``CI`` set, as ``.ci/run`` runs) fail instead: CI installs
    every judge, so a judge that is missing there is a broken install, not a reason to pass."""
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        pytest.fail(f"{reason} (CI installs every test extra: this is a broken install)", pytrace=False)
    pytest.skip(reason)


def require(module: str):
    """Import a judging library (a test extra) or report it ``missing``."""
    try:
        found = importlib.import_module(module)
    except ImportError as exc:
        missing(f"{module} is not installed: {exc}")
    if getattr(found, "__file__", None) is None:  # e.g. tests/keras/ seen as a namespace package
        missing(f"{module} is not installed (only a folder of that name was found)")
    return found


def require_format(name: str) -> None:
    """Report a format that another plugin provides ``missing`` when it is not installed."""
    if name not in modelmorph.default_registry().formats:
        missing(f"the `{name}` format is not installed (another plugin provides it)")


def assert_models_equal(a: "modelmorph.Model", b: "modelmorph.Model", atol: float = 0.0,
                        architecture: bool = True) -> None:
    """Same architecture (Keras 3 configs, build configs aside) and every weight within ``atol``."""
    report = diff_models(a, b, atol=atol)
    problems = list(report.architecture) if architecture else []
    problems += [f"{p}: {note or d}" for p, d, note in report.weights if note or d is None or d > atol]
    assert not problems, "models differ:\n" + "\n".join(problems[:20])
    assert report.weights or not any(True for _ in a.iter_weights())


def snapshot(model: "modelmorph.Model") -> dict:
    """What must not change when a model is written (writers may not mutate their input)."""
    return {"config": copy.deepcopy(kerasconfig.model_to_config(model)) if model.has_architecture else None,
            "weights": [(p, w.shape, w.dtype, w.trainable) for p, _, w in model.iter_weights()]}


def write_read(tmp_path: Path, model: "modelmorph.Model", fmt: str, filename: str, *,
               options: dict | None = None, read_options: dict | None = None,
               arch: "modelmorph.Model | None" = None, atol: float = 0.0, architecture: bool = True):
    """Write ``model`` as ``fmt`` under ``tmp_path``, read it back, check nothing was lost
    and that writing did not mutate the model. Returns (model read back, diagnostics)."""
    before = snapshot(model)
    out = tmp_path / filename
    diags = modelmorph.Diagnostics()
    modelmorph.write(model, out, fmt, options=options or {}, diagnostics=diags)
    assert snapshot(model) == before, "the writer mutated the model it was given"
    back = modelmorph.read(out, fmt, options=read_options or {}, arch=arch)
    assert_models_equal(model, back, atol=atol, architecture=architecture)
    return back, diags


# -- judging predictions and variables ---------------------------------------------------------
# Floating-point predictions are not bit-reproducible across processors (oneDNN picks kernels by
# CPU), so exactness is proven where it is deterministic: on variables, bit for bit, and on
# predictions computed in the same process. Recorded outputs are compared within a tolerance.

#: Relative tolerance against outputs recorded on another machine, scaled to the output's size.
RECORDED_RTOL = 1e-5


def assert_close_to_recorded(got, recorded, rtol: float = RECORDED_RTOL) -> None:
    """Each output within ``rtol`` of the recorded one, relative to the largest recorded
    magnitude (so values near zero do not demand more digits than the output carries)."""
    got, recorded = list(got), list(recorded)
    assert len(got) == len(recorded) > 0
    for i, (g, r) in enumerate(zip(got, recorded)):
        g, r = np.asarray(g), np.asarray(r)
        assert g.shape == r.shape, (i, g.shape, r.shape)
        scale = float(np.max(np.abs(r))) if r.size else 0.0
        np.testing.assert_allclose(g, r, rtol=rtol, atol=rtol * max(scale, 1e-30), err_msg=f"output {i}")


def assert_same_values(got, expected, labels=None) -> None:
    """Two sequences of arrays equal bit for bit (dtype, shape and every bit of every value;
    NaN payloads and the sign of zero included): how converted variables are judged."""
    got, expected = [np.asarray(g) for g in got], [np.asarray(e) for e in expected]
    assert len(got) == len(expected), (len(got), len(expected))
    for i, (g, e) in enumerate(zip(got, expected)):
        label = labels[i] if labels else f"value {i}"
        assert (g.dtype, g.shape) == (e.dtype, e.shape), f"{label}: {g.dtype}{g.shape} != {e.dtype}{e.shape}"
        if g.dtype.kind in "fcV" or g.dtype.name == "bfloat16":
            assert g.tobytes() == e.tobytes(), f"{label}: bits differ (max |d| {_max_difference(g, e)})"
        else:
            np.testing.assert_array_equal(g, e, err_msg=label)


def _max_difference(a: np.ndarray, b: np.ndarray) -> float:
    try:
        return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0
    except (TypeError, ValueError):
        return float("nan")
