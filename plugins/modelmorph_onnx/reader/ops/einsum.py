"""Einsum → keras.ops.einsum on the operands in ONNX's order, when every computed operand and
the output keep the batch as their first axis (constants may have any axes)."""

from __future__ import annotations

import numpy as np

from ..graph import Graph, Unsupported


def einsum(g: Graph, node, a: dict) -> None:
    equation = str(a["equation"]).replace(" ", "")
    if "..." in equation:
        raise Unsupported("ellipsis in the equation")
    lhs, _, rhs = equation.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(node.input):
        raise Unsupported("the equation does not name every operand")
    if not rhs:  # implicit output: the letters used once, in alphabetical order
        letters = "".join(terms)
        rhs = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    args, batch = [], None
    for term, name in zip(terms, node.input):
        t = g.tensors.get(name)
        if t is None:
            c = g.const(name)
            if c is None:
                raise Unsupported("an operand neither computed nor constant")
            args.append({"class_name": "__numpy__", "config": {"value": np.asarray(c).tolist(), "dtype": c.dtype.name}})
            continue
        if not term or (batch is not None and term[0] != batch):
            raise Unsupported("operands whose first axes differ (the batch axis)")
        batch = term[0]
        args.append(g.to_onnx_order(t, node))
    if batch is None or not rhs or rhs[0] != batch:
        raise Unsupported("an output whose first axis is not the batch")
    g.layer(node, "Einsum", {"subscripts": f"{lhs}->{rhs}"}, args, node.output[0], g.shape(node.output[0]),
            module="keras.src.ops.numpy", dtype=args[0].dtype if hasattr(args[0], "dtype") else "float32")
