"""``modelmorph.keras.keras3_layout``: the Keras 3 weight paths derived from an architecture alone.
(The fixtures' files and the interop tests check the same derivation against Keras itself.)"""

from __future__ import annotations

import copy

import pytest

import modelmorph
from modelmorph.keras import keras3_layout as layout
from modelmorph.ir import Layer

from kerascases import KERAS3


@pytest.mark.parametrize("name, snake", [("Conv2D", "conv2d"), ("PReLU", "p_re_lu"), ("ReLU", "re_lu"),
                                         ("UpSampling2D", "up_sampling2d"), ("BatchNormalization", "batch_normalization"),
                                         ("GlobalAveragePooling1D", "global_average_pooling1d"), ("RMSprop", "rm_sprop"),
                                         ("LSTM", "lstm"), ("EinsumDense", "einsum_dense")])
def test_snake_case_as_keras(name, snake):
    assert layout.snake_case(name) == snake


def test_places_of_a_functional_model_with_a_nested_sequential():
    with modelmorph.read(KERAS3 / "nested_seq.json") as model:
        assert [(p.h5_path, p.layer_path) for p in layout.places(model)] == [
            ("layers/input_layer", "x"),  # Functional keeps its InputLayers...
            ("layers/dense", "dense_2"),  # ...and names by class, not by layer name
            ("layers/sequential", "inner"),
            ("layers/sequential/layers/dense", "inner/dense"),  # Sequential drops its InputLayer
            ("layers/sequential/layers/dense_1", "inner/dense_1"),
            ("layers/dense_1", "dense_3")]


def test_keras_ops_in_the_graph_are_not_layers():
    with modelmorph.read(KERAS3 / "mha_ln.json") as model:
        add = model.layer("add")
        op = Layer("add_op", "Add", {"name": "add_op"}, module="keras.src.ops.numpy", registered_name="Add")
        model.layers.insert(model.layers.index(add), op)
        places = {p.layer_path: p.h5_path for p in layout.places(model)}
        assert "add_op" not in places and places["add"] == "layers/add"


@pytest.mark.parametrize("case, layer, sub, name", [
    ("embed_lstm_bigru", "lstm", "cell", "lstm_cell"),
    ("embed_lstm_bigru", "bidirectional", "forward_layer", "forward_gru"),
    ("embed_lstm_bigru", "bidirectional", "backward_layer/cell", "gru_cell"),
    ("embed_lstm_bigru", "bidirectional", "", "bidirectional"),
    ("mha_ln", "multi_head_attention", "output_dense", "attention_output"),
    ("mha_ln", "multi_head_attention", "_softmax", None),  # named at run time
    ("custom_layer", "scale", "anything", None),
])
def test_sub_object_names(case, layer, sub, name):
    with modelmorph.read(KERAS3 / f"{case}.json") as model:
        assert layout.sub_object_name(model.layer(layer), sub) == name


def test_an_explicit_backward_layer_keeps_its_name():
    with modelmorph.read(KERAS3 / "embed_lstm_bigru.json") as model:
        layer = copy.deepcopy(model.layer("bidirectional"))
        layer.config["backward_layer"] = copy.deepcopy(layer.config["layer"])
        layer.config["backward_layer"]["config"]["name"] = "back"
        assert layout.sub_object_name(layer, "backward_layer") == "back"


def test_catalogue_slots_number_each_sub_object():
    with modelmorph.read(KERAS3 / "mha_ln.json") as model:
        slots = layout.catalogue_slots(model.layer("multi_head_attention"))
        assert [(s.sub, s.index, s.weight_path) for s in slots[:4]] == [
            ("query_dense", 0, "query_dense/kernel"), ("query_dense", 1, "query_dense/bias"),
            ("key_dense", 0, "key_dense/kernel"), ("key_dense", 1, "key_dense/bias")]
        assert layout.catalogue_slots(Layer("s", "Scale")) is None


@pytest.mark.parametrize("path, sub, index", [("0", "", 0), ("cell/12", "cell", 12), ("kernel", None, None),
                                              ("01", None, None)])
def test_positional_slots(path, sub, index):
    slot = layout.positional_slot(path)
    if sub is None:
        assert slot is None
    else:
        assert (slot.sub, slot.index) == (sub, index)


def _optimizer(class_name, **config):
    return {"module": "keras.optimizers", "class_name": class_name, "config": {"name": "opt", **config}}


def test_optimizer_entries_follow_keras_build_order():
    with modelmorph.read(KERAS3 / "mlp_adam.keras") as model:
        weights = ["dense/kernel", "dense/bias", "dense_1/kernel", "dense_1/bias"]
        schedule = {"class_name": "ExponentialDecay", "config": {}}
        entries = layout.optimizer_entries(model, _optimizer("Adam", learning_rate=schedule, amsgrad=True, use_ema=True))
        assert [(e.name, e.variable) for e in entries] == (
            [("iterations", None)] + [("average", w) for w in weights]
            + [(slot, w) for w in weights for slot in ("momentum", "velocity")] + [("velocity_hat", w) for w in weights])
        rms = layout.optimizer_entries(model, _optimizer("RMSprop", learning_rate=0.1, momentum=0.5, centered=True))
        assert [e.name for e in rms[2:]] == ["velocity"] * 4 + ["momentum"] * 4 + ["average_gradient"] * 4
        assert [e.name for e in layout.optimizer_entries(model, _optimizer("SGD", learning_rate=0.1))] == [
            "iterations", "learning_rate"]
        nadam = layout.optimizer_entries(model, _optimizer("Nadam", learning_rate=0.1))
        assert nadam[-1] == layout.OptimizerEntry("u_product")
        assert [e.name for e in layout.optimizer_entries(model, _optimizer("SGD", momentum=0.9), keras2=True)][:2] == [
            "iterations", "momentum"]
        assert layout.optimizer_entries(model, _optimizer("Adafactor")) is None


def test_frozen_layers_have_no_slots():
    with modelmorph.read(KERAS3 / "seq_cnn_bn.keras") as model:
        model.layer("conv2d").config["trainable"] = False
        assert layout.trainable_weight_paths(model) == [
            "batch_normalization/gamma", "batch_normalization/beta", "conv2d_1/kernel", "conv2d_1/bias",
            "dense/kernel", "dense/bias"]
    with modelmorph.read(KERAS3 / "nested_seq.keras") as model:
        model.layer("inner").config["trainable"] = False  # the nested model's own config
        assert layout.trainable_weight_paths(model) == ["dense_2/kernel", "dense_2/bias", "dense_3/kernel", "dense_3/bias"]


def test_optimizer_group_name():
    assert layout.optimizer_group_name(_optimizer("Adam")) == "opt"
    assert layout.optimizer_group_name({"class_name": "RMSprop", "config": {}}) == "rm_sprop"
    assert layout.optimizer_group_name(None) is None
