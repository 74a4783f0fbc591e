"""Core layers: Dense, EinsumDense, Embedding, and the layers that are the identity at inference."""

from __future__ import annotations

import string

from ..builder import Value
from ..export import Call
from .activations import apply


def dense(call: Call) -> Value:
    b = call.b
    x = b.channels_last(call.x)
    kernel = call.weight("kernel")
    y = b.op1("MatMul", [x.name, b.weight(kernel, "kernel")])
    if call.config.get("use_bias", True):
        y = b.op1("Add", [y, b.weight(call.weight("bias"), "bias")])
    shape = None if x.shape is None else (*x.shape[:-1], kernel.shape[-1])
    return apply(b, Value(y, shape, x.dtype), call.config.get("activation"), call.dialect)


def einsum_dense(call: Call) -> Value:
    """ONNX Einsum with the layer's equation; the bias is added as Keras shaped it (numpy
    broadcasting over the trailing axes, which ONNX's Add shares)."""
    b, c = call.b, call.config
    x = b.channels_last(call.x)
    if c.get("quantization_config") or c.get("quantization_mode") or call.has_weight("kernel_scale"):
        raise call.fail("a quantized kernel is not exported")
    kernel = call.weight("kernel")
    if kernel.dtype.kind != "f":
        raise call.fail(f"a {kernel.dtype.name} kernel is not exported")
    equation = _einsum_equation(call, str(c.get("equation", "")))
    y = b.op1("Einsum", [x.name, b.weight(kernel, "kernel")], equation=equation)
    if c.get("bias_axes"):
        y = b.op1("Add", [y, b.weight(call.weight("bias"), "bias")])
    return apply(b, Value(y, _einsum_shape(equation, x.shape, kernel.shape), x.dtype), c.get("activation"),
                 call.dialect)


def _einsum_shape(equation: str, x: tuple | None, kernel: tuple) -> tuple | None:
    """The output's shape from the operands' (the equation's ellipsis stands for input axes)."""
    if x is None:
        return None
    inputs, _, output = equation.partition("->")
    term_x, term_k = inputs.split(",")
    sizes = dict(zip(term_k, kernel))
    if "..." in term_x:
        before, after = term_x.split("...")
        ellipsis = x[len(before):len(x) - len(after)]
        named = [*zip(before, x[:len(before)]), *zip(after, x[len(x) - len(after):])]
    else:
        ellipsis, named = (), list(zip(term_x, x))
    sizes.update((letter, size) for letter, size in named if size is not None or letter not in sizes)
    before, dots, after = output.partition("...")
    return (*(sizes.get(ch) for ch in before), *(ellipsis if dots else ()), *(sizes.get(ch) for ch in after))


def _einsum_equation(call: Call, equation: str) -> str:
    """The equation as ONNX reads it: two operands and an explicit output, spaces removed."""
    equation = equation.replace(" ", "")
    inputs, arrow, output = equation.partition("->")
    terms = inputs.split(",")
    if not arrow or len(terms) != 2 or not all(ch.isalpha() or ch in ",.->" for ch in equation):
        raise call.fail(f"the equation {equation!r} is not one ONNX's Einsum reads")
    for term in (*terms, output):
        if "." in term.replace("...", "") or term.count("...") > 1:
            raise call.fail(f"the equation {equation!r} is not one ONNX's Einsum reads")
    if any(ch.isupper() for ch in equation):  # onnxruntime reads lower case letters only: rename
        used = {ch for ch in equation if ch.islower()}
        free = iter(ch for ch in string.ascii_lowercase if ch not in used)
        renamed = {}
        for ch in equation:
            if ch.isupper() and ch not in renamed:
                renamed[ch] = next(free, None)
                if renamed[ch] is None:
                    raise call.fail(f"the equation {equation!r} uses more than 26 letters")
        equation = "".join(renamed.get(ch, ch) for ch in equation)
    return equation


def embedding(call: Call) -> Value:
    b, x = call.b, call.x
    if call.config.get("mask_zero"):
        raise call.fail("mask_zero: masks are not exported to ONNX yet")
    indices = x.name if x.dtype in ("int32", "int64") else b.op1("Cast", [x.name], to=7)
    table = call.weight("embeddings")
    y = b.op1("Gather", [b.weight(table, "embeddings"), indices], axis=0)
    return Value(y, None if x.shape is None else (*x.shape, table.shape[-1]), "float32")


def identity(call: Call) -> Value:
    return call.x


LAYERS = {"Dense": dense, "EinsumDense": einsum_dense, "Embedding": embedding, "Identity": identity}
for _name in ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianDropout",
              "GaussianNoise", "AlphaDropout", "ActivityRegularization", "RandomFlip", "RandomRotation", "RandomZoom",
              "RandomTranslation", "RandomContrast"):
    LAYERS[_name] = identity
