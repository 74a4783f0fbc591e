"""Core layers: Dense, Embedding, and the layers that are the identity at inference."""

from __future__ import annotations

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


LAYERS = {"Dense": dense, "Embedding": embedding, "Identity": identity}
for _name in ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianDropout",
              "GaussianNoise", "AlphaDropout", "ActivityRegularization", "RandomFlip", "RandomRotation", "RandomZoom",
              "RandomTranslation", "RandomContrast"):
    LAYERS[_name] = identity
