"""Broken and hostile checkpoints through the command line: exit status 4, one stderr line
naming the file, and no output left behind."""

from __future__ import annotations

import os
import shutil

import pytest

from ckptcases import TF_KERAS, keras2_ckpt, require_format
from modelmorph.cli import main
from modelmorph_tfckpt.bundle import TableReader, TableWriter
from modelmorph_tfckpt.bundle.protos import tensor_bundle_pb2

KERNEL = b"layer_with_weights-0/kernel/.ATTRIBUTES/VARIABLE_VALUE"


@pytest.fixture()
def ckpt(tmp_path):
    """A copy of a tf_keras checkpoint (Adam state included) to break."""
    folder = tmp_path / "src"
    shutil.copytree(keras2_ckpt("mlp_adam").parent, folder)
    return folder / "ckpt"


def _flip(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def _rewrite_entry(prefix, key, **changes):
    """Rewrite the index with one BundleEntryProto changed (shape given as a list of sizes)."""
    index = prefix.with_name(prefix.name + ".index")
    with TableReader(index) as table:
        items = list(table)
    with open(index, "wb") as f:
        writer = TableWriter(f)
        for k, value in items:
            if k == key:
                entry = tensor_bundle_pb2.BundleEntryProto.FromString(value)
                for field, new in changes.items():
                    if field == "shape":
                        del entry.shape.dim[:]
                        for size in new:
                            entry.shape.dim.add(size=size)
                    else:
                        setattr(entry, field, new)
                value = entry.SerializeToString()
            writer.add(k, value)
        writer.finish()


def _break(kind, prefix):
    data = prefix.with_name("ckpt.data-00000-of-00001")
    index = prefix.with_name("ckpt.index")
    if kind == "wrong magic":
        _flip(index, index.stat().st_size - 1)
    elif kind == "truncated index":
        index.write_bytes(index.read_bytes()[:300])
    elif kind == "checksum mismatch":
        _flip(data, 100)  # inside the first kernel
    elif kind == "missing shard":
        data.unlink()
    elif kind == "offset past the end":
        data.write_bytes(data.read_bytes()[:-40])
    elif kind == "absurd declared size":
        _rewrite_entry(prefix, KERNEL, shape=[1 << 40, 1 << 20], size=1 << 62)
    elif kind == "size contradicting the shape":
        _rewrite_entry(prefix, KERNEL, shape=[1 << 30])
    elif kind == "symbolic link out of the folder":
        outside = prefix.parent.parent / "elsewhere.data"
        data.rename(outside)
        data.symlink_to(outside)
    elif kind == "state file pointing outside":
        (prefix.parent / "checkpoint").write_text('model_checkpoint_path: "../../secret/ckpt"\n')
        index.unlink()


EXPECTED = {
    "wrong magic": ("ckpt.index", "bad table magic"),
    "truncated index": ("ckpt.index", "truncated"),
    "checksum mismatch": ("ckpt.data-00000-of-00001", "checksum mismatch for tensor 'layer_with_weights-0/kernel"),
    "missing shard": ("ckpt.data-00000-of-00001", "missing data shard 0 of 1"),
    "offset past the end": ("ckpt.data-00000-of-00001", "past the end"),
    "absurd declared size": ("ckpt.data-00000-of-00001", "past the end"),
    "size contradicting the shape": ("ckpt.index", "needs 4294967296 bytes but the entry stores 512"),
    "symbolic link out of the folder": ("ckpt.data-00000-of-00001", "outside"),
    "state file pointing outside": ("checkpoint", "checkpoint state file points outside its folder"),
}


@pytest.mark.parametrize("kind", list(EXPECTED))
@pytest.mark.parametrize("target", ["checkpoint", "keras"])
def test_broken_checkpoints_are_one_line_read_errors(kind, target, ckpt, tmp_path, capsys):
    if target == "keras":
        require_format("keras")
    _break(kind, ckpt)
    out = tmp_path / "out"
    out.mkdir()
    source = ckpt.parent if kind == "state file pointing outside" else ckpt
    argv = ["convert", str(source), str(out / "ckpt"), "--to", "tf-checkpoint"] if target == "checkpoint" else \
        ["convert", str(source), str(out / "model.keras"), "--arch", str(TF_KERAS / "mlp_adam.json")]
    assert main(argv) == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("modelmorph: error: ")
    filename, problem = EXPECTED[kind]
    assert f"{filename}: " in err and problem in err, err
    assert list(out.iterdir()) == []


def test_info_reports_a_missing_shard_without_reading_tensors(ckpt, capsys):
    _break("missing shard", ckpt)
    assert main(["info", str(ckpt)]) == 4
    assert "missing data shard 0 of 1" in capsys.readouterr().err


def test_a_file_named_index_that_is_not_one_is_a_read_error(tmp_path, capsys):
    (tmp_path / "notes.index").write_text("hello")
    assert main(["info", str(tmp_path / "notes.index")]) == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "notes.index: " in err


def test_nothing_is_left_behind_when_the_output_folder_has_files(ckpt, tmp_path):
    _break("checksum mismatch", ckpt)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["convert", str(ckpt), str(out / "ckpt"), "--to", "tf-checkpoint", "-q"]) == 4
    assert sorted(os.listdir(out)) == ["keep.txt"]
