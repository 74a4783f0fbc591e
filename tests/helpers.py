"""Helpers every format's tests reuse: one generic round trip and model comparison."""

from __future__ import annotations

import copy
from pathlib import Path

import modelmorph
from modelmorph import kerasconfig
from modelmorph.diff import diff_models


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
