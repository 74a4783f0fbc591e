"""The Keras 2 ↔ 3 translations a legacy-model migration needs (modelmorph.keras.dialects): TFOpLambda
and keras.ops, Lambda encodings, mixed precision, compile configs; the real libraries judge the
graphs both ways."""

from __future__ import annotations

import json

import numpy as np
import pytest

import modelmorph
from h5cases import FIXTURES
from helpers import require_format
from modelmorph.keras import dialects

TF_KERAS = FIXTURES / "tf_keras"


def _layers(cfg: dict) -> dict:
    return {entry["name"]: entry for entry in cfg["config"]["layers"]}


def _history(tensor: dict) -> list:
    return tensor["config"]["keras_history"]


def test_tfoplambda_becomes_keras_ops():
    diags = modelmorph.Diagnostics()
    layers = _layers(dialects.to_keras3(json.loads((TF_KERAS / "tfop_lambda.json").read_text()), diags))
    assert not diags
    multiply = layers["tf.math.multiply"]
    assert (multiply["module"], multiply["class_name"]) == ("keras.src.ops.numpy", "Multiply")
    args = multiply["inbound_nodes"][0]["args"]
    assert _history(args[0]) == ["h", 0, 0] and args[1] == 2.0
    mean = layers["tf.math.reduce_mean"]
    assert mean["class_name"] == "Mean" and mean["config"] == {"name": "tf.math.reduce_mean", "axis": -1, "keepdims": True}
    concat = layers["tf.concat"]
    assert concat["class_name"] == "Concatenate" and concat["config"]["axis"] == -1
    assert [_history(t) for t in concat["inbound_nodes"][0]["args"][0]] == [
        ["tf.nn.relu", 0, 0], ["tf.math.multiply", 0, 0], ["tf.math.reduce_mean", 0, 0]]
    assert layers["tf.nn.relu"]["module"] == "keras.src.ops.nn"


def test_tfoplambda_round_trips_to_the_records_tf_keras_wrote():
    original = json.loads((TF_KERAS / "tfop_lambda.json").read_text())
    back = _layers(dialects.to_keras2(dialects.to_keras3(original)))
    for name, entry in _layers(original).items():
        if entry["class_name"] == "TFOpLambda":
            assert back[name]["class_name"] == "TFOpLambda"
            assert back[name]["config"]["function"] == entry["config"]["function"]
            assert back[name]["inbound_nodes"] == [_without_name_kwarg(node) for node in entry["inbound_nodes"]]


def _without_name_kwarg(node):
    """tf_keras records `name=None` for some functions; it means nothing and is not written back."""
    if isinstance(node, list) and len(node) == 4 and isinstance(node[3], dict):
        return [*node[:3], {k: v for k, v in node[3].items() if k != "name"}]
    return [_without_name_kwarg(n) for n in node] if isinstance(node, list) else node


def test_unknown_tf_function_is_carried_with_a_diagnostic():
    entry = {"class_name": "TFOpLambda", "name": "tf.signal.fft", "config": {"name": "tf.signal.fft", "function": "signal.fft"},
             "inbound_nodes": [["x", 0, 0, {"name": None}]]}
    cfg = {"class_name": "Functional", "config": {
        "name": "m", "layers": [{"class_name": "InputLayer", "name": "x", "config": {"batch_input_shape": [None, 4], "name": "x"},
                                 "inbound_nodes": []}, entry],
        "input_layers": [["x", 0, 0]], "output_layers": [["tf.signal.fft", 0, 0]]}}
    diags = modelmorph.Diagnostics()
    carried = _layers(dialects.to_keras3(cfg, diags))["tf.signal.fft"]
    assert carried["class_name"] == "TFOpLambda" and carried["config"]["function"] == "signal.fft"
    assert [d.kind for d in diags] == ["unsupported"] and "signal.fft" in diags.items[0].message
    assert _layers(dialects.to_keras2(dialects.to_keras3(cfg)))["tf.signal.fft"]["inbound_nodes"] == entry["inbound_nodes"]


def _lambda_keras2(**extra):
    return {"class_name": "Lambda", "config": {
        "name": "lam", "trainable": True, "dtype": "float32", "function": ["4wEAAAAAAAAA", None, None],
        "function_type": "lambda", "module": "__main__", "output_shape": [None, 4], "output_shape_type": "raw",
        "output_shape_module": None, "arguments": {}, **extra}}


def _sequential(*entries):
    return {"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 4], "name": "in"}}, *entries]}}


def test_lambda_is_reencoded_never_run():
    keras3 = dialects.to_keras3(_sequential(_lambda_keras2()))["config"]["layers"][1]["config"]
    assert keras3["function"] == {"class_name": "__lambda__",
                                  "config": {"code": "4wEAAAAAAAAA", "defaults": None, "closure": None}}
    assert keras3["output_shape"] == [None, 4]
    assert not {"function_type", "module", "output_shape_type", "output_shape_module"} & set(keras3)
    keras2 = dialects.to_keras2(dialects.to_keras3(_sequential(_lambda_keras2())))["config"]["layers"][1]["config"]
    assert keras2["function"] == ["4wEAAAAAAAAA", None, None] and keras2["function_type"] == "lambda"
    assert (keras2["output_shape"], keras2["output_shape_type"]) == ([None, 4], "raw")


def test_lambda_named_function_and_lambda_output_shape():
    entry = _lambda_keras2(function="double", function_type="function", module="my.package",
                           output_shape=["c2hhcGU=", None, None], output_shape_type="lambda")
    keras3 = dialects.to_keras3(_sequential(entry))["config"]["layers"][1]["config"]
    assert keras3["function"] == {"module": "my.package", "class_name": "function", "config": "double",
                                  "registered_name": "double"}
    assert keras3["output_shape"]["class_name"] == "__lambda__"
    keras2 = dialects.to_keras2(dialects.to_keras3(_sequential(entry)))["config"]["layers"][1]["config"]
    assert (keras2["function"], keras2["function_type"], keras2["module"]) == ("double", "function", "my.package")
    assert (keras2["output_shape"], keras2["output_shape_type"]) == (["c2hhcGU=", None, None], "lambda")


def test_mixed_precision_policy_both_ways():
    diags = modelmorph.Diagnostics()
    keras3 = dialects.to_keras3(json.loads((TF_KERAS / "mixed_precision.json").read_text()), diags)
    dense = _layers(keras3)["dense"]["config"]["dtype"]
    assert dense == dialects.policy("mixed_float16") and not diags
    keras2 = _layers(dialects.to_keras2(keras3))
    assert keras2["dense"]["config"]["dtype"] == {"class_name": "Policy", "config": {"name": "mixed_float16"}}
    assert keras2["out"]["config"]["dtype"] == "float32"


def test_nested_sequential_node_indices_shift():
    keras2 = json.loads((TF_KERAS / "nested_seq.json").read_text())
    assert _layers(keras2)["dense_3"]["inbound_nodes"] == [[["inner", 1, 0, {}]]]
    keras3 = dialects.to_keras3(keras2)
    assert _history(_layers(keras3)["dense_3"]["inbound_nodes"][0]["args"][0]) == ["inner", 0, 0]
    assert _layers(dialects.to_keras2(keras3))["dense_3"]["inbound_nodes"] == [[["inner", 1, 0, {}]]]


def test_compile_config_both_ways():
    training = {"loss": {"class_name": "MeanSquaredError", "config": {"reduction": "auto", "name": "mse"}},
                "metrics": ["mae"], "weighted_metrics": None, "loss_weights": None,
                "optimizer_config": {"class_name": "Custom>Adam", "config": {
                    "name": "Adam", "jit_compile": True, "is_legacy_optimizer": False, "learning_rate": 0.01,
                    "decay": 0.5}}}
    diags = modelmorph.Diagnostics()
    compile_config = dialects.compile_to_keras3(training, diags)
    assert compile_config["optimizer"] == {"module": "keras.optimizers", "class_name": "Adam",
                                           "config": {"name": "Adam", "learning_rate": 0.01}, "registered_name": None}
    assert compile_config["loss"]["module"] == "keras.losses"
    assert compile_config["loss"]["config"]["reduction"] == "sum_over_batch_size"
    assert [d.kind for d in diags] == ["lossy"] and "decay" in diags.items[0].message
    back = dialects.compile_to_keras2({**compile_config, "optimizer": {
        **compile_config["optimizer"], "config": {"learning_rate": 0.01, "loss_scale_factor": None}}})
    assert back["optimizer_config"] == {"class_name": "Adam",
                                        "config": {"learning_rate": 0.01, "is_legacy_optimizer": False}}
    assert back["metrics"] == ["mae"] and "module" not in back["loss"]


@pytest.mark.interop
def test_tf_operations_run_the_same_in_keras3(tmp_path, tf, tf_keras, keras3):
    """A tf_keras graph of many tf.* calls (TFOpLambda, SlicingOpLambda), converted to Keras 3
    operations: Keras 3 computes what tf_keras did."""
    require_format("keras")
    x = tf_keras.Input(shape=(6,), name="x")
    y = tf_keras.Input(shape=(6,), name="y")
    h = tf_keras.layers.Dense(6, name="h")(x)
    parts = [h + y, h - y, h * y, h / (tf.abs(y) + 1.0), -h, tf.exp(h), tf.math.log(tf.abs(h) + 1), tf.square(h),
             tf.nn.relu(h), tf.sigmoid(h), tf.tanh(h), tf.nn.softmax(h, axis=-1), tf.maximum(h, 0.5), tf.minimum(h, y),
             tf.reshape(tf.transpose(tf.expand_dims(h, -1), perm=[0, 2, 1]), (-1, 6)),
             tf.squeeze(tf.expand_dims(h, 1), axis=1), tf.cast(h, "float32"), tf.pow(h, 2.0), 1.0 - h,
             tf.stack([h, y], axis=1)[:, 0, :], tf.matmul(h, tf.ones((6, 6))), tf.clip_by_value(h, -1.0, 1.0),
             tf.tile(tf.reduce_sum(h, axis=-1, keepdims=True), [1, 6]), h[:, :3] * 1.0, tf.math.rsqrt(tf.abs(h) + 1)]
    model = tf_keras.Model([x, y], tf_keras.layers.Dense(2, name="out")(tf.concat(parts, axis=-1)))
    source = tmp_path / "ops.h5"
    model.save(source)
    inputs = {"x": np.linspace(-1, 1, 18, dtype="float32").reshape(3, 6),
              "y": np.linspace(0.5, 2, 18, dtype="float32").reshape(3, 6)}
    diags = modelmorph.convert(source, tmp_path / "ops.keras")
    assert not diags
    converted = keras3.saving.load_model(tmp_path / "ops.keras")
    np.testing.assert_allclose(converted.predict(inputs, verbose=0), model.predict(inputs, verbose=0), atol=1e-5)


@pytest.mark.interop
def test_keras_ops_run_the_same_in_tf_keras(tmp_path, keras3, tf_keras):
    """A Keras 3 graph of keras.ops calls goes back to tf_keras as TFOpLambda layers."""
    require_format("keras")
    ops = keras3.ops
    x = keras3.Input(shape=(6,), name="x")
    h = keras3.layers.Dense(6, name="h")(x)
    parts = [ops.relu(h), h * 2.0, 1.0 - h, ops.mean(h, axis=-1, keepdims=True), h[:, :3],
             ops.matmul(h, np.ones((6, 6), "float32")), ops.squeeze(ops.transpose(ops.expand_dims(h, 1), (0, 2, 1)), -1),
             ops.softmax(h, axis=-1), ops.stack([h, h], axis=1)[:, 1, :]]
    model = keras3.Model(x, keras3.layers.Dense(2, name="out")(ops.concatenate(parts, axis=-1)))
    model.save(tmp_path / "ops.keras")
    diags = modelmorph.convert(tmp_path / "ops.keras", tmp_path / "ops.h5")
    assert not [d for d in diags if d.kind == "unsupported"], diags.items
    loaded = tf_keras.models.load_model(tmp_path / "ops.h5")
    assert {type(layer).__name__ for layer in loaded.layers} >= {"TFOpLambda", "SlicingOpLambda"}
    inputs = np.linspace(-1, 1, 18, dtype="float32").reshape(3, 6)
    np.testing.assert_allclose(loaded.predict(inputs, verbose=0), model.predict(inputs, verbose=0), atol=1e-5)


def test_keras_2_2_sequential_config_is_a_layer_list():
    old = {"class_name": "Sequential", "config": [
        {"class_name": "Dense", "config": {"name": "dense_1", "units": 3, "batch_input_shape": [None, 4],
                                           "dtype": "float32"}}]}
    layers = dialects.to_keras3(old)["config"]["layers"]
    assert [(e["class_name"], e["config"]["name"]) for e in layers] == [("InputLayer", "dense_1_input"), ("Dense", "dense_1")]
    assert layers[0]["config"]["batch_shape"] == [None, 4]


def test_config_copies_share_no_container_with_their_source():
    """to_keras3 translates a copy (the caller's config is never changed): every dict and list
    is new at every level, tuples and other objects are copied as deepcopy copies them."""
    from collections import OrderedDict

    from modelmorph.keras.dialects.common import copy_config

    class Named(str):
        pass

    source = {"a": [1, 2.5, None, True, "s", {"b": [[], {}]}], "t": (1, [2]), "o": OrderedDict(x=[3]),
              "n": Named("v"), "set": {4}}
    copied = copy_config(source)
    assert copied == source
    assert type(copied["o"]) is dict and type(copied["t"]) is tuple and copied["n"] == "v"

    def containers(value, out):
        if isinstance(value, (dict, list, tuple, set)):
            out.append(value)
            for item in value.values() if isinstance(value, dict) else value:
                containers(item, out)
        return out

    theirs = {id(c) for c in containers(source, []) if not isinstance(c, tuple)}
    assert not theirs & {id(c) for c in containers(copied, []) if not isinstance(c, tuple)}
