"""Reading TensorFlow checkpoints: detection, weights only, joined to an architecture, optimizer state.

Truth comes from the fixtures TensorFlow and tf_keras wrote: recorded values and predictions,
the same models' `.h5` files, and their checkpoints' own keys.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import modelmorph
from ckptcases import KERAS2_CKPT_CASES, TF, TF_CHECKPOINTS, TF_KERAS, checkpoint_tensors, keras2_ckpt, require_format
from helpers import assert_close_to_recorded, assert_models_equal
from modelmorph.cli import main
from modelmorph_tfckpt.bundle import BundleWriter

TF_KEY = "/.ATTRIBUTES/VARIABLE_VALUE"


def _ir_path(key: str) -> str:
    """Where a weights-only read puts a variable: its object path, the root's own under "."."""
    path = key.removesuffix(TF_KEY)
    return path if "/" in path else "./" + path


# -- detection -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [
    "prefix", "index", "data shard", "folder with state file",
])
def test_every_way_of_naming_a_checkpoint_is_detected(name, registry):
    folder = TF / "module_save"
    path = {"prefix": folder / "ckpt-1", "index": folder / "ckpt-1.index",
            "data shard": folder / "ckpt-1.data-00000-of-00001", "folder with state file": folder}[name]
    assert registry.detect_source(path).name == "tf-checkpoint"
    with modelmorph.read(path) as model:
        assert {w.path for _, _, w in model.iter_weights()} == {"w", "b", "save_counter"}


def test_a_folder_with_one_checkpoint_and_no_state_file_is_read(registry):
    assert registry.detect_source(TF / "module_ckpt").name == "tf-checkpoint"
    assert modelmorph.read(TF / "module_ckpt").name == "ckpt"


def test_other_files_are_not_taken_for_checkpoints(registry, tmp_path):
    from modelmorph_tfckpt import sniff

    (tmp_path / "notes.index").write_bytes(b"not an sstable")
    (tmp_path / "ckpt").write_bytes(b"a file named like a prefix")
    for path in (TF_KERAS / "mlp_adam.json", TF_KERAS / "mlp_adam.h5", tmp_path / "notes.index",
                 tmp_path / "ckpt", tmp_path / "missing"):
        assert sniff(modelmorph.Probe.of(path)) == modelmorph.NO, path


# -- weights only ------------------------------------------------------------------------------
@pytest.mark.parametrize("case", sorted(TF_CHECKPOINTS))
def test_weights_only_lists_every_variable_under_its_key(case):
    prefix = TF_CHECKPOINTS[case]
    with modelmorph.read(prefix) as model:
        assert not model.has_architecture
        listed = {}
        for path, layer, weight in model.iter_weights():
            key = layer.extra["tf-checkpoint:keys"][weight.path]
            assert path == _ir_path(key)
            listed[key] = (weight.dtype, weight.shape)
    stored = checkpoint_tensors(prefix if case != "module_save" else prefix / "ckpt-1")
    del stored["_CHECKPOINTABLE_OBJECT_GRAPH"]
    assert listed == stored


def test_weights_only_values_are_the_recorded_ones():
    values = np.load(TF / "dtypes_ckpt" / "dtypes_ckpt.values.npz")
    with modelmorph.read(TF_CHECKPOINTS["dtypes_ckpt"]) as model:
        weights = {w.path: w for w in model.layer("model").weights}
        for name in values:
            if name == "bf16_bits":
                assert weights["bf16"].dtype == "bfloat16"
                np.testing.assert_array_equal(weights["bf16"].read().view(np.uint16), values[name])
            elif values[name].dtype.kind == "S":
                assert weights[name].dtype == "string"
                assert weights[name].read().tolist() == values[name].tolist()
            else:
                assert weights[name].dtype == values[name].dtype.name, name
                np.testing.assert_array_equal(weights[name].read(), values[name])
        assert weights["c64"].dtype == "complex64"


def test_sliced_variables_are_read_whole():
    values = np.load(TF / "sharded_ckpt" / "sharded_ckpt.values.npz")
    with modelmorph.read(TF_CHECKPOINTS["sharded_ckpt"]) as model:
        weights = {w.path: w.read() for w in model.layer("model").weights}
    assert set(weights) == set(values)
    for name in values:
        assert weights[name].tolist() == values[name].tolist(), name


def test_module_weights_reproduce_the_recorded_outputs():
    io = np.load(TF / "module_ckpt" / "module_ckpt.io.npz")
    with modelmorph.read(TF_CHECKPOINTS["module_ckpt"]) as model:
        w = {path: weight.read() for path, _, weight in model.iter_weights()}
    hidden = np.maximum(io["in_0"] @ w["model/dense_1/w"] + w["model/dense_1/b"], 0)
    out = np.maximum(hidden @ w["model/dense_2/w"] + w["model/dense_2/b"], 0)
    assert_close_to_recorded([out], [io["out_0"]])


def test_info_lists_every_variable(capsys):
    assert main(["info", "--json", str(TF / "module_save")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["has_architecture"] is False and summary["format"] == "tf-checkpoint"
    listed = {f"{layer['path']}/{w['path']}": (w["dtype"], tuple(w["shape"]))
              for layer in summary["layers"] for w in layer["weights"]}
    stored = checkpoint_tensors(TF / "module_save" / "ckpt-1")
    assert listed == {_ir_path(key): value for key, value in stored.items() if key != "_CHECKPOINTABLE_OBJECT_GRAPH"}
    assert main(["info", str(TF / "module_save")]) == 0
    assert "save_counter" in capsys.readouterr().out


def test_a_checkpoint_without_object_graph_reads_by_name(tmp_path):
    with BundleWriter(tmp_path / "ckpt") as w:  # a TF1-style checkpoint: variable names, no graph
        w.add("dense/kernel", np.ones((2, 3), np.float32))
        w.add("global_step", np.array(7, np.int64))
    with modelmorph.read(tmp_path / "ckpt") as model:
        assert {p: w.shape for p, _, w in model.iter_weights()} == {"dense/kernel": (2, 3), "./global_step": ()}
    with pytest.raises(modelmorph.ReadError, match="no object graph"):
        modelmorph.read(tmp_path / "ckpt", arch=TF_KERAS / "mlp_adam.json")


# -- joined to an architecture -----------------------------------------------------------------
@pytest.mark.parametrize("case", KERAS2_CKPT_CASES)
def test_keras2_checkpoint_joined_to_its_json_has_the_h5_weights(case):
    """save_weights and model.save of one tf_keras model: the same weights at the same IR paths."""
    require_format("h5")
    diags = modelmorph.Diagnostics()
    with modelmorph.read(keras2_ckpt(case), arch=TF_KERAS / f"{case}.json", diagnostics=diags) as joined, \
            modelmorph.read(TF_KERAS / f"{case}.h5") as h5:
        assert joined.metadata["checkpoint_naming"] == "keras2"
        assert_models_equal(joined, h5, architecture=False)
    assert not [d for d in diags if "dropped" in d.message]


def test_optimizer_slots_are_mapped_to_their_variables():
    """Without the optimizer's class (a JSON architecture), slots keep tf_keras' names."""
    with modelmorph.read(keras2_ckpt("mlp_adam"), arch=TF_KERAS / "mlp_adam.json") as model:
        state = model.optimizer
        assert state.config is None
        assert [w.path for w in state.variables] == ["iterations", "learning_rate"]
        assert [(s.variable, s.name) for s in state.slots][:4] == [
            ("dense/kernel", "m"), ("dense/kernel", "v"), ("dense/bias", "m"), ("dense/bias", "v")]
        assert len(state.slots) == 8 and not state.unmapped
        shapes = {p: w.shape for p, _, w in model.iter_weights()}
        assert all(s.weight.shape == shapes[s.variable] for s in state.slots)


@pytest.mark.parametrize("case", ["mlp_adam", "seq_cnn_bn"])
def test_optimizer_state_equals_the_h5_one_when_the_class_is_known(case):
    """With the .h5 as architecture (compiled: Adam / SGD), slots get Keras 3 names by build order."""
    require_format("h5")
    with modelmorph.read(TF_KERAS / f"{case}.h5") as h5, \
            modelmorph.read(keras2_ckpt(case), arch=TF_KERAS / f"{case}.h5") as joined:
        ours, theirs = joined.optimizer, h5.optimizer
        assert [(s.variable, s.name) for s in ours.slots] == [(s.variable, s.name) for s in theirs.slots]
        for a, b in zip(ours.slots, theirs.slots):
            np.testing.assert_array_equal(a.weight.read(), b.weight.read())
        assert ours.variables[0].path == "iterations"
        assert ours.variables[0].read() == theirs.variables[0].read()


def test_a_variable_the_checkpoint_lacks_is_a_read_error_naming_it():
    arch = modelmorph.read(TF_KERAS / "seq_cnn_bn.json")
    with pytest.raises(modelmorph.ReadError) as err:
        modelmorph.read(keras2_ckpt("mlp_adam"), arch=arch)
    assert str(err.value) == (f"{keras2_ckpt('mlp_adam')}: layer 'batch_normalization' (BatchNormalization): "
                              "variable 'gamma' not found in the checkpoint (no object at layer_with_weights-1/gamma) "
                              "(closest naming: keras2, 2 of 10 variables found)")


def test_a_shape_the_architecture_contradicts_is_a_read_error(capsys):
    require_format("h5")
    with modelmorph.read(TF_KERAS / "mlp_adam.h5") as arch:  # closed: a file left to the GC warns in a later test
        kernel = arch.layer("dense").weight("kernel")
        kernel.shape = (3, 3)
        with pytest.raises(modelmorph.ReadError) as err:
            modelmorph.read(keras2_ckpt("mlp_adam"), arch=arch)
    assert "layer 'dense' (Dense): variable 'kernel' has shape [8, 16] in the checkpoint, the architecture " \
           "expects [3, 3]" in str(err.value)
    assert "\n" not in str(err.value)


def test_variables_the_architecture_does_not_have_are_dropped_with_a_diagnostic():
    arch = modelmorph.read(TF_KERAS / "mlp_adam.json")
    del arch.layers[-1]  # keep the first Dense only
    diags = modelmorph.Diagnostics()
    with modelmorph.read(keras2_ckpt("mlp_adam"), arch=arch, diagnostics=diags) as model:
        assert [p for p, _, _ in model.iter_weights()] == ["dense/kernel", "dense/bias"]
    assert any("layer_with_weights-1/kernel" in d.message and d.kind == "unsupported" for d in diags)


def test_the_architecture_given_is_not_modified():
    arch = modelmorph.read(TF_KERAS / "nested_seq.json")
    with modelmorph.read(keras2_ckpt("nested_seq"), arch=arch) as model:
        assert sum(1 for _ in model.iter_weights()) == 8
    assert not any(True for _ in arch.iter_weights())
