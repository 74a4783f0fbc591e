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
            (TF_KERAS / "seq_cnn_bn.h5", tmp_path / "b.keras"),
            (KERAS3 / "mobilenetv2.keras", tmp_path / "c.h5"), (TF_KERAS / "mlp_adam.h5", tmp_path / "d.h5")]
    code = ("import sys, modelmorph\n"
            + "".join(f"modelmorph.convert({str(src)!r}, {str(dst)!r})\n" for src, dst in jobs)
            + "print(sorted({'numpy', 'h5py'} & set(sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"
    with modelmorph.read(KERAS3 / "mlp_adam.keras") as a, modelmorph.read(tmp_path / "a.keras") as b:
        assert_models_equal(a, b)
    with modelmorph.read(TF_KERAS / "seq_cnn_bn.h5") as a, modelmorph.read(tmp_path / "b.keras") as b:
        assert_models_equal(a, b)
    for source, written in [(KERAS3 / "mobilenetv2.keras", "c.h5"), (TF_KERAS / "mlp_adam.h5", "d.h5")]:
        with modelmorph.read(source) as a, modelmorph.read(tmp_path / written) as b:
            assert_models_equal(a, b, architecture=False)  # Keras 2 configs are another dialect


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


def _h5_tree(path: Path) -> dict:
    """Everything h5py sees in a file: each object's attributes (value and dtype), each dataset's
    dtype, shape and bytes."""
    tree = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            attrs = {k: (repr(v.tolist() if hasattr(v, "tolist") else v), str(getattr(v, "dtype", type(v))))
                     for k, v in obj.attrs.items()}
            data = (str(obj.dtype), obj.shape, obj[()].tobytes()) if isinstance(obj, h5py.Dataset) else None
            tree[name] = (attrs, data)
        visit("/", f)
        f.visititems(visit)
    return tree


@plain_path
@pytest.mark.parametrize("source", [KERAS3 / f"{case}.keras" for case in ("mlp_adam", "mobilenetv2", "nested_seq",
                                                                           "multi_io_shared", "embed_lstm_bigru")]
                         + [TF_KERAS / "mixed_precision.h5", TF_KERAS / "mlp_adam_weights.h5"], ids=lambda p: p.name)
def test_legacy_h5_written_without_h5py_is_what_h5py_writes(source, tmp_path, monkeypatch):
    """The pure-Python legacy .h5 holds, as h5py reads it, exactly what the h5py path writes:
    the same groups, attributes (values and dtypes: fixed-length byte-string lists, UTF-8
    strings) and datasets (dtype, shape, bytes)."""
    plain, reference = tmp_path / "plain.h5", tmp_path / "h5py.h5"
    modelmorph.convert(source, plain)
    monkeypatch.setenv("MODELMORPH_HDF5", "h5py")
    modelmorph.convert(source, reference)
    with open(plain, "rb") as f:
        plainh5.read(f)  # in the plain subset, so read back without h5py too
    assert _h5_tree(plain) == _h5_tree(reference)


@plain_path
@pytest.mark.interop
def test_tf_keras_loads_a_legacy_h5_written_without_h5py(tmp_path, tf_keras):
    """tf_keras loads the pure-Python .h5: every variable bit for bit the source's, predictions
    identical to those of the h5py path's file loaded in the same process."""
    source = KERAS3 / "mobilenetv2.keras"
    plain, reference = tmp_path / "plain.h5", tmp_path / "h5py.h5"
    modelmorph.convert(source, plain)
    env = dict(os.environ, MODELMORPH_HDF5="h5py")
    subprocess.run([sys.executable, "-m", "modelmorph", "convert", str(source), str(reference)], env=env, check=True,
                   capture_output=True)
    ours, theirs = tf_keras.models.load_model(plain), tf_keras.models.load_model(reference)
    with modelmorph.read(source) as model:
        expected = [w.read() for w in _keras2_order(model, ours)]
    for got, want in zip(ours.weights, expected, strict=True):
        np.testing.assert_array_equal(got.numpy(), want)
    x = np.random.default_rng(0).standard_normal((2,) + tuple(ours.input_shape[1:])).astype("float32")
    np.testing.assert_array_equal(ours(x, training=False).numpy(), theirs(x, training=False).numpy())


def _keras2_order(model: modelmorph.Model, loaded) -> list:
    """The IR weights in the order of ``loaded.weights``, matched by name (``Conv1/kernel:0``)."""
    by_name = {f"{layer.name}/{w.path}": w for _, layer, w in model.iter_weights()}
    return [by_name[v.name.split(":")[0]] for v in loaded.weights]


@pytest.mark.interop  # builds its input with a real library
@plain_path
def test_bfloat16_legacy_h5_without_h5py(tmp_path, monkeypatch, keras3):
    """bfloat16 tensors (2-byte opaque, tagged, as Keras stores them) take the plain path too."""
    model = keras3.Sequential([keras3.Input((8,)), keras3.layers.Dense(16, dtype="bfloat16"),
                               keras3.layers.Dense(4)])
    model.save(tmp_path / "bf16.keras")
    code = ("import sys, modelmorph\n"
            f"modelmorph.convert({str(tmp_path / 'bf16.keras')!r}, {str(tmp_path / 'plain.h5')!r})\n"
            "print(sorted({'numpy', 'h5py', 'ml_dtypes'} & set(sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"
    monkeypatch.setenv("MODELMORPH_HDF5", "h5py")
    modelmorph.convert(tmp_path / "bf16.keras", tmp_path / "h5py.h5")
    assert _h5_tree(tmp_path / "plain.h5") == _h5_tree(tmp_path / "h5py.h5")
    with modelmorph.read(tmp_path / "bf16.keras") as a, modelmorph.read(tmp_path / "plain.h5") as b:
        assert_models_equal(a, b, architecture=False)


@pytest.mark.parametrize("count", [0, 1, 3000, 9000])
def test_long_string_lists_split_as_h5py_splits_them(tmp_path, count):
    """Keras' string lists past the 64512-byte header limit become name0, name1... chunks of
    fixed-length strings: the plain writer splits them exactly as write_list has h5py do."""
    from modelmorph.progress import Progress
    from modelmorph_h5.attributes import write_list
    from modelmorph_h5.plainwriter import H5Group, write_plain

    names = [f"layer_{i}_{'x' * (i % 17)}" for i in range(count)]
    assert write_plain(tmp_path / "plain.h5", [H5Group("", {"backend": "tensorflow"}),
                                               H5Group("g", {"layer_names": names})], Progress())
    with h5py.File(tmp_path / "h5py.h5", "w") as f:
        f.attrs["backend"] = "tensorflow"
        write_list(f.create_group("g").attrs, "layer_names", names)
    assert _h5_tree(tmp_path / "plain.h5") == _h5_tree(tmp_path / "h5py.h5")
    with h5py.File(tmp_path / "plain.h5", "r") as f:  # the long lists were split indeed
        assert (len(f["g"].attrs) > 1) == (count * max([1] + [len(n) for n in names]) > 64512)


@pytest.mark.interop  # builds its input with a real library
@plain_path
def test_sharded_weights_written_without_h5py_load_in_keras(tmp_path, monkeypatch, keras3):
    """A sharded ``.weights.json`` takes the plain writer too, one file per shard (tensors copied):
    the same shards h5py writes, and Keras 3 loads every weight back bit for bit."""
    source, out = KERAS3 / "mobilenetv2.keras", tmp_path / "plain" / "m.weights.json"
    out.parent.mkdir()
    code = ("import sys, modelmorph\n"
            f"modelmorph.convert({str(source)!r}, {str(out)!r}, options={{'max_shard_size': '600KB'}})\n"
            "print(sorted({'numpy', 'h5py', 'ml_dtypes'} & set(sys.modules)))\n")
    got = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert got.strip() == "[]"
    shards = sorted(p.name for p in out.parent.glob("m_*.weights.h5"))
    assert len(shards) > 3
    monkeypatch.setenv("MODELMORPH_HDF5", "h5py")
    (tmp_path / "h5py").mkdir()
    modelmorph.convert(source, tmp_path / "h5py" / "m.weights.json", options={"max_shard_size": "600KB"})
    assert (tmp_path / "h5py" / "m.weights.json").read_text() == out.read_text()
    assert sorted(p.name for p in (tmp_path / "h5py").glob("m_*.weights.h5")) == shards
    for shard in shards:
        assert _h5_tree(out.parent / shard) == _h5_tree(tmp_path / "h5py" / shard), shard
    original = keras3.saving.load_model(source)
    loaded = keras3.saving.load_model(source)
    for v in loaded.weights:
        v.assign(np.zeros(v.shape, v.dtype))
    loaded.load_weights(out)
    assert len(original.weights) == len(loaded.weights) > 100
    for a, b in zip(original.weights, loaded.weights):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes(), a.path
