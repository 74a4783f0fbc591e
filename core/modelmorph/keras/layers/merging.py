"""Merging layers: element-wise, concatenation, dot products."""

from __future__ import annotations

from . import LayerClass

FAMILY = "merging"


def _broadcast(config: dict, shapes: list):
    if not shapes or any(s is None for s in shapes) or len({len(s) for s in shapes}) != 1:
        return None
    out = []
    for dims in zip(*shapes):
        known = {d for d in dims if d is not None and d != 1}
        out.append(None if None in dims or len(known) > 1 else (known.pop() if known else 1))
    return (shapes[0][0], *out[1:])


def _concatenate(config: dict, shapes: list):
    if not shapes or any(s is None for s in shapes) or len({len(s) for s in shapes}) != 1:
        return None
    axis = config.get("axis", -1) % len(shapes[0])
    out = list(_broadcast({}, [tuple(1 if i == axis else d for i, d in enumerate(s)) for s in shapes]) or ())
    if not out:
        return None
    sizes = [s[axis] for s in shapes]
    out[axis] = None if None in sizes else sum(sizes)
    return tuple(out)


def _dot(config: dict, shapes: list):
    if len(shapes) != 2 or None in shapes:
        return None
    a, b = shapes
    axes = config.get("axes", -1)
    axes = [axes, axes] if isinstance(axes, int) else axes
    if not isinstance(axes, list) or len(axes) != 2:
        return None
    axis_a, axis_b = axes[0] % len(a), axes[1] % len(b)
    out = [d for i, d in enumerate(a) if i != axis_a] + [d for i, d in enumerate(b) if i not in (0, axis_b)]
    return tuple(out) if len(out) > 1 else (out[0], 1)


CLASSES = [
    *(LayerClass(name, description=f"element-wise {name.lower()}", family=FAMILY, output_shape=_broadcast)
      for name in ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")),
    LayerClass("Concatenate", description="joined along an axis", family=FAMILY, output_shape=_concatenate),
    LayerClass("Dot", description="dot products along axes", family=FAMILY, output_shape=_dot),
]
