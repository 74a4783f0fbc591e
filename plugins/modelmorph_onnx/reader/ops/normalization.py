"""BatchNormalization (inference form) → BatchNormalization."""

from __future__ import annotations

from ..graph import Graph, Unsupported
from .common import keras_axis


def batch_norm(g: Graph, node, a: dict) -> None:
    if any(o for o in node.output[1:]) and any(g.consumers.get(o) for o in node.output[1:] if o):
        raise Unsupported("training-mode outputs are used")
    gamma, beta, mean, var = (g.const(n) for n in node.input[1:5])
    if any(v is None for v in (gamma, beta, mean, var)):
        raise Unsupported("statistics or scale are computed, not constants")
    x = g.tensor(node.input[0])
    axis = keras_axis(x, 1)
    g.layer(node, "BatchNormalization", {"axis": axis, "epsilon": float(a.get("epsilon", 1e-5)), "center": True,
                                         "scale": True}, [x], node.output[0], x.shape, cl=x.cl,
            weights=[gamma, beta, mean, var])
