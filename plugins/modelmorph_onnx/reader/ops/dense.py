"""Gemm, and MatMul with a constant matrix → Dense (MatMul + Add → Dense with bias)."""

from __future__ import annotations

import numpy as np

from ..fold import is_symbolic
from ..graph import Graph, T, Unsupported
from .common import broadcast, flat_order


def gemm(g: Graph, node, a: dict) -> None:
    if a.get("transA", 0):
        raise Unsupported("transA=1")
    w = g.const(node.input[1])
    if w is None:
        raise Unsupported("the weight matrix is computed, not a constant")
    x = g.tensor(node.input[0], rows_ok=True)
    kernel = w.T if a.get("transB", 0) else w  # a view of the initializer: read again when written
    if a.get("alpha", 1.0) != 1.0:
        kernel = kernel * np.float32(a["alpha"])
    c = g.const(node.input[2]) if len(node.input) > 2 else None
    bias = None
    if c is not None:
        if c.size not in (1, kernel.shape[1]) or (c.ndim == 2 and c.shape[0] != 1):
            raise Unsupported(f"bias of shape {list(c.shape)} (not one per output unit)")
        bias = np.broadcast_to(c.reshape(-1), (kernel.shape[1],)) * np.float32(a.get("beta", 1.0))
    _dense(g, node, x, kernel.astype(w.dtype, copy=False), bias, node.output[0])


def _dense(g: Graph, node, x: T, kernel: np.ndarray, bias, out: str) -> None:
    if x.rows is not None:  # flattened channels-last: the kernel's rows in the order x holds its features
        kernel = kernel[x.rows]
    x = flat_order(g, node, x)
    weights = [kernel] + ([np.ascontiguousarray(bias).astype(kernel.dtype)] if bias is not None else [])
    g.layer(node, "Dense", {"units": int(kernel.shape[1]), "activation": "linear", "use_bias": bias is not None},
            [x], out, (*x.shape[:-1], int(kernel.shape[1])), weights=weights)


def _matmul_shape(g: Graph, node, x: T, y: T) -> tuple:
    """The product's shape: the file's or inference's, else numpy's matmul rule on the operands'
    shapes (inference is asked only when that rule leaves a dim beyond the batch unknown)."""
    own = None
    if x.rank >= 2 and y.rank >= 2:
        own = (*broadcast(x.shape[:-2], y.shape[:-2], None), x.shape[-2], y.shape[-1])
    if g.shapes.known(node.output[0]) is not None or ((own is None or None in own[1:]) and node.output[0] in g.shapes):
        return g.shape(node.output[0])
    if own is None:
        raise Unsupported("a matrix product of vectors with computed operands")
    return own


def matmul(g: Graph, node, a: dict) -> None:
    w = g.const(node.input[1])
    if w is None or w.ndim != 2:
        x, y = g.tensor(node.input[0]), g.tensor(node.input[1])
        g.layer(node, "Matmul", {}, [flat_order(g, node, x), flat_order(g, node, y)], node.output[0],
                _matmul_shape(g, node, x, y), module="keras.src.ops.numpy")
        return
    x = g.tensor(node.input[0], rows_ok=True)
    out, bias = node.output[0], None
    users = g.consumers.get(out, [])
    if len(users) == 1 and users[0].op_type == "Add" and out not in g.outputs:  # MatMul + Add → Dense with bias
        add = users[0]
        other = add.input[1] if add.input[0] == out else add.input[0]
        b = g.values.get(other)
        b = b() if callable(b) else b
        if b is not None and not is_symbolic(b) and b.size == w.shape[1] and b.shape[-1] == w.shape[1]:
            bias, out = b.reshape(-1), add.output[0]
            g.skip.add(id(add))
    _dense(g, node, x, w, bias, out)
