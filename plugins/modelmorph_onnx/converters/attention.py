"""MultiHeadAttention as MatMuls and a Softmax (runs at every opset we write)."""

from __future__ import annotations

import numpy as np

from ..builder import Value
from ..export import Call


def multi_head_attention(call: Call) -> Value:
    b, c, kwargs = call.b, call.config, call.kwargs
    for key in ("attention_mask", "query_mask", "value_mask", "key_mask"):
        if kwargs.get(key) is not None:
            raise call.fail("attention masks are not exported yet")
    if kwargs.get("use_causal_mask") or kwargs.get("return_attention_scores"):
        raise call.fail("use_causal_mask and return_attention_scores are not exported yet")
    if c.get("attention_axes") not in (None, [], [1], [-2]):
        raise call.fail("attention over other axes than the sequence is not exported yet")
    tensors = [b.channels_last(v) for v in call.inputs]
    query, value = tensors[0], tensors[1] if len(tensors) > 1 else None
    key = kwargs.get("key")
    value = value if value is not None else b.channels_last(kwargs["value"])
    key = b.channels_last(key) if key is not None else (tensors[2] if len(tensors) > 2 else value)
    if query.rank != 3:
        raise call.fail("only (batch, steps, features) inputs are exported yet")
    heads, key_dim = int(c["num_heads"]), int(c["key_dim"])
    use_bias = c.get("use_bias", True)

    def project(x: Value, part: str, width: int) -> str:
        kernel = call.weight(f"{part}/kernel")  # (features, heads, width)
        y = b.op1("MatMul", [x.name, b.weight(kernel.reshape(kernel.shape[0], -1), f"{part}_kernel")])
        if use_bias:
            y = b.op1("Add", [y, b.weight(call.weight(f"{part}/bias").reshape(-1), f"{part}_bias")])
        return b.op1("Reshape", [y, b.ints([0, 0, heads, width], "heads")])  # (B, T, heads, width)

    value_dim = call.weight("value_dense/kernel").shape[-1]
    q = b.op1("Transpose", [project(query, "query_dense", key_dim)], perm=[0, 2, 1, 3])  # (B, h, Tq, k)
    q = b.op1("Mul", [q, b.const(np.float32(1.0 / np.sqrt(key_dim)), "scale")])
    k = b.op1("Transpose", [project(key, "key_dense", key_dim)], perm=[0, 2, 3, 1])  # (B, h, k, Tk)
    v = b.op1("Transpose", [project(value, "value_dense", value_dim)], perm=[0, 2, 1, 3])  # (B, h, Tv, v)
    scores = b.op1("Softmax", [b.op1("MatMul", [q, k])], axis=-1)
    attended = b.op1("Transpose", [b.op1("MatMul", [scores, v])], perm=[0, 2, 1, 3])  # (B, Tq, h, v)
    merged = b.op1("Reshape", [attended, b.ints([0, 0, heads * value_dim], "merged")])
    out_kernel = call.weight("output_dense/kernel")  # (heads, value_dim, out)
    y = b.op1("MatMul", [merged, b.weight(out_kernel.reshape(heads * value_dim, -1), "output_kernel")])
    if use_bias:
        y = b.op1("Add", [y, b.weight(call.weight("output_dense/bias"), "output_bias")])
    return Value(y, (query.shape[0], query.shape[1], out_kernel.shape[-1]), query.dtype)


LAYERS = {"MultiHeadAttention": multi_head_attention}
