"""`modelmorph migrate`: a tree of legacy models converted in parallel, bad files reported,
never stopping, up-to-date outputs skipped."""

from __future__ import annotations

import os
import shutil

import h5py
import pytest

import modelmorph
from h5cases import FIXTURES, Recorded
from helpers import require_format
from modelmorph.commands import migrate
from modelmorph.cli import main

TF_KERAS = FIXTURES / "tf_keras"


@pytest.fixture()
def tree(tmp_path):
    """models/: two good models (one in a subfolder), a truncated file, an external link, and a
    JSON architecture named like a model beside it."""
    root = tmp_path / "models"
    (root / "team" / "old").mkdir(parents=True)
    shutil.copy(TF_KERAS / "mlp_adam.h5", root / "mlp_adam.h5")
    shutil.copy(TF_KERAS / "mlp_adam.json", root / "mlp_adam.json")
    shutil.copy(TF_KERAS / "nested_seq.h5", root / "team" / "nested_seq.h5")
    (root / "team" / "old" / "truncated.h5").write_bytes((TF_KERAS / "seq_cnn_bn.h5").read_bytes()[:5000])
    with h5py.File(root / "team" / "old" / "linked.h5", "w") as f:
        f.attrs["model_config"] = "{}"
        f["model_weights"] = h5py.ExternalLink("/etc/passwd", "/")
    (root / "notes.txt").write_text("not a model")
    return root


def _keras_format():
    require_format("keras")


def _rows(output: str) -> dict:
    rows = {}
    for line in output.splitlines()[1:-1]:
        if line and not line.startswith(" "):
            status, _, file = line.rpartition("  ")
            rows[file.split(" -> ")[0].strip()] = status.strip()
    return rows


def test_migrates_the_good_files_and_reports_the_rest(tree, tmp_path, capsys):
    _keras_format()
    out = tmp_path / "converted"
    code = main(["migrate", str(tree), "--to", "keras", "--out", str(out), "--jobs", "2"])
    printed = capsys.readouterr().out
    assert code == modelmorph.ReadError.exit_code
    assert _rows(printed) == {
        str(tree / "mlp_adam.h5"): migrate.CONVERTED,
        str(tree / "team" / "nested_seq.h5"): migrate.CONVERTED,
        str(tree / "team" / "old" / "linked.h5"): migrate.FAILED,
        str(tree / "team" / "old" / "truncated.h5"): migrate.FAILED,
        str(tree / "mlp_adam.json"): migrate.SKIPPED,
    }
    assert "external link" in printed and "not a readable HDF5 file" in printed
    assert printed.splitlines()[-1] == "2 converted, 0 with warnings, 2 failed, 0 up to date, 1 skipped"
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == [
        "mlp_adam.keras", "team", "team/nested_seq.keras"]  # no folder left for the failed ones
    with modelmorph.read(out / "team" / "nested_seq.keras") as model:
        assert model.weight_count() == 166


def test_up_to_date_outputs_are_skipped(tree, capsys):
    _keras_format()
    good = tree / "team" / "nested_seq.h5"
    assert main(["migrate", str(good), "--to", "keras"]) == 0
    output = tree / "team" / "nested_seq.keras"
    assert output.exists()
    capsys.readouterr()
    assert main(["migrate", str(good), "--to", "keras"]) == 0
    assert _rows(capsys.readouterr().out) == {str(good): migrate.UP_TO_DATE}
    stamp = output.stat().st_mtime
    os.utime(good, (stamp + 10, stamp + 10))  # the input changed after the output was written
    assert main(["migrate", str(good), "--to", "keras"]) == 0
    assert _rows(capsys.readouterr().out) == {str(good): migrate.CONVERTED}


@pytest.mark.interop
def test_migrated_models_load_in_keras3(tree, tmp_path, keras3):
    _keras_format()
    out = tmp_path / "converted"
    jobs, _ = migrate.plan([tree], "keras", out)
    migrate.run(jobs, "keras", workers=2)
    loaded = keras3.saving.load_model(out / "mlp_adam.keras")
    Recorded("tf_keras", "mlp_adam").assert_predicted_by(loaded)


def test_plan_mirrors_the_tree_and_maps_extensions(tree, tmp_path):
    jobs, skipped = migrate.plan([tree, TF_KERAS / "tfop_lambda.json"], "h5", tmp_path / "o")
    by_source = {job.source: job.destination for job in jobs}
    # `.h5` is the target's own extension: those files are left alone.
    assert by_source == {tree / "mlp_adam.json": tmp_path / "o" / "mlp_adam.h5",
                         TF_KERAS / "tfop_lambda.json": tmp_path / "o" / "tfop_lambda.h5"}
    assert skipped == []


def test_usage_errors():
    with pytest.raises(modelmorph.UsageError, match="no such file"):
        migrate.plan(["/nonexistent/models"], "keras")
    assert main(["migrate", str(TF_KERAS), "--to", "keras", "--jobs", "0"]) == 2
    assert main(["migrate", str(TF_KERAS), "--to", "nosuchformat"]) == 3


def test_an_architecture_without_weights_is_skipped_not_failed(tmp_path, capsys):
    _keras_format()
    (tmp_path / "models").mkdir()
    shutil.copy(TF_KERAS / "mlp_adam.json", tmp_path / "models" / "arch_only.json")
    assert main(["migrate", str(tmp_path / "models"), "--to", "keras", "-q"]) == 0
    printed = capsys.readouterr().out
    assert _rows(printed) == {str(tmp_path / "models" / "arch_only.json"): migrate.SKIPPED}
    assert "architecture only" in printed
    assert not (tmp_path / "models" / "arch_only.keras").exists()
    # `convert` says the same in one line, naming the output, and leaves nothing
    assert main(["convert", str(tmp_path / "models" / "arch_only.json"), str(tmp_path / "x.keras")]) == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "arch_only.json: holds an architecture without weights" in err[0] and "--arch" in err[0]
    assert not (tmp_path / "x.keras").exists()
