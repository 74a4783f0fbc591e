"""Hostile and broken `.h5` files: one-line read errors, nothing read from elsewhere, nothing
left behind, and code carried as data, never run."""

from __future__ import annotations

import base64
import json
import marshal
import shutil

import h5py
import numpy as np
import pytest

import modelmorph
from h5cases import FIXTURES
from modelmorph.cli import main

MLP = FIXTURES / "tf_keras" / "mlp_adam.h5"


def _copy(tmp_path, name="model.h5"):
    path = tmp_path / "in" / name
    path.parent.mkdir()
    shutil.copy(MLP, path)
    return path


def _refused(path, match, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(modelmorph.ReadError, match=match) as info:
        modelmorph.convert(path, out / "converted.h5")
    assert "\n" not in str(info.value) and str(info.value).startswith(str(path))
    assert list(out.iterdir()) == []


def _replace_dataset(path, make):
    """Swap the first Dense kernel for the dataset ``make(group, name)`` creates."""
    with h5py.File(path, "r+") as f:
        group = f["model_weights/dense/dense"]
        del group["kernel:0"]
        make(group, "kernel:0")


def test_external_link_is_refused(tmp_path):
    secret = tmp_path / "secret.h5"
    with h5py.File(secret, "w") as f:
        f["kernel"] = np.ones((8, 16), "float32")
    path = _copy(tmp_path)
    _replace_dataset(path, lambda g, n: g.__setitem__(n, h5py.ExternalLink(str(secret), "/kernel")))
    _refused(path, "external link", tmp_path)


def test_soft_link_is_refused(tmp_path):
    path = _copy(tmp_path)
    _replace_dataset(path, lambda g, n: g.__setitem__(n, h5py.SoftLink("/model_weights/dense_1/dense_1/kernel:0")))
    _refused(path, "soft link", tmp_path)


def test_external_storage_is_refused(tmp_path):
    raw = tmp_path / "raw.bin"
    raw.write_bytes(np.ones((8, 16), "float32").tobytes())
    path = _copy(tmp_path)
    _replace_dataset(path, lambda g, n: g.create_dataset(n, (8, 16), "float32", external=[(str(raw), 0, 512)]))
    _refused(path, "external file", tmp_path)


def test_virtual_dataset_is_refused(tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["data"] = np.ones((8, 16), "float32")

    def virtual(group, name):
        layout = h5py.VirtualLayout((8, 16), "float32")
        layout[:] = h5py.VirtualSource(str(other), "data", shape=(8, 16))
        group.create_virtual_dataset(name, layout)

    path = _copy(tmp_path)
    _replace_dataset(path, virtual)
    _refused(path, "virtual dataset", tmp_path)


def test_shape_bomb_is_refused(tmp_path):
    path = _copy(tmp_path)
    _replace_dataset(path, lambda g, n: g.create_dataset(n, (1 << 20, 1 << 12), "float32", chunks=(1024, 64)))
    _refused(path, "declares", tmp_path)


def test_truncated_file(tmp_path):
    path = tmp_path / "in" / "truncated.h5"
    path.parent.mkdir()
    path.write_bytes(MLP.read_bytes()[:6000])
    _refused(path, "not a readable HDF5 file", tmp_path)


@pytest.mark.parametrize("attribute, value, match", [
    ("model_config", np.arange(3), "malformed Keras HDF5 file"),
    ("model_config", "[1, 2]", "not an object"),
    ("model_config", '{"a": ' * 200 + "1" + "}" * 200, "nested"),
    ("model_config", json.dumps({"class_name": "Sequential", "config": {"layers": "dense"}}), "malformed"),
    ("training_config", "not json", "training_config is malformed"),
])
def test_wrong_root_attributes(tmp_path, attribute, value, match):
    path = _copy(tmp_path)
    with h5py.File(path, "r+") as f:
        f.attrs[attribute] = value
    _refused(path, match, tmp_path)


@pytest.mark.parametrize("group, names, match", [
    ("model_weights", np.array([1.5, 2.5]), "malformed"),
    ("model_weights/dense", np.array([b"dense/kernel:0", b"dense/missing:0"]), "not a dataset"),
    ("model_weights/dense", np.array([b"/model_weights/dense_1/dense_1/kernel:0", b"dense/bias:0"]), "not a dataset"),
    ("model_weights", np.array([b"dense", b"nowhere"]), "expected a group"),
])
def test_wrong_weight_lists(tmp_path, group, names, match):
    path = _copy(tmp_path)
    with h5py.File(path, "r+") as f:
        f[group].attrs["layer_names" if group == "model_weights" else "weight_names"] = names
    _refused(path, match, tmp_path)


def test_cli_error_is_one_line(tmp_path, capsys):
    path = tmp_path / "broken.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    assert main(["convert", str(path), str(tmp_path / "out.keras")]) == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.h5"]


def test_lambda_and_foreign_classes_are_carried_never_run(tmp_path):
    marker = tmp_path / "ran"
    code = (lambda x: open(marker, "w")).__code__  # would create `marker` if ever run
    payload = base64.b64encode(marshal.dumps(code)).decode()
    path = _copy(tmp_path)
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        config["config"]["layers"].insert(1, {"class_name": "Lambda", "config": {
            "name": "evil", "function": [payload, None, None], "function_type": "lambda", "module": "__main__",
            "output_shape": None, "output_shape_type": "raw", "output_shape_module": None, "arguments": {}}})
        config["config"]["layers"].insert(2, {"module": "os", "class_name": "system", "config": {"name": "sys"}})
        f.attrs["model_config"] = json.dumps(config)
        for name in ("evil", "sys"):
            f["model_weights"].create_group(name).attrs["weight_names"] = np.array([], dtype="S1")
    diags = modelmorph.Diagnostics()
    with modelmorph.read(path, diagnostics=diags) as model:
        lam = model.layer("evil")
        assert lam.config["function"]["config"]["code"] == payload
        assert model.layer("sys").module == "os"
        modelmorph.write(model, tmp_path / "out.h5")
    kinds = {(d.kind, d.where) for d in diags}
    assert ("contains-code", "evil") in kinds and ("contains-code", "sys") in kinds
    with h5py.File(tmp_path / "out.h5", "r") as f:
        assert payload in f.attrs["model_config"]
    assert not marker.exists()
