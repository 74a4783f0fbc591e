"""Convolutions: plain, transposed, depthwise and separable, 1D to 3D."""

from __future__ import annotations

from typing import Callable

from . import (LayerClass, Var, bias, channels_first, int_or_none, ints, join_spatial, kernel_bias, spatial,
               transposed_length, window_length)

FAMILY = "conv"


def _conv_shape(rank: int, channels: Callable[[dict, int], int | None]):
    def shape(config: dict, shapes: list) -> tuple | None:
        split = spatial(shapes[0] if shapes else None, rank, config)
        kernel, strides = ints(config.get("kernel_size"), rank), ints(config.get("strides", 1), rank)
        dilation = ints(config.get("dilation_rate", 1), rank)
        if split is None or None in (kernel, strides, dilation):
            return None
        dims, batch, in_channels = split
        padding = config.get("padding", "valid")
        out = [window_length(d, k, padding, s, r) for d, k, s, r in zip(dims, kernel, strides, dilation)]
        return join_spatial(batch, out, channels(config, in_channels), config)

    return shape


def _transpose_shape(rank: int):
    def shape(config: dict, shapes: list) -> tuple | None:
        split = spatial(shapes[0] if shapes else None, rank, config)
        kernel, strides = ints(config.get("kernel_size"), rank), ints(config.get("strides", 1), rank)
        dilation = ints(config.get("dilation_rate", 1), rank)
        padding_out = config.get("output_padding")
        padding_out = (None,) * rank if padding_out is None else ints(padding_out, rank)
        if split is None or None in (kernel, strides, dilation, padding_out):
            return None
        dims, batch, _ = split
        padding = config.get("padding", "valid")
        out = [transposed_length(d, k, padding, s, r, p)
               for d, k, s, r, p in zip(dims, kernel, strides, dilation, padding_out)]
        return join_spatial(batch, out, config.get("filters"), config)

    return shape


def _in_channels(config: dict, shapes: list, rank: int) -> int | None:
    shape = shapes[0] if shapes else None
    if not shape or len(shape) != rank + 2:
        return None
    return int_or_none(shape[1] if channels_first(config) else shape[-1])


def _kernel_dims(config: dict, rank: int) -> tuple:
    return ints(config.get("kernel_size"), rank) or (None,) * rank


def _conv_weights(rank: int):
    def weights(config: dict, shapes: list) -> dict:
        filters, groups = int_or_none(config.get("filters")), int_or_none(config.get("groups", 1)) or 1
        channels = _in_channels(config, shapes, rank)
        per_group = channels // groups if channels is not None and channels % groups == 0 else None
        return {"kernel": (*_kernel_dims(config, rank), per_group, filters), "bias": (filters,)}

    return weights


def _transpose_weights(rank: int):
    def weights(config: dict, shapes: list) -> dict:
        filters = int_or_none(config.get("filters"))
        return {"kernel": (*_kernel_dims(config, rank), filters, _in_channels(config, shapes, rank)),
                "bias": (filters,)}

    return weights


def _depthwise_weights(rank: int):
    def weights(config: dict, shapes: list) -> dict:
        channels, multiplier = _in_channels(config, shapes, rank), int_or_none(config.get("depth_multiplier", 1))
        out = None if channels is None or multiplier is None else channels * multiplier
        return {"depthwise_kernel": (*_kernel_dims(config, rank), channels, multiplier), "bias": (out,)}

    return weights


def _separable_weights(rank: int):
    def weights(config: dict, shapes: list) -> dict:
        channels, multiplier = _in_channels(config, shapes, rank), int_or_none(config.get("depth_multiplier", 1))
        middle = None if channels is None or multiplier is None else channels * multiplier
        filters = int_or_none(config.get("filters"))
        return {"depthwise_kernel": (*_kernel_dims(config, rank), channels, multiplier),
                "pointwise_kernel": (*(1,) * rank, middle, filters), "bias": (filters,)}

    return weights


def _filters(config: dict, in_channels: int | None) -> int | None:
    return config.get("filters")


def _depthwise(config: dict, in_channels: int | None) -> int | None:
    return None if in_channels is None else in_channels * int(config.get("depth_multiplier", 1))


CLASSES = []
for _rank in (1, 2, 3):
    CLASSES += [
        LayerClass(f"Conv{_rank}D", kernel_bias(), f"{_rank}D convolution", FAMILY,
                   keras3_attributes={"kernel": "_kernel"}, output_shape=_conv_shape(_rank, _filters),
                   weight_shapes=_conv_weights(_rank)),
        LayerClass(f"Conv{_rank}DTranspose", kernel_bias(), f"{_rank}D transposed convolution", FAMILY,
                   output_shape=_transpose_shape(_rank), weight_shapes=_transpose_weights(_rank)),
    ]
for _rank in (1, 2):
    CLASSES += [
        LayerClass(f"DepthwiseConv{_rank}D", kernel_bias("depthwise_kernel"), f"{_rank}D depthwise convolution",
                   FAMILY, keras3_attributes={"depthwise_kernel": "kernel"},
                   output_shape=_conv_shape(_rank, _depthwise), weight_shapes=_depthwise_weights(_rank)),
        LayerClass(f"SeparableConv{_rank}D", lambda c: [Var("depthwise_kernel"), Var("pointwise_kernel")] + bias(c),
                   f"{_rank}D depthwise then pointwise convolution", FAMILY,
                   output_shape=_conv_shape(_rank, _filters), weight_shapes=_separable_weights(_rank)),
    ]
