"""The byte-copying path: HDF5 files Keras writes are read and written by ``modelmorph.storage.plainh5``
(pure Python, through ``modelmorph.storage.h5file``), tensors copied file to file; files outside
that subset take the h5py path and give the same model. Under ``MODELMORPH_HDF5=h5py`` (run by
``.ci/run``) the tests that assert the plain path itself are skipped; the others hold on both."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

import modelmorph
from modelmorph.storage import plainh5

from helpers import assert_models_equal

FIXTURES = Path(__file__).resolve().parent / "fixtures"
KERAS3, TF_KERAS = FIXTURES / "keras3", FIXTURES / "tf_keras"

#: For the tests that assert the pure-Python path itself, which the switch turns off.
plain_path = pytest.mark.skipif(os.environ.get("MODELMORPH_HDF5", "").strip().lower() == "h5py",
                                reason="MODELMORPH_HDF5=h5py: HDF5 goes through h5py, not the plain path")


@plain_path
def test_keras_conversions_import_neither_numpy_nor_h5py(tmp_path):
    """What makes modelmorph fast: a .keras or Keras 2 .h5 conversion loads no numerical library."""
    jobs = [(KERAS3 / "mlp_adam.keras", tmp_path / "a.keras"), (tmp_path / "a.keras", tmp_path / "a.weights.h5"),
            (TF_KERAS / "seq_cnn_bn.h5", tmp_path / "b.keras")]
    code = ("import sys, modelmorph\n"
            + "".join(f"modelmorph.convert({str(src)!r}, {str(dst)!r})\n" for src, dst in jobs)
            + "print(sorted({'numpy', 'h5py'} & set(sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"
    with modelmorph.read(KERAS3 / "mlp_adam.keras") as a, modelmorph.read(tmp_path / "a.keras") as b:
        assert_models_equal(a, b)
    with modelmorph.read(TF_KERAS / "seq_cnn_bn.h5") as a, modelmorph.read(tmp_path / "b.keras") as b:
        assert_models_equal(a, b)


@plain_path
@pytest.mark.parametrize("source", [KERAS3 / "mobilenetv2.keras", KERAS3 / "mlp_adam.weights.h5",
                                    TF_KERAS / "mlp_adam.h5"], ids=lambda p: p.name)
def test_weights_know_where_their_bytes_are(source):
    with modelmorph.read(source) as model:
        weights = [w for _, _, w in model.iter_weights()]
        if model.optimizer is not None:
            weights += model.optimizer.variables + [s.weight for s in model.optimizer.slots]
        stored = [w for w in weights if w.raw is not None]
        assert stored and len(stored) >= len(weights) - 1  # Keras 2 files lack Keras 3's learning_rate
        for w in stored:
            data = w.read()
            assert w.raw.nbytes == w.nbytes == data.nbytes
            assert np.dtype(data.dtype).newbyteorder("<").str == data.dtype.str or data.dtype.itemsize == 1
            assert data.tobytes() == _bytes_at(w.raw)


def _bytes_at(raw: modelmorph.ByteRange) -> bytes:
    raw.file.seek(raw.offset)
    return raw.file.read(raw.nbytes)


def _rewrite_latest(src: Path, dst: Path) -> None:
    """The same HDF5 content in the newer file format (not plain): superblock v3, new-style groups."""
    with h5py.File(src, "r") as a, h5py.File(dst, "w", libver="latest") as b:
        for key, value in a.attrs.items():
            b.attrs[key] = value
        for key in a:
            a.copy(a[key], b, name=key)
    with open(dst, "rb") as f:
        with pytest.raises(plainh5.Unsupported):
            plainh5.read(f)


@pytest.mark.parametrize("case", ["mlp_adam", "mha_ln"])
def test_keras_files_outside_the_plain_subset_take_h5py(tmp_path, case):
    _rewrite_latest(KERAS3 / f"{case}.weights.h5", tmp_path / "latest.weights.h5")
    archive = tmp_path / "latest.keras"
    with zipfile.ZipFile(KERAS3 / f"{case}.keras") as original, zipfile.ZipFile(archive, "w") as out:
        for name in ("metadata.json", "config.json"):
            out.writestr(name, original.read(name))
        out.write(tmp_path / "latest.weights.h5", "model.weights.h5")
    with modelmorph.read(KERAS3 / f"{case}.keras") as expected:
        for target in ("out.keras", "out.weights.h5"):
            modelmorph.convert(archive, tmp_path / target)
            with modelmorph.read(tmp_path / target, **({"arch": KERAS3 / f"{case}.json"} if "weights" in target
                                                       else {})) as back:
                assert_models_equal(expected, back)
        with modelmorph.read(tmp_path / "latest.weights.h5", arch=KERAS3 / f"{case}.json") as back:
            assert_models_equal(expected, back)


def test_legacy_files_outside_the_plain_subset_take_h5py(tmp_path):
    _rewrite_latest(TF_KERAS / "mlp_adam.h5", tmp_path / "latest.h5")
    with modelmorph.read(TF_KERAS / "mlp_adam.h5") as expected, modelmorph.read(tmp_path / "latest.h5") as back:
        assert all(w.raw is None for _, _, w in back.iter_weights())
        assert_models_equal(expected, back)
        assert len(back.optimizer.slots) == len(expected.optimizer.slots)
