"""Hostile and broken JSON: one-line errors, exit codes, nothing executed, nothing left behind."""

from __future__ import annotations

import json

import pytest

import modelmorph
from modelmorph.storage import safety
from modelmorph.cli import main
from modelmorph.errors import EXIT_READ

from helpers import FIXTURES


def _run(capsys, *argv):
    code = main(list(argv))
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize("content, problem", [
    ("[" * 100000 + "]" * 100000, "nested"),
    ('{"class_name": "Functional", "config": ' + "[" * 5000 + "]" * 5000 + "}", "nested"),
    ("{not json", "malformed"),
    (b"\xff\xfe{}", "UTF-8"),
    ('["a list"]', "not a Keras architecture"),
    ('{"class_name": "Functional", "config": {"layers": 7, "input_layers": [], "output_layers": []}}', "layers are a list"),
    ('{"class_name": "Functional", "config": {"layers": [{"class_name": 3}], "input_layers": [], "output_layers": []}}', "class_name"),
    ('{"class_name": "Functional", "config": {"name": "m", "layers": [], "input_layers": [["ghost", 0, 0]], "output_layers": []}}', "ghost"),
])
def test_bad_json_is_a_one_line_read_error(tmp_path, capsys, content, problem):
    src = tmp_path / "bad.json"
    src.write_bytes(content if isinstance(content, bytes) else content.encode())
    out = tmp_path / "out.json"
    code, err = _run(capsys, "convert", str(src), str(out))
    assert code == EXIT_READ
    assert len(err.splitlines()) == 1 and str(src) in err and problem in err, err
    assert "Traceback" not in err
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["bad.json"]


def test_oversized_json_is_refused_before_parsing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(safety, "MAX_JSON_BYTES", 1000)
    src = tmp_path / "big.json"
    src.write_text(json.dumps({"class_name": "Sequential", "config": {"pad": " " * 2000}}))
    code, err = _run(capsys, "info", str(src))
    assert code == EXIT_READ and "more than the 1000" in err


def test_module_import_attack_is_carried_as_data(tmp_path):
    """CVE-2025-1550: a layer naming module `os`, class `system`. Nothing may be imported or run."""
    marker = tmp_path / "pwned"
    cfg = json.loads((FIXTURES / "keras3" / "mlp_adam.json").read_text())
    cfg["config"]["layers"].append({"module": "os", "class_name": "system", "registered_name": "system",
                                    "config": {"name": "evil", "command": f"touch {marker}"}})
    src = tmp_path / "evil.json"
    src.write_text(json.dumps(cfg))
    out = tmp_path / "out.json"
    diags = modelmorph.convert(src, out)
    assert not marker.exists()
    written = json.loads(out.read_text())
    assert written["config"]["layers"][-1]["module"] == "os"  # faithfully carried, as data
    assert any(d.kind == "contains-code" and d.where == "evil" for d in diags)


def test_lambda_bytecode_is_carried_never_run(tmp_path):
    """CVE-2024-3660: marshal bytecode in a Lambda. It is copied, flagged, never unmarshalled."""
    cfg = json.loads((FIXTURES / "keras3" / "lambda_layer.json").read_text())
    src = tmp_path / "lambda.json"
    src.write_text(json.dumps(cfg))
    out = tmp_path / "out.json"
    diags = modelmorph.convert(src, out, options={"dialect": "keras2"})
    assert any(d.kind == "contains-code" for d in diags)
    original = next(l for l in cfg["config"]["layers"] if l["class_name"] == "Lambda")["config"]["function"]
    written = next(l for l in json.loads(out.read_text())["config"]["layers"] if l["class_name"] == "Lambda")
    assert written["config"]["function"][0] == original["config"]["code"]  # same bytes, Keras 2 list form
    assert written["config"]["function_type"] == "lambda"


def test_strict_makes_diagnostics_fatal_and_writes_nothing(tmp_path, capsys):
    src = FIXTURES / "keras3" / "lambda_layer.json"
    out = tmp_path / "out.json"
    code, err = _run(capsys, "convert", str(src), str(out), "--strict")
    assert code == 6 and "--strict" in err
    assert not out.exists() and list(tmp_path.iterdir()) == []
