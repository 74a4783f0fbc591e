"""Reading legacy `.h5` files into the IR: weights named and placed as Keras loads them,
compile config and optimizer state, weights-only files alone and joined to an architecture."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest

import modelmorph
from h5cases import FIXTURES, TF_KERAS_CASES
from helpers import assert_models_equal
from modelmorph.registry import Registry

TF_KERAS = FIXTURES / "tf_keras"


def _stored(path, group, name):
    with h5py.File(path, "r") as f:
        return f[group][name][()]


@pytest.mark.parametrize("case", TF_KERAS_CASES)
def test_every_stored_weight_is_read_once(case):
    with h5py.File(TF_KERAS / f"{case}.h5", "r") as f:
        groups = f["model_weights"]
        stored = sorted(float(np.sum(groups[layer][name][()], dtype=np.float64))
                        for layer in groups.attrs["layer_names"] for name in groups[layer].attrs["weight_names"])
    with modelmorph.read(TF_KERAS / f"{case}.h5") as model:
        read = sorted(float(np.sum(w.read(), dtype=np.float64)) for _, _, w in model.iter_weights())
        assert model.has_architecture and model.metadata["dialect"] == "keras2"
        assert model.metadata["keras_version"].startswith("2.")
    assert read == stored


def test_weights_are_named_by_the_catalogue():
    with modelmorph.read(TF_KERAS / "embed_lstm_bigru.h5") as model:
        paths = [p for p, _, _ in model.iter_weights()]
        bias = model.layer("bidirectional").weight("backward_layer/cell/bias").read()
    assert paths == ["embedding/embeddings", "lstm/cell/kernel", "lstm/cell/recurrent_kernel", "lstm/cell/bias",
                     "bidirectional/forward_layer/cell/kernel", "bidirectional/forward_layer/cell/recurrent_kernel",
                     "bidirectional/forward_layer/cell/bias", "bidirectional/backward_layer/cell/kernel",
                     "bidirectional/backward_layer/cell/recurrent_kernel", "bidirectional/backward_layer/cell/bias",
                     "dense/kernel", "dense/bias"]
    stored = _stored(TF_KERAS / "embed_lstm_bigru.h5", "model_weights/bidirectional",
                     "bidirectional/backward_gru/gru_cell/bias:0")
    np.testing.assert_array_equal(bias, stored)


def test_nested_model_weights_go_to_its_sublayers():
    with modelmorph.read(TF_KERAS / "nested_seq.h5") as model:
        inner = model.layer("inner")
        assert inner.weights == [] and inner.submodel is not None
        assert [p for p, _, _ in model.iter_weights() if p.startswith("inner/")] == [
            "inner/dense/kernel", "inner/dense/bias", "inner/dense_1/kernel", "inner/dense_1/bias"]
        kernel = inner.submodel.layer("dense_1").weight("kernel").read()
    np.testing.assert_array_equal(kernel, _stored(TF_KERAS / "nested_seq.h5", "model_weights/inner", "dense_1/kernel:0"))


def test_nested_model_with_frozen_and_non_trainable_variables(tmp_path):
    """Keras 2 stores a nested model's trainable variables first, then the non-trainable ones,
    a frozen sublayer's among the latter (the order tf_keras 2.21 wrote for this model)."""
    entries = [{"class_name": "InputLayer", "config": {"batch_input_shape": [None, 3], "name": "in"}},
               {"class_name": "Dense", "config": {"name": "d", "units": 2}},
               {"class_name": "Dense", "config": {"name": "frozen", "units": 2, "trainable": False}},
               {"class_name": "BatchNormalization", "config": {"name": "bn", "axis": [-1]}},
               {"class_name": "Dense", "config": {"name": "e", "units": 2}}]
    config = {"class_name": "Functional", "config": {
        "name": "outer", "layers": [
            {"class_name": "InputLayer", "name": "x", "config": {"batch_input_shape": [None, 3], "name": "x"},
             "inbound_nodes": []},
            {"class_name": "Sequential", "name": "inner", "config": {"name": "inner", "layers": entries},
             "inbound_nodes": [[["x", 0, 0, {}]]]}],
        "input_layers": [["x", 0, 0]], "output_layers": [["inner", 1, 0]]}}
    stored_order = ["d/kernel", "d/bias", "bn/gamma", "bn/beta", "e/kernel", "e/bias",
                    "frozen/kernel", "frozen/bias", "bn/moving_mean", "bn/moving_variance"]
    values = {name: np.full((3 if name == "d/kernel" else 2, 2) if name.endswith("kernel") else (2,), i, "float32")
              for i, name in enumerate(stored_order)}
    path = tmp_path / "nested.h5"
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config)
        g = f.create_group("model_weights")
        g.attrs["layer_names"] = np.array([b"x", b"inner"])
        g.create_group("x").attrs["weight_names"] = np.array([], dtype="S1")
        inner = g.create_group("inner")
        inner.attrs["weight_names"] = np.array([f"{n}:0".encode() for n in stored_order])
        for name, value in values.items():
            inner[f"{name}:0"] = value
    with modelmorph.read(path) as model:
        got = {p.removeprefix("inner/"): (w.read(), w.trainable) for p, _, w in model.iter_weights()}
    assert list(got) == ["d/kernel", "d/bias", "frozen/kernel", "frozen/bias", "bn/gamma", "bn/beta",
                         "bn/moving_mean", "bn/moving_variance", "e/kernel", "e/bias"]
    for name, (value, trainable) in got.items():
        np.testing.assert_array_equal(value, values[name])
        assert trainable == ("moving" not in name)


def test_training_config_becomes_a_keras3_compile_config():
    with modelmorph.read(TF_KERAS / "mlp_adam.h5") as model:
        compile_config = model.compile_config
    optimizer = compile_config["optimizer"]
    assert optimizer["module"] == "keras.optimizers" and optimizer["class_name"] == "Adam"
    assert "is_legacy_optimizer" not in optimizer["config"] and "jit_compile" not in optimizer["config"]
    assert optimizer["config"]["learning_rate"] == pytest.approx(1e-3)
    assert compile_config["loss"] == "mse" and compile_config["steps_per_execution"] == 1


@pytest.mark.parametrize("case, slot_names", [("mlp_adam", {"momentum", "velocity"}), ("seq_cnn_bn", {"momentum"})])
def test_optimizer_slots_are_mapped_to_their_variables(case, slot_names):
    with h5py.File(TF_KERAS / f"{case}.h5", "r") as f:
        group = f["optimizer_weights"]
        stored = {n: group[n][()] for n in group.attrs["weight_names"]}
    keras2 = {"momentum": "m", "velocity": "v"}
    with modelmorph.read(TF_KERAS / f"{case}.h5") as model:
        state = model.optimizer
        trainable = [p for p, _, w in model.iter_weights() if w.trainable]
        assert [v.path for v in state.variables] == ["iterations", "learning_rate"]
        assert state.variables[0].read() == stored["iteration:0"] > 0
        assert state.unmapped == []
        assert {(s.variable, s.name) for s in state.slots} == {(p, n) for p in trainable for n in slot_names}
        for slot in state.slots:
            # tf_keras names a slot after the variable's own name: "Adam/m/dense/kernel:0"
            layer, weight = slot.variable.split("/", 1)
            name = f"{state.config['config']['name']}/{keras2[slot.name]}/{layer}/{weight}:0"
            np.testing.assert_array_equal(slot.weight.read(), stored[name])


def test_weights_only_file_alone_has_no_architecture():
    with modelmorph.read(TF_KERAS / "seq_cnn_bn_weights.h5") as model:
        assert not model.has_architecture
        assert [layer.extra["h5:group"] for layer in model.layers] == [
            "conv2d", "batch_normalization", "conv2d_1", "dense"]
        assert [w.path for w in model.layer("batch_normalization").weights] == ["0", "1", "2", "3"]
        assert model.weight_count() == 885


@pytest.mark.parametrize("case", TF_KERAS_CASES)
@pytest.mark.parametrize("by_name", ["false", "true"])
def test_weights_only_file_joined_to_its_architecture(case, by_name):
    with modelmorph.read(TF_KERAS / f"{case}_weights.h5", arch=TF_KERAS / f"{case}.json",
                         options={"by_name": by_name}) as joined, modelmorph.read(TF_KERAS / f"{case}.h5") as full:
        assert joined.has_architecture
        full.compile_config = full.optimizer = None  # what save_weights leaves out
        assert_models_equal(joined, full)


def test_positional_join_ignores_layer_names_by_name_does_not(tmp_path):
    """Keras zips layers with weights in order; renaming the stored groups changes nothing."""
    renamed = tmp_path / "renamed.h5"
    with h5py.File(TF_KERAS / "mlp_adam_weights.h5", "r") as src, h5py.File(renamed, "w") as dst:
        for key, value in src.attrs.items():
            dst.attrs[key] = value
        dst.attrs["layer_names"] = np.array([b"first", b"second"])
        src.copy("dense", dst, name="first")
        src.copy("dense_1", dst, name="second")
    arch = TF_KERAS / "mlp_adam.json"
    with modelmorph.read(renamed, arch=arch) as joined, modelmorph.read(TF_KERAS / "mlp_adam.h5") as full:
        assert_models_equal(joined, full, architecture=False)
    diags = modelmorph.Diagnostics()
    with modelmorph.read(renamed, arch=arch, options={"by_name": "true"}, diagnostics=diags) as joined:
        assert joined.weight_count() == 0
    assert sum(d.kind == "unsupported" for d in diags) == 2


def test_positional_join_refuses_a_different_model():
    with pytest.raises(modelmorph.ReadError, match="layer\\(s\\) with weights"):
        modelmorph.read(TF_KERAS / "mlp_adam_weights.h5", arch=TF_KERAS / "seq_cnn_bn.json")


def test_split_and_bytes_attributes_are_read(tmp_path):
    """Large lists are split into layer_names0, layer_names1...; old files store bytes."""
    path = tmp_path / "split.h5"
    shutil.copy(TF_KERAS / "seq_cnn_bn.h5", path)
    with h5py.File(path, "r+") as f:
        group = f["model_weights"]
        names = [name.encode() if isinstance(name, str) else name for name in group.attrs["layer_names"]]
        del group.attrs["layer_names"]
        for i, part in enumerate(np.array_split(np.array(names), 3)):
            group.attrs[f"layer_names{i}"] = part
        f.attrs["model_config"] = np.bytes_(f.attrs["model_config"].encode())
    with modelmorph.read(path) as split, modelmorph.read(TF_KERAS / "seq_cnn_bn.h5") as whole:
        assert_models_equal(split, whole)


def test_sniffer_claims_legacy_files_only(tmp_path):
    registry = Registry()
    legacy_weights = tmp_path / "model.weights.h5"  # tf_keras save_weights("model.weights.h5")
    shutil.copy(TF_KERAS / "mlp_adam_weights.h5", legacy_weights)
    assert registry.detect_source(legacy_weights).name == "h5"
    assert registry.detect_source(TF_KERAS / "mlp_adam.h5").name == "h5"
    assert registry.detect_source(FIXTURES / "keras3" / "mlp_adam.weights.h5").name != "h5"
    from modelmorph_h5 import sniff

    assert sniff(modelmorph.Probe.of(FIXTURES / "keras3" / "mlp_adam.weights.h5")) == modelmorph.NO


def test_keras_2_10_optimizer_layout(tmp_path):
    """optimizer_v2 (Keras <= 2.10) names slots `Adam/dense/kernel/m:0` and stores every `m`
    before every `v`; the slots still land on their variables."""
    path = tmp_path / "old.h5"
    shutil.copy(TF_KERAS / "mlp_adam.h5", path)
    with h5py.File(path, "r+") as f:
        group = f["optimizer_weights"]
        new = {"Adam/iter:0": group["iteration:0"][()]}
        for slot in ("m", "v"):  # slot after slot, each over every variable
            for name in group.attrs["weight_names"][1:]:
                _, stored_slot, variable = name.split("/", 2)
                if stored_slot == slot:
                    new[f"Adam/{variable.removesuffix(':0')}/{slot}:0"] = group[name][()]
        del f["optimizer_weights"]
        group = f.create_group("optimizer_weights")
        group.attrs["weight_names"] = np.array([n.encode() for n in new])
        for name, value in new.items():
            group[name] = value
    with modelmorph.read(path) as old, modelmorph.read(TF_KERAS / "mlp_adam.h5") as current:
        expected = {(s.variable, s.name): s.weight.read() for s in current.optimizer.slots}
        got = {(s.variable, s.name): s.weight.read() for s in old.optimizer.slots}
        assert old.optimizer.variables[0].read() == current.optimizer.variables[0].read()
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        np.testing.assert_array_equal(got[key], value)


def test_unmatched_optimizer_slots_are_kept_unmapped(tmp_path):
    path = tmp_path / "odd.h5"
    shutil.copy(TF_KERAS / "mlp_adam.h5", path)
    with h5py.File(path, "r+") as f:
        names = list(f["optimizer_weights"].attrs["weight_names"])
        f["optimizer_weights"].attrs["weight_names"] = np.array([n.encode() for n in names[:-1]])
    diags = modelmorph.Diagnostics()
    with modelmorph.read(path, diagnostics=diags) as model:
        assert model.optimizer.slots == [] and len(model.optimizer.unmapped) == 7
    assert [d.kind for d in diags] == ["lossy"]
