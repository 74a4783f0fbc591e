"""Forms of ops the first converters would compute differently from ONNX, refused before them
(each wraps the converter it guards): integer Div (ONNX truncates), Pow of an integer base by a
float exponent (ONNX keeps the base's type), Clip of integers with an open bound or with
min > max, Dropout in training mode (unless its
ratio is 0), ReduceMax/Min of an empty tensor (TensorFlow refuses it). And a reduction with
noop_with_empty_axes and no axes is the input itself."""

from __future__ import annotations

from ..graph import Graph, Unsupported

def _dtype(g: Graph, name: str) -> str | None:
    t = g.tensors.get(name)
    if t is not None:
        return t.dtype
    c = g.values.get(name)
    return getattr(c, "dtype", None) and c.dtype.name


def guard(op: str, inner):
    def convert(g: Graph, node, a: dict) -> None:
        dtype = _dtype(g, node.input[0]) or "float32"
        integer = not dtype.startswith("float")
        if op == "Div" and integer:
            raise Unsupported("integer division (ONNX truncates; Keras' divide is true division)")
        if op == "Pow" and integer and (_dtype(g, node.input[1]) or "float32") != dtype:
            raise Unsupported("an integer base and a float exponent (ONNX keeps the base's type, Keras promotes)")
        if op == "Clip" and integer and (len(node.input) < 3 or not node.input[1] or not node.input[2]):
            raise Unsupported(f"an open bound on {dtype} (Keras' clip would take a float bound)")
        if op == "Clip" and len(node.input) > 2 and node.input[1] and node.input[2]:
            low, high = g.const(node.input[1]), g.const(node.input[2])
            if low is not None and high is not None and float(low.reshape(-1)[0]) > float(high.reshape(-1)[0]):
                raise Unsupported("min greater than max")
        if op == "Dropout" and len(node.input) > 2 and node.input[2]:
            mode = g.values.get(node.input[2])
            mode = mode() if callable(mode) else mode
            ratio = g.values.get(node.input[1]) if len(node.input) > 1 and node.input[1] else None
            ratio = ratio() if callable(ratio) else ratio
            if (mode is None or bool(mode.reshape(-1)[0])) and (ratio is None or float(ratio.reshape(-1)[0]) != 0.0):
                raise Unsupported("training mode (random masks)")
        if op.startswith("Reduce") and a.get("noop_with_empty_axes", 0) and not a.get("axes") and (
                len(node.input) < 2 or not node.input[1] or (g.const(node.input[1]) is not None
                                                              and g.const(node.input[1]).size == 0)):
            g.alias(node.output[0], g.tensor(node.input[0]))  # no axes given: the input itself
            return
        if op in ("ReduceMax", "ReduceMin") and node.input[0] in g.tensors:
            x = g.tensors[node.input[0]]
            if 0 in x.shape:
                raise Unsupported("a reduction of an empty tensor")
        inner(g, node, a)
    return convert
