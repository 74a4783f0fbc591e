"""ONNX messages built and written without the ``onnx`` package (importing it costs half a second).

The messages come from our own copy of the part of ``onnx.proto`` we write
(``protos/onnx_subset.proto``: same field numbers, so the bytes are an ONNX model). A model is
written in one pass with at most one tensor in memory: a ``ModelProto`` is its other fields, then
field ``graph``, whose length must come first; so the initializers are serialized as they come
into a temporary file, and the graph's length is known when the nodes are done.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Iterable

import numpy as np

from .protos.onnx_subset_pb2 import (AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
                                     TensorProto, ValueInfoProto)

#: ONNX element types by numpy dtype name.
ELEMENT_TYPES = {"float32": 1, "uint8": 2, "int8": 3, "uint16": 4, "int16": 5, "int32": 6, "int64": 7, "string": 8,
                 "bool": 9, "float16": 10, "float64": 11, "uint32": 12, "uint64": 13, "bfloat16": 16}
#: The IR version each opset first shipped with (ONNX's own version table).
IR_VERSIONS = {13: 7, 14: 7, 15: 8, 16: 8, 17: 8, 18: 8, 19: 9, 20: 9, 21: 10}
#: A protobuf message cannot exceed 2 GB.
MAX_PROTOBUF = (1 << 31) - 1

_GRAPH_FIELD, _INITIALIZER_FIELD = 7, 5  # ModelProto.graph, GraphProto.initializer
_LENGTH_DELIMITED = 2


def node(op_type: str, inputs: Iterable[str], outputs: Iterable[str], name: str, **attrs: Any) -> NodeProto:
    proto = NodeProto(op_type=op_type, input=list(inputs), output=list(outputs), name=name)
    for key, value in attrs.items():
        proto.attribute.append(attribute(key, value))
    return proto


def attribute(name: str, value: Any) -> AttributeProto:
    a = AttributeProto(name=name)
    if isinstance(value, (bool, int, np.integer)):
        a.type, a.i = AttributeProto.INT, int(value)
    elif isinstance(value, (float, np.floating)):
        a.type, a.f = AttributeProto.FLOAT, float(value)
    elif isinstance(value, str):
        a.type, a.s = AttributeProto.STRING, value.encode()
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        a.type = AttributeProto.STRINGS
        a.strings.extend(v.encode() for v in value)
    elif isinstance(value, (list, tuple)) and all(isinstance(v, (int, np.integer)) for v in value):
        a.type = AttributeProto.INTS
        a.ints.extend(int(v) for v in value)
    elif isinstance(value, (list, tuple)):
        a.type = AttributeProto.FLOATS
        a.floats.extend(float(v) for v in value)
    else:
        raise TypeError(f"attribute {name!r}: no ONNX type for {type(value).__name__}")
    return a


def value_info(name: str, elem_type: int, dims: Iterable | None) -> ValueInfoProto:
    info = ValueInfoProto(name=name)
    tensor = info.type.tensor_type
    tensor.elem_type = elem_type
    if dims is not None:
        shape = tensor.shape
        for d in dims:
            dim = shape.dim.add()
            if isinstance(d, str):
                dim.dim_param = d
            elif d is not None:
                dim.dim_value = int(d)
    return info


def tensor(name: str, array: np.ndarray, external: tuple[str, int, int] | None = None) -> TensorProto:
    """A tensor's message: its little-endian bytes inline, or where they lie in external data
    (``(relative path, offset, length)``)."""
    proto = TensorProto(name=name, dims=list(array.shape), data_type=ELEMENT_TYPES[array.dtype.name])
    if external is None:
        proto.raw_data = raw_bytes(array)
    else:
        proto.data_location = TensorProto.EXTERNAL
        for key, value in zip(("location", "offset", "length"), external):
            entry = proto.external_data.add()
            entry.key, entry.value = key, str(value)
    return proto


def raw_bytes(array: np.ndarray) -> bytes:
    return np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes()


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload_length: int) -> bytes:
    return _varint(number << 3 | _LENGTH_DELIMITED) + _varint(payload_length)


class StreamedModel:
    """A ``ModelProto`` written with its initializers streamed (see the module docs)."""

    def __init__(self, folder: Path):
        self._initializers: BinaryIO = tempfile.TemporaryFile(dir=folder)
        self.initializer_bytes = 0

    def add_initializer(self, proto: TensorProto) -> None:
        data = proto.SerializeToString()
        record = _field(_INITIALIZER_FIELD, len(data)) + data
        self._initializers.write(record)
        self.initializer_bytes += len(record)

    def write(self, path: Path, model: ModelProto, graph: GraphProto) -> None:
        """Write ``model`` with ``graph`` (its fields but the initializers) and the initializers added."""
        graph_bytes = graph.SerializeToString()
        graph_length = len(graph_bytes) + self.initializer_bytes
        if graph_length > MAX_PROTOBUF:
            raise OverflowError("the model is over 2 GB inline: write its weights as external data")
        with open(path, "wb") as out:
            out.write(model.SerializeToString())
            out.write(_field(_GRAPH_FIELD, graph_length))
            out.write(graph_bytes)
            self._initializers.seek(0)
            shutil.copyfileobj(self._initializers, out, 1 << 20)

    def close(self) -> None:
        self._initializers.close()


def model(graph_name: str, opset: int, producer: str, version: str, props: dict[str, str]) -> ModelProto:
    proto = ModelProto(ir_version=IR_VERSIONS[opset], producer_name=producer, producer_version=version)
    proto.opset_import.append(OperatorSetIdProto(domain="", version=opset))
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return proto


__all__ = ["ELEMENT_TYPES", "GraphProto", "StreamedModel", "model", "node", "tensor", "value_info"]
