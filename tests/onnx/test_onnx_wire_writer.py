"""The ONNX writer encodes its messages by hand (``modelmorph_onnx.proto``, no protobuf at run
time): the onnx package, built on protobuf, is the judge of every encoding it makes."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from helpers import FIXTURES, require
from modelmorph_onnx import proto

pytestmark = pytest.mark.interop

ATTRIBUTES = [("axis", 0), ("axis", -1), ("big", 1 << 40), ("flag", True), ("alpha", 0.2), ("zero", 0.0),
              ("mode", "constant"), ("mode", ""), ("perm", [0, 3, 1, 2]), ("pads", [-1, 0, 2**33]),
              ("scales", [1.0, 2.5]), ("names", ["a", "bé"]), ("np_int", np.int64(-7)), ("np_float", np.float32(0.5))]


@pytest.mark.parametrize("name, value", ATTRIBUTES, ids=[f"{n}={v!r}" for n, v in ATTRIBUTES])
def test_attribute_is_what_onnx_makes(name, value):
    onnx = require("onnx")
    expected = onnx.helper.make_attribute(name, value.item() if isinstance(value, np.generic) else value)
    assert onnx.AttributeProto.FromString(proto.attribute(name, value)) == expected


def test_an_empty_list_attribute_is_a_list_of_strings():
    onnx = require("onnx")
    parsed = onnx.AttributeProto.FromString(proto.attribute("empty", []))
    assert parsed.name == "empty" and parsed.type == onnx.AttributeProto.STRINGS and not parsed.strings


def test_node_is_what_onnx_makes():
    onnx = require("onnx")
    attrs = {"kernel_shape": [3, 3], "group": 1, "auto_pad": "NOTSET", "epsilon": 1e-5}
    encoded = proto.node("Conv", ["x", "w", ""], ["y"], "conv/Conv", **attrs)
    expected = onnx.NodeProto(op_type="Conv", input=["x", "w", ""], output=["y"], name="conv/Conv")
    expected.attribute.extend(onnx.helper.make_attribute(k, v) for k, v in attrs.items())  # in the order given
    assert onnx.NodeProto.FromString(encoded) == expected


@pytest.mark.parametrize("dims", [None, [], ["batch", 224, 224, 3], ["batch", None, 0]])
def test_value_info_is_what_onnx_makes(dims):
    onnx = require("onnx")
    expected = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, dims)
    parsed = onnx.ValueInfoProto.FromString(proto.value_info("x", 1, dims))
    assert parsed == expected
    # a scalar's shape is known (rank 0), an unknown shape is left out
    assert parsed.type.tensor_type.HasField("shape") == (dims is not None)


@pytest.mark.parametrize("array", [np.arange(12, dtype=np.float32).reshape(3, 4), np.array([-5, 2**40], np.int64),
                                   np.zeros((0, 3), np.float32), np.float16(1.5).reshape(()), np.array([True, False])],
                         ids=["float32", "int64", "empty", "float16-scalar", "bool"])
def test_tensor_is_what_onnx_makes(array):
    onnx = require("onnx")
    expected = onnx.numpy_helper.from_array(array, "w")
    assert onnx.TensorProto.FromString(b"".join(proto.tensor("w", array))) == expected


def test_external_tensor_is_what_onnx_makes():
    onnx = require("onnx")
    expected = onnx.TensorProto(name="w", dims=[2, 2], data_type=onnx.TensorProto.FLOAT,
                                data_location=onnx.TensorProto.EXTERNAL)
    for key, value in (("location", "m.onnx.data"), ("offset", "64"), ("length", "16")):
        expected.external_data.add(key=key, value=value)
    encoded = b"".join(proto.tensor("w", np.zeros((2, 2), np.float32), ("m.onnx.data", 64, 16)))
    assert onnx.TensorProto.FromString(encoded) == expected


def test_streamed_model_is_one_model_proto(tmp_path):
    """Header, graph and the initializers streamed after it make one ModelProto."""
    onnx = require("onnx")
    streamed = proto.StreamedModel(tmp_path)
    weight = np.arange(6, dtype=np.float32).reshape(2, 3)
    streamed.add_initializer(proto.tensor("w", weight))
    graph = proto.graph("g", [proto.node("MatMul", ["x", "w"], ["y"], "mm")], [proto.value_info("x", 1, ["batch", 2])],
                        [proto.value_info("y", 1, ["batch", 3])])
    streamed.write(tmp_path / "m.onnx", proto.model(17, "modelmorph", "0", {"k": "v"}), graph)
    streamed.close()
    model = onnx.load(str(tmp_path / "m.onnx"))
    onnx.checker.check_model(model)
    assert model.ir_version == 8 and [(o.domain, o.version) for o in model.opset_import] == [("", 17)]
    assert model.producer_name == "modelmorph" and {p.key: p.value for p in model.metadata_props} == {"k": "v"}
    assert model.graph.name == "g" and [n.op_type for n in model.graph.node] == ["MatMul"]
    assert np.array_equal(onnx.numpy_helper.to_array(model.graph.initializer[0]), weight)
    runtime = require("onnxruntime")
    session = runtime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    x = np.ones((1, 2), np.float32)
    assert np.array_equal(session.run(None, {"x": x})[0], x @ weight)


def test_an_export_does_not_import_protobuf(tmp_path):
    code = ("import sys, modelmorph; modelmorph.convert(sys.argv[1], sys.argv[2]); "
            "print(sorted(m for m in sys.modules if m.startswith('google.protobuf')))")
    out = subprocess.run([sys.executable, "-c", code, str(FIXTURES / "keras3" / "mlp_adam.keras"), str(tmp_path / "m.onnx")],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]" and (tmp_path / "m.onnx").stat().st_size > 0
