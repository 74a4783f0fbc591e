"""``info`` reads metadata only; ``info --verify``, ``diff`` and ``convert`` check every checksum.

A corrupted tensor byte goes unnoticed by ``info`` (it never reads the tensor: that is the
point, a 4 GB archive answers at once) and is caught by everything that checks: ``info --verify``,
``diff``, ``convert`` and ``modelmorph.read`` (by default), each with one line and exit status 4.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import modelmorph
from helpers import FIXTURES
from modelmorph.cli import main

KERAS = FIXTURES / "keras3" / "mobilenetv2.keras"
CKPT = FIXTURES / "tf_keras" / "ckpt" / "mobilenetv2"
SOURCES = {"keras": (KERAS, "CRC-32 of model.weights.h5"), "tf-checkpoint": (CKPT, "CRC-32C of every tensor")}


def _copy(kind: str, tmp_path: Path) -> Path:
    src = SOURCES[kind][0]
    if src.is_dir():
        shutil.copytree(src, tmp_path / "ckpt")
        return tmp_path / "ckpt" / "ckpt"
    shutil.copy(src, tmp_path / src.name)
    return tmp_path / src.name


def _corrupt_largest_tensor(path: Path) -> str:
    """Flip one bit in the middle of the largest tensor's stored bytes; returns the file changed."""
    with modelmorph.read(path, verify=False) as model:
        weight = max((w for _, _, w in model.iter_weights()), key=lambda w: w.nbytes)
        if weight.raw is not None:
            name, at = weight.raw.file.name, weight.raw.offset + weight.raw.nbytes // 2
        else:  # read through h5py (MODELMORPH_HDF5=h5py): find the tensor's bytes in the file
            data = weight.read().tobytes()
            name, at = str(path), path.read_bytes().index(data) + len(data) // 2
    with open(name, "r+b") as f:
        f.seek(at)
        byte = f.read(1)
        f.seek(at)
        f.write(bytes([byte[0] ^ 0x01]))
    return name


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("modelmorph: error: "), err
    return err


@pytest.mark.parametrize("kind", sorted(SOURCES))
def test_info_does_not_notice_a_corrupted_tensor_and_info_verify_does(kind, tmp_path, capsys):
    source = _copy(kind, tmp_path)
    changed = _corrupt_largest_tensor(source)

    assert main(["info", str(source), "--no-weights"]) == 0
    out = capsys.readouterr().out
    assert "Total params" in out and "Checksums" not in out

    assert main(["info", str(source), "--verify"]) == 4
    err = _one_error_line(capsys)
    assert os.path.basename(changed) in err and ("CRC-32 mismatch" in err or "checksum mismatch" in err), err

    assert main(["diff", str(source), str(source)]) == 4
    _one_error_line(capsys)

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    target = out_dir / ("model.weights.h5" if kind == "keras" else "ckpt")
    assert main(["convert", str(source), str(target), "--to", "keras-weights" if kind == "keras" else kind]) == 4
    _one_error_line(capsys)
    assert list(out_dir.iterdir()) == []  # nothing written from a corrupted source

    with pytest.raises(modelmorph.ReadError):
        modelmorph.read(source)  # the Python API checks by default


@pytest.mark.parametrize("kind", sorted(SOURCES))
def test_info_verify_names_what_it_checked(kind, tmp_path, capsys):
    source = _copy(kind, tmp_path)
    assert main(["info", str(source), "--verify", "--no-weights"]) == 0
    assert f"Checksums: {SOURCES[kind][1]}" in capsys.readouterr().out
    assert main(["info", str(source), "--verify", "--json"]) == 0
    import json

    assert SOURCES[kind][1] in json.loads(capsys.readouterr().out)["verified"]


def test_info_verify_on_a_format_without_checksums(capsys):
    assert main(["info", str(FIXTURES / "keras3" / "mobilenetv2.weights.h5"), "--verify", "--no-weights"]) == 0
    assert "Checksums: none in this format" in capsys.readouterr().out


def _bytes_read() -> int:
    with open("/proc/self/io") as f:  # rchar: every byte read(2)/pread(2) returned, page cache or not
        return next(int(line.split()[1]) for line in f if line.startswith("rchar:"))


@pytest.fixture(scope="module")
def big_sources(tmp_path_factory, keras3, tf) -> dict[str, Path]:
    """A 4 MB Dense kernel saved by Keras 3 (.keras) and by TF (checkpoint): tensors dwarf metadata."""
    folder = tmp_path_factory.mktemp("big")
    model = keras3.Sequential([keras3.Input((1024,)), keras3.layers.Dense(1024), keras3.layers.Dense(8)])
    model.save(folder / "big.keras")
    tf.train.Checkpoint(model=model).write(str(folder / "ckpt" / "ckpt"))
    return {"keras": folder / "big.keras", "tf-checkpoint": folder / "ckpt" / "ckpt"}


@pytest.mark.interop  # builds its input with a real library
@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="needs Linux /proc/self/io")
@pytest.mark.parametrize("kind", sorted(SOURCES))
def test_info_reads_no_tensor_bytes(kind, big_sources, capsys):
    source = big_sources[kind]
    files = [source] if source.suffix == ".keras" else list(source.parent.iterdir())
    total = sum(f.stat().st_size for f in files)
    assert main(["info", str(source)]) == 0  # imports and first-use costs out of the way
    before = _bytes_read()
    assert main(["info", str(source)]) == 0
    info_bytes = _bytes_read() - before
    before = _bytes_read()
    assert main(["info", str(source), "--verify"]) == 0
    verify_bytes = _bytes_read() - before
    capsys.readouterr()
    assert info_bytes < total // 20, (info_bytes, total)  # metadata only: not the 4 MB kernel
    assert verify_bytes >= total * 0.9, (verify_bytes, total)  # every byte the checksums cover
