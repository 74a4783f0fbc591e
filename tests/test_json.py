"""JSON architecture files: Keras 2 and Keras 3 `to_json()` output, judged by the real libraries."""

from __future__ import annotations

import json

import pytest

import modelmorph
from helpers import write_read
from helpers import FIXTURES

CASES = ["mlp_adam", "seq_cnn_bn", "multi_io_shared", "embed_lstm_bigru", "nested_seq", "mha_ln", "mobilenetv2"]
SOURCES = [pytest.param(FIXTURES / family / f"{case}.json", id=f"{family}-{case}")
           for family in ("keras3", "tf_keras") for case in CASES]


def _load(lib, path):
    return lib.models.model_from_json(path.read_text())


@pytest.mark.interop
@pytest.mark.parametrize("source", SOURCES)
def test_to_keras3_loads_in_keras3(source, tmp_path, keras3, tf_keras):
    original = _load(keras3 if source.parent.name == "keras3" else tf_keras, source)
    out = tmp_path / "model.json"
    modelmorph.convert(source, out)
    loaded = _load(keras3, out)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in original.layers]
    assert loaded.count_params() == original.count_params()
    assert json.loads(out.read_text())["module"]  # the Keras 3 dialect names modules


@pytest.mark.interop
@pytest.mark.parametrize("source", SOURCES)
def test_to_keras2_loads_in_tf_keras(source, tmp_path, keras3, tf_keras):
    original = _load(keras3 if source.parent.name == "keras3" else tf_keras, source)
    out = tmp_path / "model.json"
    modelmorph.convert(source, out, options={"dialect": "keras2"})
    loaded = _load(tf_keras, out)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in original.layers]
    assert loaded.count_params() == original.count_params()


@pytest.mark.parametrize("source", SOURCES)
def test_ir_round_trip(source, tmp_path):
    with modelmorph.read(source) as model:
        write_read(tmp_path, model, "json", "rt.json")


@pytest.mark.parametrize("case", CASES)
def test_keras2_and_keras3_sources_agree(case):
    """The same model saved by tf_keras and by Keras 3 reads into the same layer graph."""
    a = modelmorph.read(FIXTURES / "keras3" / f"{case}.json")
    b = modelmorph.read(FIXTURES / "tf_keras" / f"{case}.json")
    assert [layer.class_name for layer in a.layers if layer.class_name != "InputLayer"] == \
           [layer.class_name for layer in b.layers if layer.class_name != "InputLayer"]


def test_keras2_dialect_is_detected_and_recorded():
    model = modelmorph.read(FIXTURES / "tf_keras" / "mlp_adam.json")
    assert model.metadata["dialect"] == "keras2"
    assert model.metadata["source_format"] == "json"
    model = modelmorph.read(FIXTURES / "keras3" / "mlp_adam.json")
    assert model.metadata["dialect"] == "keras3"


def test_nested_sequential_node_index_is_translated():
    """tf.keras counts a nested Sequential's creation node; Keras 3 does not (keras #19898-style failures)."""
    model = modelmorph.read(FIXTURES / "tf_keras" / "nested_seq.json")
    inner = next(layer for layer in model.layers if layer.class_name == "Sequential")
    refs = [r for layer in model.layers for node in layer.nodes for r in _refs(node.args) if r.layer == inner.name]
    refs += [r for r in _refs(model.outputs) if r.layer == inner.name]
    assert refs and all(r.node_index == 0 for r in refs)


def _refs(value):
    from modelmorph.keras.kerasconfig import iter_refs

    return list(iter_refs(value))


def test_numpy_constants_are_leaves_never_walked_or_copied():
    """An imported constant operand may hold millions of numbers: the walks over call arguments
    (refs, encoding, decoding, shifting) pass the ``__numpy__`` record on as it is, once."""
    from modelmorph.ir import TensorRef
    from modelmorph.keras import kerasconfig

    constant = {"class_name": "__numpy__", "config": {"value": [[1.0, 2.0], [3.0, 4.0]], "dtype": "float32"}}
    args = [TensorRef("x", 0, 0), constant]
    assert kerasconfig.encode_tensors(args)[1] is constant
    assert kerasconfig.decode_tensors(kerasconfig.encode_tensors(args))[1] is constant
    assert kerasconfig.map_leaves(args, lambda ref: ref)[1] is constant
    assert kerasconfig._shift(args, {"x"}, +1)[1] is constant
    assert list(kerasconfig.iter_refs(args)) == [TensorRef("x", 0, 0)]
    # and a record of the same shape that is not a constant is still walked
    tensor_in_dict = {"class_name": "other", "config": {"value": TensorRef("x", 0, 0)}}
    assert list(kerasconfig.iter_refs(tensor_in_dict)) == [TensorRef("x", 0, 0)]
