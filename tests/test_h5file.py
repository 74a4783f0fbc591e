"""The one HDF5 interface (``modelmorph.storage.h5file``): both backends give the same view of
every HDF5 fixture, and ``MODELMORPH_HDF5`` chooses the backend."""

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
from modelmorph.storage import h5file

from helpers import FIXTURES

H5_FIXTURES = sorted(p for d in ("keras3", "tf_keras", "hdf5") for p in (FIXTURES / d).rglob("*.h5"))
KERAS_FIXTURES = sorted((FIXTURES / "keras3").glob("*.keras"))


def _member(archive: Path) -> tuple[int, int]:
    """Where ``model.weights.h5`` lies, stored, in a ``.keras`` archive."""
    with zipfile.ZipFile(archive) as z:
        info = z.getinfo("model.weights.h5")
    assert info.compress_type == zipfile.ZIP_STORED
    with open(archive, "rb") as f:
        f.seek(info.header_offset + 26)
        name, extra = np.frombuffer(f.read(4), "<u2")
    return info.header_offset + 30 + int(name) + int(extra), info.file_size


def _view(monkeypatch, backend: str, path: Path, **window) -> tuple[list, dict]:
    """Everything the interface tells about a file: each object in walk order, and each
    numeric dataset's weight (shape, dtype, value bytes, whether it carries a ByteRange)."""
    monkeypatch.setenv(h5file.ENV, backend)
    objects, weights = [], {}
    with h5file.open(path, **window) as f:
        assert f.backend == backend
        objects.append(("", True, f.attrs, f.children))
        for obj in f.walk():
            assert obj.name == "/" + obj.path
            again = f.get(obj.path)
            assert again is not None and again.is_group == obj.is_group and again.path == obj.path
            if obj.is_group:
                objects.append((obj.path, True, obj.attrs, obj.children))
                continue
            objects.append((obj.path, False, obj.attrs, obj.shape, obj.dtype, obj.nbytes, obj.read_bytes()))
            assert len(objects[-1][-1]) == obj.nbytes
            if obj.dtype in modelmorph.storage.plainh5.NUMERIC or obj.dtype == "V2":
                w = obj.weight(obj.path)
                value = w.read()
                weights[obj.path] = (w.shape, w.dtype, tuple(value.shape), value.tobytes(), w.raw is not None)
    return objects, weights


def _same(monkeypatch, path: Path, **window) -> None:
    plain, plain_weights = _view(monkeypatch, "plain", path, **window)
    h5, h5_weights = _view(monkeypatch, "h5py", path, **window)
    assert plain == h5
    assert plain_weights.keys() == h5_weights.keys()
    for key, (shape, dtype, value_shape, data, raw) in plain_weights.items():
        assert raw or not data  # the plain backend knows where every stored value lies
        assert h5_weights[key][:4] == (shape, dtype, value_shape, data), key
        assert not h5_weights[key][4]


@pytest.mark.parametrize("path", H5_FIXTURES, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_both_backends_see_every_fixture_alike(monkeypatch, path):
    _same(monkeypatch, path)


@pytest.mark.parametrize("path", KERAS_FIXTURES, ids=lambda p: p.name)
def test_both_backends_see_archive_members_alike(monkeypatch, path):
    start, size = _member(path)
    _same(monkeypatch, path, start=start, size=size)


def test_both_backends_see_every_type_alike(monkeypatch, tmp_path):
    """What the fixtures lack: every numeric type, bfloat16, empty and scalar datasets, fixed
    strings, big-endian-free attributes of each kind, names in byte order."""
    path = tmp_path / "types.h5"
    with h5py.File(path, "w") as f:
        for name in modelmorph.storage.plainh5.NUMERIC:
            f.create_dataset(f"num/{name}", data=np.arange(6, dtype=name).reshape(2, 3))
        bf = f.create_dataset("bf16", data=np.arange(4, dtype="<u2").view("V2"))
        bf.attrs["dtype"] = "bfloat16"
        f.create_dataset("empty", shape=(0, 4), dtype="f4")
        f.create_dataset("scalar", data=np.float64(2.5))
        f.create_dataset("fixed", data=np.array([b"ab", b"cde"]))
        g = f.create_group("attrs")
        g.attrs["vlen"] = "héllo"
        g.attrs["fixed"] = np.bytes_(b"abc")
        g.attrs["list"] = np.array([b"x", b"yz"])
        g.attrs["vlen_list"] = ["p", "q"]
        g.attrs["int"] = np.int64(-3)
        g.attrs["floats"] = np.array([1.5, 2.5], dtype="f2")
        g.attrs["empty"] = np.array([], dtype="S1")
        for name in ("b", "a", "Z", "_a", "a0"):
            f.create_group(f"order/{name}")
    _same(monkeypatch, path)


def test_h5py_backend_refuses_links_plain_cannot_hold(monkeypatch, tmp_path):
    path = tmp_path / "soft.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.zeros(2, "f4"))
        f["s"] = h5py.SoftLink("/x")
    for backend in ("auto", "h5py"):
        monkeypatch.setenv(h5file.ENV, backend)
        with pytest.raises(modelmorph.ReadError, match="soft link"):
            h5file.open(path)
    monkeypatch.setenv(h5file.ENV, "plain")
    with pytest.raises(modelmorph.ReadError, match="not in the plain HDF5 subset .*MODELMORPH_HDF5=plain"):
        h5file.open(path)


def test_names_never_reach_outside_their_group(monkeypatch):
    for backend in ("plain", "h5py"):
        monkeypatch.setenv(h5file.ENV, backend)
        with h5file.open(FIXTURES / "tf_keras" / "mlp_adam.h5") as f:
            group = f.get("model_weights/dense")
            assert group is not None and group.get("dense/kernel:0") is not None
            for name in ("/model_weights", "../dense_1", "./dense", "", "dense//kernel:0"):
                assert group.get(name) is None, (backend, name)


def test_the_setting_is_checked(monkeypatch):
    monkeypatch.setenv(h5file.ENV, "fast")
    with pytest.raises(modelmorph.UsageError, match="MODELMORPH_HDF5 must be one of auto, plain, h5py"):
        h5file.open(FIXTURES / "tf_keras" / "mlp_adam.h5")
    monkeypatch.setenv(h5file.ENV, " H5PY ")
    assert h5file.setting() == "h5py"
    monkeypatch.delenv(h5file.ENV)
    assert h5file.setting() == "auto"


def test_write_backend(monkeypatch, tmp_path):
    for backend, possible, expected in [("auto", True, "plain"), ("auto", False, "h5py"), ("h5py", True, "h5py"),
                                        ("plain", True, "plain")]:
        monkeypatch.setenv(h5file.ENV, backend)
        assert h5file.write_backend(possible, tmp_path / "x.h5") == expected
    monkeypatch.setenv(h5file.ENV, "plain")
    with pytest.raises(modelmorph.WriteError, match="MODELMORPH_HDF5=plain forbids"):
        h5file.write_backend(False, tmp_path / "x.h5")


def test_the_switch_forces_h5py_in_conversions(tmp_path):
    """MODELMORPH_HDF5=h5py: the conversions the plain path serves load h5py, read no byte range,
    and give the same models."""
    jobs = [(FIXTURES / "keras3" / "mlp_adam.keras", tmp_path / "a.keras"),
            (FIXTURES / "tf_keras" / "seq_cnn_bn.h5", tmp_path / "b.keras")]
    code = ("import sys, modelmorph\n"
            + "".join(f"modelmorph.convert({str(src)!r}, {str(dst)!r})\n" for src, dst in jobs)
            + f"m = modelmorph.read({str(jobs[0][1])!r})\n"
            + "print(sum(w.raw is not None for _, _, w in m.iter_weights()), 'h5py' in sys.modules)\n")
    env = {**os.environ, h5file.ENV: "h5py"}
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env).stdout
    assert out.split() == ["0", "True"]
    from helpers import assert_models_equal

    for src, dst in jobs:
        with modelmorph.read(src) as a, modelmorph.read(dst) as b:
            assert_models_equal(a, b)
