"""A checkpoint's tensors (here a SavedModel's ``variables/``) read once on their way to an HDF5
target: the writer's copy computes each tensor's CRC-32C for the reader's check
(``ByteRange.claim_check``), so the bytes are not read a second time for it. A flipped byte in a
tensor only the copy reads still fails the conversion (exit 4, the data file named), nothing kept."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import modelmorph
from helpers import require_format
from modelmorph.cli import main
from modelmorph_tfckpt.bundle import BundleReader
from smcases import case_dir

TARGETS = ["out.keras", "out.h5", "out.weights.json"]
plain_path = pytest.mark.skipif(__import__("os").environ.get("MODELMORPH_HDF5", "").strip().lower() == "h5py",
                                reason="MODELMORPH_HDF5=h5py: HDF5 is written by h5py, not copied")


def _source(tmp_path):
    target = tmp_path / "src" / "mobilenetv2"
    shutil.copytree(case_dir("mobilenetv2"), target, symlinks=True)
    return target


def _plain_tensors(folder) -> dict[str, tuple[int, int]]:
    with BundleReader(folder / "variables" / "variables") as reader:
        return {key: (e.offset, e.size) for key, e in reader.entries().items()
                if e.dtype != "string" and e.size and reader.byte_range(key) is not None}


def _options(target: str) -> dict:
    return {"max_shard_size": "1MB"} if target.endswith(".json") else {}


@pytest.fixture(params=["whole-units", "cut-units"])
def copies(request, monkeypatch):
    """Copies in units of 8 MiB (each of these tensors in one), or of 256 KiB (large ones cut
    in several), shared by two threads: pieces reach the reader's check in any order."""
    from modelmorph.storage import filecopy

    if request.param == "cut-units":
        monkeypatch.setattr(filecopy, "COPY_UNIT", filecopy.COPY_PIECE)
    return request.param


@plain_path
@pytest.mark.parametrize("target", TARGETS)
def test_each_tensor_is_checked_once_by_the_copy(target, copies, tmp_path, monkeypatch):
    require_format("savedmodel")
    source = _source(tmp_path)
    plain = _plain_tensors(source)
    assert len(plain) > 100
    by_reader, by_copy = [], []
    verify, check = BundleReader.verify, BundleReader.check_crc32c
    monkeypatch.setattr(BundleReader, "verify", lambda self, key, crc32=False: by_reader.append(key) or
                        verify(self, key, crc32))
    monkeypatch.setattr(BundleReader, "check_crc32c", lambda self, key, crc: by_copy.append(key) or
                        check(self, key, crc))
    out = tmp_path / target
    modelmorph.convert(source, out, options=_options(target))
    copied = [k for k in by_copy if k in plain]
    assert sorted(copied) == sorted(set(copied)), "a tensor checked twice by copies"
    assert not set(by_reader) & set(copied), "a tensor the copy checked was read again by the reader"
    # every tensor copied from the data file was checked by its copy (the optimizer's, which
    # Keras 2 .h5 and weights files leave out, by the reader's deferred check)
    assert len(copied) >= 100
    with modelmorph.read(source) as want, modelmorph.read(out, arch=source if target != "out.keras" else None) as got:
        expected = {p: w.read() for p, _, w in want.iter_weights()}
        for path, _, weight in got.iter_weights():
            value = weight.read()
            assert value.dtype == expected[path].dtype and np.array_equal(value, expected[path]), path


@plain_path
@pytest.mark.parametrize("which", ["first", "last", "largest"])
@pytest.mark.parametrize("target", TARGETS)
def test_a_flipped_byte_in_a_copied_tensor_leaves_no_output(which, target, copies, tmp_path, capsys, monkeypatch):
    require_format("savedmodel")
    source = _source(tmp_path)
    plain = sorted(_plain_tensors(source).items(), key=lambda item: item[1])
    if which == "largest":  # cut in units shared by two threads in the "cut-units" case
        plain = sorted(plain, key=lambda item: item[1][1])
    key, (offset, nbytes) = plain[0 if which == "first" else -1]
    data = next((source / "variables").glob("variables.data-*"))
    with open(data, "r+b") as f:
        f.seek(offset + nbytes // 2)
        byte = f.read(1)[0]
        f.seek(offset + nbytes // 2)
        f.write(bytes([byte ^ 0x10]))
    out = tmp_path / "out"
    out.mkdir()
    argv = ["convert", str(source), str(out / target)] + (["-O", "max_shard_size=1MB"] if target.endswith(".json") else [])
    assert main(argv) == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "checksum mismatch for tensor" in err and f"{data.name}: " in err, err
    assert list(out.iterdir()) == []


@plain_path
def test_a_failed_write_gives_its_claims_back(tmp_path, monkeypatch):
    """A write that fails mid-way leaves no check claimed and never done: the same model then
    writes elsewhere and verifies (a claim kept would hang both, or let bytes through unchecked)."""
    import threading

    from modelmorph.storage import filecopy

    require_format("savedmodel")
    source = _source(tmp_path)
    real, calls = filecopy._copy_crc32, []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(filecopy, "_copy_crc32", failing)
    monkeypatch.setattr(filecopy, "COPY_UNIT", 256)  # many units: the copy fails mid-way, not before or after
    outcome = []

    def job():
        with modelmorph.read(source, verify=False) as model:  # the checks left to the writes
            with pytest.raises(modelmorph.WriteError, match="No space left"):
                modelmorph.write(model, tmp_path / "a.keras")
            monkeypatch.setattr(filecopy, "_copy_crc32", real)
            modelmorph.write(model, tmp_path / "b.keras")
            model.verify()
            outcome.append("done")

    worker = threading.Thread(target=job, daemon=True)
    worker.start()
    worker.join(60)
    assert outcome == ["done"], "the second write or the check hung on a claim never given back"
    assert not (tmp_path / "a.keras").exists() and (tmp_path / "b.keras").exists()


def test_pieces_crcs_join_only_when_they_cover_the_tensor_once():
    """A copy feeds pieces from two threads, in any order: runs of them are joined only when
    they cover the range exactly once."""
    import google_crc32c

    from modelmorph_tfckpt.bundle.table import Crc32cOfPieces

    data = bytes(range(256)) * 40
    view = memoryview(bytearray(data))  # writable: the CRC is computed in place
    cuts = [(0, 1000), (1000, 3000), (3000, 5000), (5000, len(data))]

    def fed(order):
        pieces = Crc32cOfPieces()
        for a, b in order:
            pieces.feed(view[a:b], a)
        return pieces.value(len(data))

    assert fed(cuts) == fed([cuts[2], cuts[0], cuts[3], cuts[1]]) == google_crc32c.value(data)
    assert fed(cuts[:3]) is None  # stopped early
    assert fed(cuts[::2]) is None  # a gap
    assert fed(cuts + cuts[1:2]) is None  # a piece twice
