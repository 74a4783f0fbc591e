"""Helpers the op converters share: attribute defaults, axes across the layout change, padding."""

from __future__ import annotations

from ..graph import Graph, T, Unsupported, _perm_cl

F32_MAX = 3.4028234663852886e38  # stands for -inf in pads a max pool must never pick


def ints(a: dict, key: str, n: int, default: int) -> list[int]:
    values = a.get(key)
    return [int(v) for v in values] if values else [default] * n


def keras_axis(x: T, axis: int) -> int:
    axis %= x.rank
    return _perm_cl(x.rank).index(axis) if x.cl and x.rank >= 3 else axis


def flat_order(g: Graph, node, x: T) -> T:
    """The tensor in ONNX's order, for ops that read axes by position (Dense, Reshape...)."""
    return g.to_onnx_order(x, node)


def same_pads(size: int, k: int, s: int, d: int) -> tuple[int, int]:
    """TensorFlow's `same` padding (the odd one at the end)."""
    out = -(-size // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


def spatial_pads(g: Graph, node, a: dict, x: T, kernel: list, strides: list, dilations: list):
    """(begins, ends) of explicit padding, auto_pad resolved."""
    n = len(kernel)
    auto = a.get("auto_pad", "NOTSET")
    if auto in ("NOTSET", ""):
        pads = ints(a, "pads", 2 * n, 0)
        return pads[:n], pads[n:]
    if auto == "VALID":
        return [0] * n, [0] * n
    sizes = g.shape(node.input[0])[2:]
    if any(s is None for s in sizes):
        raise Unsupported(f"auto_pad {auto} on dynamic spatial dimensions")
    pairs = [same_pads(sz, k, s, d) for sz, k, s, d in zip(sizes, kernel, strides, dilations)]
    if auto == "SAME_LOWER":
        pairs = [(e, b) for b, e in pairs]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def padding_for(g: Graph, node, x: T, begins, ends, kernel, strides, dilations) -> tuple[T, str]:
    """The input and the Keras `padding` for explicit pads: `valid`, `same` where TensorFlow's
    rule gives these very pads, else a ZeroPadding layer before a `valid` one."""
    if not any(begins) and not any(ends):
        return x, "valid"
    sizes = x.shape[2:]
    if all(isinstance(s, int) for s in sizes) and all(
            same_pads(sz, k, s, d) == (b, e) for sz, k, s, d, b, e in zip(sizes, kernel, strides, dilations, begins, ends)):
        return x, "same"
    if any(p < 0 for p in (*begins, *ends)):
        raise Unsupported("negative pads")
    return zero_pad(g, node, x, begins, ends), "valid"


def zero_pad(g: Graph, node, x: T, begins, ends) -> T:
    n = len(begins)
    if n not in (1, 2, 3):
        raise Unsupported(f"padding of {n} spatial dimensions")
    padding = [begins[0], ends[0]] if n == 1 else [[b, e] for b, e in zip(begins, ends)]
    shape = (*x.shape[:2], *[s + b + e if isinstance(s, int) else None for s, b, e in zip(x.shape[2:], begins, ends)])
    return g.layer(node, f"ZeroPadding{n}D", {"padding": padding}, [x], f"{node.output[0]}:pad", shape, cl=True)


def broadcast(a: tuple, b: tuple, inferred: tuple | None) -> tuple:
    """Numpy's broadcast of two shapes (None: unknown), completed by what inference found."""
    rank = max(len(a), len(b))
    a, b = (None,) * 0 + (1,) * (rank - len(a)) + tuple(a), (1,) * (rank - len(b)) + tuple(b)
    dims = [x if y == 1 else y if x == 1 else x if x is not None else y for x, y in zip(a, b)]
    if inferred is not None and len(inferred) == rank:
        dims = [d if d is not None else i for d, i in zip(dims, inferred)]
    return tuple(dims)


def axes_operand(g: Graph, node, a: dict) -> list[int] | None:
    """A node's ``axes``: its second input (Squeeze, Unsqueeze and ReduceSum since opset 13, the
    other reductions since 18) or, before, its attribute; None when it has neither."""
    if len(node.input) > 1 and node.input[1]:
        axes = g.const(node.input[1])
        if axes is None:
            raise Unsupported("computed axes")
        return [int(v) for v in axes.reshape(-1)]
    axes = a.get("axes")
    return None if axes is None else [int(v) for v in axes]
