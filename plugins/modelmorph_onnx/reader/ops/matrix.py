"""Gemm and MatMul beyond Dense: a computed B (`keras.ops.matmul`, then α, then + βC), a C that
is not one bias per unit (added as a constant or tensor), and MatMul by a constant of rank > 2
(batched: `keras.ops.matmul` with the constant as an argument)."""

from __future__ import annotations

import numpy as np

from ..graph import Graph, Unsupported
from .common import flat_order
from .logic import operands

_NUMPY = "keras.src.ops.numpy"


def gemm(inner):
    def convert(g: Graph, node, a: dict) -> None:
        b = g.const(node.input[1]) if node.input[1] not in g.tensors else None
        c_name = node.input[2] if len(node.input) > 2 and node.input[2] else ""
        c = g.const(c_name) if c_name and c_name not in g.tensors else None
        per_unit = c is None and not c_name or (
            c is not None and b is not None and c.size in (1, (b.T if a.get("transB", 0) else b).shape[1])
            and not (c.ndim == 2 and c.shape[0] != 1))
        if b is not None and per_unit and not a.get("transA", 0):
            return inner(g, node, a)  # Dense
        if a.get("transA", 0):
            raise Unsupported("transA=1 (A's first axis is the batch)")
        x = flat_order(g, node, g.tensor(node.input[0]))
        out = node.output[0]
        if b is not None:
            operand = b.T if a.get("transB", 0) else b
            other = {"class_name": "__numpy__", "config": {"value": np.ascontiguousarray(operand).tolist(),
                                                           "dtype": operand.dtype.name}}
            units = operand.shape[1]
        else:
            y = flat_order(g, node, g.tensor(node.input[1]))
            if a.get("transB", 0):
                y = g.layer(node, "Transpose", {"axes": [1, 0]}, [y], f"{out}:bt", (y.shape[1], y.shape[0]),
                            module=_NUMPY, dtype=y.dtype)
            other, units = y, y.shape[1]
        alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
        shape = (x.shape[0], units)
        tail = c_name and beta != 0
        g.layer(node, "Matmul", {}, [x, other], out if not tail and alpha == 1 else f"{out}:ab", shape,
                module=_NUMPY, dtype=x.dtype)
        if alpha != 1:
            g.layer(node, "Multiply", {}, [g.tensor(f"{out}:ab"), alpha], out if not tail else f"{out}:ab", shape,
                    module=_NUMPY, dtype=x.dtype)
        if not tail:
            return
        if beta != 1:
            if c is None:
                raise Unsupported("beta != 1 with a computed C")
            g.values[f"{out}:c"] = (c * np.asarray(beta, c.dtype)).astype(c.dtype)
            c_name = f"{out}:c"
        args, shape, cl = operands(g, node, [f"{out}:ab", c_name])
        g.layer(node, "Add", {}, args, out, shape, cl=cl, module=_NUMPY, dtype=x.dtype)
    return convert


def matmul(inner):
    def convert(g: Graph, node, a: dict) -> None:
        w = g.const(node.input[1]) if node.input[1] not in g.tensors else None
        if w is None or w.ndim == 2 or node.input[0] not in g.tensors:
            if node.input[0] not in g.tensors:
                raise Unsupported("a constant first operand (its first axis would be the batch)")
            return inner(g, node, a)
        x = flat_order(g, node, g.tensor(node.input[0]))
        if w.ndim > x.rank:
            raise Unsupported("a constant of higher rank than the tensor (the batch axis would move)")
        value = {"class_name": "__numpy__", "config": {"value": w.tolist(), "dtype": w.dtype.name}}
        g.layer(node, "Matmul", {}, [x, value], node.output[0], g.shape(node.output[0]), module=_NUMPY, dtype=x.dtype)
    return convert
