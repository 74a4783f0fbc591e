"""ConvTranspose → Conv1D/2D/3DTranspose (`valid`, the full output plus ONNX's output_padding
as Keras' `output_padding`), then a Cropping layer for ONNX's pads."""

from __future__ import annotations

from ..graph import Graph, Unsupported
from .common import ints


def conv_transpose(g: Graph, node, a: dict) -> None:
    w = g.const(node.input[1])
    if w is None:
        raise Unsupported("the kernel is computed, not a constant")
    bias = g.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    n = w.ndim - 2
    if n not in (1, 2, 3):
        raise Unsupported(f"{n}-D transposed convolution")
    if int(a.get("group", 1)) != 1:
        raise Unsupported("group > 1 (Keras' transposed convolutions have no groups)")
    kernel = list(w.shape[2:])
    strides, dilations = ints(a, "strides", n, 1), ints(a, "dilations", n, 1)
    if any(d > 1 for d in dilations) and any(s > 1 for s in strides):
        raise Unsupported("strides and dilations both above 1 (TensorFlow cannot compute it)")
    x = g.to_cl(g.tensor(node.input[0]), node)
    sizes = x.shape[2:]
    if any(not isinstance(s, int) for s in sizes):
        raise Unsupported("dynamic spatial dimensions")
    extra = ints(a, "output_padding", n, 0)
    full = [(sz - 1) * s + (k - 1) * d + 1 + e for sz, s, k, d, e in zip(sizes, strides, kernel, dilations, extra)]
    auto = a.get("auto_pad", "NOTSET") or "NOTSET"
    wanted = a.get("output_shape")
    if wanted is not None:
        wanted = [int(v) for v in wanted][-n:]
    if auto in ("SAME_UPPER", "SAME_LOWER") or (wanted is not None and not a.get("pads")):
        target = wanted if wanted is not None else [sz * s for sz, s in zip(sizes, strides)]
        total = [f - t for f, t in zip(full, target)]
        if auto == "SAME_UPPER":
            begins = [t // 2 for t in total]
        elif auto == "SAME_LOWER":
            begins = [t - t // 2 for t in total]
        else:  # output_shape alone: onnx's reference reads the output from the start
            begins = [0] * n
        ends = [t - b for t, b in zip(total, begins)]
    elif auto == "VALID" or auto == "NOTSET":
        pads = ints(a, "pads", 2 * n, 0) if auto == "NOTSET" else [0] * 2 * n
        begins, ends = pads[:n], pads[n:]
    else:
        raise Unsupported(f"auto_pad {auto!r}")
    # a negative end is output the input never reaches: Keras' output_padding gives it (bias only)
    extra = [e + max(-c, 0) for e, c in zip(extra, ends)]
    ends = [max(c, 0) for c in ends]
    if any(b < 0 for b in begins):
        raise Unsupported("negative pads")
    if any(e >= s and e > 0 for e, s in zip(extra, strides)):
        raise Unsupported("output padding not smaller than the stride (Keras refuses it)")
    out_channels = w.shape[1]
    config = {"filters": int(out_channels), "kernel_size": kernel, "strides": strides, "padding": "valid",
              "output_padding": extra, "dilation_rate": dilations, "use_bias": bias is not None,
              "activation": "linear"}
    spatial = list(range(2, 2 + n))
    weights = [w.transpose(*spatial, 1, 0)] + ([bias] if bias is not None else [])
    full = [(sz - 1) * s + (k - 1) * d + 1 + e for sz, s, k, d, e in zip(sizes, strides, kernel, dilations, extra)]
    cropping = any(begins) or any(ends)
    y = g.layer(node, f"Conv{n}DTranspose", config, [x], f"{node.output[0]}:full" if cropping else node.output[0],
                (x.shape[0], int(out_channels), *full), cl=True, weights=weights)
    if not cropping:
        return
    out = [f - b - e for f, b, e in zip(full, begins, ends)]
    if any(o <= 0 for o in out):
        raise Unsupported("pads larger than the output")
    crop = [begins[0], ends[0]] if n == 1 else [[b, e] for b, e in zip(begins, ends)]
    g.layer(node, f"Cropping{n}D", {"cropping": crop}, [y], node.output[0], (x.shape[0], int(out_channels), *out),
            cl=True)
