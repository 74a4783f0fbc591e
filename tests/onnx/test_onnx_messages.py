"""The ONNX importer reads its messages by hand (``modelmorph_onnx.reader.messages``, no protobuf
at run time): the onnx package, built on protobuf, is the judge. Every model and tensor file in
onnx's own backend test data and every fixture reads as onnx reads it, and damaged bytes give a
WireError (a one-line "malformed protobuf"), nothing else."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import FIXTURES, require
from modelmorph.storage import protowire as wire
from modelmorph_onnx.reader import load, messages

pytestmark = pytest.mark.interop


def _descriptor(onnx_pb, dotted: str):
    found = getattr(onnx_pb, dotted.split(".")[0]).DESCRIPTOR
    for part in dotted.split(".")[1:]:
        found = found.nested_types_by_name[part]
    return found


@pytest.mark.parametrize("message", sorted(messages.FIELDS))
def test_every_field_number_is_onnx_own(message):
    theirs = _descriptor(require("onnx").onnx_ml_pb2, message)
    for name, number in messages.FIELDS[message].items():
        assert name in theirs.fields_by_name, f"{message}.{name} is not in onnx.proto"
        assert theirs.fields_by_name[name].number == number, f"{message}.{name}"


# -- the same reading as protobuf's -------------------------------------------------------------
def _tensor(t) -> tuple:
    has_raw = t.HasField("raw_data")
    return (t.name, list(t.dims), t.data_type, t.raw_data if has_raw else None, np.asarray(t.float_data).tobytes(),
            np.asarray(t.double_data).tobytes(), list(t.int32_data), list(t.int64_data), list(t.uint64_data),
            [(e.key, e.value) for e in t.external_data], t.data_location)


def _value_info(v) -> tuple:
    t = v.type.tensor_type
    dims = [(d.HasField("dim_value"), d.dim_value, d.dim_param) for d in t.shape.dim] if t.HasField("shape") else None
    return v.name, t.elem_type, dims


def _attribute(a) -> tuple:
    return (a.name, a.type, np.float32(a.f).tobytes(), a.i, a.s, _tensor(a.t), np.float32(a.floats).tobytes(),
            list(a.ints), list(a.strings))


def _dump(model) -> tuple:
    """What the importer reads of a model, from either reading."""
    g = model.graph
    return (model.ir_version, model.producer_name, model.producer_version, model.HasField("graph"),
            [(o.domain, o.version) for o in model.opset_import], g.name,
            [(n.name, n.op_type, n.domain, list(n.input), list(n.output), [_attribute(a) for a in n.attribute])
             for n in g.node],
            [_tensor(t) for t in g.initializer], [t.values.name for t in g.sparse_initializer],
            [_value_info(v) for v in (*g.input, *g.output, *g.value_info)])


def _backend_data() -> Path:
    onnx = require("onnx")
    return Path(onnx.__file__).parent / "backend" / "test" / "data"


def _node_test_models() -> list:
    import warnings

    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return [case.model.SerializeToString() for case in collect_testcases(None)]


def test_every_backend_test_model_reads_as_onnx_reads_it():
    """onnx's node tests (every op, attribute kind and constant tensor type), its model folders
    and our fixtures."""
    onnx = require("onnx")
    files = sorted(_backend_data().rglob("model.onnx")) + sorted(FIXTURES.rglob("*.onnx"))
    models = [*_node_test_models(), *(path.read_bytes() for path in files)]
    assert len(models) > 1500, "onnx's backend test cases are missing"
    for i, data in enumerate(models):
        assert _dump(messages.parse_model(data)) == _dump(onnx.ModelProto.FromString(data)), i


def test_every_backend_test_tensor_decodes_as_onnx_decodes_it():
    onnx = require("onnx")
    from onnx import numpy_helper

    checked = 0
    for path in sorted(_backend_data().rglob("*.pb")):
        data = path.read_bytes()
        theirs = onnx.TensorProto.FromString(data)
        ours = messages.Tensor(wire.parse(data))
        assert _tensor(ours) == _tensor(theirs), path
        if theirs.data_type not in load.DTYPES or theirs.data_location == 1 or not theirs.dims and not (
                theirs.raw_data or theirs.float_data or theirs.int32_data or theirs.int64_data):
            continue  # a type Keras has no dtype for, or a sequence/map file
        got, want = load.tensor_loader(path, ours)(), numpy_helper.to_array(theirs)
        assert got.dtype == want.dtype and got.shape == want.shape and got.tobytes() == want.tobytes(), path
        checked += 1
    assert checked > 200


def test_damaged_bytes_are_a_wire_error_and_nothing_else():
    """Truncations and flipped bytes of a real model: the reading ends in a WireError or in a
    model (protobuf too accepts many damaged files); never in another exception."""
    data = (FIXTURES / "onnx" / "small_cnn_op17.onnx").read_bytes()
    rng = np.random.default_rng(0)
    cases = [data[:n] for n in rng.integers(1, len(data), 300)]
    for _ in range(300):
        damaged = bytearray(data)
        for i in rng.integers(0, len(data), 3):
            damaged[i] = int(rng.integers(0, 256))
        cases.append(bytes(damaged))
    errors = 0
    for case in cases:
        try:
            messages.parse_model(case)
        except wire.WireError:
            errors += 1
    assert errors > 100  # most damage is seen


def test_the_last_scalar_counts_and_a_repeated_message_field_merges():
    onnx = require("onnx")
    from onnx import helper

    first = helper.make_model(helper.make_graph([], "first", [], [helper.make_tensor_value_info("y", 1, [1])]),
                              producer_name="a")
    second = onnx.ModelProto(producer_name="b", graph=onnx.GraphProto(name="second"))
    data = first.SerializeToString() + second.SerializeToString()  # protobuf's merge of the two
    assert _dump(messages.parse_model(data)) == _dump(onnx.ModelProto.FromString(data))
    model = messages.parse_model(data)
    assert model.producer_name == "b" and model.graph.name == "second" and len(model.graph.output) == 1


def test_unpacked_repeated_numbers_read_like_packed_ones():
    onnx = require("onnx")
    # TensorProto dims = 1 (int64, unpacked here: -1 as ten bytes), float_data = 4 (unpacked fixed32)
    data = (wire.varint_field(1, 2) + wire.varint_field(1, -1 & 0xFFFFFFFFFFFFFFFF) + wire.float_field(4, 1.5)
            + wire.float_field(4, -2.0) + wire.varint_field(2, 1))
    ours, theirs = messages.Tensor(wire.parse(data)), onnx.TensorProto.FromString(data)
    assert _tensor(ours) == _tensor(theirs) and list(ours.dims) == [2, -1] and list(ours.float_data) == [1.5, -2.0]


def test_importing_onnx_models_imports_no_protobuf(tmp_path):
    code = ("import sys, modelmorph\n"
            f"modelmorph.convert({str(FIXTURES / 'onnx' / 'small_cnn_op17.onnx')!r}, {str(tmp_path / 'm.keras')!r})\n"
            "print(sorted(m for m in sys.modules if m.startswith(('google', 'onnx'))))\n")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"


def test_a_written_model_parses_with_onnx(tmp_path):
    import modelmorph

    onnx = require("onnx")
    modelmorph.convert(FIXTURES / "keras3" / "mlp_adam.keras", tmp_path / "m.onnx")
    model = onnx.load(str(tmp_path / "m.onnx"))
    assert model.ir_version == 8 and model.opset_import[0].version == 17
    assert {p.key: p.value for p in model.metadata_props}["source_format"] == "keras"
    assert len(model.graph.initializer) == 4 and model.graph.node


def test_a_constant_tensor_is_a_view_of_the_bytes_read_never_a_copy():
    """Five levels down (model, graph, node, attribute, tensor), a Constant's data is still the
    file's bytes: a large one is held once, not once per level."""
    onnx = require("onnx")
    from onnx import helper, numpy_helper

    value = numpy_helper.from_array(np.arange(1000, dtype=np.float32), "c")
    graph = helper.make_graph([helper.make_node("Constant", [], ["y"], value=value)], "g", [],
                              [helper.make_tensor_value_info("y", 1, [1000])])
    data = helper.make_model(graph).SerializeToString()
    tensor = messages.parse_model(data).graph.node[0].attribute[0].t
    assert isinstance(tensor.raw_data, memoryview) and tensor.raw_data.obj is data
    assert np.array_equal(load.tensor_value(tensor), np.arange(1000, dtype=np.float32))
    assert tensor.name == "c" and isinstance(tensor.name, str)
    assert onnx.ModelProto.FromString(data).graph.node[0].attribute[0].t.raw_data == tensor.raw_data
