"""How the checkpoint writer copies tensors whose bytes lie in the source: through one small
buffer that gives their CRC-32C (and the CRC-32 a zip source's check takes instead of reading
them again), or by the kernel at the source's offset within a page when the source gives the
CRC-32C. Judged by zlib/google_crc32c on the same bytes and by TensorFlow's reader."""

from __future__ import annotations

import functools
import io
import os
import shutil
import threading
import zlib

import google_crc32c
import numpy as np
import pytest

import modelmorph
from ckptcases import FIXTURES, require_format
from helpers import require
from modelmorph.cli import main
from modelmorph.storage import filecopy
from modelmorph_tfckpt.bundle import BundleReader
from modelmorph_tfckpt.bundle import bundle as bundle_module
from modelmorph_tfckpt.bundle.table import mask_crc

PIECE = bundle_module._COPY_PIECE
plain_path = pytest.mark.skipif(os.environ.get("MODELMORPH_HDF5", "").strip().lower() == "h5py",
                                reason="MODELMORPH_HDF5=h5py: .keras tensors have no byte ranges")


def _threads(monkeypatch, threads: int | str) -> None:
    """Copies from one piece on shared by two threads, a piece at a time; or never shared; or
    ("kernel"), from one piece on between the same offsets within a page, made by the kernel."""
    monkeypatch.setattr(bundle_module, "_SPLIT_FROM", PIECE if threads == 2 else 1 << 62)
    monkeypatch.setattr(bundle_module, "_SPLIT_UNIT", PIECE)
    monkeypatch.setattr(bundle_module, "_KERNEL_FROM", PIECE if threads == "kernel" else 1 << 62)


@pytest.mark.parametrize("threads", [1, 2, "kernel"])
@pytest.mark.parametrize("engine", ["c-function", "bytes"])
@pytest.mark.parametrize("kind", ["file", "in-memory"])
@pytest.mark.parametrize("nbytes", [0, 1, PIECE - 1, PIECE, PIECE + 1, 3 * PIECE + 17])
def test_a_checksummed_copy_gives_the_crc_of_what_it_wrote(nbytes, kind, engine, threads, tmp_path, monkeypatch):
    """Through the C function on the reused buffer or through bytes; in one thread, or shared by
    two (from _SPLIT_FROM bytes, in units of _SPLIT_UNIT: both made small here) whose CRCs are
    combined, or by the kernel while a thread reads the bytes again for their CRC."""
    _threads(monkeypatch, threads)
    at = 5 if threads == "kernel" else 3  # the kernel's: at the source's offset within a page
    if engine == "bytes":
        monkeypatch.setattr(bundle_module, "crc32c_at_address", lambda: None)
    elif bundle_module.crc32c_at_address() is None:
        pytest.skip("this google_crc32c build exposes no crc32c_extend to call on a buffer")
    data = np.random.default_rng(nbytes).integers(0, 256, nbytes + 9, dtype=np.uint8).tobytes()
    (tmp_path / "src").write_bytes(data)
    with open(tmp_path / "src", "rb") if kind == "file" else io.BytesIO(data) as src, \
            open(tmp_path / "dst", "w+b") as dst:
        crc = bundle_module._copy_checksummed(src, 5, dst.fileno(), at, nbytes)
    copied = data[5:5 + nbytes]
    assert (tmp_path / "dst").read_bytes() == (b"\0" * at + copied if nbytes else b"")
    assert crc == google_crc32c.value(copied)


@pytest.mark.parametrize("threads", [1, 2, "kernel"])
def test_a_checksummed_copy_of_a_short_source_is_an_eof(threads, tmp_path, monkeypatch):
    _threads(monkeypatch, threads)
    (tmp_path / "src").write_bytes(b"x" * (4 * PIECE))
    with open(tmp_path / "src", "rb") as src, open(tmp_path / "dst", "w+b") as dst:
        with pytest.raises(EOFError, match="ends 50 bytes early"):
            bundle_module._copy_checksummed(src, 50, dst.fileno(), 50 if threads == "kernel" else 0, 4 * PIECE)


def test_a_kernel_copy_writes_nothing_from_user_space_and_feeds_every_byte(tmp_path, monkeypatch):
    """Between the same offsets within a page the kernel copies (no pwrite), and the check is fed
    every byte, in order, by the second read; an error of the check is raised once both are done."""
    _threads(monkeypatch, "kernel")
    monkeypatch.setattr(os, "pwrite", lambda *args: pytest.fail("a byte written from user space"))
    data = np.random.default_rng(2).integers(0, 256, 3 * PIECE + 4096 + 7, dtype=np.uint8).tobytes()
    (tmp_path / "src").write_bytes(data)
    fed = bytearray()

    def feed(piece, position):
        assert position == len(fed)
        fed.extend(piece)

    with open(tmp_path / "src", "rb") as src, open(tmp_path / "dst", "w+b") as dst:
        assert bundle_module._copy_checksummed(src, 4096, dst.fileno(), 0, len(data) - 4096, feed=feed) == 0
        with pytest.raises(ZeroDivisionError):
            bundle_module._copy_checksummed(src, 4096, dst.fileno(), 0, len(data) - 4096, feed=lambda *a: 1 / 0)
    assert bytes(fed) == data[4096:] and (tmp_path / "dst").read_bytes() == data[4096:]


def test_two_threads_write_near_one_end_of_the_file(tmp_path, monkeypatch):
    """A shared copy goes by units the two threads take in turn, as filecopy's does, not by
    halves (one thread writing from the middle of a 1 GiB tensor while the other fills its
    start): every write lands within two units of the furthest byte written before it."""
    _threads(monkeypatch, 2)
    writes: list[tuple[int, int]] = []
    lock = threading.Lock()
    real_pwrite = os.pwrite

    def pwrite(fd, data, offset):
        with lock:
            writes.append((offset, offset + len(data)))
            return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    data = np.random.default_rng(1).integers(0, 256, 16 * PIECE, dtype=np.uint8).tobytes()
    (tmp_path / "src").write_bytes(data)
    with open(tmp_path / "src", "rb") as src, open(tmp_path / "dst", "w+b") as dst:
        crc = bundle_module._copy_checksummed(src, 0, dst.fileno(), 0, len(data))
    assert crc == google_crc32c.value(data) and (tmp_path / "dst").read_bytes() == data
    assert len(writes) == 16
    furthest = 0
    for start, end in writes:
        assert start < furthest + 2 * PIECE, writes
        furthest = max(furthest, end)


def _scattered(tmp_path, sizes: list[int], kind: str):
    """A source holding tensors of ``sizes`` at scattered offsets (7 bytes apart); returns the
    open source, and each tensor's (offset, bytes)."""
    data = np.random.default_rng(len(sizes)).integers(0, 256, sum(sizes) + 7 * len(sizes) + 7, dtype=np.uint8).tobytes()
    (tmp_path / "src").write_bytes(data)
    tensors, at = [], 7
    for n in sizes:
        tensors.append((at, data[at:at + n]))
        at += n + 7
    return (open(tmp_path / "src", "rb") if kind == "file" else io.BytesIO(data)), tensors


@pytest.mark.parametrize("kind", ["file", "in-memory"])
@pytest.mark.parametrize("max_shard_size", [None, 3 * PIECE])
def test_tensors_copied_together_get_their_own_crcs(kind, max_shard_size, tmp_path, monkeypatch):
    """add_copies: tensors of many sizes (none, one byte, several pieces) at scattered offsets of
    one source are copied in one go per data file, in units the two threads share (made small
    here), not one tensor after another; each entry has the CRC-32C of its own bytes, each
    report the CRC-32, and our reader, which checks every CRC-32C, gives the bytes back. With
    max_shard_size, they fill several data files, each one's copied in one go."""
    monkeypatch.setattr(filecopy, "COPY_UNIT", PIECE)
    calls = []
    original = filecopy.copy_ranges_crc32
    monkeypatch.setattr(filecopy, "copy_ranges_crc32", lambda jobs, *a: calls.append(len(jobs)) or original(jobs, *a))
    sizes = [0, 1, PIECE - 1, 3 * PIECE + 17, 5, 2 * PIECE, PIECE + 1]
    source, tensors = _scattered(tmp_path, sizes, kind)
    reports: dict[int, int | None] = {}
    copies = [bundle_module.ByteCopy(f"t{i}", "uint8", (len(value),), source, offset, len(value),
                                     functools.partial(reports.__setitem__, i))
              for i, (offset, value) in enumerate(tensors)]
    advanced = []
    with source, bundle_module.BundleWriter(tmp_path / "out" / "ckpt", max_shard_size=max_shard_size) as writer:
        writer.add("first", np.arange(3, dtype=np.float32))
        entries = writer.add_copies(copies, advanced.append)
        writer.add("last", np.arange(4, dtype=np.int64))
    assert sum(advanced) == sum(sizes)
    assert reports == {i: zlib.crc32(value) for i, (_, value) in enumerate(tensors)}
    shards = len(list((tmp_path / "out").glob("ckpt.data-*")))
    if max_shard_size is None:
        assert calls == [len(sizes)] and shards == 1
    else:
        assert len(calls) == len({e.shard_id for e in entries}) > 1 and sum(calls) == len(sizes)
    with BundleReader(tmp_path / "out" / "ckpt") as reader:
        for entry, (_, value) in zip(entries, tensors):
            assert entry.crc32c == mask_crc(google_crc32c.value(value))
            assert reader.entries()[entry.key].crc32c == entry.crc32c
            assert reader.read(entry.key).tobytes() == value
        assert reader.read("first").tolist() == [0, 1, 2] and reader.read("last").tolist() == [0, 1, 2, 3]


def test_a_failed_copy_of_tensors_adds_none_of_them_and_reports_none(tmp_path):
    """A source that ends early fails the copy: no tensor of the group is added, every report
    gets None (the source's check reads them itself), and the checkpoint goes on from where the
    group began."""
    source, tensors = _scattered(tmp_path, [3 * PIECE, 2 * PIECE], "file")
    reports = {}
    copies = [bundle_module.ByteCopy(f"t{i}", "uint8", (len(value) + 10 * i,), source, offset, len(value) + 10 * i,
                                     functools.partial(reports.__setitem__, i))
              for i, (offset, value) in enumerate(tensors)]  # the second runs 3 bytes past the end
    with source, bundle_module.BundleWriter(tmp_path / "out" / "ckpt") as writer:
        writer.add("first", np.arange(3, dtype=np.float32))
        with pytest.raises(EOFError):
            writer.add_copies(copies)
        assert reports == {0: None, 1: None}
        writer.add_copies([copies[0]._replace(key="again", report_crc32=None)])
    with BundleReader(tmp_path / "out" / "ckpt") as reader:
        assert sorted(reader.keys()) == ["again", "first"]
        assert reader.read("again").tobytes() == tensors[0][1]
        assert reader.entries()["again"].offset == reader.entries()["first"].size


def _entries(prefix) -> dict:
    with BundleReader(prefix) as reader:
        return dict(reader.entries())


@pytest.mark.interop  # builds its input with, and is judged by, TensorFlow
def test_large_kernel_copies_keep_their_offset_within_a_page(tmp_path):
    """A checkpoint source gives each tensor's CRC-32C, so the kernel copies; a tensor of 1 MiB
    or more is placed at its source offset's position within a page (zero padding before it),
    which spares the copy a split of every page. TensorFlow reads every tensor back, CRCs held."""
    tf = require("tensorflow")
    src = tmp_path / "src" / "ckpt"
    rng = np.random.default_rng(0)
    variables = {"a": rng.standard_normal(3, dtype=np.float32), "b": rng.standard_normal((700, 500)),
                 "c": rng.standard_normal(5, dtype=np.float32), "d": rng.standard_normal(300_001).astype(np.float32)}
    tf.train.Checkpoint(**{k: tf.Variable(v) for k, v in variables.items()}).write(str(src))
    (tmp_path / "out").mkdir()
    modelmorph.convert(src, tmp_path / "out" / "ckpt", to_format="tf-checkpoint")
    before, after = _entries(src), _entries(tmp_path / "out" / "ckpt")
    large = [k for k, e in before.items() if e.size >= bundle_module._ALIGN_FROM]
    assert len(large) == 2 and all(before[k].offset % 4096 for k in large), "no misaligned large tensor to test"
    for key in large:
        assert after[key].offset % 4096 == before[key].offset % 4096, key
    reader = tf.train.load_checkpoint(str(tmp_path / "out" / "ckpt"))
    for name, value in variables.items():
        got = reader.get_tensor(f"{name}/.ATTRIBUTES/VARIABLE_VALUE")
        assert got.dtype == value.dtype and got.tobytes() == value.tobytes(), name


def _tensor_ranges(source) -> list[tuple[int, int]]:
    with modelmorph.read(source, verify=False) as model:
        return sorted((w.raw.offset, w.raw.nbytes) for _, _, w in model.iter_weights() if w.raw is not None)


@plain_path
def test_keras_tensors_are_read_once_for_both_crcs(tmp_path, monkeypatch):
    """The writer claims every tensor of a .keras source before it copies (the source's check
    thread, started later here, finds them all taken): each is read once, for the copy, its
    CRC-32C and the CRC-32 the member's check combines; the check reads only what lies between
    them. The checkpoint's CRC-32Cs hold (our reader checks every one)."""
    require_format("keras")
    source = FIXTURES / "keras3" / "mobilenetv2.keras"
    tensors = _tensor_ranges(source)
    assert max(n for _, n in tensors) > 2 * bundle_module._COPY_PIECE  # copied in several pieces
    reads = []
    original = filecopy.crc32_range

    def spy(file, start, size, crc=0):
        reads.append((start, size))
        return original(file, start, size, crc)

    monkeypatch.setattr(filecopy, "crc32_range", spy)
    modelmorph.convert(source, tmp_path / "ckpt", to_format="tf-checkpoint")
    assert reads, "the member's check read nothing at all: the bytes between tensors are unchecked"
    for start, size in reads:
        assert not any(start < o + n and o < start + size for o, n in tensors if n), (start, size)
    with modelmorph.read(source) as expected, BundleReader(tmp_path / "ckpt") as reader:
        got = sorted(reader.read(k).tobytes() for k in reader.keys() if k.startswith("layer_with_weights"))
        assert got == sorted(w.read().tobytes() for _, _, w in expected.iter_weights())


@plain_path
@pytest.mark.parametrize("which", ["first", "last"])
def test_a_flipped_byte_in_a_claimed_keras_tensor_leaves_no_output(which, tmp_path, capsys, monkeypatch):
    """The CRC-32 the copy computes is the member check's: a flipped byte in a tensor only the
    copy reads still fails the conversion, and nothing is kept."""
    require_format("keras")
    source = tmp_path / "flipped.keras"
    shutil.copy(FIXTURES / "keras3" / "mobilenetv2.keras", source)
    offset, nbytes = _tensor_ranges(source)[0 if which == "first" else -1]
    with open(source, "r+b") as f:
        f.seek(offset + nbytes // 2)
        byte = f.read(1)[0]
        f.seek(offset + nbytes // 2)
        f.write(bytes([byte ^ 0x10]))
    out = tmp_path / "out"
    out.mkdir()
    assert main(["convert", str(source), str(out / "ckpt"), "--to", "tf-checkpoint"]) == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model.weights.h5 is corrupt (CRC-32 mismatch)" in err, err
    assert list(out.iterdir()) == []


def test_a_write_that_fails_between_copies_reports_every_claimed_check(tmp_path):
    """The writer gathers the tensors it copies to copy them together, and copies those gathered
    before it writes a tensor of another kind: when that one fails (its reader raises), the
    copied tensor has reported its CRC-32, the one never reached gives its claimed check back
    (None: the source's check reads it itself), and no checkpoint is left."""
    data = np.arange(64, dtype=np.float32).tobytes()
    (tmp_path / "src").write_bytes(data)
    (tmp_path / "out").mkdir()
    reports: dict[str, int | None] = {}

    def broken():
        raise modelmorph.ReadError(tmp_path / "src", "tensor 1 is bad")

    with open(tmp_path / "src", "rb") as f:
        def copied(name: str, offset: int) -> modelmorph.Weight:
            claim = functools.partial(functools.partial, reports.__setitem__, name)
            return modelmorph.Weight(name, (16,), "float32", raw=modelmorph.ByteRange(f, offset, 64, claim_crc32=claim),
                                     loader=lambda: np.frombuffer(data, np.float32, 16, offset))

        model = modelmorph.Model("w", class_name="", has_architecture=False)
        model.layers.append(modelmorph.Layer("a", "", weights=[
            copied("0", 0), modelmorph.Weight("1", (2,), "float32", loader=broken), copied("2", 64)]))
        with pytest.raises(modelmorph.ReadError, match="tensor 1 is bad"):
            modelmorph.write(model, tmp_path / "out" / "ckpt", "tf-checkpoint")
    assert reports == {"0": zlib.crc32(data[:64]), "2": None}
    assert not list((tmp_path / "out").iterdir())


def test_tensors_refused_before_any_copy_report_none(tmp_path):
    """A key taken twice (or a size that does not fit the shape) refuses the whole group before
    anything is copied, and every report still gets its None."""
    source, tensors = _scattered(tmp_path, [10, 20], "file")
    reports = {}
    copies = [bundle_module.ByteCopy("same", "uint8", (len(value),), source, offset, len(value),
                                     functools.partial(reports.__setitem__, i)) for i, (offset, value) in enumerate(tensors)]
    with source, bundle_module.BundleWriter(tmp_path / "out" / "ckpt") as writer:
        with pytest.raises(ValueError, match="duplicate key 'same'"):
            writer.add_copies(copies)
        assert reports == {0: None, 1: None}
        reports.clear()
        with pytest.raises(ValueError, match="21 bytes for a uint8 tensor of shape"):
            writer.add_copies([copies[0]._replace(key="a"), copies[1]._replace(key="b", nbytes=21)])
        assert reports == {0: None, 1: None}
        writer.add("x", np.arange(2, dtype=np.int32))
    with BundleReader(tmp_path / "out" / "ckpt") as reader:
        assert list(reader.keys()) == ["x"] and reader.entries()["x"].offset == 0
