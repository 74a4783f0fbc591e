"""Layers that move values: flatten, reshape, permute, repeat, pad, crop, upsample, resize."""

from __future__ import annotations

import numpy as np

from modelmorph.keras import catalogue

from ..builder import Value
from ..export import Call


def _shape(call: Call, x: Value) -> tuple | None:
    rule = catalogue.get(call.layer.class_name).output_shape
    return None if x.shape is None else rule(call.config, [x.shape])


def flatten(call: Call) -> Value:
    x = call.b.channels_last(call.x)  # Keras flattens in its own (channels-last) order
    if x.rank == 2:
        return x
    return Value(call.b.op1("Flatten", [x.name], axis=1), _shape(call, x), x.dtype)


def reshape(call: Call) -> Value:
    x = call.b.channels_last(call.x)
    target = [int(d) for d in call.config["target_shape"]]
    if len(target) >= 2 and all(d == 1 for d in target[:-1]):
        # (B, 1, ..., 1, C) holds the same values in the same order channels-first: hand that
        # layout on (squeeze-and-excitation blocks then cost no Transpose before their Conv).
        y = call.b.op1("Reshape", [x.name, call.b.ints([0, target[-1], *target[:-1]], "target_shape")])
        return Value(y, _shape(call, x), x.dtype, channels_first=True)
    y = call.b.op1("Reshape", [x.name, call.b.ints([0, *target], "target_shape")])  # 0: keep the batch
    return Value(y, _shape(call, x), x.dtype)


def permute(call: Call) -> Value:
    x = call.b.channels_last(call.x)
    y = call.b.op1("Transpose", [x.name], perm=[0, *[int(d) for d in call.config["dims"]]])
    return Value(y, _shape(call, x), x.dtype)


def repeat_vector(call: Call) -> Value:
    b = call.b
    x = b.channels_last(call.x)
    expanded = b.op1("Unsqueeze", [x.name, b.ints([1], "axes")])
    y = b.op1("Tile", [expanded, b.ints([1, int(call.config["n"]), 1], "repeats")])
    return Value(y, _shape(call, x), x.dtype)


def _pairs(value, rank: int) -> list[tuple[int, int]]:
    if isinstance(value, int):
        return [(value, value)] * rank
    if rank == 1 and len(value) == 2 and all(isinstance(v, int) for v in value):
        return [(value[0], value[1])]
    return [(v, v) if isinstance(v, int) else (v[0], v[1]) for v in value]


def _spatial_axes(b, x: Value, rank: int) -> list[int]:
    return [b.physical_axis(x, k) for k in range(1, rank + 1)]


def zero_padding(rank: int):
    def convert(call: Call) -> Value:
        b, x = call.b, call.x
        if call.config.get("data_format") == "channels_first":
            raise call.fail("data_format channels_first is not exported yet")
        begins, ends = [0] * x.rank, [0] * x.rank
        for axis, (before, after) in zip(_spatial_axes(b, x, rank), _pairs(call.config.get("padding", 1), rank)):
            begins[axis], ends[axis] = before, after
        y = b.op1("Pad", [x.name, b.ints(begins + ends, "pads")])
        return b.like(x, y, _shape(call, call.x))

    return convert


def cropping(rank: int):
    def convert(call: Call) -> Value:
        b, x = call.b, call.x
        if call.config.get("data_format") == "channels_first":
            raise call.fail("data_format channels_first is not exported yet")
        axes, starts, ends = [], [], []
        for axis, (before, after) in zip(_spatial_axes(b, x, rank), _pairs(call.config.get("cropping", 1), rank)):
            axes.append(axis), starts.append(before), ends.append(-after if after else np.iinfo(np.int64).max)
        y = b.op1("Slice", [x.name, b.ints(starts, "starts"), b.ints(ends, "ends"), b.ints(axes, "axes")])
        return b.like(x, y, _shape(call, call.x))

    return convert


def upsampling(rank: int):
    def convert(call: Call) -> Value:
        b, c = call.b, call.config
        if c.get("data_format") == "channels_first":
            raise call.fail("data_format channels_first is not exported yet")
        x = b.channels_first(call.x) if rank > 1 else b.channels_last(call.x)
        size = c.get("size", 2)
        size = [int(size)] * rank if isinstance(size, int) else [int(s) for s in size]
        scales = [1.0] * x.rank
        for axis, s in zip(_spatial_axes(b, x, rank), size):
            scales[axis] = float(s)
        if c.get("interpolation", "nearest") == "nearest":
            attrs = dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
        elif c.get("interpolation") == "bilinear":
            attrs = dict(mode="linear", coordinate_transformation_mode="half_pixel")
        else:
            raise call.fail(f"interpolation {c.get('interpolation')!r} is not exported yet")
        y = b.op1("Resize", [x.name, "", b.const(np.asarray(scales, np.float32), "scales")], **attrs)
        return b.like(x, y, _shape(call, call.x))

    return convert


def _image(call: Call) -> Value:
    """A (batch, height, width, channels) float image: what Resizing and CenterCrop export."""
    c, x = call.config, call.x
    if c.get("data_format") == "channels_first":
        raise call.fail("data_format channels_first is not exported yet")
    if x.rank != 4:
        raise call.fail("only batched images (batch, height, width, channels) are exported")
    if not x.dtype.startswith("float"):
        raise call.fail(f"a {x.dtype} image (Keras rounds and casts the result back) is not exported yet")
    return x


def resizing(call: Call) -> Value:
    """tf.image.resize (what Keras runs): bilinear as Resize linear ``half_pixel``; nearest
    (TensorFlow's floor((i + 0.5) · in/out)) as Resize nearest ``half_pixel`` rounding half up."""
    b, c = call.b, call.config
    x = b.channels_first(_image(call))
    for option in ("crop_to_aspect_ratio", "pad_to_aspect_ratio", "antialias"):
        if c.get(option):
            raise call.fail(f"{option}=True is not exported yet")
    interpolation = c.get("interpolation", "bilinear")
    if interpolation == "bilinear":
        attrs = dict(mode="linear", coordinate_transformation_mode="half_pixel")
    elif interpolation == "nearest":
        attrs = dict(mode="nearest", coordinate_transformation_mode="half_pixel", nearest_mode="round_prefer_ceil")
    else:
        raise call.fail(f"interpolation {interpolation!r} is not exported yet")
    height, width = int(c["height"]), int(c["width"])
    shape = b.op1("Shape", [x.name])
    batch_channels = b.op1("Slice", [shape, b.ints([0], "starts"), b.ints([2], "ends"), b.ints([0], "axes")])
    sizes = b.op1("Concat", [batch_channels, b.ints([height, width], "size")], axis=0)
    y = b.op1("Resize", [x.name, "", "", sizes], **attrs)
    return b.like(x, y, (x.shape[0], height, width, x.shape[3]))


def center_crop(call: Call) -> Value:
    """The centre (height, width) window, as a Slice of either layout; Keras resizes an image
    smaller than the window instead, which is refused."""
    b, c = call.b, call.config
    x = _image(call)
    height, width = int(c["height"]), int(c["width"])
    given = x.shape[1:3]
    if any(d is None for d in given):
        raise call.fail("an image of unknown height or width (Keras crops or resizes depending on it)")
    if given[0] < height or given[1] < width:
        raise call.fail(f"a {given[0]}x{given[1]} image smaller than the {height}x{width} crop "
                        "(Keras resizes it instead) is not exported")
    top, left = (given[0] - height) // 2, (given[1] - width) // 2
    axes = [b.physical_axis(x, 1), b.physical_axis(x, 2)]
    y = b.op1("Slice", [x.name, b.ints([top, left], "starts"), b.ints([top + height, left + width], "ends"),
                        b.ints(axes, "axes")])
    return b.like(x, y, (x.shape[0], height, width, x.shape[3]))


LAYERS = {"Resizing": resizing, "CenterCrop": center_crop, "Flatten": flatten, "Reshape": reshape, "Permute": permute, "RepeatVector": repeat_vector}
for _rank in (1, 2, 3):
    LAYERS[f"ZeroPadding{_rank}D"] = zero_padding(_rank)
    LAYERS[f"Cropping{_rank}D"] = cropping(_rank)
    LAYERS[f"UpSampling{_rank}D"] = upsampling(_rank)
