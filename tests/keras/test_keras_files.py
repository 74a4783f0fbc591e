"""File-level comparison with what Keras 3 itself wrote: the same HDF5 paths, ``name``
attributes, dtypes and bytes; the same sharding; the same archive layout and config."""

from __future__ import annotations

import io
import json
import zipfile

import h5py
import pytest

import modelmorph

from helpers import assert_models_equal
from kerascases import CASES, KERAS3, SHARDED_GB


def h5_tree(source) -> tuple[dict, dict]:
    """Every group (with its ``name`` attribute) and dataset (dtype, shape, raw bytes, attributes)."""
    groups, datasets = {}, {}

    def visit(name, obj):
        if isinstance(obj, h5py.Group):
            groups[name] = obj.attrs.get("name")
        else:
            datasets[name] = (obj.dtype.str, obj.shape, obj[()].tobytes(), dict(obj.attrs))

    with h5py.File(source, "r") as f:
        f.visititems(visit)
    return groups, datasets


def member(archive, name: str) -> io.BytesIO:
    with zipfile.ZipFile(archive) as zf:
        return io.BytesIO(zf.read(name))


def assert_same_weights_file(ours, keras) -> None:
    our_groups, our_data = h5_tree(ours)
    keras_groups, keras_data = h5_tree(keras)
    assert our_data.keys() == keras_data.keys()
    for path, value in keras_data.items():
        assert our_data[path] == value, path
    assert not set(our_groups) - set(keras_groups), "modelmorph wrote groups Keras does not"
    assert all(our_groups[p] == keras_groups[p] for p in our_groups), "a `name` attribute differs"
    # What only Keras writes: empty groups of helpers it names at run time (MultiHeadAttention's
    # _softmax and _dropout_layer), which hold no variables and which Keras never reads.
    for path in set(keras_groups) - set(our_groups):
        assert not any(d.startswith(path + "/") for d in keras_data), path
        assert path.rpartition("/")[2].lstrip("_") in ("softmax", "dropout_layer", "vars"), path


@pytest.mark.parametrize("case", CASES)
def test_weights_match_keras_byte_for_byte(tmp_path, case):
    archive, weights = tmp_path / f"{case}.keras", tmp_path / f"{case}.weights.h5"
    modelmorph.convert(KERAS3 / f"{case}.keras", archive)
    modelmorph.convert(KERAS3 / f"{case}.keras", weights)
    keras_weights = member(KERAS3 / f"{case}.keras", "model.weights.h5")
    assert_same_weights_file(member(archive, "model.weights.h5"), keras_weights)
    assert_same_weights_file(weights, keras_weights)
    assert_same_weights_file(weights, KERAS3 / f"{case}.weights.h5")  # save_weights output is the same layout


@pytest.mark.parametrize("case", ["mlp_adam", "mobilenetv2"])
def test_sharding_matches_keras(tmp_path, case):
    out = tmp_path / f"{case}.weights.json"
    modelmorph.convert(KERAS3 / f"{case}.keras", out, options={"max_shard_size": SHARDED_GB[case]})
    index = json.loads(out.read_text())
    assert index == json.loads((KERAS3 / f"{case}.weights.json").read_text())
    shards = sorted(p.name for p in tmp_path.glob(f"{case}_*.weights.h5"))
    assert shards == sorted(p.name for p in KERAS3.glob(f"{case}_*.weights.h5")) and len(shards) > 1
    for shard in shards:
        assert h5_tree(tmp_path / shard) == h5_tree(KERAS3 / shard), shard


@pytest.mark.parametrize("case", CASES)
def test_archive_layout_and_config_match_keras(tmp_path, case):
    out = tmp_path / f"{case}.keras"
    modelmorph.convert(KERAS3 / f"{case}.keras", out)
    with zipfile.ZipFile(out) as ours, zipfile.ZipFile(KERAS3 / f"{case}.keras") as keras:
        assert ours.namelist() == keras.namelist() == ["metadata.json", "config.json", "model.weights.h5"]
        assert {i.compress_type for i in ours.infolist()} == {zipfile.ZIP_STORED}
        assert json.loads(ours.read("config.json")) == json.loads(keras.read("config.json"))
        metadata = json.loads(ours.read("metadata.json"))
        assert metadata.keys() == json.loads(keras.read("metadata.json")).keys() == {"keras_version", "date_saved"}
        assert metadata["keras_version"] == "3.15.1"


def test_weights_only_file_goes_back_to_the_same_paths(tmp_path):
    out = tmp_path / "copy.weights.h5"
    modelmorph.convert(KERAS3 / "embed_lstm_bigru.weights.h5", out)
    ours, keras = h5_tree(out), h5_tree(KERAS3 / "embed_lstm_bigru.weights.h5")
    assert ours[1] == keras[1]
    # Groups with variables keep their name; the empty ones (weightless layers) are not carried.
    assert {p: n for p, n in keras[0].items() if any(d.startswith(p + "/") for d in keras[1])}.items() <= ours[0].items()


def test_sharded_weights_read_alone_and_written_back_as_one_file(tmp_path):
    out = tmp_path / "mobilenetv2.weights.h5"
    modelmorph.convert(KERAS3 / "mobilenetv2.weights.json", out)
    assert h5_tree(out)[1] == h5_tree(KERAS3 / "mobilenetv2.weights.h5")[1]


def test_a_tensor_larger_than_a_shard_is_refused_before_it_is_read(tmp_path, capsys):
    from modelmorph.cli import main

    read_ids = []
    with modelmorph.read(KERAS3 / "mobilenetv2.keras") as model:
        weights = [w for _, _, w in model.iter_weights()]
        big = max(weights, key=lambda w: w.nbytes)
        for w in weights:  # record every tensor read (none copied behind the loaders' back)
            w.loader = lambda w=w, load=w.loader: read_ids.append(id(w)) or load()
            w.raw = None
        with pytest.raises(modelmorph.WriteError, match=f"is {big.nbytes} bytes, more than max_shard_size "
                                                        f"\\({big.nbytes - 1} bytes\\)"):
            modelmorph.write(model, tmp_path / "m.weights.json", options={"max_shard_size": str(big.nbytes - 1)})
    assert read_ids == []  # the shards are planned from declared sizes before any tensor is read
    assert list(tmp_path.iterdir()) == []
    assert main(["convert", str(KERAS3 / "mobilenetv2.keras"), str(tmp_path / "m.weights.json"),
                 "-O", f"max_shard_size={big.nbytes - 1}"]) == 5
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "more than max_shard_size" in err, err
    assert list(tmp_path.iterdir()) == []


def test_weights_are_written_in_place_as_one_hdf5_file(tmp_path):
    """model.weights.h5 is written by HDF5 straight into the zip: read alone, it is whole."""
    out = tmp_path / "mlp_adam.keras"
    modelmorph.convert(KERAS3 / "mlp_adam.keras", out)
    with zipfile.ZipFile(out) as zf:
        assert zf.testzip() is None
        info = zf.getinfo("model.weights.h5")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    assert start & (start - 1) == 0 and start >= 512  # right after the HDF5 user block
    assert out.read_bytes()[start:start + 8] == b"\x89HDF\r\n\x1a\n"
    assert h5_tree(member(out, "model.weights.h5")) == h5_tree(member(KERAS3 / "mlp_adam.keras", "model.weights.h5"))


def test_zip64_records(tmp_path, monkeypatch):
    """Archives past 4 GiB need zip64 records; a low limit makes every member need them."""
    from modelmorph_keras import storedzip

    monkeypatch.setattr(storedzip, "ZIP64_LIMIT", 1000)
    source = tmp_path / "with_asset.keras"
    with zipfile.ZipFile(KERAS3 / "mha_ln.keras") as src, zipfile.ZipFile(source, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        dst.writestr("assets/layers/x/vocabulary.txt", "é\n" * 600)
    out = tmp_path / "zip64.keras"
    modelmorph.convert(source, out)
    with zipfile.ZipFile(out) as zf:
        assert zf.testzip() is None
        assert [i.extract_version for i in zf.infolist()] == [20, 45, 45, 45]  # metadata.json stays small and first
        assert zf.read("assets/layers/x/vocabulary.txt") == "é\n".encode() * 600
    with modelmorph.read(out) as back, modelmorph.read(source) as original:
        assert_models_equal(back, original)
