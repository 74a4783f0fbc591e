"""The layer-class descriptors' ``weight_shapes`` judged by Keras 3: a layer of the same config,
built on an input of the same shape, creates variables of exactly the shapes the descriptor
expects (what the weight check on every read holds a file to, keras/weightcheck.py)."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fuzzing import FIXTURES, run_cli
from helpers import require
from modelmorph.keras import catalogue

pytestmark = pytest.mark.interop


def _cell(class_name: str, **config) -> dict:
    return {"module": "keras.layers", "class_name": class_name, "config": config}


CASES = [
    ("Dense", {"units": 5}, [(None, 7, 3)]),
    ("Dense", {"units": 2, "use_bias": False}, [(None, 4)]),
    ("EinsumDense", {"equation": "ab,bc->ac", "output_shape": 4, "bias_axes": "c"}, [(None, 3)]),
    ("EinsumDense", {"equation": "abc,cd->abd", "output_shape": [None, 4], "bias_axes": "d"}, [(None, 6, 3)]),
    ("EinsumDense", {"equation": "abc,cde->abde", "output_shape": [None, 2, 4], "bias_axes": "de"}, [(None, 6, 3)]),
    ("EinsumDense", {"equation": "abc,cde->abde", "output_shape": [None, 2, 4], "bias_axes": "e"}, [(None, 6, 3)]),
    ("EinsumDense", {"equation": "...b,bc->...c", "output_shape": 4, "bias_axes": "c"}, [(None, 5, 3)]),
    ("EinsumDense", {"equation": "...bc,cd->...bd", "output_shape": [5, 2], "bias_axes": "b"}, [(None, 7, 5, 3)]),
    ("EinsumDense", {"equation": "ab...,bc->ac...", "output_shape": [4], "bias_axes": "c"}, [(None, 3, 6)]),
    ("EinsumDense", {"equation": "abcd,cde->abe", "output_shape": [None, 2]}, [(None, 6, 3, 5)]),
    ("Embedding", {"input_dim": 10, "output_dim": 4}, [(None, 6)]),
    ("PReLU", {}, [(None, 4, 5)]),
    ("PReLU", {"shared_axes": [1]}, [(None, 4, 5)]),
    ("PReLU", {"shared_axes": [1, 2]}, [(None, 6, 6, 3)]),
    ("PReLU", {"shared_axes": 3}, [(None, 6, 6, 3)]),
    ("Conv1D", {"filters": 4, "kernel_size": 3}, [(None, 11, 2)]),
    ("Conv2D", {"filters": 4, "kernel_size": [3, 2], "use_bias": False}, [(None, 9, 8, 3)]),
    ("Conv2D", {"filters": 4, "kernel_size": 3, "data_format": "channels_first"}, [(None, 3, 9, 8)]),
    ("Conv2D", {"filters": 6, "kernel_size": 3, "groups": 3}, [(None, 9, 9, 3)]),
    ("Conv3D", {"filters": 2, "kernel_size": 2}, [(None, 7, 6, 5, 1)]),
    ("Conv1DTranspose", {"filters": 3, "kernel_size": 3, "strides": 2}, [(None, 5, 2)]),
    ("Conv2DTranspose", {"filters": 3, "kernel_size": [4, 2]}, [(None, 5, 4, 2)]),
    ("Conv2DTranspose", {"filters": 3, "kernel_size": 3, "data_format": "channels_first"}, [(None, 2, 5, 4)]),
    ("Conv3DTranspose", {"filters": 2, "kernel_size": 2}, [(None, 3, 3, 3, 4)]),
    ("DepthwiseConv1D", {"kernel_size": 3, "depth_multiplier": 2}, [(None, 8, 3)]),
    ("DepthwiseConv2D", {"kernel_size": [3, 1], "depth_multiplier": 3}, [(None, 8, 8, 2)]),
    ("SeparableConv1D", {"filters": 5, "kernel_size": 2, "depth_multiplier": 2}, [(None, 9, 3)]),
    ("SeparableConv2D", {"filters": 5, "kernel_size": 3}, [(None, 8, 8, 3)]),
    ("BatchNormalization", {}, [(None, 4, 3)]),
    ("BatchNormalization", {"axis": 1}, [(None, 4, 3)]),
    ("BatchNormalization", {"center": False}, [(None, 5, 5, 2)]),
    ("LayerNormalization", {}, [(None, 4, 3)]),
    ("LayerNormalization", {"axis": [1, 2]}, [(None, 4, 3)]),
    ("GroupNormalization", {"groups": 2}, [(None, 5, 4)]),
    ("GroupNormalization", {"groups": 3, "axis": 1}, [(None, 6, 5)]),
    ("Normalization", {}, [(None, 4, 5)]),
    ("Normalization", {"axis": [1, 2]}, [(None, 4, 5)]),
    ("Normalization", {"axis": [2, 1]}, [(None, 4, 5)]),
    ("Normalization", {"axis": None}, [(None, 4, 5)]),
    ("Normalization", {"axis": 1}, [(None, 4, 5)]),
    ("Attention", {"use_scale": True, "score_mode": "concat"}, [(None, 4, 8), (None, 6, 8)]),
    ("Attention", {"use_scale": True}, [(None, 4, 8), (None, 6, 8)]),
    ("AdditiveAttention", {}, [(None, 4, 8), (None, 6, 8)]),
    ("AdditiveAttention", {}, [(None, 4, 8), (None, 6, 3), (None, 6, 8)]),
    ("MultiHeadAttention", {"num_heads": 2, "key_dim": 3}, [(None, 4, 8), (None, 6, 5)]),
    ("MultiHeadAttention", {"num_heads": 3, "key_dim": 2, "value_dim": 4, "output_shape": [7]},
     [(None, 4, 8), (None, 6, 5), (None, 6, 2)]),
    ("LSTM", {"units": 5}, [(None, 7, 3)]),
    ("GRU", {"units": 5}, [(None, 7, 3)]),
    ("GRU", {"units": 4, "reset_after": False}, [(None, 7, 2)]),
    ("SimpleRNN", {"units": 2, "use_bias": False}, [(None, 7, 3)]),
    ("LSTMCell", {"units": 3}, [(None, 2)]),
    ("GRUCell", {"units": 3}, [(None, 2)]),
    ("SimpleRNNCell", {"units": 3}, [(None, 2)]),
    ("ConvLSTM1D", {"filters": 2, "kernel_size": 3}, [(None, 4, 9, 3)]),
    ("ConvLSTM2D", {"filters": 2, "kernel_size": [3, 2], "data_format": "channels_first"}, [(None, 4, 3, 6, 6)]),
    ("ConvLSTM3D", {"filters": 2, "kernel_size": 2}, [(None, 3, 4, 4, 4, 1)]),
    ("RNN", {"cell": _cell("LSTMCell", units=3)}, [(None, 7, 4)]),
    ("RNN", {"cell": _cell("StackedRNNCells", cells=[_cell("GRUCell", units=4), _cell("SimpleRNNCell", units=2),
                                                     _cell("GRUCell", units=3, reset_after=False)])},
     [(None, 7, 5)]),
    ("StackedRNNCells", {"cells": [_cell("LSTMCell", units=4), _cell("LSTMCell", units=2)]}, [(None, 3)]),
    ("Bidirectional", {"layer": _cell("LSTM", units=4, return_sequences=True)}, [(None, 6, 3)]),
    ("Bidirectional", {"layer": _cell("GRU", units=4), "backward_layer": _cell("GRU", units=4, go_backwards=True)},
     [(None, 6, 3)]),
    ("Bidirectional", {"layer": _cell("RNN", cell=_cell("SimpleRNNCell", units=2))}, [(None, 6, 3)]),
    ("TimeDistributed", {"layer": _cell("Dense", units=2)}, [(None, 6, 3)]),
    ("TimeDistributed", {"layer": _cell("Conv2D", filters=2, kernel_size=3)}, [(None, 6, 8, 8, 3)]),
]
IDS = [f"{c[0]}-{i}" for i, c in enumerate(CASES)]
#: Variables Keras creates that the check leaves to others: an int64 counter.
UNCHECKED = {("Normalization", "count")}


def _built(keras, class_name, config, shapes):
    """The Keras 3 layer built on ``shapes``, and the config it serializes to (what a file holds)."""
    entry = {"class_name": class_name, "config": copy.deepcopy(config), "module": "keras.layers"}
    layer = keras.layers.deserialize(entry)  # which pops keys from what it is given
    inputs = [keras.KerasTensor(shape) for shape in shapes]
    if class_name.endswith("Cell") or class_name == "StackedRNNCells":
        layer.build(shapes[0])
    elif class_name == "MultiHeadAttention":
        layer(*inputs)
    else:
        layer(inputs if len(inputs) > 1 else inputs[0])
    return layer, _as_in_a_file(keras, layer)


def _as_in_a_file(keras, layer) -> dict:
    return json.loads(json.dumps(keras.saving.serialize_keras_object(layer)))["config"]


def _pairs(class_name, config, layer):
    """(catalogue variable path, Keras variable) in saving order: the catalogue lists them in
    the order Keras' ``weights`` holds them."""
    listed = catalogue.variables_of(class_name, config)
    assert listed is not None and len(listed) == len(layer.weights), (listed, [v.path for v in layer.weights])
    renamed = catalogue.get(class_name).keras3_attributes  # DepthwiseConv's depthwise_kernel is Keras 3's kernel
    for var, variable in zip(listed, layer.weights):
        names = {var.path.rsplit("/", 1)[-1], renamed.get(var.path, "").lstrip("_")}
        assert variable.name in names, (var.path, variable.path)
    return [(var.path, variable) for var, variable in zip(listed, layer.weights)]


def _fits(shape, want) -> bool:
    return len(shape) == len(want) and all(w is None or s == w for s, w in zip(shape, want))


@pytest.mark.parametrize("class_name,config,shapes", CASES, ids=IDS)
def test_weight_shapes_are_what_keras3_builds(keras3, class_name, config, shapes):
    layer, config = _built(keras3, class_name, config, shapes)
    expected = catalogue.get(class_name).weight_shapes(config, shapes)
    for path, variable in _pairs(class_name, config, layer):
        if (class_name, path) in UNCHECKED:
            assert path not in expected
            continue
        want = expected[path]
        options = want if isinstance(want, list) else [want]
        # Inputs fully known: every dimension is told, and one option is Keras' shape.
        assert all(None not in option for option in options), (path, want)
        assert tuple(variable.shape) in options, (path, tuple(variable.shape), want)


@pytest.mark.parametrize("class_name,config,shapes", CASES, ids=IDS)
def test_weight_shapes_without_input_shapes_never_refuse_what_keras3_builds(keras3, class_name, config, shapes):
    """Where shape inference cannot tell the inputs, the rule leaves those dimensions open
    (or the variable out), never contradicting Keras."""
    layer, config = _built(keras3, class_name, config, shapes)
    expected = catalogue.get(class_name).weight_shapes(config, [])
    for path, variable in _pairs(class_name, config, layer):
        want = expected.get(path)
        if want is not None:
            options = want if isinstance(want, list) else [want]
            assert any(_fits(tuple(variable.shape), option) for option in options), (path, variable.shape, want)


LOOKUPS = [
    ("StringLookup", {"output_mode": "tf_idf"}, [["a", "b", "c"], ["a", "b", "d"]]),
    ("StringLookup", {"output_mode": "tf_idf", "max_tokens": 10, "pad_to_max_tokens": True},
     [["a", "b", "c"], ["a", "b", "d"]]),
    ("StringLookup", {"output_mode": "tf_idf", "num_oov_indices": 2, "mask_token": ""}, [["a", "b"], ["c", "b"]]),
    ("StringLookup", {"output_mode": "tf_idf", "vocabulary": ["x", "y"], "idf_weights": [1.0, 2.0]}, None),
    ("IntegerLookup", {"output_mode": "tf_idf"}, [[1, 2, 3], [1, 2, 4]]),
    ("TextVectorization", {"output_mode": "tf_idf"}, ["a b c", "a b d e"]),
    ("TextVectorization", {"output_mode": "tf_idf", "max_tokens": 9, "pad_to_max_tokens": True}, ["a b c", "a b d"]),
]


@pytest.mark.parametrize("class_name,config,data", LOOKUPS, ids=[f"{c[0]}-{i}" for i, c in enumerate(LOOKUPS)])
def test_lookup_idf_weights_are_what_keras3_keeps(keras3, class_name, config, data):
    layer = getattr(keras3.layers, class_name)(**config)
    if data is not None:
        layer.adapt(np.array(data))
    store: dict = {}
    layer.save_own_variables(store)  # what Keras 3 writes under vars/
    expected = catalogue.get(class_name).weight_shapes(_as_in_a_file(keras3, layer), [])
    assert list(store) == ["idf_weights"]
    assert expected == {"idf_weights": tuple(np.shape(store["idf_weights"]))}


# -- files Keras wrote, one weight replaced by a wrongly shaped one: refused on read ---------------

ZOO = """
import sys
import numpy as np
lib, out = sys.argv[1], sys.argv[2]
if lib == "tf_keras":
    import tf_keras as keras
else:
    import keras
L = keras.layers
x = keras.Input((6, 4), name="x")
norm = L.Normalization(name="norm")
norm.adapt(np.arange(48, dtype="float32").reshape(2, 6, 4))
y = L.PReLU(shared_axes=[1], name="prelu")(norm(x))
y = L.EinsumDense("abc,cd->abd", output_shape=(None, 5), bias_axes="d", name="einsum")(y)
y = L.Concatenate(name="cat")([L.Attention(use_scale=True, score_mode="concat", name="att")([y, y]),
                               L.AdditiveAttention(name="add_att")([y, y])])
y = L.RNN(L.StackedRNNCells([L.GRUCell(3), L.SimpleRNNCell(2)]), return_sequences=True, name="stack")(y)
model = keras.Model(x, L.Bidirectional(L.RNN(L.LSTMCell(2)), name="bi")(y), name="zoo")
if lib == "tf_keras":
    model.save(out + ".h5")
else:
    model.save_weights(out + ".weights.h5")
    open(out + ".json", "w").write(model.to_json())
"""


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """The same model of the newly covered classes as Keras 3 (``.weights.h5`` and its
    architecture) and tf_keras (a legacy ``.h5``) write it, each library in its own process."""
    folder = tmp_path_factory.mktemp("zoo")
    for lib, name in (("keras", "k3"), ("tf_keras", "k2")):
        require(lib)
        subprocess.run([sys.executable, "-c", ZOO, lib, str(folder / name)], check=True, capture_output=True,
                       env=dict(os.environ, TF_USE_LEGACY_KERAS="1" if lib == "tf_keras" else "0"))
    return folder


#: (layer, weight, what the architecture expects, Keras 3 dataset, legacy .h5 dataset, a wrong shape)
MUTATIONS = [
    ("Normalization", "norm", "variance", "(4,)", "normalization/vars/1", "norm/variance:0", (3,)),
    ("PReLU", "prelu", "alpha", "(1, 4)", "p_re_lu/vars/0", "prelu/prelu/alpha:0", (4,)),
    ("EinsumDense", "einsum", "kernel", "(4, 5)", "einsum_dense/vars/0", "einsum/einsum/kernel:0", (5, 4)),
    ("Attention", "att", "concat_score_weight", "()", "attention/vars/1", "att/att/concat_score_weight:0", (1,)),
    ("AdditiveAttention", "add_att", "scale", "(5,)", "additive_attention/vars/0", "add_att/add_att/scale:0", (4,)),
    ("RNN", "stack", "cell/cells/simple_rnn_cell/kernel", "(3, 2)", "rnn/cell/cells/simple_rnn_cell/vars/0",
     "stack/stack/stacked_rnn_cells/simple_rnn_cell/kernel:0", (9, 2)),
    ("Bidirectional", "bi", "backward_layer/cell/recurrent_kernel", "(2, 8)",
     "bidirectional/backward_layer/cell/vars/1", "bi/bi/backward_rnn/lstm_cell/recurrent_kernel:0", (3, 8)),
]


def _replaced(source: Path, copy: Path, dataset: str, shape: tuple) -> Path:
    import h5py

    shutil.copy(source, copy)
    with h5py.File(copy, "r+") as f:
        del f[dataset]
        f[dataset] = np.zeros(shape, "float32")
    return copy


def _refused(run, source: Path, problem: str) -> None:
    assert run.code == 4, (run.code, run.stderr)
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0] == f"modelmorph: error: {source}: {problem}", run.stderr


def test_the_files_keras_wrote_pass_the_check(zoo, tmp_path):
    for argv in ((zoo / "k3.weights.h5", tmp_path / "a.keras", "--arch", zoo / "k3.json"),
                 (zoo / "k2.h5", tmp_path / "b.keras")):
        run = run_cli("convert", *argv)
        assert run.code == 0, run.stderr


@pytest.mark.parametrize("class_name,layer,weight,expected,keras3_dataset,legacy_dataset,shape", MUTATIONS,
                         ids=[m[0] for m in MUTATIONS])
def test_a_wrongly_shaped_weight_is_refused(zoo, tmp_path, class_name, layer, weight, expected, keras3_dataset,
                                            legacy_dataset, shape):
    shown = f"({shape[0]},)" if len(shape) == 1 else str(shape)
    problem = f"{class_name} layer {layer!r}: weight {weight!r} has shape {shown}; the architecture expects {expected}"
    bad = _replaced(zoo / "k3.weights.h5", tmp_path / "bad.weights.h5", f"layers/{keras3_dataset}", shape)
    _refused(run_cli("convert", bad, tmp_path / "out.keras", "--arch", zoo / "k3.json"), bad, problem)
    bad_h5 = _replaced(zoo / "k2.h5", tmp_path / "bad.h5", f"model_weights/{legacy_dataset}", shape)
    _refused(run_cli("convert", bad_h5, tmp_path / "out.weights.h5"), bad_h5, problem)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.h5", "bad.weights.h5"]  # nothing written


# -- optimizer slots the graph maps to a variable of another shape ---------------------------------

LEGACY_CHECKPOINT = """
import sys
import numpy as np
import tf_keras
model = tf_keras.models.model_from_json(open(sys.argv[1]).read())
model.compile(optimizer=tf_keras.optimizers.legacy.Adam(), loss="mse")
rng = np.random.default_rng(0)
model.fit(rng.standard_normal((8, 8)), rng.standard_normal((8, 4)), epochs=1, verbose=0)
model.save_weights(sys.argv[2])
"""


def test_a_legacy_slot_of_another_shape_than_its_variable_is_refused(tmp_path):
    """A legacy optimizer's checkpoint names the variable each slot shadows: an Adam ``m`` of a
    (8, 16) kernel holding (3,) is refused (it converted with exit 0, into a file tf_keras and
    Keras 3 refuse to restore)."""
    require("tf_keras")
    from modelmorph_tfckpt.bundle import BundleReader, BundleWriter

    arch = FIXTURES / "tf_keras" / "mlp_adam.json"
    subprocess.run([sys.executable, "-c", LEGACY_CHECKPOINT, str(arch), str(tmp_path / "good" / "ckpt")],
                   check=True, capture_output=True, env=dict(os.environ, TF_USE_LEGACY_KERAS="1"))
    slot = "layer_with_weights-0/kernel/.OPTIMIZER_SLOT/optimizer/m/.ATTRIBUTES/VARIABLE_VALUE"
    (tmp_path / "bad").mkdir()
    with BundleReader(tmp_path / "good" / "ckpt") as source, BundleWriter(tmp_path / "bad" / "ckpt") as out:
        assert slot in source.keys()
        for key in source.keys():
            if key == "_CHECKPOINTABLE_OBJECT_GRAPH":
                out.add_object_graph(source.object_graph())
            else:
                out.add(key, np.zeros((3,), "float32") if key == slot else source.read(key))
    assert run_cli("convert", tmp_path / "good" / "ckpt", tmp_path / "good.keras", "--arch", arch).code == 0
    run = run_cli("convert", tmp_path / "bad" / "ckpt", tmp_path / "out.keras", "--arch", arch)
    _refused(run, tmp_path / "bad" / "ckpt",
             "optimizer slot 'm' of weight 'dense/kernel' has shape (3,); the weight has (8, 16)")
    assert not (tmp_path / "out.keras").exists()


def test_every_class_with_a_rule_is_judged_here():
    from modelmorph.keras.layers import builtin_classes

    ruled = {c.class_name for c in builtin_classes() if c.weight_shapes is not None}
    assert ruled == {c[0] for c in CASES} | {c[0] for c in LOOKUPS}
