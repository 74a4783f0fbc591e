"""ONNX messages read from the protobuf wire format by hand (:mod:`modelmorph.storage.protowire`),
without protobuf, whose import costs ~40 ms, a sixth of a small import.

Each class is the part of one ``onnx.proto`` message the importer reads, with the same names
(so the importer reads it as it would read protobuf's), the field numbers of ``onnx.proto`` in
:data:`FIELDS` (``tests/onnx/test_onnx_messages.py`` checks them against the ``onnx`` package's
own descriptors) and protobuf's reading rules: a scalar's last value counts, a message field
given twice is merged, repeated numbers are read packed or not, an absent field reads as its
default, and :meth:`HasField` tells the optional fields the importer asks about. Strings must
be UTF-8. Fields not listed are skipped: ONNX shape inference, which needs the whole model, is
given the file's bytes (:attr:`.load.Onnx.data`), never these objects. A malformed message raises
:class:`~modelmorph.storage.protowire.WireError`.
"""

from __future__ import annotations

import struct

import numpy as np

from modelmorph.storage import protowire as wire

#: Field numbers read, by message (those of onnx.proto).
FIELDS = {
    "ModelProto": {"ir_version": 1, "producer_name": 2, "producer_version": 3, "graph": 7, "opset_import": 8},
    "OperatorSetIdProto": {"domain": 1, "version": 2},
    "GraphProto": {"node": 1, "name": 2, "initializer": 5, "input": 11, "output": 12, "value_info": 13,
                   "sparse_initializer": 15},
    "NodeProto": {"input": 1, "output": 2, "name": 3, "op_type": 4, "attribute": 5, "domain": 7},
    "AttributeProto": {"name": 1, "f": 2, "i": 3, "s": 4, "t": 5, "floats": 7, "ints": 8, "strings": 9, "type": 20},
    "TensorProto": {"dims": 1, "data_type": 2, "float_data": 4, "int32_data": 5, "int64_data": 7, "name": 8,
                    "raw_data": 9, "double_data": 10, "uint64_data": 11, "external_data": 13, "data_location": 14},
    "StringStringEntryProto": {"key": 1, "value": 2},
    "SparseTensorProto": {"values": 1},
    "ValueInfoProto": {"name": 1, "type": 2},
    "TypeProto": {"tensor_type": 1},
    "TypeProto.Tensor": {"elem_type": 1, "shape": 2},
    "TensorShapeProto": {"dim": 1},
    "TensorShapeProto.Dimension": {"dim_value": 1, "dim_param": 2},
}


def _f(message: str) -> dict[str, int]:
    return FIELDS[message]


_MODEL, _OPSET, _GRAPH, _NODE = _f("ModelProto"), _f("OperatorSetIdProto"), _f("GraphProto"), _f("NodeProto")
_ATTR, _TENSOR, _ENTRY = _f("AttributeProto"), _f("TensorProto"), _f("StringStringEntryProto")
_VALUE_INFO, _TYPE, _TYPE_TENSOR = _f("ValueInfoProto"), _f("TypeProto"), _f("TypeProto.Tensor")
_SHAPE, _DIM = _f("TensorShapeProto"), _f("TensorShapeProto.Dimension")
_EMPTY: wire.Fields = {}


def _message(fields: wire.Fields, number: int) -> wire.Fields:
    """A singular message field (its occurrences merged); an absent one reads as empty."""
    found = wire.message(fields, number)
    return _EMPTY if found is None else found


def _int64s(fields: wire.Fields, number: int) -> list[int]:
    return wire.repeated_ints(fields, number, wire.to_int64)


class Model:
    __slots__ = ("ir_version", "producer_name", "producer_version", "opset_import", "graph", "_has_graph")

    def __init__(self, fields: wire.Fields):
        self.ir_version = wire.int64(fields, _MODEL["ir_version"])
        self.producer_name = wire.text(fields, _MODEL["producer_name"])
        self.producer_version = wire.text(fields, _MODEL["producer_version"])
        self.opset_import = [OperatorSetId(f) for f in wire.messages(fields, _MODEL["opset_import"])]
        self._has_graph = wire.has(fields, _MODEL["graph"], wire.LENGTH)
        self.graph = Graph(_message(fields, _MODEL["graph"]))

    def HasField(self, name: str) -> bool:  # noqa: N802 (protobuf's name)
        if name != "graph":
            raise ValueError(name)
        return self._has_graph


class OperatorSetId:
    __slots__ = ("domain", "version")

    def __init__(self, fields: wire.Fields):
        self.domain = wire.text(fields, _OPSET["domain"])
        self.version = wire.int64(fields, _OPSET["version"])


class Graph:
    __slots__ = ("node", "name", "initializer", "sparse_initializer", "input", "output", "value_info")

    def __init__(self, fields: wire.Fields):
        self.node = [Node(f) for f in wire.messages(fields, _GRAPH["node"])]
        self.name = wire.text(fields, _GRAPH["name"])
        self.initializer = [Tensor(f) for f in wire.messages(fields, _GRAPH["initializer"])]
        self.sparse_initializer = [SparseTensor(f) for f in wire.messages(fields, _GRAPH["sparse_initializer"])]
        self.input = [ValueInfo(f) for f in wire.messages(fields, _GRAPH["input"])]
        self.output = [ValueInfo(f) for f in wire.messages(fields, _GRAPH["output"])]
        self.value_info = [ValueInfo(f) for f in wire.messages(fields, _GRAPH["value_info"])]


class Node:
    __slots__ = ("input", "output", "name", "op_type", "domain", "attribute")

    def __init__(self, fields: wire.Fields):
        self.input = wire.texts(fields, _NODE["input"])
        self.output = wire.texts(fields, _NODE["output"])
        self.name = wire.text(fields, _NODE["name"])
        self.op_type = wire.text(fields, _NODE["op_type"])
        self.domain = wire.text(fields, _NODE["domain"])
        self.attribute = [Attribute(f) for f in wire.messages(fields, _NODE["attribute"])]


class Attribute:
    __slots__ = ("name", "type", "f", "i", "s", "t", "floats", "ints", "strings")

    def __init__(self, fields: wire.Fields):
        self.name = wire.text(fields, _ATTR["name"])
        self.type = wire.int32(fields, _ATTR["type"])
        self.f = struct.unpack("<f", wire.fixed32(fields, _ATTR["f"]).to_bytes(4, "little"))[0]
        self.i = wire.int64(fields, _ATTR["i"])
        self.s = bytes(wire.raw(fields, _ATTR["s"]))
        self.t = Tensor(_message(fields, _ATTR["t"]))
        floats = wire.repeated_fixed(fields, _ATTR["floats"], 4)
        self.floats = list(struct.unpack(f"<{len(floats) // 4}f", floats))
        self.ints = _int64s(fields, _ATTR["ints"])
        self.strings = [bytes(value) for kind, value in fields.get(_ATTR["strings"], ()) if kind == wire.LENGTH]


class Tensor:
    """A TensorProto; its typed data fields are numpy arrays of the field's type."""

    __slots__ = ("dims", "data_type", "name", "raw_data", "float_data", "int32_data", "int64_data", "double_data",
                 "uint64_data", "external_data", "data_location")

    def __init__(self, fields: wire.Fields):
        self.dims = _int64s(fields, _TENSOR["dims"])
        self.data_type = wire.int32(fields, _TENSOR["data_type"])
        self.name = wire.text(fields, _TENSOR["name"])
        self.raw_data = wire.raw(fields, _TENSOR["raw_data"], None)  # None: absent; else a view of the file's bytes
        self.float_data = np.frombuffer(wire.repeated_fixed(fields, _TENSOR["float_data"], 4), "<f4")
        self.double_data = np.frombuffer(wire.repeated_fixed(fields, _TENSOR["double_data"], 8), "<f8")
        self.int32_data = np.array(wire.repeated_ints(fields, _TENSOR["int32_data"], wire.to_int32), np.int32)
        self.int64_data = np.array(_int64s(fields, _TENSOR["int64_data"]), np.int64)
        self.uint64_data = np.array(wire.repeated_ints(fields, _TENSOR["uint64_data"]), np.uint64)
        self.external_data = [Entry(f) for f in wire.messages(fields, _TENSOR["external_data"])]
        self.data_location = wire.int32(fields, _TENSOR["data_location"])

    def HasField(self, name: str) -> bool:  # noqa: N802
        if name != "raw_data":
            raise ValueError(name)
        return self.raw_data is not None


class Entry:
    __slots__ = ("key", "value")

    def __init__(self, fields: wire.Fields):
        self.key = wire.text(fields, _ENTRY["key"])
        self.value = wire.text(fields, _ENTRY["value"])


class SparseTensor:
    __slots__ = ("values",)

    def __init__(self, fields: wire.Fields):
        self.values = Tensor(_message(fields, FIELDS["SparseTensorProto"]["values"]))


class ValueInfo:
    __slots__ = ("name", "type")

    def __init__(self, fields: wire.Fields):
        self.name = wire.text(fields, _VALUE_INFO["name"])
        self.type = TypeInfo(_message(fields, _VALUE_INFO["type"]))


class TypeInfo:
    """A TypeProto: only its tensor type is read (a sequence or map type reads as a tensor of
    element type 0, as protobuf's default)."""

    __slots__ = ("tensor_type",)

    def __init__(self, fields: wire.Fields):
        self.tensor_type = TensorType(_message(fields, _TYPE["tensor_type"]))


class TensorType:
    __slots__ = ("elem_type", "shape", "_has_shape")

    def __init__(self, fields: wire.Fields):
        self.elem_type = wire.int32(fields, _TYPE_TENSOR["elem_type"])
        self._has_shape = wire.has(fields, _TYPE_TENSOR["shape"], wire.LENGTH)
        self.shape = Shape(_message(fields, _TYPE_TENSOR["shape"]))

    def HasField(self, name: str) -> bool:  # noqa: N802
        if name != "shape":
            raise ValueError(name)
        return self._has_shape


class Shape:
    __slots__ = ("dim",)

    def __init__(self, fields: wire.Fields):
        self.dim = [Dimension(f) for f in wire.messages(fields, _SHAPE["dim"])]


class Dimension:
    """A dimension: ``dim_value`` (an int) or ``dim_param`` (a name), a oneof; neither: unknown.
    Should a file hold both, the value counts (protobuf keeps whichever came last)."""

    __slots__ = ("_value", "dim_param")

    def __init__(self, fields: wire.Fields):
        self._value = wire.int64(fields, _DIM["dim_value"]) if wire.has(fields, _DIM["dim_value"], wire.VARINT) else None
        self.dim_param = "" if self._value is not None else wire.text(fields, _DIM["dim_param"])

    @property
    def dim_value(self) -> int:
        return 0 if self._value is None else self._value

    @dim_value.setter
    def dim_value(self, value: int) -> None:  # as protobuf's: the oneof's other member is cleared
        self._value, self.dim_param = int(value), ""

    def HasField(self, name: str) -> bool:  # noqa: N802
        if name == "dim_value":
            return self._value is not None
        if name == "dim_param":
            return bool(self.dim_param)
        raise ValueError(name)


def parse_model(data: bytes) -> Model:
    """The ModelProto in ``data``; raises :class:`~modelmorph.storage.protowire.WireError`.
    Parsed through a memoryview: a tensor's bytes, however deep (a Constant node's), are views
    of ``data``, never copied level by level."""
    return Model(wire.parse(memoryview(data)))


__all__ = ["FIELDS", "Model", "parse_model"]
