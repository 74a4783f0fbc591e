"""Resize with what TensorFlow's image resize computes exactly: `linear` with `half_pixel`
(`pytorch_half_pixel` when no output size is 1) and `nearest` with `half_pixel` +
`round_prefer_ceil` (TensorFlow's floor((i + ½)·in/out); `round_prefer_floor` where no output
pixel falls on a tie), over 2 spatial axes, when the output
size is the input size times the scale exactly (TensorFlow uses in/out, ONNX the scale given).
Whole-factor linear upsampling is UpSampling2D(bilinear), other sizes keras.ops.image.resize.
Everything else goes to the nearest-neighbour converter of the shape module."""

from __future__ import annotations

from ..graph import Graph, Unsupported
from .shape import _resize_scales, resize as nearest_resize


def resize(g: Graph, node, a: dict) -> None:
    mode = a.get("mode", "nearest")
    if node.op_type != "Resize" or g.opset < 11:
        if mode in ("linear", "bilinear"):
            raise Unsupported("linear Upsample/Resize before opset 11 (asymmetric coordinates; TensorFlow's resize has none)")
        return nearest_resize(g, node, a)
    ctm = a.get("coordinate_transformation_mode", "half_pixel")
    nearest = a.get("nearest_mode", "round_prefer_floor")
    # TensorFlow's nearest is floor((i + ½)·in/out): ONNX's half_pixel with round_prefer_ceil, and
    # with round_prefer_floor too where no output pixel falls on a tie (checked once sizes are known)
    exact_nearest = mode == "nearest" and ctm == "half_pixel" and nearest in ("round_prefer_ceil", "round_prefer_floor")
    if mode == "nearest" and not exact_nearest:
        return nearest_resize(g, node, a)
    if mode not in ("linear", "nearest"):
        raise Unsupported(f"mode {mode!r}")
    if ctm not in ("half_pixel", "pytorch_half_pixel"):
        raise Unsupported(f"coordinate_transformation_mode {ctm!r} (TensorFlow's resize has half-pixel centres only)")
    if a.get("antialias", 0) or a.get("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise Unsupported("antialias or a kept aspect ratio")
    if len(node.input) > 4 or "axes" in a:
        raise Unsupported("the axes attribute")
    x = g.tensor(node.input[0])
    if x.rank != 4 or any(d is None for d in x.shape[2:]):
        raise Unsupported(f"rank {x.rank} or unknown sizes (2 spatial axes are read)")
    scales = _resize_scales(g, node, a, x)
    if len(scales) != 4 or scales[:2] != [1.0, 1.0]:
        raise Unsupported("scaling the batch or channel axis")
    sizes = [int(d * s) for d, s in zip(x.shape[2:], scales[2:])]
    if any(abs(d * s - o) > 1e-6 * o for d, s, o in zip(x.shape[2:], scales[2:], sizes)):
        raise Unsupported(f"scales {scales[2:]} that do not give whole sizes (TensorFlow would use in/out)")
    if ctm == "pytorch_half_pixel" and min(sizes) == 1:
        raise Unsupported("pytorch_half_pixel to a size of 1")
    if mode == "nearest" and nearest == "round_prefer_floor" and any(
            (2 * i + 1) * d % (2 * o) == 0 for d, o in zip(x.shape[2:], sizes) for i in range(o)):
        raise Unsupported("nearest_mode round_prefer_floor with ties (TensorFlow rounds them up)")
    x = g.to_cl(x, node)
    out_shape = (*x.shape[:2], *sizes)
    factors = [o // d if o % d == 0 else 0 for o, d in zip(sizes, x.shape[2:])]
    interpolation = "bilinear" if mode == "linear" else "nearest"
    if all(f >= 1 for f in factors):
        g.layer(node, "UpSampling2D", {"size": factors, "interpolation": interpolation}, [x], node.output[0],
                out_shape, cl=True)
        return
    g.layer(node, "Resize", {"size": sizes, "interpolation": interpolation, "antialias": False,
                             "crop_to_aspect_ratio": False, "pad_to_aspect_ratio": False, "fill_mode": "constant",
                             "fill_value": 0.0, "data_format": "channels_last"}, [x], node.output[0], out_shape,
            cl=True, module="keras.src.ops.image")
