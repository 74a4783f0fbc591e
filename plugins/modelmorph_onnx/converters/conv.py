"""Convolutions and pooling, run channels-first as ONNX defines them."""

from __future__ import annotations

import numpy as np

from modelmorph.keras import catalogue

from ..builder import Value
from ..export import Call
from .activations import apply


def _ints(value, rank: int) -> list[int]:
    return [int(value)] * rank if isinstance(value, int) else [int(v) for v in value]


def _shape(call: Call, x: Value) -> tuple | None:
    rule = catalogue.get(call.layer.class_name).output_shape
    return None if x.shape is None else rule(call.config, [x.shape])


def _same_pads(dims, kernel, strides, dilations) -> list[int] | None:
    """Explicit pads for Keras ``same`` (TensorFlow's rule: the odd one at the end), begins then ends."""
    if dims is None or any(d is None for d in dims):
        return None
    begins, ends = [], []
    for size, k, s, d in zip(dims, kernel, strides, dilations):
        total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
        begins.append(total // 2)
        ends.append(total - total // 2)
    return begins + ends


def _padding(call: Call, x: Value, rank: int, kernel, strides, dilations) -> tuple[str, dict]:
    """(the input to convolve, the padding attributes) for the layer's ``padding``."""
    padding = call.config.get("padding", "valid")
    if padding == "valid":
        return x.name, {"pads": [0] * 2 * rank}
    if padding == "causal":  # Conv1D: all the padding before the sequence
        left = (kernel[0] - 1) * dilations[0]
        padded = call.b.op1("Pad", [x.name, call.b.ints([0, 0, left, 0, 0, 0], "pads")])
        return padded, {"pads": [0, 0]}
    dims = None if x.shape is None else list(x.shape[1:-1])
    pads = _same_pads(dims, kernel, strides, dilations)
    return x.name, {"pads": pads} if pads is not None else {"auto_pad": "SAME_UPPER"}


def _input(call: Call) -> Value:
    """The input held channels-first, as ONNX wants it (Keras channels-first layers: not yet)."""
    if call.config.get("data_format") == "channels_first":
        raise call.fail("data_format channels_first is not exported yet")
    return call.b.channels_first(call.x)


def _conv(call: Call, kernel_oi: np.ndarray, group: int, bias: bool, rank: int, x: Value) -> str:
    c, b = call.config, call.b
    kernel = list(kernel_oi.shape[2:])
    strides, dilations = _ints(c.get("strides", 1), rank), _ints(c.get("dilation_rate", 1), rank)
    source, pads = _padding(call, x, rank, kernel, strides, dilations)
    inputs = [source, b.weight(kernel_oi, "kernel")]
    if bias:
        inputs.append(b.weight(call.weight("bias"), "bias"))
    return b.op1("Conv", inputs, kernel_shape=kernel, strides=strides, dilations=dilations, group=group, **pads)


def conv(rank: int):
    def convert(call: Call) -> Value:
        x = _input(call)
        kernel = call.weight("kernel")  # (k..., in / groups, out) -> (out, in / groups, k...)
        w = np.transpose(kernel, (rank + 1, rank, *range(rank)))
        y = _conv(call, w, int(call.config.get("groups", 1) or 1), call.config.get("use_bias", True), rank, x)
        return apply(call.b, Value(y, _shape(call, call.x), x.dtype, True), call.config.get("activation"), call.dialect)

    return convert


def depthwise(rank: int):
    def convert(call: Call) -> Value:
        x = _input(call)
        kernel = call.weight("depthwise_kernel")  # (k..., C, m): output channel c * m + j
        channels = kernel.shape[rank]
        w = kernel.reshape(*kernel.shape[:rank], 1, -1)
        w = np.transpose(w, (rank + 1, rank, *range(rank)))
        y = _conv(call, w, channels, call.config.get("use_bias", True), rank, x)
        return apply(call.b, Value(y, _shape(call, call.x), x.dtype, True), call.config.get("activation"), call.dialect)

    return convert


def separable(rank: int):
    def convert(call: Call) -> Value:
        b = call.b
        x = _input(call)
        depth = call.weight("depthwise_kernel")
        channels = depth.shape[rank]
        w = np.transpose(depth.reshape(*depth.shape[:rank], 1, -1), (rank + 1, rank, *range(rank)))
        y = _conv(call, w, channels, False, rank, x)
        point = np.transpose(call.weight("pointwise_kernel"), (rank + 1, rank, *range(rank)))
        inputs = [y, b.weight(point, "pointwise_kernel")]
        if call.config.get("use_bias", True):
            inputs.append(b.weight(call.weight("bias"), "bias"))
        y = b.op1("Conv", inputs, kernel_shape=[1] * rank, strides=[1] * rank, pads=[0] * 2 * rank)
        return apply(b, Value(y, _shape(call, call.x), x.dtype, True), call.config.get("activation"), call.dialect)

    return convert


def transposed(rank: int):
    def convert(call: Call) -> Value:
        b, c = call.b, call.config
        x = _input(call)
        kernel = call.weight("kernel")  # (k..., out, in) -> (in, out, k...)
        w = np.transpose(kernel, (rank + 1, rank, *range(rank)))
        sizes = list(kernel.shape[:rank])
        strides, dilations = _ints(c.get("strides", 1), rank), _ints(c.get("dilation_rate", 1), rank)
        given = c.get("output_padding")
        padding = c.get("padding", "valid")
        begins, ends, extra = [], [], []
        for k, s, d, i in zip(sizes, strides, dilations, range(rank)):
            span = (k - 1) * d + 1
            if given is not None:  # Keras: (n - 1) s + span - 2 pad + output_padding
                pad = span // 2 if padding == "same" else 0
                begins.append(pad), ends.append(pad), extra.append(_ints(given, rank)[i])
            elif padding == "same":  # output n * s
                total = max(span - s, 0)
                begins.append(total // 2), ends.append(total - total // 2), extra.append(max(s - span, 0))
            else:  # valid: output n * s + max(span - s, 0)
                begins.append(0), ends.append(0), extra.append(max(s - span, 0))
        inputs = [x.name, b.weight(w, "kernel")]
        if c.get("use_bias", True):
            inputs.append(b.weight(call.weight("bias"), "bias"))
        y = b.op1("ConvTranspose", inputs, kernel_shape=sizes, strides=strides, dilations=dilations,
                  pads=begins + ends, output_padding=extra)
        return apply(b, Value(y, _shape(call, call.x), x.dtype, True), c.get("activation"), call.dialect)

    return convert


def pool(rank: int, op_type: str):
    def convert(call: Call) -> Value:
        b, c = call.b, call.config
        x = _input(call)
        size = _ints(c.get("pool_size", 2), rank)
        strides = size if c.get("strides") is None else _ints(c["strides"], rank)
        pads = [0] * 2 * rank
        if c.get("padding", "valid") == "same":
            pads = _same_pads(None if x.shape is None else list(x.shape[1:-1]), size, strides, [1] * rank)
            if pads is None:
                raise call.fail("padding 'same' on an input of unknown spatial size")
        extra = {"count_include_pad": 0} if op_type == "AveragePool" else {}
        y = b.op1(op_type, [x.name], kernel_shape=size, strides=strides, pads=pads, **extra)
        return Value(y, _shape(call, call.x), x.dtype, True)

    return convert


def global_pool(rank: int, op_type: str):
    def convert(call: Call) -> Value:
        b, x = call.b, call.x
        keep = bool(call.config.get("keepdims"))
        if call.config.get("data_format") == "channels_first":
            raise call.fail("data_format channels_first is not exported yet")
        axes = list(range(2, rank + 2)) if x.channels_first else list(range(1, rank + 1))
        y = b.reduce(op_type, x.name, axes, keep)
        shape = _shape(call, x)
        return Value(y, shape, x.dtype, x.channels_first and keep)

    return convert


LAYERS = {}
for _rank in (1, 2, 3):
    LAYERS[f"Conv{_rank}D"] = conv(_rank)
    LAYERS[f"Conv{_rank}DTranspose"] = transposed(_rank)
    LAYERS[f"MaxPooling{_rank}D"] = pool(_rank, "MaxPool")
    LAYERS[f"AveragePooling{_rank}D"] = pool(_rank, "AveragePool")
    LAYERS[f"GlobalMaxPooling{_rank}D"] = global_pool(_rank, "ReduceMax")
    LAYERS[f"GlobalAveragePooling{_rank}D"] = global_pool(_rank, "ReduceMean")
for _rank in (1, 2):
    LAYERS[f"DepthwiseConv{_rank}D"] = depthwise(_rank)
    LAYERS[f"SeparableConv{_rank}D"] = separable(_rank)
