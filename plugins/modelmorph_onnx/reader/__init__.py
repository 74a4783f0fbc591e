"""Reading ``.onnx`` files: an ONNX graph → a Keras 3 functional model with the graph's interface.

:mod:`.load` parses the file as data and checks every tensor against the bytes backing it,
:mod:`.fold` evaluates what depends only on constants and static shapes, :mod:`.graph` walks
the remaining nodes across the layout change and :mod:`.ops` maps each to Keras layers
(or ``keras.ops`` operations).
The ``onnx`` package is imported here, never when the plugin loads.
"""

from __future__ import annotations

from pathlib import Path

from modelmorph import Diagnostics, Model, ReadError, Weight
from modelmorph.keras import catalogue, kerasconfig

from .graph import Graph, _name
from .load import MAX_DIM, Onnx
from .ops import CONVERTERS


def read(path: Path, *, options: dict, diagnostics: Diagnostics, arch: Model | None = None) -> Model:
    path = Path(path)
    if arch is not None:
        raise ReadError(path, "an ONNX model holds its own architecture (--arch is for weights-only files)")
    src = Onnx(path)
    graph = Graph(src, _shapes(src), CONVERTERS)
    graph.run()
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
    for layer in model.layers:
        arrays = graph.weights.get(layer.name)
        if not arrays:
            continue
        variables = catalogue.variables_of(layer.class_name, layer.config)
        if variables is None or len(variables) != len(arrays):
            raise ReadError(path, f"layer {layer.name!r} ({layer.class_name}): {len(arrays)} weights where Keras "
                                  f"keeps {0 if variables is None else len(variables)}")
        layer.weights = [Weight.from_array(v.path, a.astype("float32") if a.dtype.name == "float64" else a, v.trainable)
                         for v, a in zip(variables, arrays)]
    model.metadata.update(source_format="onnx", dialect="keras3", onnx_opset=src.opset,
                          onnx_producer=f"{src.model.producer_name} {src.model.producer_version}".strip())
    return model


def _shapes(src: Onnx) -> dict[str, tuple]:
    """Every tensor's shape the graph declares or ONNX shape inference finds: ints, a dimension's
    symbol (str) or None for unknown dims. Giant declared dims are refused."""
    import onnx

    model = src.model
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception:  # inference is a help: the file's own value_info is used when it fails
        inferred = model
    shapes: dict[str, tuple] = {}
    graph = inferred.graph
    for vi in (*graph.input, *graph.value_info, *graph.output):
        t = vi.type.tensor_type
        if not t.HasField("shape"):
            continue
        dims = []
        for d in t.shape.dim:
            if d.HasField("dim_value"):
                if not 0 <= d.dim_value <= MAX_DIM:
                    raise ReadError(src.path, f"tensor {vi.name!r} declares a dimension of {d.dim_value} (refused)")
                dims.append(int(d.dim_value))
            else:  # dim 0 is the batch (the importer keeps it apart everywhere): one symbol for it
                dims.append("N" if not dims else None)
        shapes[vi.name] = tuple(dims)
    for init in model.graph.initializer:
        shapes.setdefault(init.name, tuple(int(d) for d in init.dims))
    return shapes
