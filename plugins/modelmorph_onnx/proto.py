"""ONNX messages encoded by hand, without protobuf (whose import costs ~40 ms, a sixth of a
small export) or the ``onnx`` package (half a second).

Each function returns a message's encoding in protobuf's wire format, with the field numbers
of ``onnx.proto`` (proto2, so every field given is written, zero or empty included; the onnx
package judges every encoding in ``tests/onnx/test_onnx_wire_writer.py``). A model is written in one pass with at
most one tensor in memory: a ``ModelProto`` is its other fields, then field ``graph``, whose
length must come first; so the initializers are encoded as they come into a temporary file, and
the graph's length is known when the nodes are done.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Iterable

import numpy as np

from modelmorph.storage.protowire import bytes_field, float_field, length_prefix, string_field, varint_field

#: ONNX element types by numpy dtype name.
ELEMENT_TYPES = {"float32": 1, "uint8": 2, "int8": 3, "uint16": 4, "int16": 5, "int32": 6, "int64": 7, "string": 8,
                 "bool": 9, "float16": 10, "float64": 11, "uint32": 12, "uint64": 13, "bfloat16": 16}
#: The IR version each opset first shipped with (ONNX's own version table).
IR_VERSIONS = {13: 7, 14: 7, 15: 8, 16: 8, 17: 8, 18: 8, 19: 9, 20: 9, 21: 10}
#: A protobuf message cannot exceed 2 GB.
MAX_PROTOBUF = (1 << 31) - 1

# AttributeProto.AttributeType values written
FLOAT, INT, STRING, FLOATS, INTS, STRINGS = 1, 2, 3, 6, 7, 8
EXTERNAL = 1  # TensorProto.DataLocation

_GRAPH_FIELD, _INITIALIZER_FIELD = 7, 5  # ModelProto.graph, GraphProto.initializer


def node(op_type: str, inputs: Iterable[str], outputs: Iterable[str], name: str, **attrs: Any) -> bytes:
    """A NodeProto: input = 1, output = 2, name = 3, op_type = 4, attribute = 5 (the default domain)."""
    fields = [string_field(1, i) for i in inputs]
    fields += [string_field(2, o) for o in outputs]
    fields += [string_field(3, name), string_field(4, op_type)]
    fields += [bytes_field(5, attribute(key, value)) for key, value in attrs.items()]
    return b"".join(fields)


def attribute(name: str, value: Any) -> bytes:
    """An AttributeProto: name = 1, then its value (f = 2, i = 3, s = 4, floats = 7, ints = 8,
    strings = 9; repeated ones unpacked, as proto2 writes them) and type = 20."""
    if isinstance(value, (bool, int, np.integer)):
        kind, fields = INT, [varint_field(3, int(value))]
    elif isinstance(value, (float, np.floating)):
        kind, fields = FLOAT, [float_field(2, float(value))]
    elif isinstance(value, str):
        kind, fields = STRING, [bytes_field(4, value.encode())]
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        kind, fields = STRINGS, [bytes_field(9, v.encode()) for v in value]
    elif isinstance(value, (list, tuple)) and all(isinstance(v, (int, np.integer)) for v in value):
        kind, fields = INTS, [varint_field(8, int(v)) for v in value]
    elif isinstance(value, (list, tuple)):
        kind, fields = FLOATS, [float_field(7, float(v)) for v in value]
    else:
        raise TypeError(f"attribute {name!r}: no ONNX type for {type(value).__name__}")
    return b"".join([string_field(1, name), *fields, varint_field(20, kind)])


def value_info(name: str, elem_type: int, dims: Iterable | None) -> bytes:
    """A ValueInfoProto (name = 1, type = 2) of a tensor: TypeProto.tensor_type = 1 holds
    elem_type = 1 and, unless ``dims`` is None (rank unknown), shape = 2, whose dim = 1 entries
    hold dim_value = 1 (an int), dim_param = 2 (a str) or nothing (None: unknown)."""
    tensor = varint_field(1, elem_type)
    if dims is not None:
        shape = b"".join(bytes_field(1, _dimension(d)) for d in dims)
        tensor += bytes_field(2, shape)
    return string_field(1, name) + bytes_field(2, bytes_field(1, tensor))


def _dimension(d: Any) -> bytes:
    if isinstance(d, str):
        return string_field(2, d)
    return b"" if d is None else varint_field(1, int(d))


def tensor(name: str, array: np.ndarray, external: tuple[str, int, int] | None = None) -> list[bytes]:
    """A TensorProto, as pieces to write one after the other (so that a large tensor's bytes are
    not copied once more to join them): dims = 1 (unpacked), data_type = 2, name = 8, and its
    little-endian bytes inline (raw_data = 9), or where they lie in external data
    (``(relative path, offset, length)``: external_data = 13 entries, data_location = 14)."""
    head = b"".join([*(varint_field(1, d) for d in array.shape), varint_field(2, ELEMENT_TYPES[array.dtype.name]),
                     string_field(8, name)])
    if external is None:
        data = raw_bytes(array)
        return [head, length_prefix(9, len(data)), data]
    entries = [bytes_field(13, string_field(1, key) + string_field(2, str(value)))
               for key, value in zip(("location", "offset", "length"), external)]
    return [head, *entries, varint_field(14, EXTERNAL)]


def graph(name: str, nodes: list[bytes], inputs: list[bytes], outputs: list[bytes]) -> bytes:
    """A GraphProto without its initializers (:class:`StreamedModel` adds them): node = 1,
    name = 2, input = 11, output = 12."""
    return b"".join([*(bytes_field(1, n) for n in nodes), string_field(2, name),
                     *(bytes_field(11, i) for i in inputs), *(bytes_field(12, o) for o in outputs)])


def raw_bytes(array: np.ndarray) -> bytes:
    return np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes()


class StreamedModel:
    """A ``ModelProto`` written with its initializers streamed (see the module docs)."""

    def __init__(self, folder: Path):
        self._initializers: BinaryIO = tempfile.TemporaryFile(dir=folder)
        self.initializer_bytes = 0

    def add_initializer(self, pieces: list[bytes]) -> None:
        """Add a TensorProto (:func:`tensor`'s pieces) to the graph's initializers."""
        prefix = length_prefix(_INITIALIZER_FIELD, sum(len(p) for p in pieces))
        for piece in (prefix, *pieces):
            self._initializers.write(piece)
            self.initializer_bytes += len(piece)

    def write(self, path: Path, header: bytes, graph_bytes: bytes) -> None:
        """Write the model: ``header`` (:func:`model`), then field graph: ``graph_bytes``
        (:func:`graph`) and the initializers added."""
        graph_length = len(graph_bytes) + self.initializer_bytes
        if graph_length > MAX_PROTOBUF:
            raise OverflowError("the model is over 2 GB inline: write its weights as external data")
        with open(path, "wb") as out:
            out.write(header)
            out.write(length_prefix(_GRAPH_FIELD, graph_length))
            out.write(graph_bytes)
            self._initializers.seek(0)
            shutil.copyfileobj(self._initializers, out, 1 << 20)

    def close(self) -> None:
        self._initializers.close()


def model(opset: int, producer: str, version: str, props: dict[str, str]) -> bytes:
    """A ModelProto's fields but its graph: ir_version = 1, producer_name = 2, producer_version
    = 3, opset_import = 8 (domain = 1, here the default "", version = 2), metadata_props = 14
    (key = 1, value = 2)."""
    fields = [varint_field(1, IR_VERSIONS[opset]), string_field(2, producer), string_field(3, version),
              bytes_field(8, string_field(1, "") + varint_field(2, opset))]
    fields += [bytes_field(14, string_field(1, key) + string_field(2, value)) for key, value in props.items()]
    return b"".join(fields)


__all__ = ["ELEMENT_TYPES", "StreamedModel", "attribute", "graph", "model", "node", "tensor", "value_info"]
