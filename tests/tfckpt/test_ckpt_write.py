"""Writing TensorFlow checkpoints: key naming, object graphs, files, options.

Key names are judged against the checkpoints tf_keras itself wrote for the same models.
"""

from __future__ import annotations

import numpy as np
import pytest

import modelmorph
from ckptcases import KERAS2_CKPT_CASES, TF_CHECKPOINTS, TF_KERAS, checkpoint_tensors, keras2_ckpt
from helpers import write_read
from modelmorph import Layer, Model, Weight
from modelmorph_tfckpt.bundle import BundleReader, read_checkpoint_state


def _joined(case: str) -> Model:
    return modelmorph.read(keras2_ckpt(case), arch=TF_KERAS / f"{case}.json")


@pytest.mark.parametrize("case", KERAS2_CKPT_CASES)
def test_keras2_naming_writes_the_keys_tf_keras_writes(case, tmp_path):
    """Weights and optimizer state joined onto the architecture go back under tf_keras' own keys."""
    with _joined(case) as model:
        modelmorph.write(model, tmp_path / "ckpt", "tf-checkpoint")
    assert checkpoint_tensors(tmp_path / "ckpt") == checkpoint_tensors(keras2_ckpt(case))


@pytest.mark.parametrize("case", ["nested_seq", "mlp_adam", "embed_lstm_bigru"])
@pytest.mark.parametrize("naming", ["keras2", "keras3", "module"])
def test_every_naming_reads_back_onto_the_architecture(case, naming, tmp_path):
    with _joined(case) as model:
        back, _ = write_read(tmp_path, model, "tf-checkpoint", "ckpt", options={"naming": naming}, arch=model)
        assert back.metadata["checkpoint_naming"] == naming
        assert (back.optimizer is None) == (model.optimizer is None)
        if model.optimizer is not None:
            assert [(s.variable, s.name) for s in back.optimizer.slots] == \
                   [(s.variable, s.name) for s in model.optimizer.slots]
        back.close()


def test_module_naming_uses_layer_paths_and_slot_variables(tmp_path):
    with _joined("mlp_adam") as model:
        modelmorph.write(model, tmp_path / "ckpt", "tf-checkpoint", options={"naming": "module"})
    keys = set(checkpoint_tensors(tmp_path / "ckpt"))
    assert {"dense/kernel/.ATTRIBUTES/VARIABLE_VALUE", "dense_1/bias/.ATTRIBUTES/VARIABLE_VALUE",
            "optimizer/iterations/.ATTRIBUTES/VARIABLE_VALUE",
            "dense/kernel/.OPTIMIZER_SLOT/optimizer/m/.ATTRIBUTES/VARIABLE_VALUE"} <= keys


def test_keras3_naming_nests_the_model_and_its_sequential(tmp_path):
    with _joined("nested_seq") as model:
        modelmorph.write(model, tmp_path / "ckpt", "tf-checkpoint", options={"naming": "keras3"})
    keys = set(checkpoint_tensors(tmp_path / "ckpt"))
    assert "model/_operations/1/_kernel/.ATTRIBUTES/VARIABLE_VALUE" in keys
    assert "model/_operations/2/_functional/_operations/2/bias/.ATTRIBUTES/VARIABLE_VALUE" in keys


@pytest.mark.parametrize("case", sorted(TF_CHECKPOINTS))
def test_weights_only_round_trip_keeps_keys_values_and_object_graph(case, tmp_path):
    source = TF_CHECKPOINTS[case]
    modelmorph.convert(source, tmp_path / "ckpt", to_format="tf-checkpoint")
    with BundleReader(source) as a, BundleReader(tmp_path / "ckpt") as b:
        assert {k: (e.dtype, e.shape) for k, e in a.entries().items()} == \
               {k: (e.dtype, e.shape) for k, e in b.entries().items()}
        for key in a.entries():
            if a.entries()[key].dtype == "string":
                assert a.read(key).tolist() == b.read(key).tolist(), key
            else:
                np.testing.assert_array_equal(a.read(key), b.read(key), err_msg=key)
        assert b.object_graph() == a.object_graph()


@pytest.mark.parametrize("case", ["module_save", "sharded_ckpt", "tf_keras-mlp_adam"])
def test_weights_only_models_round_trip_through_the_ir(case, tmp_path):
    with modelmorph.read(TF_CHECKPOINTS[case]) as model:
        back, diags = write_read(tmp_path, model, "tf-checkpoint", "ckpt")
        back.close()
    assert not diags


def test_a_weights_only_model_from_elsewhere_gets_module_keys(tmp_path):
    model = Model("w", class_name="", has_architecture=False)
    model.layers.append(Layer("layers/dense/vars", "", weights=[Weight.from_array("0", np.ones((2, 2), np.float32))]))
    modelmorph.write(model, tmp_path / "ckpt", "tf-checkpoint")
    assert list(checkpoint_tensors(tmp_path / "ckpt")) == ["_CHECKPOINTABLE_OBJECT_GRAPH",
                                                           "layers/dense/vars/0/.ATTRIBUTES/VARIABLE_VALUE"]


def test_removed_variables_leave_the_object_graph(tmp_path):
    diags = modelmorph.Diagnostics()
    with modelmorph.read(TF_CHECKPOINTS["module_save"]) as model:
        model.layers = [layer for layer in model.layers if layer.name != "."]  # drop save_counter
        modelmorph.write(model, tmp_path / "ckpt", "tf-checkpoint", diagnostics=diags)
    with BundleReader(tmp_path / "ckpt") as r:
        named = {a.checkpoint_key for n in r.object_graph().nodes for a in n.attributes}
        assert named == set(r.entries()) - {"_CHECKPOINTABLE_OBJECT_GRAPH"}
    assert [d.kind for d in diags] == ["lossy"]


def test_writing_to_an_index_path_writes_that_prefix_and_a_state_file(tmp_path):
    with _joined("multi_io_shared") as model:
        modelmorph.write(model, tmp_path / "weights.index")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint", "weights.data-00000-of-00001", "weights.index"]
    state = read_checkpoint_state(tmp_path)
    assert state.model_checkpoint_path == "weights" and list(state.all_model_checkpoint_paths) == ["weights"]


def test_the_state_file_is_replaceable_and_the_checkpoint_files_need_force(tmp_path):
    # `checkpoint` only names the folder's newest checkpoint (TensorFlow rewrites it on every
    # save): the format declares it replaceable, so a second checkpoint goes beside the first.
    with _joined("multi_io_shared") as model:
        modelmorph.write(model, tmp_path / "a.index")
        modelmorph.write(model, tmp_path / "b.index")
        assert read_checkpoint_state(tmp_path).model_checkpoint_path == "b"
        assert (tmp_path / "a.index").is_file() and (tmp_path / "a.data-00000-of-00001").is_file()
        before = (tmp_path / "a.index").read_bytes()
        with pytest.raises(modelmorph.WriteError, match=r"/a\.(index|data-00000-of-00001): already exists; use --force"):
            modelmorph.write(model, tmp_path / "a", "tf-checkpoint")
        assert read_checkpoint_state(tmp_path).model_checkpoint_path == "b"  # nothing was written
        modelmorph.write(model, tmp_path / "a", "tf-checkpoint", force=True)
    assert read_checkpoint_state(tmp_path).model_checkpoint_path == "a"
    assert (tmp_path / "a.index").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a.data-00000-of-00001", "a.index", "b.data-00000-of-00001", "b.index", "checkpoint"]


def test_a_folder_named_checkpoint_is_never_replaced(tmp_path):
    (tmp_path / "checkpoint").mkdir()
    with _joined("mlp_adam") as model, pytest.raises(modelmorph.WriteError, match="checkpoint: already exists"):
        modelmorph.write(model, tmp_path / "a", "tf-checkpoint")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


def test_max_shard_size_spreads_tensors_over_shards(tmp_path):
    with _joined("mobilenetv2") as model:
        modelmorph.write(model, tmp_path / "ckpt", "tf-checkpoint", options={"max_shard_size": "256KB"})
    shards = sorted(tmp_path.glob("ckpt.data-*"))
    assert len(shards) > 4 and shards[0].name.endswith(f"-of-{len(shards):05d}")
    largest_tensor = max(e.size for e in BundleReader(tmp_path / "ckpt").entries().values())
    assert all(p.stat().st_size <= max(256 * 1024, largest_tensor) for p in shards)
    assert checkpoint_tensors(tmp_path / "ckpt") == checkpoint_tensors(keras2_ckpt("mobilenetv2"))


@pytest.mark.parametrize("options, message", [
    ({"naming": "keras4"}, "-O naming must be one of keras2, keras3, module"),
    ({"max_shard_size": "lots"}, "-O max_shard_size must be a positive size"),
    ({"max_shard_size": "0"}, "-O max_shard_size must be a positive size"),
])
def test_bad_options_are_usage_errors(options, message, tmp_path):
    with _joined("mlp_adam") as model, pytest.raises(modelmorph.UsageError, match=message):
        modelmorph.write(model, tmp_path / "ckpt", "tf-checkpoint", options=options)
    assert list(tmp_path.iterdir()) == []


def test_naming_needs_an_architecture(tmp_path):
    with modelmorph.read(TF_CHECKPOINTS["module_ckpt"]) as model, \
            pytest.raises(modelmorph.UsageError, match="-O naming applies to models with an architecture"):
        modelmorph.write(model, tmp_path / "ckpt", "tf-checkpoint", options={"naming": "keras2"})


def test_progress_counts_every_byte(tmp_path):
    class Recorder(modelmorph.Progress):
        def __init__(self):
            self.total, self.done = None, 0

        def start(self, total, label=""):
            self.total = total

        def advance(self, amount):
            self.done += amount

    recorder = Recorder()
    with _joined("seq_cnn_bn") as model:
        modelmorph.write(model, tmp_path / "ckpt", "tf-checkpoint", progress=recorder)
        expected = sum(w.nbytes for _, _, w in model.iter_weights()) + \
            sum(w.nbytes for w in model.optimizer.variables) + sum(s.weight.nbytes for s in model.optimizer.slots)
    assert recorder.total == recorder.done == expected


def test_unknown_layer_classes_are_written_by_position_with_a_diagnostic(tmp_path):
    model = Model("m", class_name="Functional")
    model.layers.append(Layer("scale", "Scale", config={"name": "scale"},
                              weights=[Weight.from_array("0", np.arange(4, dtype=np.float32))]))
    diags = modelmorph.Diagnostics()
    modelmorph.write(model, tmp_path / "ckpt", "tf-checkpoint", diagnostics=diags)
    assert "layer_with_weights-0/0/.ATTRIBUTES/VARIABLE_VALUE" in checkpoint_tensors(tmp_path / "ckpt")
    assert any(d.kind == "unsupported" and d.where == "scale" for d in diags)


def test_data_of_another_shape_than_declared_is_a_write_error_naming_the_output(tmp_path):
    model = Model("w", class_name="", has_architecture=False)
    model.layers.append(Layer("dense", "", weights=[
        Weight("kernel", (2, 2), "float32", loader=lambda: np.zeros(3, np.float32))]))
    with pytest.raises(modelmorph.WriteError) as err:
        modelmorph.write(model, tmp_path / "ckpt", "tf-checkpoint")
    assert str(err.value) == (f"{tmp_path / 'ckpt'}: variable 'dense/kernel/.ATTRIBUTES/VARIABLE_VALUE': its data "
                              "has shape [3], the model declares [2, 2]")
    assert list(tmp_path.iterdir()) == []
