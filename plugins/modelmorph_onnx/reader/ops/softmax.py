"""Softmax, LogSoftmax, Hardmax with both axis semantics: from opset 13 one axis; before it the
input is flattened from `axis` on, so the normalization runs over all those axes at once."""

from __future__ import annotations

from ..graph import Graph, Unsupported
from .common import keras_axis


def _axes(g: Graph, a: dict, rank: int) -> list[int]:
    if g.opset >= 13:
        return [int(a.get("axis", -1)) % rank]
    axis = int(a.get("axis", 1)) % rank
    return list(range(axis, rank))


def softmax(g: Graph, node, a: dict) -> None:
    x = g.tensor(node.input[0])
    axes = _axes(g, a, x.rank)
    if 0 in axes:
        raise Unsupported("a normalization over the batch axis")
    held = [keras_axis(x, ax) for ax in axes]
    if node.op_type == "Softmax":
        g.layer(node, "Softmax", {"axis": held[0] if len(held) == 1 else held}, [x], node.output[0], x.shape,
                cl=x.cl)
    else:
        g.layer(node, "LogSoftmax", {"axis": held[0] if len(held) == 1 else held}, [x], node.output[0], x.shape,
                cl=x.cl, module="keras.src.ops.nn")
