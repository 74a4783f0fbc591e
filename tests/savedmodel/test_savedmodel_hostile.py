"""Broken and hostile SavedModel directories through the command line: exit status 4, one
stderr line naming the file and the problem, and no output left behind."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from modelmorph.cli import main
from modelmorph_tfckpt.savedmodel.protos.saved_metadata_pb2 import SavedMetadata
from smcases import case_dir


def _copy(case, tmp_path):
    target = tmp_path / "src" / case
    shutil.copytree(case_dir(case), target, symlinks=True)
    return target


def _edit_root_metadata(folder, change):
    """Rewrite keras_metadata.pb with the root object's metadata JSON changed by ``change``."""
    proto = SavedMetadata.FromString((folder / "keras_metadata.pb").read_bytes())
    root = next(n for n in proto.nodes if n.node_path == "root")
    meta = json.loads(root.metadata)
    change(meta)
    root.metadata = json.dumps(meta)
    (folder / "keras_metadata.pb").write_bytes(proto.SerializeToString())


def _layers(meta):
    return meta["model_config"]["config"]["layers"]


def _module_os(meta):
    _layers(meta)[1].update(module="os", class_name="system")


def _lambda_function(meta):
    _layers(meta)[1].update(class_name="Lambda", config={
        "name": "dense", "function": "check_call", "function_type": "function", "module": "subprocess"})


def _modules_in_both_configs(meta):
    """Bad modules in training_config and model_config, training_config written first: the
    model_config's is the one reported (it is checked first, whatever the key order)."""
    _module_os(meta)
    training = {"optimizer_config": {"class_name": "Adam", "module": "subprocess", "config": {}}}
    rest = dict(meta)
    meta.clear()
    meta.update(training_config=training, **{k: v for k, v in rest.items() if k != "training_config"})


def _module_in_dropped_lookup_key(meta):
    """A module hidden in a value the reader drops (a lookup layer's vocabulary_size) is refused all the same."""
    lookup = next(layer for layer in _layers(meta) if layer["class_name"] == "StringLookup")
    lookup["config"]["vocabulary_size"] = {"class_name": "system", "module": "os", "config": {}}


def _module_in_stand_in_config(meta):
    """No model_config: the root's own config is the architecture, and checked as one."""
    del meta["model_config"]
    meta["config"]["layers"][1].update(module="os", class_name="system")


def _encoded_root(meta):
    """The root metadata as tf_keras' encoder writes a tuple: a list once decoded, not an object."""
    meta.clear()
    meta.update({"class_name": "__tuple__", "items": [1, 2]})


def _deep(meta):
    value = {}
    for _ in range(500):
        value = {"x": value}
    meta["model_config"]["config"]["deep"] = value


def _outside(tmp_path, name, data=b"secret\n"):
    outside = tmp_path / "elsewhere" / name
    outside.parent.mkdir(exist_ok=True)
    if data is not None:
        outside.write_bytes(data)
    return outside


def _break(kind, folder, tmp_path):
    """Break ``folder``; return (file named in the error, words of the problem)."""
    if kind == "variables link out":
        shutil.move(folder / "variables", _outside(tmp_path, "variables", None))
        os.symlink(tmp_path / "elsewhere" / "variables", folder / "variables")
        return "variables", "leads outside the SavedModel directory"
    if kind == "variables index link out":
        index = folder / "variables" / "variables.index"
        shutil.move(index, _outside(tmp_path, "variables.index", None))
        os.symlink(tmp_path / "elsewhere" / "variables.index", index)
        return "variables.index", "leads outside the SavedModel directory"
    if kind == "metadata link out":
        shutil.move(folder / "keras_metadata.pb", _outside(tmp_path, "keras_metadata.pb", None))
        os.symlink(tmp_path / "elsewhere" / "keras_metadata.pb", folder / "keras_metadata.pb")
        return "keras_metadata.pb", "leads outside the SavedModel directory"
    if kind == "asset link out":
        (folder / "assets" / "vocab.txt").unlink()
        os.symlink(_outside(tmp_path, "passwd"), folder / "assets" / "vocab.txt")
        return "vocab.txt", "leads outside the SavedModel directory"
    if kind == "assets folder link out":
        shutil.rmtree(folder / "assets")
        _outside(tmp_path, "vocab.txt")
        os.symlink(tmp_path / "elsewhere", folder / "assets")
        return "assets", "leads outside the SavedModel directory"
    if kind == "malformed metadata":
        (folder / "keras_metadata.pb").write_bytes(b"\x0a\xff\xff\xff\xff\x0f" + b"\x00" * 10)
        return "keras_metadata.pb", "malformed keras_metadata.pb"
    if kind == "oversized metadata":
        with open(folder / "keras_metadata.pb", "r+b") as f:
            f.truncate(300 * 1024 * 1024)  # sparse: costs no disk, refused before it is read
        return "keras_metadata.pb", "more than the"
    if kind == "malformed saved_model.pb":
        (folder / "saved_model.pb").write_bytes(b"\x12\xff\xff\xff\x7f" + b"\x01" * 20)
        return "saved_model.pb", "malformed saved_model.pb"
    if kind == "truncated saved_model.pb":
        data = (folder / "saved_model.pb").read_bytes()
        (folder / "saved_model.pb").write_bytes(data[: len(data) // 2])
        return "saved_model.pb", "malformed saved_model.pb"
    if kind == "module os":
        _edit_root_metadata(folder, _module_os)
        return "keras_metadata.pb", "names module 'os'"
    if kind == "lambda names a function":
        _edit_root_metadata(folder, _lambda_function)
        return "keras_metadata.pb", "subprocess"
    if kind == "modules in both configs":
        _edit_root_metadata(folder, _modules_in_both_configs)
        return "keras_metadata.pb", "model_config names module 'os'"
    if kind == "module in a dropped lookup key":
        _edit_root_metadata(folder, _module_in_dropped_lookup_key)
        return "keras_metadata.pb", "model_config names module 'os'"
    if kind == "module in the config standing in for model_config":
        _edit_root_metadata(folder, _module_in_stand_in_config)
        return "keras_metadata.pb", "config names module 'os'"
    if kind == "root metadata an encoded tuple":
        _edit_root_metadata(folder, _encoded_root)
        return "keras_metadata.pb", "not a JSON object"
    if kind == "deep metadata":
        _edit_root_metadata(folder, _deep)
        return "keras_metadata.pb", "nested more than"
    if kind == "metadata object missing from the graph":
        proto = SavedMetadata.FromString((folder / "keras_metadata.pb").read_bytes())
        node = next(n for n in proto.nodes if n.node_path == "root.layer_with_weights-1")
        node.node_path = "root.layer_with_weights-7"
        (folder / "keras_metadata.pb").write_bytes(proto.SerializeToString())
        return "keras_metadata.pb", "disagree"
    if kind == "variables of another model":
        shutil.rmtree(folder / "variables")
        shutil.copytree(case_dir("seq_cnn_bn") / "variables", folder / "variables")
        return "", "not found in the checkpoint"
    if kind == "graph names a key the index lacks":
        from modelmorph_tfckpt.bundle import TableReader, TableWriter

        index = folder / "variables" / "variables.index"
        with TableReader(index) as table:
            items = [(k, v) for k, v in table if k != b"layer_with_weights-0/kernel/.ATTRIBUTES/VARIABLE_VALUE"]
        with open(index, "wb") as f:
            writer = TableWriter(f)
            for k, v in items:
                writer.add(k, v)
            writer.finish()
        return "", "which the checkpoint does not hold"
    if kind == "oversized vocabulary":
        with open(folder / "assets" / "vocab.txt", "r+b") as f:
            f.truncate(100 * 1024 * 1024)
        return "vocab.txt", "more than the"
    raise AssertionError(kind)


CASES = {
    "variables link out": "mlp_adam",
    "variables index link out": "mlp_adam",
    "metadata link out": "mlp_adam",
    "asset link out": "string_lookup",
    "assets folder link out": "string_lookup",
    "malformed metadata": "mlp_adam",
    "oversized metadata": "mlp_adam",
    "malformed saved_model.pb": "mlp_adam",
    "truncated saved_model.pb": "mlp_adam",
    "module os": "multi_io_shared",
    "lambda names a function": "multi_io_shared",
    "modules in both configs": "multi_io_shared",
    "module in a dropped lookup key": "string_lookup",
    "root metadata an encoded tuple": "mlp_adam",
    "module in the config standing in for model_config": "multi_io_shared",
    "deep metadata": "mlp_adam",
    "metadata object missing from the graph": "mlp_adam",
    "variables of another model": "mlp_adam",
    "graph names a key the index lacks": "mlp_adam",
    "oversized vocabulary": "string_lookup",
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_hostile_directories_are_one_line_read_errors(kind, tmp_path, capsys):
    folder = _copy(CASES[kind], tmp_path)
    filename, problem = _break(kind, folder, tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    assert main(["convert", str(folder), str(out / "model.keras"), "-q"]) == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("modelmorph: error: "), err
    assert filename in err and problem in err, err
    assert list(out.iterdir()) == []


def test_a_symlinked_savedmodel_inside_the_tree_is_fine(tmp_path, capsys):
    """Links that stay inside the directory are not refused."""
    folder = _copy("mlp_adam", tmp_path)
    shutil.move(folder / "keras_metadata.pb", folder / "meta.bin")
    os.symlink("meta.bin", folder / "keras_metadata.pb")
    assert main(["info", str(folder)]) == 0


def test_bytecode_lambda_is_carried_as_data_never_run(tmp_path, capsys):
    """A Lambda with bytecode reads like one from a .h5: carried, flagged contains-code, and
    fatal under --strict (exit 6); the bytecode is never unmarshalled."""
    folder = _copy("multi_io_shared", tmp_path)

    def bytecode(meta):
        _layers(meta)[3]["class_name"] = "Lambda"  # "concat"
        _layers(meta)[3]["config"] = {"name": "concat", "function": ["4wEAAAAAAAAA", None, None],
                                      "function_type": "lambda", "module": "__main__", "arguments": {}}

    _edit_root_metadata(folder, bytecode)
    assert main(["convert", str(folder), str(tmp_path / "m.json"), "--strict", "-q"]) == 6
    assert "contains-code" in capsys.readouterr().err
    assert not (tmp_path / "m.json").exists()
