"""Reading SavedModel directories without any framework: detection, architecture, weights,
optimizer state, assets, weights-only directories, `info`, `formats` and `migrate`."""

from __future__ import annotations

import json
import os
import shutil

import pytest

import modelmorph
from modelmorph.cli import main
from modelmorph_tfckpt.bundle import BundleReader
from modelmorph_tfckpt.savedmodel.directory import Directory, graph_summary
from smcases import KERAS_CASES, SAVEDMODEL, case_dir


def _key_values(case):
    with BundleReader(case_dir(case) / "variables" / "variables") as r:
        return {key: r.read(key) for key in r.entries() if key != "_CHECKPOINTABLE_OBJECT_GRAPH"}


@pytest.mark.parametrize("case", KERAS_CASES)
def test_keras_savedmodels_read_with_architecture_and_every_variable(case):
    with modelmorph.read(case_dir(case)) as model:
        assert model.has_architecture and model.metadata["source_format"] == "savedmodel"
        assert model.class_name in ("Functional", "Sequential")
        values = sorted(w.read().tobytes() for _, _, w in model.iter_weights())
        if model.optimizer is not None:
            values += [w.read().tobytes() for w in (*model.optimizer.variables, *(s.weight for s in model.optimizer.slots))]
    stored = {k: v for k, v in _key_values(case).items() if "keras_api/" not in k}  # metrics are not model state
    assert sorted(values) == sorted(v.tobytes() for v in stored.values())


def test_no_diagnostics_and_keras3_slot_names_for_a_trained_mlp():
    diagnostics = modelmorph.Diagnostics()
    with modelmorph.read(case_dir("mlp_adam"), diagnostics=diagnostics) as model:
        assert list(diagnostics) == []
        assert model.compile_config["optimizer"]["class_name"] == "Adam"
        assert [(s.variable, s.name) for s in model.optimizer.slots[:2]] == [
            ("dense/kernel", "momentum"), ("dense/kernel", "velocity")]
        assert [w.path for w in model.optimizer.variables] == ["iterations", "learning_rate"]
        assert model.metadata["savedmodel_tags"] == "serve"
        assert model.metadata["savedmodel_signatures"] == "serving_default"
        assert model.metadata["keras_version"] == "2.21.0"


def test_the_vocabulary_asset_returns_to_the_lookup_layer():
    with modelmorph.read(case_dir("string_lookup")) as model:
        lookup = model.layer("lookup")
        assert lookup.config["vocabulary"] == ["apple", "banana", "cherry", "date", "elder", "fig", "grape"]
        assert "vocabulary_size" not in lookup.config and "has_input_vocabulary" not in lookup.config
        assert [(a.path, a.read()) for a in model.assets] == [
            ("assets/vocab.txt", b"apple\nbanana\ncherry\ndate\nelder\nfig\ngrape\n")]


def test_without_model_config_the_root_config_is_the_architecture(tmp_path):
    """A root object whose metadata has no model_config: its own config (tuples and shapes
    still encoded the SavedModel way) is read as the model config, lookup keys stripped."""
    from modelmorph_tfckpt.savedmodel.protos.saved_metadata_pb2 import SavedMetadata

    folder = tmp_path / "string_lookup"
    shutil.copytree(case_dir("string_lookup"), folder)
    proto = SavedMetadata.FromString((folder / "keras_metadata.pb").read_bytes())
    root = next(n for n in proto.nodes if n.node_path == "root")
    meta = json.loads(root.metadata)
    del meta["model_config"]
    root.metadata = json.dumps(meta)
    (folder / "keras_metadata.pb").write_bytes(proto.SerializeToString())
    with modelmorph.read(case_dir("string_lookup")) as reference, modelmorph.read(folder) as model:
        # (The root's config records the path the vocabulary was read from, not null: not compared.)
        ours, theirs = (dict(m.layer("lookup").config, vocabulary=None) for m in (model, reference))
        assert model.has_architecture and ours == theirs
        assert [layer.name for layer in model.layers] == [layer.name for layer in reference.layers]
        assert "__tuple__" not in json.dumps([layer.config for layer in model.layers])


@pytest.mark.parametrize("case, reason", [("subclassed", "subclassed Keras model (class 'Subclassed')"),
                                          ("tf_module", "no keras_metadata.pb")])
def test_without_keras_metadata_the_directory_reads_as_weights_and_info_says_why(case, reason, capsys):
    diagnostics = modelmorph.Diagnostics()
    with modelmorph.read(case_dir(case), diagnostics=diagnostics) as model:
        assert not model.has_architecture
        assert reason in model.metadata["no_architecture_reason"]
        assert [d.kind for d in diagnostics] == ["unsupported"]
    assert main(["info", str(case_dir(case))]) == 0
    out, err = capsys.readouterr()
    assert "(weights only), format savedmodel" in out and reason in err


def test_a_subclassed_model_is_named_by_its_attributes():
    with modelmorph.read(case_dir("subclassed")) as model:
        paths = {p for p, _, _ in model.iter_weights()}
    assert {"d1/kernel", "d1/bias", "bn/gamma", "bn/moving_variance", "d2/kernel", "optimizer/_iterations"} <= paths


def test_savedmodel_is_detected_and_read_only(tmp_path, capsys):
    assert main(["formats", "--json"]) == 0
    (fmt,) = [f for f in json.loads(capsys.readouterr().out) if f["name"] == "savedmodel"]
    assert fmt["reads"] == ["architecture", "optimizer", "weights"] and fmt["writes"] == []
    assert main(["info", str(case_dir("mlp_adam") / "saved_model.pb"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["format"] == "savedmodel"
    assert main(["convert", str(SAVEDMODEL / "subclassed_arch.h5"), str(tmp_path / "sm"), "--to", "savedmodel"]) == 3
    assert "cannot be written" in capsys.readouterr().err


def _saved_model_pb(graph: bytes) -> bytes:
    """A SavedModel proto: one meta graph with tags, a graph_def of arbitrary bytes, a signature."""
    def field(number, payload):
        out, n = bytearray([number << 3 | 2]), len(payload)
        while True:
            out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
            n >>= 7
            if not n:
                return bytes(out) + payload
    meta_info = field(4, b"serve") + field(4, b"gpu") + field(5, b"2.99.0")
    signature = field(1, b"predict") + field(2, b"\x00garbage")
    return b"\x08\x01" + field(2, field(1, meta_info) + field(2, graph) + field(5, signature))


def test_the_graph_is_never_parsed(tmp_path):
    """Tags and signature names come out; the graph_def in between (garbage here) is skipped."""
    (tmp_path / "saved_model.pb").write_bytes(_saved_model_pb(b"\xff" * 1_000_000))
    (header,) = graph_summary(Directory(tmp_path))
    assert (header.tags, header.signatures, header.tensorflow_version) == (["serve", "gpu"], ["predict"], "2.99.0")


def test_a_savedmodel_without_variables_or_metadata_reads_as_empty(tmp_path):
    (tmp_path / "saved_model.pb").write_bytes(_saved_model_pb(b""))
    with modelmorph.read(tmp_path) as model:
        assert not model.has_architecture and model.layers == []
        assert model.metadata["savedmodel_tags"] == "serve,gpu"


def test_migrate_converts_savedmodel_directories_like_files(tmp_path, capsys):
    tree = tmp_path / "tree"
    shutil.copytree(case_dir("mlp_adam"), tree / "team" / "mlp_adam")
    shutil.copytree(case_dir("nested_seq"), tree / "nested_seq")
    shutil.copy(SAVEDMODEL / "subclassed_arch.h5", tree / "team" / "arch.h5")  # files go too
    assert main(["migrate", str(tree), "--to", "json", "--out", str(tmp_path / "out"), "-q"]) == 0
    written = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert written == ["nested_seq.json", "team/arch.json", "team/mlp_adam.json"]
    assert json.loads((tmp_path / "out" / "team" / "mlp_adam.json").read_text())["class_name"] == "Sequential"


def test_migrate_sees_a_change_inside_a_savedmodel_directory(tmp_path, capsys):
    model = tmp_path / "mlp_adam"
    shutil.copytree(case_dir("mlp_adam"), model)
    assert main(["migrate", str(model), "--to", "json", "-q"]) == 0
    assert main(["migrate", str(model), "--to", "json", "-q"]) == 0
    assert "1 up to date" in capsys.readouterr().out.splitlines()[-1]
    output = tmp_path / "mlp_adam.json"
    later = output.stat().st_mtime + 10
    for data in (model / "variables").iterdir():  # new weights; the folder's own mtime stays
        os.utime(data, (later, later))
    assert main(["migrate", str(model), "--to", "json", "-q"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith("0 failed, 0 up to date, 0 skipped")
    assert output.stat().st_mtime > later - 10  # written again
