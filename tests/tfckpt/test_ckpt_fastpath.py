"""The byte-copying path of checkpoints and SavedModels: a whole numeric tensor's bytes are
copied from the data shard (``Weight.raw``) instead of decoded, so converting a float32
checkpoint or SavedModel to ``.keras`` loads neither numpy nor ml_dtypes (nor h5py) and gives,
bit for bit, what the numpy path gives; the CRC-32C is still checked on the way."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

import modelmorph
from modelmorph.cli import main

from ckptcases import FIXTURES, TF_KERAS, keras2_ckpt, require_format
from helpers import assert_models_equal, require

SAVEDMODEL = FIXTURES / "savedmodel"

#: (source, --arch or None): checkpoints joined onto an architecture, SavedModels on their own.
JOBS = {
    "ckpt-mobilenetv2": (keras2_ckpt("mobilenetv2"), TF_KERAS / "mobilenetv2.json"),
    "ckpt-mlp_adam": (keras2_ckpt("mlp_adam"), TF_KERAS / "mlp_adam.h5"),  # compiled: optimizer state too
    "savedmodel-mobilenetv2": (SAVEDMODEL / "mobilenetv2", None),
    "savedmodel-mlp_adam": (SAVEDMODEL / "mlp_adam", None),
}

plain_path = pytest.mark.skipif(os.environ.get("MODELMORPH_HDF5", "").strip().lower() == "h5py",
                                reason="MODELMORPH_HDF5=h5py: .keras files are read and written through h5py")


def _all_weights(model: modelmorph.Model) -> dict[str, modelmorph.Weight]:
    weights = {path: w for path, _, w in model.iter_weights()}
    if model.optimizer is not None:
        weights.update({f"optimizer/{w.path}": w for w in model.optimizer.variables})
        weights.update({f"optimizer/{s.variable}/{s.name}": s.weight for s in model.optimizer.slots})
    return weights


def _read(source: Path, arch: Path | None) -> modelmorph.Model:
    return modelmorph.read(source, arch=arch) if arch is not None else modelmorph.read(source)


def _assert_bit_identical(expected: modelmorph.Model, got: modelmorph.Model, subset: bool = False) -> None:
    """Every weight of ``got`` is ``expected``'s, bit for bit (``subset``: ``expected`` may hold more,
    e.g. optimizer state a JSON architecture gives no optimizer for)."""
    assert_models_equal(expected, got)
    a, b = _all_weights(expected), _all_weights(got)
    assert set(b) <= set(a) if subset else sorted(a) == sorted(b)
    for path in b:
        x, y = a[path].read(), b[path].read()
        assert (x.dtype, x.shape) == (y.dtype, y.shape), path
        assert x.tobytes() == y.tobytes(), path


@plain_path
def test_checkpoint_and_savedmodel_to_keras_load_no_numerical_library(tmp_path):
    require_format("keras")
    outputs = {name: tmp_path / f"{name}.keras" for name in JOBS}
    code = ("import sys, modelmorph\n"
            + "".join(f"modelmorph.convert({str(src)!r}, {str(outputs[name])!r}"
                      + (f", arch={str(arch)!r}" if arch is not None else "") + ")\n"
                      for name, (src, arch) in JOBS.items())
            + "print(sorted({'numpy', 'h5py', 'ml_dtypes'} & set(sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"
    for name, (src, arch) in JOBS.items():
        # Reference: the same source with every tensor decoded by numpy (raw dropped) and written.
        decoded = tmp_path / f"{name}-decoded.keras"
        with _read(src, arch) as model:
            for w in _all_weights(model).values():
                w.raw = None
            modelmorph.write(model, decoded)
        with modelmorph.read(decoded) as expected, modelmorph.read(outputs[name]) as got:
            _assert_bit_identical(expected, got)
        with _read(src, arch) as source, modelmorph.read(outputs[name]) as got:
            _assert_bit_identical(source, got, subset=True)


@pytest.mark.parametrize("name", list(JOBS))
def test_whole_numeric_tensors_know_where_their_bytes_are(name):
    src, arch = JOBS[name]
    with _read(src, arch) as model:
        weights = _all_weights(model)
        stored = [w for w in weights.values() if w.raw is not None]
        # Every weight but Keras 3's learning_rate (from the optimizer config) comes from the shards.
        assert stored and len(stored) >= len(weights) - 1
        for w in stored:
            data = w.read()
            assert w.raw.nbytes == w.nbytes == data.nbytes
            w.raw.file.seek(w.raw.offset)
            assert w.raw.file.read(w.raw.nbytes) == data.tobytes()


def _largest_tensor(source: Path, arch: Path | None, which: str = "largest") -> tuple[str, int, int]:
    """(data file, offset, size) of one of the source's tensors copied as bytes: the largest,
    or the first or last in its data file (whichever thread checks it: the writer's, or the
    background one running ahead of it)."""
    with _read(source, arch) as model:
        stored = [w for w in _all_weights(model).values() if w.raw is not None]
        order = sorted(stored, key=lambda w: w.raw.offset)  # data-file order
        w = {"largest": max(stored, key=lambda w: w.nbytes), "first": order[0], "last": order[-1]}[which]
        return w.raw.file.name, w.raw.offset, w.nbytes


def _flip(data_file: str, offset: int, size: int) -> None:
    with open(data_file, "r+b") as f:
        f.seek(offset + size // 2)
        byte = f.read(1)
        f.seek(offset + size // 2)
        f.write(bytes([byte[0] ^ 0x01]))


def _copy_source(name: str, tmp_path: Path) -> tuple[Path, Path | None]:
    src, arch = JOBS[name]
    folder = tmp_path / "src"
    shutil.copytree(src.parent if src.name == "ckpt" else src, folder)
    return (folder / "ckpt" if src.name == "ckpt" else folder), arch


@pytest.mark.parametrize("which", ["largest", "first", "last"])
@pytest.mark.parametrize("name", ["ckpt-mobilenetv2", "savedmodel-mobilenetv2"])
@pytest.mark.parametrize("target", ["model.keras", "ckpt"])
def test_a_flipped_byte_in_any_copied_tensor_leaves_no_output(name, which, target, tmp_path, capsys):
    """Tensors are checked ahead of the copy by a background thread, or by the writer when it
    gets there first: a corrupted one stops the conversion either way, and nothing is kept."""
    require_format("keras")
    source, arch = _copy_source(name, tmp_path)
    data_file, offset, size = _largest_tensor(source, arch, which)
    _flip(data_file, offset, size)
    out = tmp_path / "out"
    out.mkdir()
    argv = ["convert", str(source), str(out / target)] + (["--arch", str(arch)] if arch else [])
    argv += ["--to", "tf-checkpoint"] if target == "ckpt" else []
    assert main(argv) == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "checksum mismatch for tensor " in err, err
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("name", ["ckpt-mobilenetv2", "savedmodel-mobilenetv2"])
def test_a_flipped_byte_in_a_copied_tensor_is_a_read_error(name, tmp_path, capsys):
    require_format("keras")
    source, arch = _copy_source(name, tmp_path)
    data_file, offset, size = _largest_tensor(source, arch)
    _flip(data_file, offset, size)
    out = tmp_path / "out"
    out.mkdir()
    argv = ["convert", str(source), str(out / "model.keras")] + (["--arch", str(arch)] if arch else [])
    assert main(argv) == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("modelmorph: error: "), err
    assert f"{os.path.basename(data_file)}: checksum mismatch for tensor " in err, err
    assert list(out.iterdir()) == []
    with pytest.raises(modelmorph.ReadError, match="checksum mismatch"):
        _read(source, arch)  # read() checks every checksum by default
    # Reading the metadata only (as `info` does), every way to the bytes is still checked.
    with modelmorph.read(source, arch=arch, verify=False) as model:
        w = max((w for w in _all_weights(model).values() if w.raw is not None), key=lambda w: w.nbytes)
        with pytest.raises(modelmorph.ReadError, match="checksum mismatch"):
            w.raw.file.read(1)
        with pytest.raises(modelmorph.ReadError, match="checksum mismatch"):
            w.raw.file.fileno()


@plain_path
def test_writing_a_checkpoint_copies_stored_bytes(tmp_path):
    """Checkpoint → checkpoint and .keras → checkpoint copy the tensors too (no numpy): the same
    keys, bytes and CRC-32C as the source's."""
    require_format("keras")
    from modelmorph_tfckpt.bundle import BundleReader

    src = keras2_ckpt("mobilenetv2")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    code = ("import sys, modelmorph\n"
            f"modelmorph.convert({str(src)!r}, {str(tmp_path / 'a' / 'ckpt')!r}, to_format='tf-checkpoint')\n"
            f"modelmorph.convert({str(FIXTURES / 'keras3' / 'mobilenetv2.keras')!r}, "
            f"{str(tmp_path / 'b' / 'ckpt')!r}, to_format='tf-checkpoint')\n"
            "print(sorted({'numpy', 'ml_dtypes'} & set(sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"
    with BundleReader(src) as a, BundleReader(tmp_path / "a" / "ckpt") as b:
        assert a.keys() == b.keys()
        for key, entry in a.entries().items():
            if key != "_CHECKPOINTABLE_OBJECT_GRAPH":
                assert (entry.dtype, entry.shape, entry.crc32c) == (b.entries()[key].dtype, b.entries()[key].shape,
                                                                    b.entries()[key].crc32c), key
                assert a.read(key).tobytes() == b.read(key).tobytes(), key
    with modelmorph.read(FIXTURES / "keras3" / "mobilenetv2.keras") as k, \
            modelmorph.read(tmp_path / "b" / "ckpt", arch=FIXTURES / "keras3" / "mobilenetv2.keras") as back:
        _assert_bit_identical(k, back, subset=True)


def _member_crcs_hold(path: Path) -> None:
    """Every member's recorded CRC-32 is that of its bytes (zipfile's own check, and zlib's)."""
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None
        for info in zf.infolist():
            assert zlib.crc32(zf.read(info)) == info.CRC, info.filename


@pytest.mark.interop  # builds its input with a real library
@plain_path
@pytest.mark.parametrize("engine", ["installed", "zlib"])
def test_zip_crcs_assembled_from_the_sources_checks_are_right(engine, tmp_path, monkeypatch):
    """The weights member's CRC-32 is combined from the tensors' CRCs that checking the source
    computed (a checkpoint's CRC-32C pass, a .keras' CRC-32 pass) and the metadata written,
    never read back: the numbers must still be zip's. ``zlib``: the fallback engine."""
    require_format("keras")
    from modelmorph.storage import filecopy

    if engine == "zlib":
        monkeypatch.setattr(filecopy, "_fast_crc32", zlib.crc32)
        monkeypatch.setattr(filecopy, "_fast_combine", None)
    for name, (src, arch) in JOBS.items():
        out = tmp_path / f"{name}.keras"
        modelmorph.convert(src, out, arch=arch)
        _member_crcs_hold(out)
        again = tmp_path / f"{name}-again.keras"  # .keras -> .keras: the pieces' CRCs from the source's check
        modelmorph.convert(out, again)
        _member_crcs_hold(again)
        with modelmorph.read(out) as a, modelmorph.read(again) as b:
            _assert_bit_identical(a, b)
    keras = require("keras")  # Keras 3 loads the archive and holds the source's values, bit for bit
    model = keras.saving.load_model(tmp_path / "savedmodel-mobilenetv2-again.keras")
    with modelmorph.read(SAVEDMODEL / "mobilenetv2") as source:
        expected = sorted(w.read().tobytes() for _, _, w in source.iter_weights())
    assert sorted(np.asarray(v.numpy()).tobytes() for v in model.weights) == expected


@plain_path
@pytest.mark.parametrize("engine", ["installed", "zlib"])
def test_zip_crcs_of_copies_whose_source_has_no_crc_are_right(engine, tmp_path, monkeypatch):
    """Sources whose bytes carry no CRC (a .weights.h5, an unzipped .keras folder): the copies'
    CRCs are read back by a thread while the writer goes on; the whole is still zip's."""
    require_format("keras")
    from modelmorph.storage import filecopy

    if engine == "zlib":
        monkeypatch.setattr(filecopy, "_fast_crc32", zlib.crc32)
        monkeypatch.setattr(filecopy, "_fast_combine", None)
    keras3 = FIXTURES / "keras3"
    out = tmp_path / "from-weights.keras"
    modelmorph.convert(keras3 / "mobilenetv2.weights.h5", out, arch=keras3 / "mobilenetv2.json")
    _member_crcs_hold(out)
    folder = tmp_path / "folder"
    modelmorph.convert(keras3 / "mobilenetv2.keras", folder, to_format="keras", options={"zipped": False})
    again = tmp_path / "from-folder.keras"
    modelmorph.convert(folder, again)
    _member_crcs_hold(again)
    with modelmorph.read(keras3 / "mobilenetv2.keras") as a, modelmorph.read(out) as b, modelmorph.read(again) as c:
        _assert_bit_identical(a, b)
        _assert_bit_identical(a, c)


@pytest.mark.interop  # builds its input with a real library
@plain_path
def test_checkpoint_to_checkpoint_keeps_the_checked_crc32c(tmp_path):
    """The CRC-32C a checkpoint stores for a copied tensor is the source's, given out only after
    it held; TensorFlow's reader (which checks it) reads every tensor back."""
    tf = require("tensorflow")
    src = keras2_ckpt("mobilenetv2")
    (tmp_path / "a").mkdir()
    modelmorph.convert(src, tmp_path / "a" / "ckpt", to_format="tf-checkpoint")
    theirs, ours = tf.train.load_checkpoint(str(src)), tf.train.load_checkpoint(str(tmp_path / "a" / "ckpt"))
    keys = theirs.get_variable_to_shape_map()
    assert keys
    for key in keys:
        assert np.array_equal(theirs.get_tensor(key), ours.get_tensor(key)), key


@plain_path  # finds the tensor's bytes through the plain reader's byte ranges
@pytest.mark.parametrize("target", ["out.keras", "ckpt"])
def test_a_flipped_byte_in_a_keras_tensor_leaves_no_output(target, tmp_path, capsys):
    """A .keras source's tensors are copied while their member's CRC-32 is checked: a flipped
    byte inside a tensor (not the metadata) fails the conversion, and nothing is kept."""
    require_format("keras")
    source = tmp_path / "flipped.keras"
    shutil.copy(FIXTURES / "keras3" / "mobilenetv2.keras", source)
    with modelmorph.read(source, verify=False) as model:
        w = max((w for _, _, w in model.iter_weights() if w.raw is not None), key=lambda w: w.raw.offset)
        where = (w.raw.offset, w.raw.nbytes)
    _flip(str(source), *where)
    out = tmp_path / "out"
    out.mkdir()
    argv = ["convert", str(source), str(out / target)] + (["--to", "tf-checkpoint"] if target == "ckpt" else [])
    assert main(argv) == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model.weights.h5 is corrupt (CRC-32 mismatch)" in err, err
    assert list(out.iterdir()) == []


@pytest.mark.interop  # builds its input with a real library
@plain_path
def test_keras_to_sharded_checkpoint_crc32c_computed_behind_the_copies(tmp_path):
    """A .keras source gives no CRC-32C: each copy's is read back by a thread while the next
    tensors are copied, settled before a shard closes and before the index is written. TF's
    reader checks every one of them, across several shards."""
    tf = require("tensorflow")
    source = FIXTURES / "keras3" / "mobilenetv2.keras"
    modelmorph.convert(source, tmp_path / "ckpt", to_format="tf-checkpoint", options={"max_shard_size": 100_000})
    assert len(list(tmp_path.glob("ckpt.data-*"))) > 2
    reader = tf.train.load_checkpoint(str(tmp_path / "ckpt"))
    with modelmorph.read(source) as model:
        expected = sorted(w.read().tobytes() for _, _, w in model.iter_weights())
    got = sorted(np.asarray(reader.get_tensor(k)).tobytes() for k in reader.get_variable_to_shape_map()
                 if "/.ATTRIBUTES/VARIABLE_VALUE" in k and not k.startswith(("optimizer", "save_counter")))
    assert got == expected
