"""The byte-copying path of checkpoints and SavedModels: a whole numeric tensor's bytes are
copied from the data shard (``Weight.raw``) instead of decoded, so converting a float32
checkpoint or SavedModel to ``.keras`` loads neither numpy nor ml_dtypes (nor h5py) and gives,
bit for bit, what the numpy path gives; the CRC-32C is still checked on the way."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import modelmorph
from modelmorph.cli import main

from ckptcases import FIXTURES, TF_KERAS, keras2_ckpt, require_format
from helpers import assert_models_equal

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


def _largest_tensor(source: Path, arch: Path | None) -> tuple[str, int, int]:
    """(data file, offset, size) of the source's largest tensor that is copied as bytes."""
    with _read(source, arch) as model:
        w = max((w for w in _all_weights(model).values() if w.raw is not None), key=lambda w: w.nbytes)
        return w.raw.file.name, w.raw.offset, w.nbytes


@pytest.mark.parametrize("name", ["ckpt-mobilenetv2", "savedmodel-mobilenetv2"])
def test_a_flipped_byte_in_a_copied_tensor_is_a_read_error(name, tmp_path, capsys):
    require_format("keras")
    src, arch = JOBS[name]
    folder = tmp_path / "src"
    shutil.copytree(src.parent if src.name == "ckpt" else src, folder)
    source = folder / "ckpt" if src.name == "ckpt" else folder
    data_file, offset, size = _largest_tensor(source, arch)
    with open(data_file, "r+b") as f:
        f.seek(offset + size // 2)
        byte = f.read(1)
        f.seek(offset + size // 2)
        f.write(bytes([byte[0] ^ 0x01]))
    out = tmp_path / "out"
    out.mkdir()
    argv = ["convert", str(source), str(out / "model.keras")] + (["--arch", str(arch)] if arch else [])
    assert main(argv) == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("modelmorph: error: "), err
    assert f"{os.path.basename(data_file)}: checksum mismatch for tensor " in err, err
    assert list(out.iterdir()) == []
    with _read(source, arch) as model:  # every way to the bytes is checked, not only fileno()
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
