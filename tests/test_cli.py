"""The command line: help, formats, info, diff, exit codes, overwrite rules."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from modelmorph.cli import main
from modelmorph.errors import EXIT_DIFFERENT, EXIT_OK, EXIT_UNKNOWN_FORMAT, EXIT_USAGE, EXIT_WRITE

from helpers import FIXTURES

MLP3 = FIXTURES / "keras3" / "mlp_adam.json"
MLP2 = FIXTURES / "tf_keras" / "mlp_adam.json"


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_version_is_the_installed_distributions(capsys):
    """--version prints the package's constant (no importlib.metadata at start-up): it must be
    the version the distribution was installed as, from pyproject.toml."""
    from importlib.metadata import version

    code, out, _ = run(capsys, "--version")
    assert code == EXIT_OK and out.split() == ["modelmorph", version("modelmorph")]


def test_the_program_collects_cycles_in_larger_batches_and_main_leaves_the_collector_alone():
    """``run`` (the installed program) raises the young generation's threshold, so that a
    model's metadata is not rescanned ~90 times; ``main`` (called in-process by scripts and
    these tests) does not touch it. Checked in a subprocess: the settings are process-wide."""
    probe = ("import gc, sys, modelmorph.cli as cli\n"
             "seen = []\n"
             "cli.main = lambda: seen.append(gc.get_threshold()) or 0\n"
             "default = gc.get_threshold()\n"
             "try:\n    cli.run()\nexcept SystemExit as exc:\n    code = exc.code\n"
             "print(seen[0][0], seen[0][1:] == default[1:], code)\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["50000", "True", "0"]
    import gc

    before = gc.get_threshold()
    with pytest.raises(SystemExit):
        main(["--help"])
    assert gc.get_threshold() == before


def test_a_reader_that_stops_early_ends_the_program_quietly():
    """`modelmorph info m.keras | head -1`: the pipe closes under the program's output; it
    stops without a traceback, with the status of a tool SIGPIPE ended (141)."""
    proc = subprocess.Popen([sys.executable, "-c", "from modelmorph.cli import run; run()", "info",
                             str(FIXTURES / "keras3" / "mlp_adam.keras")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the first line (the program takes ~0.1 s to start)
    err = proc.stderr.read().decode()
    assert proc.wait(60) == 141 and err == "", err


def test_help_teaches(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for word in ("convert", "info", "formats", "plugins", "diff", "examples:", "exit status"):
        assert word in text


def test_help_loads_no_heavy_module():
    """`modelmorph --help` must answer at once: no numpy, h5py, protobuf, plugin or pluggy import."""
    code = ("import sys; from modelmorph.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('numpy', 'h5py', 'google.protobuf', 'onnx', 'modelmorph_json', 'pluggy')"
            " if m in sys.modules]\n"
            "print(heavy, file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stderr.strip().splitlines()[-1] == "[]"


def test_info_loads_no_writer():
    """`modelmorph info` only reads: none of the writing code of a .keras archive loads."""
    writers = ("modelmorph.storage.plainh5.writer", "modelmorph_keras.storedzip", "modelmorph_keras.weightsfile")
    code = ("import sys; from modelmorph.cli import main\n"
            f"assert main(['info', {str(FIXTURES / 'keras3' / 'mlp_adam.keras')!r}]) == 0\n"
            f"print([m for m in {writers!r} if m in sys.modules], file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stderr.strip().splitlines()[-1] == "[]"


def test_no_arguments_prints_usage(capsys):
    code, out, _ = run(capsys)
    assert code == EXIT_USAGE and "COMMAND" in out


def test_usage_error_is_one_line(capsys):
    code, _, err = run(capsys, "convert", "only-one-arg")
    assert code == EXIT_USAGE and len(err.strip().splitlines()) == 1


def test_formats_json_lists_json(capsys):
    code, out, _ = run(capsys, "formats", "--json")
    formats = {f["name"]: f for f in json.loads(out)}
    assert code == EXIT_OK
    assert formats["json"]["extensions"] == [".json"] and formats["json"]["plugin"] == "json"
    assert formats["json"]["reads"] == ["architecture"] and "dialect" in formats["json"]["options"]


def test_plugins_lists_builtins(capsys):
    code, out, _ = run(capsys, "plugins", "--json")
    plugins = {p["name"]: p for p in json.loads(out)}
    assert plugins["json"]["builtin"] and plugins["json"]["hooks"] == ["modelmorph_formats"]


def test_info_text_and_json(capsys):
    code, out, _ = run(capsys, "info", MLP3)
    assert code == EXIT_OK and "Sequential" in out and "Dense" in out and "format json" in out
    code, out, _ = run(capsys, "info", MLP3, "--json")
    summary = json.loads(out)
    assert summary["format"] == "json" and summary["class_name"] == "Sequential"
    assert [l["class_name"] for l in summary["layers"]][-2:] == ["Dense", "Dense"]


def test_convert_refuses_to_overwrite_without_force(tmp_path, capsys):
    out = tmp_path / "m.json"
    out.write_text("keep me")
    code, _, err = run(capsys, "convert", MLP2, out)
    assert code == EXIT_WRITE and "--force" in err and out.read_text() == "keep me"
    code, _, _ = run(capsys, "convert", MLP2, out, "--force")
    assert code == EXIT_OK and json.loads(out.read_text())["class_name"] == "Sequential"


def test_convert_refuses_an_existing_output_before_reading(tmp_path, capsys, monkeypatch):
    """The refusal comes first: a long read is not wasted on an output that cannot be written."""
    from modelmorph import registry

    reads = []
    real = registry.Format.load_reader
    monkeypatch.setattr(registry.Format, "load_reader", lambda self: reads.append(self.name) or real(self))
    out = tmp_path / "m.json"
    out.write_text("keep me")
    code, _, err = run(capsys, "convert", MLP2, out)
    assert code == EXIT_WRITE and "already exists" in err and reads == []
    code, _, _ = run(capsys, "convert", MLP2, tmp_path / "new.json")
    assert code == EXIT_OK and reads  # the spy sees reads


@pytest.mark.parametrize("name", ["ck", "ck.index"])
def test_convert_refuses_an_existing_checkpoint_index_before_reading(tmp_path, capsys, monkeypatch, name):
    """A checkpoint's output is several files: the .index that writing the prefix (or naming its
    .index) surely produces is refused before the read too, not after a long copy."""
    from modelmorph import registry

    reads = []
    real = registry.Format.load_reader
    monkeypatch.setattr(registry.Format, "load_reader", lambda self: reads.append(self.name) or real(self))
    src = FIXTURES / "keras3" / "mlp_adam.keras"
    (tmp_path / "ck.index").write_bytes(b"keep me")
    code, _, err = run(capsys, "convert", src, tmp_path / name, "--to", "tf-checkpoint")
    assert code == EXIT_WRITE and "ck.index: already exists" in err and reads == []
    assert (tmp_path / "ck.index").read_bytes() == b"keep me"
    code, _, _ = run(capsys, "convert", src, tmp_path / name, "--to", "tf-checkpoint", "--force")
    assert code == EXIT_OK and reads and (tmp_path / "ck.index").read_bytes() != b"keep me"


def test_unknown_target_format(tmp_path, capsys):
    code, _, err = run(capsys, "convert", MLP3, tmp_path / "m.xyz")
    assert code == EXIT_UNKNOWN_FORMAT and "--to" in err and "json" in err
    code, _, err = run(capsys, "convert", MLP3, tmp_path / "m.json", "--to", "nope")
    assert code == EXIT_UNKNOWN_FORMAT and "known formats" in err


def test_unknown_source(tmp_path, capsys):
    src = tmp_path / "data.bin"
    src.write_bytes(b"\x00\x01garbage")
    code, _, err = run(capsys, "info", src)
    assert code == EXIT_UNKNOWN_FORMAT and "--from" in err
    code, _, err = run(capsys, "info", tmp_path / "missing.json")
    assert code in (EXIT_UNKNOWN_FORMAT, 4) and "missing.json" in err


def test_unknown_option_is_a_usage_error(tmp_path, capsys):
    code, _, err = run(capsys, "convert", MLP3, tmp_path / "m.json", "-O", "colour=blue")
    assert code == EXIT_USAGE and "colour" in err and "dialect" in err
    code, _, err = run(capsys, "convert", MLP3, tmp_path / "m.json", "-O", "dialect=keras9")
    assert code == EXIT_USAGE and not (tmp_path / "m.json").exists()


def test_diff_equal_and_different(tmp_path, capsys):
    out = tmp_path / "m.json"
    assert run(capsys, "convert", MLP2, out)[0] == EXIT_OK
    code, text, _ = run(capsys, "diff", MLP2, out)
    assert code == EXIT_OK and text.strip().splitlines()[-1].startswith("equal")
    cfg = json.loads(out.read_text())
    cfg["config"]["layers"][-1]["config"]["units"] = 5
    out.write_text(json.dumps(cfg))
    code, text, _ = run(capsys, "diff", MLP2, out)
    assert code == EXIT_DIFFERENT and "units" in text


def test_console_script_runs(tmp_path):
    """The installed `modelmorph` command and `python -m modelmorph` exist, exit with main()'s
    status and report errors without a traceback."""
    exe = os.path.join(os.path.dirname(sys.executable), "modelmorph")
    for command in ([exe], [sys.executable, "-m", "modelmorph"]):
        proc = subprocess.run([*command, "info", str(tmp_path / "nope.h5")], capture_output=True, text=True)
        assert proc.returncode == 4 and "Traceback" not in proc.stderr and "nope.h5" in proc.stderr
        proc = subprocess.run([*command, "--version"], capture_output=True, text=True)
        assert proc.returncode == 0 and proc.stdout.startswith("modelmorph ")
