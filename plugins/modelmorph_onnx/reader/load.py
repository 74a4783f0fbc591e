"""Opening an ``.onnx`` file as data: the protobuf parsed, every tensor's declared size checked
against the bytes that back it before anything is allocated, external data read only from
regular files inside the model's folder (CVE-2024-27318/27319: no absolute paths, no ``..``,
no symlinks)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from modelmorph import ReadError
from modelmorph.storage.safety import open_input

from . import wire

#: ONNX opsets (default domain) the importer reads.
MIN_OPSET, MAX_OPSET = 7, 21

#: Files at least this large are parsed with their large initializers' data left in the file
#: (read when used: memory stays near one tensor over the model's structure).
STREAM_FROM = 1 << 20

#: A dimension larger than this is refused (no real model has one; a hostile file may).
MAX_DIM = 1 << 31

#: ONNX TensorProto.DataType → numpy dtype name (the types a Keras model can hold).
DTYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 9: "bool",
          10: "float16", 11: "float64", 12: "uint32", 13: "uint64"}


class Onnx:
    """A parsed model: the ModelProto (:mod:`.messages`), its opset, the initializers by name
    as loaders, and the bytes parsed (``data``, for ONNX shape inference, with the input dims
    ``-O input_shape`` fixed in ``fixed_dims``: (input name, axis) → size)."""

    def __init__(self, path: Path):
        self.path = path
        self.model, raw, self.data = _parse(path)
        self.fixed_dims: dict[tuple[str, int], int] = {}
        self.graph = self.model.graph
        self.opset = _opset(path, self.model)
        self.tensors: dict[str, Callable[[], np.ndarray]] = {}
        for i, tensor in enumerate(self.graph.initializer):
            self.tensors[tensor.name] = tensor_loader(path, tensor, raw.get(i))
        for tensor in self.graph.sparse_initializer:
            raise ReadError(path, f"sparse initializer {tensor.values.name!r} is not read")


def _parse(path: Path):
    """The ModelProto (large initializers' raw data left in the file: see :mod:`.wire`), where
    that data is by initializer position, and the bytes parsed. The importer reads its own
    classes (:mod:`.messages`: protobuf costs ~40 ms to import, the ``onnx`` package half a
    second); shape inference is given the bytes (:mod:`.shapes`)."""
    from modelmorph.storage.protowire import WireError

    from .messages import parse_model

    size = path.stat().st_size
    if size >= 1 << 31:  # protobuf's own limit: a larger file is not an ONNX model
        raise ReadError(path, f"{size} bytes: an ONNX protobuf cannot exceed 2 GB")
    raw: dict[int, tuple[int, int]] = {}
    try:
        if size >= STREAM_FROM:
            try:
                stripped = wire.strip(path)
            except wire.Malformed as exc:
                raise ReadError(path, f"not an ONNX model: malformed protobuf ({exc})") from None
            data, raw = stripped.data, stripped.raw
        else:
            with open_input(path) as f:
                data = f.read()
        model = parse_model(data)
    except WireError as exc:
        raise ReadError(path, f"not an ONNX model: malformed protobuf ({exc})") from None
    if model.ir_version <= 0 or not model.HasField("graph") or not model.graph.output:
        raise ReadError(path, "not an ONNX model: no IR version or no graph with outputs")
    return model, raw, data


def _opset(path: Path, model) -> int:
    versions = {imp.domain: imp.version for imp in model.opset_import}
    opset = versions.get("", versions.get("ai.onnx"))
    if opset is None:
        opset = 1
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ReadError(path, f"opset {opset} is not read (ONNX import reads opsets {MIN_OPSET} to {MAX_OPSET})")
    return opset


def _dims(path: Path, tensor) -> tuple[int, ...]:
    dims = tuple(int(d) for d in tensor.dims)
    if any(d < 0 or d > MAX_DIM for d in dims):
        raise ReadError(path, f"tensor {tensor.name!r} declares dimensions {list(dims)[:8]}: out of range")
    return dims


def tensor_loader(path: Path, tensor, raw: tuple[int, int] | None = None) -> Callable[[], np.ndarray]:
    """A loader for a TensorProto's value, once its declared size is proven to be backed by the
    bytes in the file (inline, or at ``raw`` = (offset, length) when the parse left it there)
    or beside it (external data)."""
    dtype = DTYPES.get(tensor.data_type)
    if dtype is None:
        raise ReadError(path, f"tensor {tensor.name!r} has ONNX data type {tensor.data_type}, which is not read")
    dims = _dims(path, tensor)
    count = math.prod(dims)
    nbytes = count * np.dtype(dtype).itemsize
    if tensor.data_location == 1:  # EXTERNAL
        return _external(path, tensor, dtype, dims, nbytes)
    if raw is not None:
        offset, length = raw
        if length != nbytes:
            raise ReadError(path, f"tensor {tensor.name!r} declares {list(dims)} ({nbytes} bytes) but holds "
                                  f"{length} bytes")
        return InFile(path, tensor.name, offset, nbytes, dtype, dims)
    if tensor.HasField("raw_data"):
        if len(tensor.raw_data) != nbytes:
            raise ReadError(path, f"tensor {tensor.name!r} declares {list(dims)} ({nbytes} bytes) but holds "
                                  f"{len(tensor.raw_data)} bytes")
    else:
        held = len(_typed_values(tensor, dtype))
        if held != count:
            raise ReadError(path, f"tensor {tensor.name!r} declares {list(dims)} ({count} values) but holds {held}")

    return lambda: tensor_value(tensor)


@dataclass(frozen=True)
class InFile:
    """An initializer whose raw data the parse left in the file (little-endian, C order):
    ``nbytes`` bytes at ``offset``, read when called."""

    path: Path
    name: str
    offset: int
    nbytes: int
    dtype: str
    dims: tuple[int, ...]

    def __call__(self) -> np.ndarray:
        array = np.empty(self.nbytes // np.dtype(self.dtype).itemsize, np.dtype(self.dtype).newbyteorder("<"))
        with open_input(self.path) as f:  # read into the array: the only copy
            f.seek(self.offset)
            got = f.readinto(memoryview(array).cast("B")) if self.nbytes else 0
        if got != self.nbytes:
            raise ReadError(self.path, f"tensor {self.name!r}: the file changed while it was read")
        return array.astype(self.dtype, copy=False).reshape(self.dims)


def tensor_value(tensor) -> np.ndarray:
    """An inline TensorProto's value (raw_data, or the typed field its data type uses), once
    :func:`tensor_loader` or the caller has checked its type."""
    dtype = np.dtype(DTYPES[tensor.data_type])
    dims = tuple(int(d) for d in tensor.dims)
    if tensor.HasField("raw_data"):
        array = np.frombuffer(tensor.raw_data, dtype.newbyteorder("<")).astype(dtype)  # a writable copy
    elif dtype.name == "float16":  # float16 bit patterns in int32_data
        array = np.array(tensor.int32_data, np.uint16).view(np.float16)
    else:
        array = np.array(_typed_values(tensor, dtype.name)).astype(dtype)
    return array.reshape(dims)


def _typed_values(tensor, dtype: str):
    if dtype == "float32":
        return tensor.float_data
    if dtype == "float64":
        return tensor.double_data
    if dtype in ("int64",):
        return tensor.int64_data
    if dtype in ("uint32", "uint64"):
        return tensor.uint64_data
    return tensor.int32_data  # int8/16/32, uint8/16, bool, float16 (as bit patterns)




def _external(path: Path, tensor, dtype: str, dims: tuple, nbytes: int) -> Callable[[], np.ndarray]:
    info = {entry.key: entry.value for entry in tensor.external_data}
    location = info.get("location", "")
    where = f"tensor {tensor.name!r}: external data {location!r}"
    folder = path.resolve().parent
    parts = Path(location).parts
    if (not location or os.path.isabs(location) or "\\" in location or ":" in location
            or any(p in ("..", ".") for p in parts)):
        raise ReadError(path, f"{where} is not a plain relative path beside the model (refused)")
    current = folder
    for part in parts:
        current = current / part
        if current.is_symlink():
            raise ReadError(path, f"{where} is a symbolic link (refused)")
    target = folder.joinpath(*parts)
    if not target.is_file() or folder not in target.resolve().parents:
        raise ReadError(path, f"{where} is not a regular file inside the model's folder")
    try:
        offset = int(info.get("offset", "0"))
        length = int(info["length"]) if "length" in info else None
    except ValueError:
        raise ReadError(path, f"{where} has a malformed offset or length") from None
    size = target.stat().st_size
    if offset < 0 or (length is not None and length != nbytes) or offset + nbytes > size:
        raise ReadError(path, f"{where} declares {list(dims)} ({nbytes} bytes) at offset {offset}, which the "
                              f"{size}-byte file does not hold")

    def load() -> np.ndarray:
        with open_input(target) as f:
            f.seek(offset)
            data = f.read(nbytes)
        return np.frombuffer(data, np.dtype(dtype).newbyteorder("<")).astype(dtype).reshape(dims)

    return load


def attribute_tensor(path: Path, tensor) -> np.ndarray:
    """A Constant node's tensor attribute (checked like an initializer; never external here)."""
    if tensor.data_location == 1:
        raise ReadError(path, f"constant {tensor.name!r} keeps its value in external data (not read)")
    return tensor_loader(path, tensor)()


def attributes(node) -> dict[str, Any]:
    """A node's attributes as Python values (tensors stay TensorProtos)."""
    out: dict[str, Any] = {}
    for a in node.attribute:
        kind = a.type
        if kind == 1:
            out[a.name] = a.f
        elif kind == 2:
            out[a.name] = a.i
        elif kind == 3:
            out[a.name] = a.s.decode("utf-8", "replace")
        elif kind == 4:
            out[a.name] = a.t
        elif kind == 6:
            out[a.name] = list(a.floats)
        elif kind == 7:
            out[a.name] = list(a.ints)
        elif kind == 8:
            out[a.name] = [s.decode("utf-8", "replace") for s in a.strings]
        else:
            out[a.name] = a  # graphs, sparse tensors...: whoever needs them refuses them
    return out
