"""The IR survives the Keras formats: write then read back gives the same model, and the
weights-only and ``--arch`` paths place every variable where it belongs."""

from __future__ import annotations

import json
import re
import zipfile

import h5py
import ml_dtypes
import numpy as np
import pytest

import modelmorph
from modelmorph import ReadError, WriteError
from modelmorph.keras import kerasconfig
from modelmorph.commands.diff import diff_models

from helpers import FIXTURES, assert_models_equal, write_read
from kerascases import CASES, COMPILED, KERAS3


def optimizer_summary(model):
    opt = model.optimizer
    if opt is None:
        return None
    read = lambda w: (w.path, w.shape, w.dtype, w.read().tobytes())  # noqa: E731
    return ([read(w) for w in opt.variables], [(s.variable, s.name, read(s.weight)) for s in opt.slots],
            [read(w) for w in opt.unmapped])


@pytest.mark.parametrize("case", CASES)
def test_archive_round_trip(tmp_path, case):
    with modelmorph.read(KERAS3 / f"{case}.keras") as model:
        back, _ = write_read(tmp_path, model, "keras", "out.keras")
        with back:
            assert optimizer_summary(back) == optimizer_summary(model)
            assert back.compile_config == model.compile_config


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("filename", ["out.weights.h5", "out.weights.json"])
def test_weights_round_trip_through_the_architecture(tmp_path, case, filename):
    with modelmorph.read(KERAS3 / f"{case}.keras") as model:
        # sharded: shards no larger than the largest variable
        options = {"max_shard_size": f"{max(w.nbytes for _, _, w in model.iter_weights())}b"} if filename.endswith(".json") else {}
        back, _ = write_read(tmp_path, model, "keras-weights", filename, options=options, arch=model)
        with back:
            assert optimizer_summary(back) == optimizer_summary(model)


def test_weights_only_round_trip(tmp_path):
    with modelmorph.read(KERAS3 / "mlp_adam.weights.h5") as model:
        assert not model.has_architecture
        assert [(l.name, l.class_name, l.extra) for l in model.layers] == [
            ("layers/dense/vars", "", {"keras-weights:group": "layers/dense/vars", "keras-weights:name": "dense"}),
            ("layers/dense_1/vars", "", {"keras-weights:group": "layers/dense_1/vars", "keras-weights:name": "dense_1"})]
        assert [w.path for w in model.optimizer.unmapped] == [str(i) for i in range(10)]
        back, _ = write_read(tmp_path, model, "keras-weights", "copy.weights.h5")
        with back:
            assert optimizer_summary(back) == optimizer_summary(model)


def test_optimizer_slots_are_mapped_to_their_variables():
    with modelmorph.read(KERAS3 / "mlp_adam.keras") as model:
        opt = model.optimizer
        assert [w.path for w in opt.variables] == ["iterations", "learning_rate"]
        assert int(opt.variables[0].read()) > 0 and opt.variables[0].dtype == "int64"
        assert [(s.variable, s.name) for s in opt.slots] == [
            (v, slot) for v in ("dense/kernel", "dense/bias", "dense_1/kernel", "dense_1/bias")
            for slot in ("momentum", "velocity")]
        shapes = {p: w.shape for p, _, w in model.iter_weights()}
        assert all(s.weight.shape == shapes[s.variable] for s in opt.slots) and not opt.unmapped
    with modelmorph.read(KERAS3 / "seq_cnn_bn.keras") as model:  # SGD momentum skips non-trainable BN stats
        assert [s.variable for s in model.optimizer.slots] == [
            "conv2d/kernel", "conv2d/bias", "batch_normalization/gamma", "batch_normalization/beta",
            "conv2d_1/kernel", "conv2d_1/bias", "dense/kernel", "dense/bias"]


# `modelmorph diff` reads both sides with modelmorph.read; a weights file gets its architecture
# through read(..., arch=...). Keras records `shared_object_id` (an object id() of the saving
# process, written in archives and never by to_json), so those keys are the only architecture
# differences between an archive and its to_json() + weights pair.
_SHARED_ID = re.compile(r"\.shared_object_id: only in the first model$")


@pytest.mark.parametrize("case", CASES)
def test_archive_equals_its_weights_and_json(case):
    diagnostics = modelmorph.Diagnostics()
    with modelmorph.read(KERAS3 / f"{case}.keras") as archive, \
            modelmorph.read(KERAS3 / f"{case}.weights.h5", arch=KERAS3 / f"{case}.json", diagnostics=diagnostics) as pair:
        report = diff_models(archive, pair)
        assert report.weights and all(d == 0.0 and not note for _, d, note in report.weights)
        assert [line for line in report.architecture if not _SHARED_ID.search(line)] == []
        assert optimizer_summary(pair) == optimizer_summary(archive)
        assert (archive.optimizer is not None) == (case in COMPILED)
    assert not [d for d in diagnostics if d.kind != "contains-code"]


def test_cli_diff_reports_an_archive_and_its_weights_json_pair_equal(tmp_path, capsys):
    from modelmorph.cli import main

    joined = tmp_path / "joined.keras"
    assert main(["convert", str(KERAS3 / "nested_seq.weights.h5"), str(joined), "--arch",
                 str(KERAS3 / "nested_seq.json")]) == 0
    capsys.readouterr()
    # The joined archive has no shared_object_ids (the JSON had none), so the CLI compares the
    # weights; the test above compares everything else through the API.
    assert main(["diff", str(KERAS3 / "nested_seq.keras"), str(joined), "--weights-only"]) == 0
    assert capsys.readouterr().out.startswith("equal: 8 weight(s) compared")


def test_arch_mismatch_is_a_one_line_error_naming_the_layer():
    arch = json.loads((KERAS3 / "mlp_adam.json").read_text())
    arch["config"]["layers"][2]["config"]["use_bias"] = False  # the file has a bias for dense_1
    with pytest.raises(ReadError) as err:
        modelmorph.read(KERAS3 / "mlp_adam.weights.h5", arch=kerasconfig.model_from_config(arch))
    assert "layer 'dense_1' (Dense)" in str(err.value) and "expects 1 (kernel)" in str(err.value)
    assert "\n" not in str(err.value)


def test_a_weights_file_for_another_model_is_refused():
    with pytest.raises(ReadError, match=r"layer 'dense_1' \(Dense\): the file holds 0 variable"):
        modelmorph.read(KERAS3 / "seq_cnn_bn.weights.h5", arch=KERAS3 / "mlp_adam.json")


def test_weights_only_file_to_an_architecture_format_is_an_input_error(tmp_path, capsys):
    """The weights file lacks what JSON needs: exit 4 naming it (not a write error), nothing written."""
    from modelmorph.cli import main

    assert main(["convert", str(KERAS3 / "mlp_adam.weights.h5"), str(tmp_path / "out.json")]) == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mlp_adam.weights.h5: holds weights only" in err[0] and "--arch" in err[0], err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("source", [KERAS3 / "mlp_adam.weights.h5", FIXTURES / "tf" / "module_save"])
def test_weights_only_source_to_keras_is_an_input_error(source, tmp_path, capsys):
    """A .keras archive needs an architecture (Format.needs): exit 4 naming the source, nothing written."""
    from modelmorph.cli import main

    assert main(["convert", str(source), str(tmp_path / "out.keras")]) == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{source.name}: holds weights only" in err[-1] and "--arch" in err[-1], err
    assert list(tmp_path.iterdir()) == []


def test_weights_only_model_from_elsewhere_cannot_become_keras_weights(tmp_path):
    model = modelmorph.Model("w", class_name="", has_architecture=False,
                             layers=[modelmorph.Layer("x", "", weights=[modelmorph.Weight.from_array("0", np.ones(2))])])
    with pytest.raises(WriteError, match="give one with --arch"):
        modelmorph.write(model, tmp_path / "w.weights.h5")
    with pytest.raises(WriteError, match="give one with --arch"):
        modelmorph.write(model, tmp_path / "w.keras")
    assert list(tmp_path.iterdir()) == []


def test_float16_natively_and_bfloat16_as_keras_stores_it(tmp_path):
    with modelmorph.read(KERAS3 / "mlp_adam.keras") as model:
        model.optimizer = None
        for name, dtype in (("dense", ml_dtypes.bfloat16), ("dense_1", np.float16)):
            layer = model.layer(name)
            layer.weights = [modelmorph.Weight.from_array(w.path, w.read().astype(dtype)) for w in layer.weights]
        back, _ = write_read(tmp_path, model, "keras-weights", "typed.weights.h5", arch=model)
        with back, h5py.File(tmp_path / "typed.weights.h5", "r", locking=False) as f:
            kernel = f["layers/dense/vars/0"]
            assert kernel.dtype.kind == "V" and kernel.dtype.itemsize == 2 and kernel.attrs["dtype"] == "bfloat16"
            assert f["layers/dense_1/vars/0"].dtype == np.float16
            for (_, _, ours), (_, _, theirs) in zip(back.iter_weights(), model.iter_weights()):
                value, expected = ours.read(), theirs.read()
                assert value.dtype == expected.dtype
                np.testing.assert_array_equal(value.view(np.uint16), expected.view(np.uint16))


def test_keras_3_0_to_3_3_archives_read(tmp_path):
    """Keras 3.0–3.3 wrote plain dtype strings and `vars` groups without a name attribute."""
    old = tmp_path / "old.keras"
    with zipfile.ZipFile(KERAS3 / "multi_io_shared.keras") as src, zipfile.ZipFile(old, "w") as dst:
        config = json.loads(src.read("config.json"))
        for entry in config["config"]["layers"]:
            if isinstance(entry["config"].get("dtype"), dict):
                entry["config"]["dtype"] = entry["config"]["dtype"]["config"]["name"]
        weights = tmp_path / "w.h5"
        weights.write_bytes(src.read("model.weights.h5"))
        with h5py.File(weights, "r+") as f:
            f.visititems(lambda name, obj: obj.attrs.pop("name", None) if isinstance(obj, h5py.Group) else None)
        dst.writestr("metadata.json", json.dumps({"keras_version": "3.1.0", "date_saved": "2024-01-01@00:00:00"}))
        dst.writestr("config.json", json.dumps(config))
        dst.write(weights, "model.weights.h5")
    with modelmorph.read(old) as model, modelmorph.read(KERAS3 / "multi_io_shared.keras") as new:
        assert model.metadata["keras_version"] == "3.1.0"
        assert model.layer("shared").config["dtype"] == "float32"
        assert_models_equal(model, new, architecture=False)
        back, _ = write_read(tmp_path, model, "keras", "again.keras")
        back.close()


def test_assets_survive(tmp_path):
    source = tmp_path / "with_assets.keras"
    with zipfile.ZipFile(KERAS3 / "mlp_adam.keras") as src, zipfile.ZipFile(source, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        dst.writestr("assets/layers/string_lookup/vocabulary.txt", "a\nb\n")
    with modelmorph.read(source) as model:
        assert [(a.path, a.size, a.read()) for a in model.assets] == [
            ("assets/layers/string_lookup/vocabulary.txt", 4, b"a\nb\n")]
        for name, options in (("a.keras", {}), ("folder", {"zipped": "false"})):
            modelmorph.write(model, tmp_path / name, "keras", options=options)
            with modelmorph.read(tmp_path / name) as back:
                assert [(a.path, a.read()) for a in back.assets] == [(a.path, a.read()) for a in model.assets]
        assert (tmp_path / "folder" / "assets/layers/string_lookup/vocabulary.txt").read_bytes() == b"a\nb\n"


@pytest.mark.parametrize("text", ["-1", "0", "lots", "5 parsecs", "", "0.5"])
def test_bad_max_shard_size_is_a_usage_error(tmp_path, text):
    with pytest.raises(modelmorph.UsageError, match="max_shard_size"):
        modelmorph.convert(KERAS3 / "mlp_adam.keras", tmp_path / "x.weights.json", options={"max_shard_size": text})
    assert list(tmp_path.iterdir()) == []


def test_shard_size_smaller_than_a_variable_is_refused_as_keras_does(tmp_path):
    out = tmp_path / "x.weights.json"
    with pytest.raises(WriteError) as err:
        modelmorph.convert(KERAS3 / "mlp_adam.keras", out, options={"max_shard_size": "100B"})
    assert str(err.value) == f"{out}: weight 'kernel' is 512 bytes, more than max_shard_size (100 bytes)"
    assert list(tmp_path.iterdir()) == []
