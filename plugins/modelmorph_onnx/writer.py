"""Writing a model as an ``.onnx`` file (weights inline, or beside it as external data)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

import modelmorph
from modelmorph import Diagnostics, LayerClass, Model, Progress, TensorRef, UsageError, WriteError
from modelmorph.keras import catalogue

from . import MAX_OPSET, MIN_OPSET, proto
from .builder import Builder, ConversionError, to_first
from .converters import LAYERS, OPERATIONS
from .export import Exporter, _leaves, is_feature_map

#: Where external data starts each tensor (runtimes may map it; aligned reads are faster).
_ALIGN = 64


def write(model: Model, path: Path, *, options: dict, diagnostics: Diagnostics, progress: Progress) -> None:
    opset = options["opset"]
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise UsageError(f"format onnx: -O opset must be from {MIN_OPSET} to {MAX_OPSET}, not {opset}")
    if not model.has_architecture:
        raise WriteError(path, "ONNX holds a computation, and this model has weights only (give one with --arch)")
    if model.compile_config:
        diagnostics.add("lossy", "ONNX holds no training configuration (loss, metrics, optimizer settings); "
                                 "it is not written")
    bfloat16 = [path for path, layer in model.iter_layers() if _computes_in_bfloat16(layer.config)]
    if bfloat16:  # float16 layers are rounded op by op (export.py); bfloat16 ones are not yet
        diagnostics.add("lossy", f"{len(bfloat16)} layer(s) compute in bfloat16 under a mixed precision policy "
                                 f"({', '.join(bfloat16[:3])}{', ...' if len(bfloat16) > 3 else ''}); the ONNX graph "
                                 "computes them in float32, so results differ slightly from Keras'")
    total = sum(w.nbytes for _, _, w in model.iter_weights())
    external = options["external_data"] == "true" or (options["external_data"] == "auto"
                                                       and total > options["external_data_threshold"])
    progress.start(total, "onnx")
    streamed = proto.StreamedModel(path.parent)
    store = _Initializers(streamed, path.with_name(path.name + ".data") if external else None, progress)
    try:
        builder = Builder(opset, store.add)
        _fill_converter_slots()
        exporter = Exporter(builder, model.metadata.get("dialect", "keras3"), OPERATIONS)
        exporter.inputs = []
        exporter.channels_first_io = options.get("layout", "channels_last") in ("channels_first", "nchw")
        output_names = _output_names(model)
        for name in output_names:
            builder.reserve(name)
        for _, layer in model.iter_layers():
            if layer.class_name == "InputLayer":
                builder.reserve(layer.name)
        try:
            outputs = exporter.model(model, None)
        except ConversionError as exc:
            raise WriteError(path, f"cannot export to ONNX: {exc}") from None
        declared = []
        for value, name, shape in zip(outputs, output_names, _output_shapes(model)):
            shape = value.shape or shape
            if exporter.channels_first_io and is_feature_map(shape, value.dtype):  # -O layout=nchw
                builder.op("Identity", [builder.channels_first(value).name], [name])
                declared.append((name, tuple(shape[p] for p in to_first(len(shape))), value.dtype))
            else:
                builder.op("Identity", [builder.channels_last(value).name], [name])
                declared.append((name, shape, value.dtype))
        graph = proto.graph(model.name or "model", builder.nodes,
                            [_value_info(name, shape, dtype) for name, shape, dtype in exporter.inputs],
                            [_value_info(name, shape, dtype) for name, shape, dtype in declared])
        header = proto.model(opset, "modelmorph", modelmorph.__version__, {
            "converted_by": f"modelmorph {modelmorph.__version__}",
            "source_format": str(model.metadata.get("source_format", "")),
            "keras_dialect": str(model.metadata.get("dialect", "keras3")),
            "keras_model_name": model.name or ""})
        store.close()
        try:
            streamed.write(path, header, graph)
        except OverflowError as exc:
            raise WriteError(path, f"{exc} (-O external_data=true)") from None
    finally:
        store.close()
        streamed.close()


def _computes_in_bfloat16(config: dict) -> bool:
    dtype = config.get("dtype") if isinstance(config, dict) else None
    name = (dtype.get("config") or {}).get("name") if isinstance(dtype, dict) else dtype
    return name in ("mixed_bfloat16", "bfloat16")


def _fill_converter_slots() -> None:
    """Put the built-in ONNX converters in the descriptors' converter slot of the catalogue at
    work, where a class has none yet: one a plugin registered (an override) stays."""
    active = catalogue.active()
    for class_name, converter in LAYERS.items():
        described = active.get(class_name)
        if described is not None and "onnx" not in described.converters:
            active.register(LayerClass(class_name, converters={"onnx": converter}))


def _output_names(model: Model) -> list[str]:
    """Keras' names for the outputs: the layers producing them (a Sequential's last layer)."""
    if model.class_name == "Sequential":
        return [model.layers[-1].name] if model.layers else []
    names, seen = [], {}
    for ref in _leaves(model.outputs):
        if isinstance(ref, TensorRef):
            count = seen.get(ref.layer, 0)
            seen[ref.layer] = count + 1
            names.append(ref.layer if count == 0 else f"{ref.layer}_{count}")
    return names


def _output_shapes(model: Model) -> list[tuple | None]:
    """The outputs' shapes as the IR's shape inference found them (for what converters leave unknown)."""
    if model.class_name == "Sequential":
        return [None]
    return [ref.shape for ref in _leaves(model.outputs) if isinstance(ref, TensorRef)]


def _value_info(name: str, shape: Any, dtype: str):
    dims = None if shape is None else ["batch" if i == 0 else d for i, d in enumerate(shape)]
    return proto.value_info(name, proto.ELEMENT_TYPES.get(dtype, 1), dims)


class _Initializers:
    """The graph's initializers, each written out as it comes: serialized into the model's
    stream, its bytes inline or appended to one external data file beside the model. No
    tensor is kept after it is added."""

    def __init__(self, streamed: "proto.StreamedModel", data_path: Path | None, progress: Progress):
        self.streamed, self.data_path, self.progress = streamed, data_path, progress
        self.file: BinaryIO | None = open(data_path, "wb") if data_path is not None else None

    def add(self, name: str, array: np.ndarray, weight: bool = True) -> None:
        array = np.asarray(array)
        if array.dtype.name not in proto.ELEMENT_TYPES:
            raise ConversionError(f"weight {name!r} has dtype {array.dtype.name}, which ONNX cannot hold")
        if self.file is None:
            self.streamed.add_initializer(proto.tensor(name, array))
        else:
            self.file.write(b"\0" * (-self.file.tell() % _ALIGN))
            start = self.file.tell()
            data = proto.raw_bytes(array)
            self.file.write(data)
            self.streamed.add_initializer(proto.tensor(name, array, (self.data_path.name, start, len(data))))
        if weight:  # constants the export makes are not in the total
            self.progress.advance(array.nbytes)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
