"""Core layers: Dense, EinsumDense, Embedding, InputLayer, Activation and friends."""

from __future__ import annotations

import re

from . import LayerClass, Var, compute_dtype, int_or_none, kernel_bias, last_dim, same_shape

FAMILY = "core"


def _dense_shape(config: dict, shapes: list) -> tuple | None:
    units = config.get("units")
    return (*shapes[0][:-1], units) if shapes and shapes[0] and isinstance(units, int) else None


def _dense_weights(config: dict, shapes: list) -> dict:
    units = int_or_none(config.get("units"))
    return {"kernel": (last_dim(shapes), units), "bias": (units,)}


def _embedding_weights(config: dict, shapes: list) -> dict:
    return {"embeddings": (int_or_none(config.get("input_dim")), int_or_none(config.get("output_dim")))}


def _einsum_dense_weights(config: dict, shapes: list) -> dict:
    """Keras' ``_analyze_einsum_string``: each kernel letter takes the output's size where the
    output names it (from ``output_shape``), else the input's; the bias spans the output from
    its first ``bias_axes`` letter on, 1 where it is not biased."""
    equation, bias_axes = config.get("equation"), config.get("bias_axes")
    out = config.get("output_shape")
    out = [out] if isinstance(out, int) and not isinstance(out, bool) else out
    if not isinstance(equation, str) or not isinstance(out, list) or not isinstance(bias_axes, (str, type(None))):
        return {}
    plain = equation.replace("...", "0")
    left = re.match(r"0([a-zA-Z]+),([a-zA-Z]+)->0([a-zA-Z]+)", plain)
    match = re.match(r"([a-zA-Z]+),([a-zA-Z]+)->([a-zA-Z]+)", plain) or left \
        or re.match(r"([a-zA-Z]{2,})0,([a-zA-Z]+)->([a-zA-Z]+)0", plain)
    if match is None:
        return {}
    inputs, kernel, outputs = match.groups()
    shape = shapes[0] if shapes and shapes[0] is not None else None
    if shape is None:
        # The rank only matters for what an ellipsis stands for: left, one dimension (the
        # batch) past the letters, whose sizes are unknown then anyway; right, unknown.
        if "0" in plain and left is None:
            return {}
        shape = (None,) * (len(inputs) + (1 if left else 0))
    elided = len(shape) - len(inputs)
    full = [shape[0], *out]
    if elided > 0 and left:
        full[1:1] = list(shape[1:elided])
    elif elided > 0:
        full += list(shape[len(shape) - elided:])
    if left:
        in_at = {d: i + elided - len(shape) for i, d in enumerate(inputs)}
        out_at = {d: i + elided for i, d in enumerate(outputs)}
    else:
        in_at, out_at = {d: i for i, d in enumerate(inputs)}, {d: i for i, d in enumerate(outputs)}
    dims = [full[out_at[d]] if d in out_at else shape[in_at[d]] if d in in_at else False for d in kernel]
    if False in dims:
        return {}
    weights = {"kernel": tuple(int_or_none(d) for d in dims)}
    if bias_axes:
        if any(d not in outputs for d in bias_axes):
            return weights
        shift = elided if left else 0
        tail = outputs[min(outputs.find(d) for d in bias_axes):]
        bias = [int_or_none(full[outputs.index(d) + shift]) if d in bias_axes else 1 for d in tail]
        weights["bias"] = tuple(bias + ([1] * elided if not left and elided > 0 else []))
    return weights


def _einsum_dense_shape(config: dict, shapes: list) -> tuple | None:
    out = config.get("output_shape")
    out = [out] if isinstance(out, int) else out
    if not shapes or not shapes[0] or not isinstance(out, list):
        return None
    lhs = str(config.get("equation", "")).split(",")[0]
    if lhs.startswith("..."):  # output_shape also leaves out the dimensions the ellipsis stands for
        return (*shapes[0][:len(shapes[0]) - len(lhs) + 3], *out)
    return (shapes[0][0], *out)  # Keras' output_shape leaves out the batch dimension


def _embedding_shape(config: dict, shapes: list) -> tuple | None:
    dim = config.get("output_dim")
    return (*shapes[0], dim) if shapes and shapes[0] is not None and isinstance(dim, int) else None


def _input_shape(config: dict, shapes: list) -> tuple | None:
    shape = config.get("batch_shape")
    return tuple(shape) if isinstance(shape, list) else None


def _own_dtype(config: dict, dtypes: list) -> str | None:
    return compute_dtype(config) or "float32"


def _input_dtype(config: dict, dtypes: list) -> str | None:
    dtype = config.get("dtype")
    return dtype if isinstance(dtype, str) else compute_dtype(config) or "float32"


CLASSES = [
    LayerClass("Dense", kernel_bias(), "x @ kernel + bias", FAMILY, keras3_attributes={"kernel": "_kernel"},
               output_shape=_dense_shape, weight_shapes=_dense_weights),
    LayerClass("EinsumDense", lambda c: [Var("kernel")] + ([Var("bias")] if c.get("bias_axes") else []),
               "einsum(equation, x, kernel) + bias", FAMILY, keras3_attributes={"kernel": "_kernel"},
               output_shape=_einsum_dense_shape, weight_shapes=_einsum_dense_weights),
    LayerClass("Embedding", lambda c: [Var("embeddings")], "rows of a table by index", FAMILY,
               keras3_attributes={"embeddings": "_embeddings"}, output_shape=_embedding_shape,
               output_dtype=_own_dtype, weight_shapes=_embedding_weights),
    LayerClass("InputLayer", description="a model input", family=FAMILY, output_shape=_input_shape,
               output_dtype=_input_dtype),
    *(LayerClass(name, description=text, family=FAMILY, output_shape=same_shape) for name, text in (
        ("Activation", "an activation function"), ("Identity", "x"), ("Masking", "marks padded steps"))),
    # Python code: carried as data, shapes unknown.
    *(LayerClass(name, description="carried as data", family=FAMILY)
      for name in ("Lambda", "TFOpLambda", "SlicingOpLambda")),
]
