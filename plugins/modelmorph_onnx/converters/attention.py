"""MultiHeadAttention, Attention and AdditiveAttention as MatMuls and a Softmax (runs at every
opset we write)."""

from __future__ import annotations

import numpy as np

from ..builder import Value
from ..export import Call


def multi_head_attention(call: Call) -> Value:
    b, c, kwargs = call.b, call.config, call.kwargs
    for key in ("query_mask", "value_mask", "key_mask"):  # Keras mask propagation: not exported
        if kwargs.get(key) is not None:
            raise call.fail("masks propagated from earlier layers are not exported yet")
    if kwargs.get("return_attention_scores"):
        raise call.fail("return_attention_scores is not exported yet")
    if c.get("sliding_window") not in (None, 0):
        raise call.fail("a sliding attention window is not exported yet")
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
    scores = b.op1("MatMul", [q, k])  # (B, h, Tq, Tk)
    mask = _attention_mask(call, kwargs.get("attention_mask"), bool(kwargs.get("use_causal_mask")), query, key)
    if mask is not None:  # as Keras' masked softmax: masked scores become -1e9 (float16: -3e4)
        scores = b.op1("Where", [mask, scores, b.const(np.float32(-3e4 if call.half else -1e9), "masked")])
    scores = b.op1("Softmax", [scores], axis=-1)
    attended = b.op1("Transpose", [b.op1("MatMul", [scores, v])], perm=[0, 2, 1, 3])  # (B, Tq, h, v)
    merged = b.op1("Reshape", [attended, b.ints([0, 0, heads * value_dim], "merged")])
    out_kernel = call.weight("output_dense/kernel")  # (heads, value_dim, out)
    y = b.op1("MatMul", [merged, b.weight(out_kernel.reshape(heads * value_dim, -1), "output_kernel")])
    if use_bias:
        y = b.op1("Add", [y, b.weight(call.weight("output_dense/bias"), "output_bias")])
    return Value(y, (query.shape[0], query.shape[1], out_kernel.shape[-1]), query.dtype)


def _attention_mask(call: Call, given: Value | None, causal: bool, query: Value, key: Value) -> str | None:
    """A boolean (B or 1, 1, Tq, Tk) mask: the given attention_mask and/or the causal one
    (key j visible from query i when j <= i, as Keras builds it)."""
    b, parts = call.b, []
    if given is not None:
        mask = given.name if given.dtype == "bool" else b.op1("Cast", [given.name], to=9)
        parts.append(b.op1("Unsqueeze", [mask, b.ints([1], "heads_axis")]))  # one mask for every head
    if causal:
        steps_q, steps_k = query.shape[1], key.shape[1]
        if steps_q is None or steps_k is None:
            raise call.fail("use_causal_mask on sequences of unknown length is not exported yet")
        rows, cols = np.arange(steps_q)[:, None], np.arange(steps_k)[None, :]
        parts.append(b.const((cols <= rows).reshape(1, 1, steps_q, steps_k), "causal_mask"))
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else b.op1("And", parts)


def dense_attention(call: Call) -> Value | list[Value]:
    """Keras' Attention (dot or concat scores) and AdditiveAttention on [query, value(, key)]:
    softmax(scores(query, key)) @ value."""
    b, c, kwargs, additive = call.b, call.config, call.kwargs, call.layer.class_name == "AdditiveAttention"
    mask = kwargs.get("mask")
    if any(m is not None for m in (mask if isinstance(mask, (list, tuple)) else [mask])):
        raise call.fail("attention masks are not exported yet")
    if kwargs.get("use_causal_mask") or c.get("causal"):
        raise call.fail("causal attention (use_causal_mask) is not exported yet")
    tensors = [b.channels_last(v) for v in call.inputs]
    if len(tensors) not in (2, 3):
        raise call.fail("takes [query, value] or [query, value, key]")
    query, value = tensors[0], tensors[1]
    key = tensors[2] if len(tensors) > 2 else value
    if any(t.rank is None or t.rank < 3 for t in (query, value, key)):
        raise call.fail("query, value and key must be (batch, ..., steps, features)")
    mode = "concat" if additive else c.get("score_mode", "dot")
    if mode == "dot":
        rank = key.rank
        swapped = b.op1("Transpose", [key.name], perm=[*range(rank - 2), rank - 1, rank - 2])
        scores = b.op1("MatMul", [query.name, swapped])
        if c.get("use_scale"):
            scores = b.op1("Mul", [scores, b.weight(call.weight("scale"), "scale")])
    elif mode == "concat":  # sum(tanh(q[..., :, None, :] + k[..., None, :, :]), -1), scaled as each layer does
        q = b.op1("Unsqueeze", [query.name, b.ints([query.rank - 1], "axes")])  # (B, Tq, 1, d)
        k = b.op1("Unsqueeze", [key.name, b.ints([key.rank - 2], "axes")])  # (B, 1, Tv, d)
        summed = b.op1("Add", [q, k])
        if additive:
            terms = b.op1("Tanh", [summed])
            if c.get("use_scale", True):
                terms = b.op1("Mul", [terms, b.weight(call.weight("scale"), "scale")])
            scores = b.reduce("ReduceSum", terms, [query.rank], False)
        else:
            if c.get("use_scale"):
                summed = b.op1("Mul", [summed, b.weight(call.weight("scale"), "scale")])
            scores = b.reduce("ReduceSum", b.op1("Tanh", [summed]), [query.rank], False)
            scores = b.op1("Mul", [scores, b.weight(call.weight("concat_score_weight"), "concat_score_weight")])
    else:
        raise call.fail(f"score_mode {mode!r} is not exported")
    weights = b.op1("Softmax", [scores], axis=-1)
    output = Value(b.op1("MatMul", [weights, value.name]),
                   None if query.shape is None or value.shape is None else (*query.shape[:-1], value.shape[-1]),
                   query.dtype)
    if kwargs.get("return_attention_scores"):
        scores_shape = None if query.shape is None or key.shape is None else (*query.shape[:-1], key.shape[-2])
        return [output, Value(weights, scores_shape, query.dtype)]
    return output


LAYERS = {"MultiHeadAttention": multi_head_attention, "Attention": dense_attention,
          "AdditiveAttention": dense_attention}
