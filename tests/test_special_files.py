"""Named pipes and devices where a model file should be: refused with one line, never waited on.

Opening a named pipe (FIFO) for reading blocks until some other process writes to it, and a
device such as /dev/zero never ends: before these tests, `modelmorph info x.h5` on a pipe, or a
`migrate` over a tree holding one, hung for good. Every run here is a subprocess with a time
limit (tests/fuzzing.py), so that a regression fails instead of hanging the suite.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fuzzing import FIXTURES, run_cli

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")

K3, K2 = FIXTURES / "keras3", FIXTURES / "tf_keras"
SAVEDMODEL = FIXTURES / "savedmodel" / "seq_cnn_bn"
LIMIT = 20.0  # seconds: each run takes well under one
PIPE = "not a regular file but a named pipe (FIFO)"


def refused(run, named: Path, problem: str = PIPE) -> None:
    assert run.code == 4, (run.code, run.stderr)  # None: killed at the time limit, i.e. it waited
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"modelmorph: error: {named}: "), run.stderr
    assert problem in lines[0], lines[0]


def pipe(path: Path) -> Path:
    path.unlink(missing_ok=True)
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("command", ["convert", "info"])
@pytest.mark.parametrize("name", ["m.keras", "m.h5", "m.weights.h5", "m.json", "m.onnx", "m.index"])
def test_a_named_pipe_given_as_the_model_is_refused(tmp_path, command, name):
    source = pipe(tmp_path / name)
    args = [command, source] + ([tmp_path / "out.keras"] if command == "convert" else [])
    refused(run_cli(*args, timeout=LIMIT), source)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


@pytest.mark.parametrize("fmt", ["h5", "keras", "onnx", "json"])
def test_a_named_pipe_is_refused_when_the_format_is_named_too(tmp_path, fmt):
    # --from skips sniffing, the step that used to look before opening
    source = pipe(tmp_path / "model.bin")
    refused(run_cli("convert", source, tmp_path / "out.keras", "--from", fmt, timeout=LIMIT), source)


def test_a_named_pipe_given_as_the_architecture_is_refused(tmp_path):
    arch = pipe(tmp_path / "arch.json")
    run = run_cli("convert", K2 / "ckpt" / "seq_cnn_bn" / "ckpt", tmp_path / "out.keras", "--arch", arch,
                  timeout=LIMIT)
    refused(run, arch)
    assert not (tmp_path / "out.keras").exists()


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_a_link_to_a_device_is_refused(tmp_path):
    link = tmp_path / "m.h5"
    link.symlink_to("/dev/zero")
    refused(run_cli("info", link, timeout=LIMIT), link, "not a regular file but a character device")


# Without a regular saved_model.pb the folder is not recognised as a SavedModel (exit 3): named, it is read.
@pytest.mark.parametrize("member, named", [("keras_metadata.pb", []), ("variables/variables.data-00000-of-00001", []),
                                           ("saved_model.pb", ["--from", "savedmodel"])])
def test_a_named_pipe_inside_a_savedmodel_is_refused(tmp_path, member, named):
    folder = tmp_path / "model"
    shutil.copytree(SAVEDMODEL, folder)
    pipe(folder / member)
    refused(run_cli("convert", folder, tmp_path / "out.keras", *named, timeout=LIMIT), folder / member)
    assert not (tmp_path / "out.keras").exists()


# Without a regular config.json the folder is not recognised as an archive (exit 3): named, it is read.
@pytest.mark.parametrize("member, named", [("config.json", ["--from", "keras"]), ("model.weights.h5", []),
                                           ("assets/vocabulary.txt", [])])
def test_a_named_pipe_inside_an_unzipped_keras_archive_is_refused(tmp_path, member, named):
    folder = tmp_path / "model"
    shutil.copytree(K3 / "mlp_adam_dir", folder)
    (folder / member).parent.mkdir(exist_ok=True)
    pipe(folder / member)
    run = run_cli("convert", folder, tmp_path / "out.h5", *named, timeout=LIMIT)
    refused(run, folder / member)
    assert not (tmp_path / "out.h5").exists()


def test_a_named_pipe_for_a_checkpoint_data_file_is_refused(tmp_path):
    folder = tmp_path / "ckpt"
    shutil.copytree(K2 / "ckpt" / "seq_cnn_bn", folder)
    data = pipe(folder / "ckpt.data-00000-of-00001")
    run = run_cli("convert", folder / "ckpt", tmp_path / "out.keras", "--arch", K2 / "seq_cnn_bn.h5", timeout=LIMIT)
    refused(run, data)


def test_migrate_reports_a_named_pipe_in_the_tree_and_converts_the_rest(tmp_path):
    tree = tmp_path / "tree"
    (tree / "sm").mkdir(parents=True)
    shutil.copy(K2 / "mlp_adam.h5", tree / "good.h5")
    pipe(tree / "pipe.h5")
    shutil.copytree(SAVEDMODEL, tree / "sm" / "m")
    pipe(tree / "sm" / "m" / "keras_metadata.pb")
    # Its table is on stdout, which run_cli drops; a wait raises TimeoutExpired.
    run = subprocess.run([sys.executable, "-m", "modelmorph", "migrate", str(tree), "--to", "keras", "--out",
                          str(tmp_path / "out"), "-q", "--jobs", "1"], capture_output=True, text=True,
                         stdin=subprocess.DEVNULL, timeout=LIMIT * 2)
    assert run.returncode == 4, (run.returncode, run.stdout, run.stderr)
    assert sorted(p.name for p in (tmp_path / "out").rglob("*") if p.is_file()) == ["good.keras"]
    assert f"{tree / 'pipe.h5'}: {PIPE}" in run.stdout, run.stdout
    assert f"{tree / 'sm' / 'm' / 'keras_metadata.pb'}: {PIPE}" in run.stdout, run.stdout
    assert "1 converted" in run.stdout and "2 failed" in run.stdout, run.stdout


def test_open_input_refuses_without_waiting_and_opens_regular_files_as_open_does(tmp_path):
    from modelmorph import ReadError
    from modelmorph.storage.safety import open_input, read_json_file, refuse_special

    fifo = pipe(tmp_path / "p.json")
    for call in (open_input, refuse_special, read_json_file):  # in this process: a wait would hang the test
        with pytest.raises(ReadError, match=r"named pipe \(FIFO\)"):
            call(fifo)
    regular = tmp_path / "r.json"
    regular.write_text('{"a": 1}')
    with open_input(regular, buffering=0) as f:
        assert f.name == str(regular) and f.read() == b'{"a": 1}' and os.get_blocking(f.fileno())
    assert read_json_file(regular) == {"a": 1}
    refuse_special(regular)
    refuse_special(tmp_path)  # folders are models too (SavedModel, unzipped archives)
    refuse_special(tmp_path / "missing")  # whoever opens it says it is missing
    with pytest.raises(IsADirectoryError):
        open_input(tmp_path)
    with pytest.raises(FileNotFoundError):
        open_input(tmp_path / "missing")
    if sys.platform.startswith("linux"):
        with pytest.raises(ReadError, match="character device"):
            open_input("/dev/zero")


def test_a_loop_of_symbolic_links_among_the_assets_is_one_plain_line(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(K3 / "mlp_adam_dir", folder)
    (folder / "assets").mkdir()
    (folder / "assets" / "x").symlink_to("x")
    run = run_cli("convert", folder, tmp_path / "out.h5", timeout=LIMIT)
    refused(run, folder, "'assets/x' is a loop of symbolic links")
