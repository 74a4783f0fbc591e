"""Reading ``.onnx`` files: an ONNX graph → a Keras 3 functional model with the graph's interface.

:mod:`.load` parses the file as data and checks every tensor against the bytes backing it,
:mod:`.fold` evaluates what depends only on constants and static shapes, :mod:`.graph` walks
the remaining nodes across the layout change and :mod:`.ops` maps each to Keras layers
(or ``keras.ops`` operations).
The file is parsed with the plugin's own subset of onnx.proto; the ``onnx`` package is imported
only when a shape needs ONNX shape inference (:mod:`.shapes`), never when the plugin loads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from modelmorph import ByteRange, Diagnostics, Model, ReadError, UsageError, Weight, dtype_name
from modelmorph.keras import catalogue, kerasconfig
from modelmorph.storage.safety import open_input

from . import info
from .graph import Graph, _name
from .load import MAX_DIM, Onnx
from .ops import CONVERTERS
from .reload import View
from .shapes import Shapes


def read(path: Path, *, options: dict, diagnostics: Diagnostics, arch: Model | None = None) -> Model:
    path = Path(path)
    if arch is not None:
        raise ReadError(path, "an ONNX model holds its own architecture (--arch is for weights-only files)")
    src = Onnx(path)
    fixed = input_shapes(options.get("input_shape"))
    _fix_input_dims(src, fixed)
    layout = options.get("layout", "channels_first")
    extra = plugin_importers(path)
    graph = Graph(src, Shapes(src), {**CONVERTERS, **extra}, channels_last=layout in ("channels_last", "nhwc"),
                  plugin_ops=frozenset(extra))
    try:
        graph.run()
    except ReadError as exc:
        hint = _symbolic_hint(src, fixed)
        if hint and any(word in exc.problem for word in ("dynamic", "statically", "symbolic")):
            raise ReadError(path, f"{exc.problem} ({hint})") from None
        raise
    layers, inputs, outputs = graph.finish()
    name = _name(src.graph.name or path.stem)
    config = {
        "module": "keras.src.models.functional", "class_name": "Functional", "registered_name": "Functional",
        "config": {"name": name, "trainable": True, "layers": layers,
                   "input_layers": inputs[0] if len(inputs) == 1 else inputs,
                   "output_layers": outputs[0] if len(outputs) == 1 else outputs},
        "build_config": None, "compile_config": None,
    }
    try:
        model = kerasconfig.read_model_config(config, diagnostics)
    except ValueError as exc:
        raise ReadError(path, f"the Keras model built from the graph is malformed: {exc}") from None
    src_file = _opener(path, model)
    for layer in model.layers:
        arrays = graph.weights.get(layer.name)
        if not arrays:
            continue
        variables = catalogue.variables_of(layer.class_name, layer.config)
        if variables is None or len(variables) != len(arrays):
            raise ReadError(path, f"layer {layer.name!r} ({layer.class_name}): {len(arrays)} weights where Keras "
                                  f"keeps {0 if variables is None else len(variables)}")
        layer.weights = [_weight(v.path, a, v.trainable, src_file) for v, a in zip(variables, arrays)]
    model.metadata.update(source_format="onnx", dialect="keras3", onnx_opset=src.opset,
                          onnx_producer=f"{src.model.producer_name} {src.model.producer_version}".strip())
    summary = info.describe(src)  # for `modelmorph info`
    model.metadata["format_summary"] = {"data": summary, "lines": info.render(summary)}
    return model


def _weight(path: str, value: np.ndarray | View, trainable: bool, src_file) -> Weight:
    """A Keras weight from what a converter gave: an array, or a view of an initializer read
    again when written (float64 held as float32, as Keras holds it)."""
    if isinstance(value, np.ndarray):
        return Weight.from_array(path, value.astype("float32") if value.dtype.name == "float64" else value, trainable)
    if value.dtype.name == "float64":
        return Weight(path, value.shape, "float32", trainable, loader=lambda: value().astype("float32"))
    raw = None
    if value.whole is not None:  # the bytes as the .onnx holds them: a writer may copy them as they are
        raw = ByteRange(src_file(), value.whole.offset, value.whole.nbytes)
    return Weight(path, value.shape, dtype_name(value.dtype), trainable, loader=value, raw=raw)


def _opener(path: Path, model: Model):
    """The source file opened once, when the first weight says where its bytes lie in it."""
    opened: list = []

    def get():
        if not opened:
            opened.append(open_input(path))
            model.on_close(opened[0].close)
        return opened[0]

    return get


#: The converter slot of a layer class descriptor where a plugin puts ONNX importers:
#: ``LayerClass(..., converters={IMPORT_SLOT: {(domain, op_type): importer}})``.
IMPORT_SLOT = "onnx-import"


def plugin_importers(path: Path) -> dict:
    """Importers plugins put in the active catalogue's ``onnx-import`` converter slots, keyed as
    the graph looks them up: the op type for the default domain, else (domain, op type)."""
    out: dict = {}
    for class_name in catalogue.known_classes():
        spec = catalogue.get(class_name)
        table = spec.converters.get(IMPORT_SLOT) if spec is not None else None
        if not table:
            continue
        if not isinstance(table, dict):
            raise ReadError(path, f"layer class {class_name!r}: the {IMPORT_SLOT} converters must be a dict "
                                  f"{{(domain, op_type): importer}}")
        for key, importer in table.items():
            if not (isinstance(key, tuple) and len(key) == 2 and all(isinstance(k, str) for k in key)
                    and callable(importer)):
                raise ReadError(path, f"layer class {class_name!r}: {IMPORT_SLOT} entry {key!r} is not "
                                      f"(domain, op_type): callable")
            domain, op = key
            out[op if domain in ("", "ai.onnx") else (domain, op)] = importer
    return out


def input_shapes(text: str | None) -> dict[str, list[int | None]]:
    """``-O input_shape=NAME:DIMS[,NAME:DIMS...]``: DIMS are ``x``-separated, each a whole
    number or ``?``/``N`` (left as the graph declares it). The name is everything before the
    last ``:`` (names such as ``input:0`` work)."""
    out: dict[str, list[int | None]] = {}
    if not text:
        return out
    for item in text.split(","):
        name, sep, dims = item.strip().rpartition(":")
        if not sep or not name or not dims:
            raise UsageError(f"-O input_shape: {item.strip()!r} is not NAME:DIMS (e.g. input:1x3x224x224)")
        values: list[int | None] = []
        for d in dims.lower().split("x"):
            if d.strip() in ("?", "n"):
                values.append(None)
            elif d.strip().isdigit() and 0 < int(d) <= MAX_DIM:
                values.append(int(d))
            else:
                raise UsageError(f"-O input_shape: {item.strip()!r}: {d!r} is not a dimension "
                                 f"(a positive number, or ? to keep the graph's)")
        if name in out:
            raise UsageError(f"-O input_shape: {name!r} is given twice")
        out[name] = values
    return out


def _fix_input_dims(src: Onnx, fixed: dict[str, list[int | None]]) -> None:
    """Write the given dims into the parsed graph's inputs (before any shape is looked up). The batch
    (dim 0) is left symbolic where the graph has it so: the importer keeps the batch apart."""
    if not fixed:
        return
    inputs = {vi.name: vi for vi in src.graph.input if vi.name not in src.tensors}
    for name, dims in fixed.items():
        vi = inputs.get(name)
        if vi is None:
            raise UsageError(f"-O input_shape: {src.path} has no graph input {name!r} "
                             f"(inputs: {', '.join(inputs) or 'none'})")
        shape = vi.type.tensor_type.shape.dim
        if len(shape) != len(dims):
            raise UsageError(f"-O input_shape: input {name!r} has rank {len(shape)}, not {len(dims)}")
        for i, (d, want) in enumerate(zip(shape, dims)):
            if want is None:
                continue
            if d.HasField("dim_value"):
                if d.dim_value != want:
                    raise UsageError(f"-O input_shape: input {name!r} dim {i} is {d.dim_value} in the graph, "
                                     f"not {want}")
            elif i > 0:
                d.dim_value = want  # clears dim_param (a oneof)
                src.fixed_dims[name, i] = want


def _symbolic_hint(src: Onnx, fixed: dict) -> str:
    """A pointer to -O input_shape when a graph input has symbolic dims beyond the batch."""
    names = [vi.name for vi in src.graph.input if vi.name not in src.tensors
             and any(not d.HasField("dim_value") for d in vi.type.tensor_type.shape.dim[1:])]
    if not names:
        return ""
    return f"input {names[0]!r} has symbolic dimensions: fix them with -O input_shape={names[0]}:DIMS"
