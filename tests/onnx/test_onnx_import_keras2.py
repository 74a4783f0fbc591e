"""Imported ONNX models go on to Keras 2 targets: `.onnx` → `.keras` → `.h5` and → TF checkpoint,
judged by tf_keras (it loads the `.h5`, restores the checkpoint into that model, and predicts what
onnxruntime predicts from the original). A model holding a keras.ops operation Keras 2 lacks is
refused in one line naming it (nothing written); an activation Keras 2 lacks is reported
`unsupported` naming it, and `--strict` refuses it in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import modelmorph
from helpers import FIXTURES, assert_close_to_recorded, require
from modelmorph.cli import main
from modelmorph.errors import EXIT_STRICT

pytestmark = pytest.mark.interop

RTOL = 1e-4
ONNX = FIXTURES / "onnx"
FIXTURE_CASES = sorted(p.name[:-len("_op17.onnx")] for p in ONNX.glob("*_op17.onnx"))
#: Fixtures whose import holds only layers Keras 2 knows (these must take the tf_keras path).
KERAS2_READY = ["mlp", "small_cnn", "up_reshape", "resnet_block", "channel_shuffle", "skip_net", "encoder_block"]


def _feeds(case: str) -> list[np.ndarray]:
    io = np.load(ONNX / f"{case}.io.npz")
    return [io[k] for k in sorted(io.files) if k.startswith("in_")]


def _ort(path: Path, feeds: list[np.ndarray]) -> list[np.ndarray]:
    ort = require("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {i.name: x for i, x in zip(session.get_inputs(), feeds)})


def _predict(model, feeds: list[np.ndarray], channels_last: bool) -> list[np.ndarray]:
    moved = [np.moveaxis(x, 1, -1) if channels_last and x.ndim >= 3 else x for x in feeds]
    got = model.predict(moved if len(moved) > 1 else moved[0], verbose=0)
    got = [np.asarray(g) for g in (got if isinstance(got, (list, tuple)) else [got])]
    return [np.moveaxis(g, -1, 1) if channels_last and g.ndim >= 3 else g for g in got]


def test_the_keras2_ready_fixtures_exist():
    assert set(KERAS2_READY) <= set(FIXTURE_CASES), FIXTURE_CASES


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("case", FIXTURE_CASES)
def test_imports_go_on_to_h5_and_checkpoints(case, layout, tf_keras, tmp_path, capsys):
    source = ONNX / f"{case}_op17.onnx"
    keras_file, h5, ckpt = tmp_path / "m.keras", tmp_path / "m.h5", tmp_path / "ckpt" / "ckpt"
    modelmorph.convert(source, keras_file, options={"layout": layout})
    try:
        diagnostics = modelmorph.convert(keras_file, h5)
    except modelmorph.WriteError as exc:  # a keras.ops node tf_keras has no TF function for
        assert case not in KERAS2_READY, exc
        assert "Keras 3 operation" in str(exc) and "Keras 2 cannot load" in str(exc) and not h5.exists()
        return
    unsupported = [d for d in diagnostics if d.kind == "unsupported"]
    if unsupported:  # named, and --strict writes nothing
        assert case not in KERAS2_READY, diagnostics.items
        assert all(d.message for d in unsupported)
        out = tmp_path / "strict.h5"
        assert main(["convert", str(keras_file), str(out), "--strict"]) == EXIT_STRICT
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--strict" in err and not out.exists(), err
        return
    want = _ort(source, _feeds(case))
    model = tf_keras.models.load_model(h5, compile=False)
    assert_close_to_recorded(_predict(model, _feeds(case), layout == "channels_last"), want, rtol=RTOL)
    ckpt.parent.mkdir()
    modelmorph.convert(keras_file, ckpt, to_format="tf-checkpoint")
    for variable in model.weights:
        variable.assign(np.zeros(variable.shape, variable.dtype.as_numpy_dtype))
    model.load_weights(str(ckpt)).assert_existing_objects_matched()
    assert_close_to_recorded(_predict(model, _feeds(case), layout == "channels_last"), want, rtol=RTOL)
