"""``modelmorph verify``: the engines reproduce Keras' recorded predictions, every conversion the
suite makes verifies, and a perturbed weight or two swapped Conv channels fail it."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import modelmorph
from helpers import FIXTURES, assert_close_to_recorded
from modelmorph.cli import main
from modelmorph.commands.verify import run_model

KERAS3_CASES = ["mlp_adam", "seq_cnn_bn", "multi_io_shared", "embed_lstm_bigru", "nested_seq", "mha_ln", "mobilenetv2"]
TF_KERAS_CASES = [*KERAS3_CASES, "tfop_lambda", "mixed_precision"]


def _recorded(family: str, case: str) -> tuple[dict, list]:
    io = np.load(FIXTURES / family / f"{case}.io.npz")
    manifest = json.loads((FIXTURES / "MANIFEST.json").read_text())["cases"][f"{family}/{case}"]
    names = [i["name"] for i in manifest["inputs"]]
    inputs = {name: io[f"in_{i}"] for i, name in enumerate(names)}
    return inputs, [io[f"out_{i}"] for i in range(len(manifest["outputs"]))]


def _source(family: str, case: str):
    return FIXTURES / family / (f"{case}.keras" if family == "keras3" else f"{case}.h5")


@pytest.mark.parametrize("family,case", [("keras3", c) for c in KERAS3_CASES] + [("tf_keras", c) for c in TF_KERAS_CASES])
def test_the_reference_engine_reproduces_keras(family, case):
    """The engine itself is judged by Keras: its outputs on the recorded inputs are Keras'."""
    inputs, recorded = _recorded(family, case)
    outputs = run_model(_source(family, case), inputs, engine="reference")
    if case == "multi_io_shared":  # Keras recorded the dict outputs sorted by name, as the graph has them
        outputs = sorted(outputs)
    assert_close_to_recorded([value for _, value in outputs], recorded, rtol=1e-5)


@pytest.mark.parametrize("case", ["seq_cnn_bn", "embed_lstm_bigru", "multi_io_shared", "mha_ln"])
def test_conversions_verify(case, tmp_path, capsys):
    source = FIXTURES / "tf_keras" / f"{case}.h5"
    modelmorph.convert(source, tmp_path / "m.keras")
    modelmorph.convert(tmp_path / "m.keras", tmp_path / "back.h5")
    modelmorph.convert(tmp_path / "m.keras", tmp_path / "m.onnx")
    for other in ("m.keras", "back.h5", "m.onnx"):
        assert main(["verify", str(source), str(tmp_path / other), "--engine", "reference"]) == 0
        assert "compute the same function" in capsys.readouterr().out


def test_a_checkpoint_with_its_architecture_verifies(tmp_path):
    source = FIXTURES / "tf_keras" / "mlp_adam.h5"
    result = modelmorph.verify(FIXTURES / "tf_keras" / "ckpt" / "mlp_adam" / "ckpt", source,
                               arch=FIXTURES / "tf_keras" / "mlp_adam.json")
    assert result.ok and result.outputs[0].max_abs == 0.0


def _rewritten(source, out, change):
    """``source`` written to ``out`` with ``change(layer_path, weight_path, array) -> array`` applied."""
    with modelmorph.read(source) as model:
        for path, layer, weight in model.iter_weights():
            value = change(path, weight.read().copy())
            if value is not None:
                layer.weights[layer.weights.index(weight)] = dataclasses.replace(weight, loader=lambda v=value: v,
                                                                                 raw=None)
        modelmorph.write(model, out)


def test_one_weight_moved_by_a_thousandth_fails(tmp_path, capsys):
    source = FIXTURES / "keras3" / "mlp_adam.keras"

    def nudge(path, value):
        if path == "dense_1/kernel":
            value.flat[0] += 1e-3
            return value
        return None

    _rewritten(source, tmp_path / "b.keras", nudge)
    assert main(["verify", str(source), str(tmp_path / "b.keras"), "--atol", "1e-6", "--rtol", "1e-6"]) == 1
    out = capsys.readouterr().out
    assert "DIFFERENT" in out and "differ" in out.splitlines()[-1]
    result = modelmorph.verify(source, tmp_path / "b.keras", atol=1e-6, rtol=1e-6)
    assert not result.ok and 1e-5 < result.outputs[0].max_abs < 1e-1


def test_two_swapped_conv_channels_fail(tmp_path):
    source = FIXTURES / "keras3" / "seq_cnn_bn.keras"

    def swap(path, value):
        if path == "conv2d/kernel":
            value[..., [0, 1]] = value[..., [1, 0]]
            return value
        return None

    _rewritten(source, tmp_path / "b.keras", swap)
    result = modelmorph.verify(source, tmp_path / "b.keras", engine="reference")
    assert not result.ok


def test_a_model_alone_is_run_once(tmp_path, capsys):
    assert main(["verify", str(FIXTURES / "keras3" / "embed_lstm_bigru.keras"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["stats"][0]["shape"] == [4, 2] and report["stats"][0]["nan"] == 0
    assert report["free_dimensions"] == {"tokens[0]": 4}


def test_user_inputs_and_errors(tmp_path, capsys):
    x = np.ones((2, 8), np.float32)
    np.save(tmp_path / "x.npy", x)
    source = FIXTURES / "keras3" / "mlp_adam.keras"
    assert main(["verify", str(source), "--input", f"input_layer={tmp_path / 'x.npy'}", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["inputs"] == {"input_layer": [2, 8]}
    assert main(["verify", str(source), "--input", f"nope={tmp_path / 'x.npy'}"]) == 2
    assert "no such input" in capsys.readouterr().err
    code = main(["verify", str(FIXTURES / "keras3" / "lambda_layer.keras")])
    err = capsys.readouterr().err
    assert code == 4 and "'lambda' (Lambda)" in err and len(err.strip().splitlines()) == 1


BREAKS_SEQ_CNN_BN = """
import dataclasses
import modelmorph

@modelmorph.hookimpl
def modelmorph_transform(model, source, target, options, diagnostics):
    # a deliberately broken conversion: one kernel of one model doubled, silently
    if model.name == "seq_cnn_bn":
        layer = next(layer for layer in model.layers if layer.weights)
        kernel = layer.weights[0]
        layer.weights[0] = dataclasses.replace(kernel, loader=lambda: kernel.read() * 2, raw=None)
"""


def test_migrate_verify_reports_every_model_and_drops_a_broken_conversion(tmp_path):
    import os
    import shutil
    import subprocess
    import sys
    import textwrap

    tree, out, site = tmp_path / "models", tmp_path / "out", tmp_path / "site"
    tree.mkdir(), site.mkdir()
    for name in ("mlp_adam.h5", "seq_cnn_bn.h5", "nested_seq.h5"):
        shutil.copy(FIXTURES / "tf_keras" / name, tree / name)
    (site / "mm_breaks.py").write_text(textwrap.dedent(BREAKS_SEQ_CNN_BN))
    info = site / "mm_breaks-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mm-breaks\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[modelmorph]\nbreaks = mm_breaks\n")
    env = {**os.environ, "PYTHONPATH": str(site)}
    cli = [sys.executable, "-m", "modelmorph.cli", "migrate", str(tree), "--to", "keras", "--out", str(out),
           "--verify", "--jobs", "2", "-q"]
    run = subprocess.run(cli, env=env, capture_output=True, text=True)
    report = run.stdout
    assert run.returncode == 1, run.stderr
    assert report.count("verified: max |difference| 0 over 1 output(s)") == 2  # mlp_adam, nested_seq
    assert "seq_cnn_bn.keras: computes otherwise than its source" in report
    assert not (out / "seq_cnn_bn.keras").exists() and (out / "mlp_adam.keras").exists()
    run = subprocess.run(cli + ["--keep-unverified"], env=env, capture_output=True, text=True)
    assert run.returncode == 1 and "unverified" in run.stdout and (out / "seq_cnn_bn.keras").exists()
