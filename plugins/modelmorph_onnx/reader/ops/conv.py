"""Conv → Conv/DepthwiseConv layers; MaxPool/AveragePool and their global forms → pooling layers."""

from __future__ import annotations

from ..graph import Graph, Unsupported
from .common import F32_MAX, ints, padding_for, same_pads, spatial_pads, zero_pad


def conv(g: Graph, node, a: dict) -> None:
    w = g.const(node.input[1])
    if w is None:
        raise Unsupported("the kernel is computed, not a constant")
    bias = g.const(node.input[2]) if len(node.input) > 2 else None
    n = w.ndim - 2
    if n not in (1, 2, 3):
        raise Unsupported(f"{n}-D convolution")
    kernel = list(w.shape[2:])
    strides, dilations = ints(a, "strides", n, 1), ints(a, "dilations", n, 1)
    group = int(a.get("group", 1))
    if any(s > 1 for s in strides) and any(d > 1 for d in dilations):
        raise Unsupported("strides and dilations both above 1 (Keras cannot express it)")
    x = g.to_cl(g.tensor(node.input[0]), node)
    begins, ends = spatial_pads(g, node, a, x, kernel, strides, dilations)
    x, padding = padding_for(g, node, x, begins, ends, kernel, strides, dilations)
    out_channels, in_per_group = w.shape[0], w.shape[1]
    channels = in_per_group * group
    config = {"kernel_size": kernel, "strides": strides, "padding": padding, "dilation_rate": dilations,
              "use_bias": bias is not None, "activation": "linear"}
    spatial = list(range(2, 2 + n))
    if group > 1 and group == channels and in_per_group == 1 and n in (1, 2):
        multiplier = out_channels // channels
        kernel_value = w.reshape(channels, multiplier, *kernel).transpose(*spatial, 0, 1)
        class_name = f"DepthwiseConv{n}D"
        config["depth_multiplier"] = multiplier
    else:
        kernel_value = w.transpose(*spatial, 1, 0)
        class_name = f"Conv{n}D"
        config.update(filters=out_channels, groups=group)
    weights = [kernel_value] + ([bias] if bias is not None else [])
    sizes = [None if sz is None else (-(-sz // s) if padding == "same" else (sz - d * (k - 1) - 1) // s + 1)
             for sz, k, s, d in zip(x.shape[2:], kernel, strides, dilations)]
    g.layer(node, class_name, config, [x], node.output[0], (x.shape[0], out_channels, *sizes), cl=True,
            weights=weights)


def pool(kind: str):
    def convert(g: Graph, node, a: dict) -> None:
        kernel = [int(k) for k in a["kernel_shape"]]
        n = len(kernel)
        if n not in (1, 2, 3):
            raise Unsupported(f"{n}-D pooling")
        strides, dilations = ints(a, "strides", n, 1), ints(a, "dilations", n, 1)
        if any(d != 1 for d in dilations):
            raise Unsupported("dilated pooling")
        if len([o for o in node.output if o]) > 1:
            raise Unsupported("the Indices output")
        x = g.to_cl(g.tensor(node.input[0]), node)
        sizes = x.shape[2:]
        if any(not isinstance(s, int) for s in sizes):
            raise Unsupported("dynamic spatial dimensions")
        begins, ends = spatial_pads(g, node, a, x, kernel, strides, dilations)
        outs = []
        for sz, k, s, b, e in zip(sizes, kernel, strides, begins, ends):
            span = sz + b + e - k
            o = (-(-span // s) if a.get("ceil_mode") else span // s) + 1
            if a.get("ceil_mode") and (o - 1) * s >= sz + b:  # the last window must start inside
                o -= 1
            outs.append(o)
        out_shape = (*x.shape[:2], *outs)
        # The end padding actually read (ceil_mode may read past the declared pads, floor less).
        used = [(o - 1) * s + k - sz - b for o, s, k, sz, b in zip(outs, strides, kernel, sizes, begins)]
        ends = [max(u, 0) for u in used]
        valid = [(sz - k) // s + 1 for sz, k, s in zip(sizes, kernel, strides)]
        same = [same_pads(sz, k, s, 1) for sz, k, s in zip(sizes, kernel, strides)]
        include_pad = kind == "Average" and a.get("count_include_pad", 0)
        if not any(begins) and list(outs) == valid:
            padding = "valid"
        elif [(b, e) for b, e in zip(begins, ends)] == same and list(outs) == [-(-sz // s) for sz, s in zip(sizes, strides)] \
                and not include_pad:
            padding = "same"
        elif kind == "Max":
            padded = (*x.shape[:2], *[sz + b + e for sz, b, e in zip(sizes, begins, ends)])
            width = [[0, 0], *[[b, e] for b, e in zip(begins, ends)], [0, 0]]
            x = g.layer(node, "Pad", {"pad_width": width, "mode": "constant"}, [x], f"{node.output[0]}:pad", padded,
                        cl=True, module="keras.src.ops.numpy", kwargs={"constant_values": -F32_MAX})
            padding = "valid"
        elif include_pad and all(e <= d for e, d in zip(ends, ints(a, "pads", 2 * n, 0)[n:])):  # pads never read: none
            x, padding = zero_pad(g, node, x, begins, ends), "valid"
        else:
            raise Unsupported("these pads with count_include_pad=0 (or ceil_mode) have no Keras equivalent")
        g.layer(node, f"{kind}Pooling{n}D", {"pool_size": kernel, "strides": strides, "padding": padding}, [x],
                node.output[0], out_shape, cl=True)
    return convert


def global_pool(kind: str):
    def convert(g: Graph, node, a: dict) -> None:
        x = g.tensor(node.input[0])
        n = x.rank - 2
        if n not in (1, 2, 3):
            raise Unsupported(f"rank {x.rank}")
        x = g.to_cl(x, node)
        g.layer(node, f"Global{kind}Pooling{n}D", {"keepdims": True}, [x], node.output[0],
                (*x.shape[:2], *[1] * n), cl=True)
    return convert
