"""String tensors of checkpoints stream: checked by reading their lengths (never a Python object
per string), copied as they lie to a checkpoint (entry CRC included), and split into strings a
block at a time for HDF5. The checkpoints are written by TensorFlow in the test (sizes a fixture
file should not have); TensorFlow's reader and h5py judge what modelmorph writes."""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from modelmorph.cli import main
from modelmorph_tfckpt.bundle import BundleReader

from helpers import require

pytestmark = pytest.mark.interop  # the checkpoints are written by TensorFlow in the tests

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
VALUE = "/.ATTRIBUTES/VARIABLE_VALUE"

#: Strings of every varint width: short (one-byte lengths), 200 bytes (two), 140 kB (three),
#: empty, NUL bytes, UTF-8; a matrix, a vector, a scalar; and a float beside them.
WRITE_VARIED = """
import sys, tensorflow as tf
n = 20000
tf.train.Checkpoint(
    short=tf.Variable(tf.strings.as_string(tf.range(1000, dtype=tf.int64))),
    long=tf.Variable(tf.reshape(tf.strings.as_string(tf.range(n, dtype=tf.int64), width=200, fill="0"), [n // 4, 4])),
    odd=tf.Variable(tf.constant([b"", b"\\x00\\xff" * 70000, "\\u00e9t\\u00e9".encode(), b"x\\x00"])),
    scalar=tf.Variable(tf.constant(b"one")),
    f=tf.Variable(tf.ones([3, 4])),
).write(sys.argv[1])
"""
WRITE_SHORT = """
import sys, tensorflow as tf
n = int(sys.argv[2])
tf.train.Checkpoint(
    v=tf.Variable(tf.strings.as_string(tf.range(n, dtype=tf.int64), width=100, fill="0")),
    f=tf.Variable(tf.ones([3, 4])),
).write(sys.argv[1])
"""


def _tf_write(code: str, prefix: Path, *args: str) -> Path:
    require("tensorflow")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-c", code, str(prefix), *args], env=ENV, check=True, capture_output=True)
    return prefix


@pytest.fixture(scope="module")
def varied(tmp_path_factory) -> Path:
    return _tf_write(WRITE_VARIED, tmp_path_factory.mktemp("varied") / "ckpt")


def _data(prefix: Path) -> Path:
    return next(prefix.parent.glob(prefix.name + ".data-*"))


def _tf_tensors(prefix: Path) -> dict:
    tf = require("tensorflow")
    reader = tf.train.load_checkpoint(str(prefix))
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map() if k != "_CHECKPOINTABLE_OBJECT_GRAPH"}


def _same(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.reshape(-1).tolist() == b.reshape(-1).tolist()


def test_the_reader_decodes_every_varint_width_as_tensorflow_does(varied):
    theirs = _tf_tensors(varied)
    with BundleReader(varied) as reader:
        for key, value in theirs.items():
            assert _same(reader.read(key), value), key
            reader.verify(key)
        # in blocks of any size, the same strings in the same order
        for max_bytes in (1, 1000, 1 << 20):
            got = [s for block in reader.string_blocks("long" + VALUE, max_bytes) for s in block]
            assert got == theirs["long" + VALUE].reshape(-1).tolist()


@pytest.fixture(params=["reader-checks", "copy-checks", "copy-checks-split", "copy-checks-kernel"])
def check(request, monkeypatch):
    """Who checks a string tensor on its way to a checkpoint: the reader, before the kernel
    copies it (its check thread took it first), or the copy, which feeds the reader's check
    (``ByteRange.claim_check``) from one thread or, from one piece here, two, or (kernel) from a
    second read while the kernel copies; in any case once. Gives the keys whose check a copy
    computed, and for each copy the kernel made whether a second read fed a check."""
    from modelmorph import Model
    from modelmorph_tfckpt.bundle import bundle
    from modelmorph_tfckpt.source import Checkpoint

    if request.param == "reader-checks":
        monkeypatch.setattr(Checkpoint, "_claim_check", lambda self, *args: None)
    else:
        monkeypatch.setattr(Model, "start_checks", lambda self: None)  # no check thread before the claims
    kernel_from = bundle._COPY_PIECE if request.param == "copy-checks-kernel" else 1 << 62
    monkeypatch.setattr(bundle, "_KERNEL_FROM", kernel_from)
    if request.param == "copy-checks-split":
        monkeypatch.setattr(bundle, "_SPLIT_FROM", bundle._COPY_PIECE)
        monkeypatch.setattr(bundle, "_SPLIT_UNIT", bundle._COPY_PIECE)
    by_copy: list[str] = []
    checked = BundleReader.check_crc32c
    monkeypatch.setattr(BundleReader, "check_crc32c", lambda self, key, crc: by_copy.append(key) or
                        checked(self, key, crc))
    kernel: list[int] = []
    in_kernel = bundle._copy_in_kernel
    monkeypatch.setattr(bundle, "_copy_in_kernel",
                        lambda *args: kernel.append(args[-1] is not None) or in_kernel(*args))  # args[-1]: feed
    return request.param, by_copy, kernel


def test_checkpoint_to_checkpoint_copies_string_tensors_as_they_lie(varied, check, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    assert main(["convert", "-q", str(varied), str(out / "ckpt"), "--to", "tf-checkpoint"]) == 0
    theirs, ours = _tf_tensors(varied), _tf_tensors(out / "ckpt")  # TF's reader checks every CRC
    assert sorted(theirs) == sorted(ours)
    for key in theirs:
        assert _same(ours[key], theirs[key]), key
    assert filecmp.cmp(_data(varied), _data(out / "ckpt"), shallow=False)
    mode, by_copy, kernel = check
    strings = sorted(k for k in theirs if np.asarray(theirs[k]).dtype.kind in "OS")  # a scalar: bytes
    assert sorted(by_copy) == (strings if mode != "reader-checks" else []), by_copy
    assert (True in kernel) == (mode == "copy-checks-kernel"), kernel  # "long", 4 MB, fed from a second read


def test_short_strings_are_checked_and_copied_without_numpy(tmp_path):
    """One-byte lengths (strings under 128 bytes) are checked by bytes operations alone."""
    src = _tf_write(WRITE_SHORT, tmp_path / "src" / "ckpt", "5000")
    (tmp_path / "out").mkdir()
    code = ("import sys, modelmorph\n"
            f"modelmorph.convert({str(src)!r}, {str(tmp_path / 'out' / 'ckpt')!r}, to_format='tf-checkpoint')\n"
            "print(sorted({'numpy', 'h5py', 'ml_dtypes'} & set(sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"
    assert _same(_tf_tensors(tmp_path / "out" / "ckpt")["v" + VALUE], _tf_tensors(src)["v" + VALUE])


def test_strings_written_to_legacy_h5_are_tensorflows(varied, tmp_path):
    h5py = require("h5py")
    theirs = _tf_tensors(varied)
    keep = {k: v for k, v in theirs.items() if not k.startswith("odd/")}  # HDF5 vlen strings hold no NUL
    src = tmp_path / "src"
    src.mkdir()
    for f in varied.parent.iterdir():
        (src / f.name).write_bytes(f.read_bytes())
    # the same checkpoint without the NUL-holding tensor, rewritten by TensorFlow
    tf = require("tensorflow")
    values = {k.split("/")[0]: tf.Variable(v) for k, v in keep.items()}
    tf.train.Checkpoint(**values).write(str(src / "clean"))
    out = tmp_path / "out.h5"
    assert main(["convert", "-q", str(src / "clean"), str(out)]) == 0
    with h5py.File(out, "r") as f:
        group = f["top_level_model_weights"]
        for key, value in keep.items():
            got = group[key.split("/")[0] + ":0"][()]
            assert _same(got, value), key


# (not one-byte-lengths to .h5: "short" comes after "odd", whose NUL bytes HDF5 refuses first)
@pytest.mark.parametrize("where, target", [(w, t) for w in ("data", "lengths", "lengths-crc")
                                           for t in ("ckpt", "out.h5")] + [("one-byte-lengths", "ckpt")])
def test_a_flipped_byte_in_a_string_tensor_leaves_no_output(varied, where, target, check, tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    for f in varied.parent.iterdir():
        (src / f.name).write_bytes(f.read_bytes())
    name = "short" if where == "one-byte-lengths" else "long"
    with BundleReader(src / "ckpt") as reader:
        e = reader.entries()[name + VALUE]
    # long: 20000 two-byte lengths, then their masked CRC, then the strings; short: 1000 one-byte
    # lengths (the first, of "0", becomes 0: they are added up without decoding any varint)
    at, problem = {"data": (e.offset + e.size - 7, "checksum mismatch for tensor 'long"),
                   "lengths": (e.offset + 1, "string lengths do not add up to the stored size"),
                   "one-byte-lengths": (e.offset, "string lengths do not add up to the stored size"),
                   "lengths-crc": (e.offset + 2 * 20000 + 1, "checksum mismatch in the string lengths")}[where]
    data = _data(src / "ckpt")
    raw = bytearray(data.read_bytes())
    raw[at] ^= 0x01
    data.write_bytes(raw)
    out = tmp_path / "out"
    out.mkdir()
    argv = ["convert", str(src / "ckpt"), str(out / target)] + (["--to", "tf-checkpoint"] if target == "ckpt" else [])
    assert main(argv) == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("modelmorph: error: ") and problem in err, err
    assert f"{data.name}: " in err, err  # the data file, where the bytes are
    assert list(out.iterdir()) == []
    mode, by_copy, _ = check
    if target == "ckpt":  # the copy's check failed (an HDF5 target splits strings: the reader checks them)
        checked = [k + VALUE for k in ("long", "odd", "scalar", "short")]  # the order they are copied in
        assert by_copy == (checked[:checked.index(name + VALUE) + 1] if mode != "reader-checks" else []), by_copy


def _peak_mib(argv: list[str]) -> float:
    """Peak resident memory of ``argv`` run from a fresh Python (RUSAGE_CHILDREN is per parent)."""
    code = ("import resource, subprocess, sys\n"
            "subprocess.run(sys.argv[1:], check=True)\n"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")
    out = subprocess.run([sys.executable, "-c", code, *argv], check=True, capture_output=True, text=True).stdout
    return int(out.split()[-1]) / 1024


def test_memory_stays_flat_whatever_the_string_bytes(tmp_path):
    """200 MB of strings: a checkpoint copy holds none of them, an HDF5 write one block."""
    try:
        src = _tf_write(WRITE_SHORT, tmp_path / "src" / "ckpt", str(2_000_000))  # 100-byte strings
        assert _data(src).stat().st_size > 200_000_000
        modelmorph = str(Path(sys.executable).with_name("modelmorph"))
        (tmp_path / "out").mkdir()
        peak = _peak_mib([modelmorph, "convert", "-q", str(src), str(tmp_path / "out" / "ckpt"),
                          "--to", "tf-checkpoint"])
        assert peak < 80, f"checkpoint → checkpoint peaked at {peak:.0f} MiB"
        assert filecmp.cmp(_data(src), _data(tmp_path / "out" / "ckpt"), shallow=False)
        peak = _peak_mib([modelmorph, "convert", "-q", str(src), str(tmp_path / "out.h5")])
        assert peak < 130, f"checkpoint → .h5 peaked at {peak:.0f} MiB"
    finally:  # pytest keeps recent temporary folders: not 600 MB of them
        shutil.rmtree(tmp_path, ignore_errors=True)
