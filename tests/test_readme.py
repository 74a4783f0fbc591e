"""The README's main-job command works as written (minus the virtualenv set-up)."""

from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np
import pytest

from modelmorph.cli import main

from helpers import assert_close_to_recorded

ROOT = Path(__file__).resolve().parents[1]


def _main_job_commands() -> list[list[str]]:
    line = next(l for l in (ROOT / "README.md").read_text().splitlines() if "examples/" in l and "convert" in l)
    commands = [shlex.split(part) for part in line.split("&&")]
    return [c[1:] for c in commands if c and c[0].endswith("/modelmorph")]


def test_main_job_converts_the_bundled_example(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    commands = _main_job_commands()
    assert [c[0] for c in commands] == ["convert", "info"]
    output = commands[0][-1]
    convert = [a if a != output else str(tmp_path / output) for a in commands[0]]
    assert main(convert) == 0
    assert main(["info", str(tmp_path / output)]) == 0
    assert "Total params" in capsys.readouterr().out


@pytest.mark.interop
def test_main_job_output_predicts_like_the_original(tmp_path, keras3, fixtures_dir):
    source = next(a for a in _main_job_commands()[0] if a.startswith("examples/"))
    out = tmp_path / "model.keras"
    assert main(["convert", str(ROOT / source), str(out)]) == 0
    io = np.load(fixtures_dir / "tf_keras" / "seq_cnn_bn.io.npz")  # the example is this fixture
    assert (ROOT / source).read_bytes() == (fixtures_dir / "tf_keras" / "seq_cnn_bn.h5").read_bytes()
    predicted = keras3.saving.load_model(out).predict(io["in_0"], verbose=0)
    assert_close_to_recorded([predicted], [io["out_0"]])
