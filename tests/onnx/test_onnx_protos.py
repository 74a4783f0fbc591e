"""modelmorph writes ONNX without the onnx package, from its own copy of part of onnx.proto:
every message and field it declares must be ONNX's (number, type, label), or the bytes lie."""

from __future__ import annotations

import pytest

from helpers import FIXTURES, require
from modelmorph_onnx.protos import onnx_subset_pb2

MESSAGES = ["AttributeProto", "ValueInfoProto", "NodeProto", "StringStringEntryProto", "ModelProto", "GraphProto",
            "TensorProto", "TensorShapeProto", "TensorShapeProto.Dimension", "TypeProto", "TypeProto.Tensor",
            "OperatorSetIdProto", "SparseTensorProto"]


def _descriptor(module, dotted: str):
    found = getattr(module, dotted.split(".")[0]).DESCRIPTOR
    for part in dotted.split(".")[1:]:
        found = found.nested_types_by_name[part]
    return found


def _repeated(field) -> bool:
    # protobuf 7 dropped FieldDescriptor.label for is_repeated
    return field.is_repeated if hasattr(field, "is_repeated") else field.label == field.LABEL_REPEATED


@pytest.mark.parametrize("message", MESSAGES)
def test_every_field_is_onnx_own(message):
    onnx_pb = require("onnx").onnx_ml_pb2
    ours, theirs = _descriptor(onnx_subset_pb2, message), _descriptor(onnx_pb, message)
    for name, field in ours.fields_by_name.items():
        real = theirs.fields_by_name.get(name)
        assert real is not None, f"{message}.{name} is not in onnx.proto"
        shape = lambda f: (f.number, f.type, _repeated(f))  # noqa: E731
        assert shape(field) == shape(real), f"{message}.{name}"
        if field.enum_type is not None:
            real_values = {v.name: v.number for v in real.enum_type.values}
            assert all(real_values.get(v.name) == v.number for v in field.enum_type.values), f"{message}.{name}"


def test_a_written_model_parses_with_onnx(tmp_path):
    import modelmorph

    onnx = require("onnx")
    modelmorph.convert(FIXTURES / "keras3" / "mlp_adam.keras", tmp_path / "m.onnx")
    model = onnx.load(str(tmp_path / "m.onnx"))
    assert model.ir_version == 8 and model.opset_import[0].version == 17
    assert {p.key: p.value for p in model.metadata_props}["source_format"] == "keras"
    assert len(model.graph.initializer) == 4 and model.graph.node
