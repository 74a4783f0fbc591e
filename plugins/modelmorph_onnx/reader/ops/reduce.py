"""ReduceMean/Max/Sum → global pooling where they are one, else keras.ops reductions."""

from __future__ import annotations

from ..graph import Graph, Unsupported
from .common import axes_operand, keras_axis


def reduce_op(kind: str, op: str):
    def convert(g: Graph, node, a: dict) -> None:
        x = g.tensor(node.input[0])
        axes = axes_operand(g, node, a)
        if not axes:
            raise Unsupported("a reduction over every axis (the batch included)")
        axes = sorted(ax % x.rank for ax in axes)
        if 0 in axes:
            raise Unsupported("a reduction over the batch axis")
        keep = bool(a.get("keepdims", 1))
        out_shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape)) if keep else \
            tuple(d for i, d in enumerate(x.shape) if i not in axes)
        if kind and x.rank >= 3 and axes == list(range(2, x.rank)):  # global pooling
            x = g.to_cl(x, node)
            g.layer(node, f"Global{kind}Pooling{x.rank - 2}D", {"keepdims": keep}, [x], node.output[0], out_shape,
                    cl=keep)
            return
        if kind and not x.cl and 3 <= x.rank <= 5 and axes == list(range(1, x.rank - 1)):
            # global pooling of a tensor channels-last in ONNX itself (what Keras' exports hold)
            g.layer(node, f"Global{kind}Pooling{x.rank - 2}D", {"keepdims": keep}, [x], node.output[0], out_shape)
            return
        g.layer(node, op, {"axis": [keras_axis(x, ax) for ax in axes], "keepdims": keep}, [x], node.output[0],
                out_shape, cl=x.cl and keep, module="keras.src.ops.numpy")
    return convert
