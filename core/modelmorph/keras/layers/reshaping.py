"""Layers that move values around: flatten, reshape, permute, repeat, crop, pad, upsample."""

from __future__ import annotations

from . import LayerClass, ints, join_spatial, product, spatial

FAMILY = "reshaping"


def _flatten(config: dict, shapes: list):
    shape = shapes[0] if shapes else None
    return None if not shape else (shape[0], product(shape[1:]))


def _reshape(config: dict, shapes: list):
    target = config.get("target_shape")
    if not shapes or not shapes[0] or not isinstance(target, list):
        return None
    target = list(target)
    if -1 in target:
        known, total = product([d for d in target if d != -1]), product(shapes[0][1:])
        target[target.index(-1)] = None if known in (None, 0) or total is None else total // known
    return (shapes[0][0], *target)


def _permute(config: dict, shapes: list):
    dims = config.get("dims")
    if not shapes or not shapes[0] or not isinstance(dims, list) or len(dims) != len(shapes[0]) - 1:
        return None
    return (shapes[0][0], *(shapes[0][d] for d in dims))


def _repeat_vector(config: dict, shapes: list):
    shape = shapes[0] if shapes else None
    return None if not shape or len(shape) != 2 else (shape[0], config.get("n"), shape[1])


def _pairs(value, rank: int) -> list[tuple[int, int]] | None:
    """Keras' cropping/padding argument: an int, one int per dimension, or (before, after) pairs."""
    if isinstance(value, int):
        return [(value, value)] * rank
    if isinstance(value, list) and len(value) == 2 and rank == 1 and all(isinstance(v, int) for v in value):
        return [tuple(value)]
    if isinstance(value, list) and len(value) == rank:
        out = []
        for item in value:
            if isinstance(item, int):
                out.append((item, item))
            elif isinstance(item, list) and len(item) == 2 and all(isinstance(v, int) for v in item):
                out.append(tuple(item))
            else:
                return None
        return out
    return None


def _resize(rank: int, key: str, change):
    def shape(config: dict, shapes: list):
        split = spatial(shapes[0] if shapes else None, rank, config)
        amounts = _pairs(config.get(key), rank) if key != "size" else ints(config.get(key, 2), rank)
        if split is None or amounts is None:
            return None
        dims, batch, channels = split
        return join_spatial(batch, [None if d is None else change(d, a) for d, a in zip(dims, amounts)], channels, config)

    return shape


def _crop(d: int, pair: tuple[int, int]) -> int:
    return d - pair[0] - pair[1]


def _pad(d: int, pair: tuple[int, int]) -> int:
    return d + pair[0] + pair[1]


def _upsample(d: int, factor: int) -> int:
    return d * factor


def _1d(config: dict) -> dict:
    return {k: v for k, v in config.items() if k != "data_format"}  # the 1D layers are always channels-last


CLASSES = [
    LayerClass("Flatten", family=FAMILY, output_shape=_flatten),
    LayerClass("Reshape", family=FAMILY, output_shape=_reshape),
    LayerClass("Permute", family=FAMILY, output_shape=_permute),
    LayerClass("RepeatVector", family=FAMILY, output_shape=_repeat_vector),
]
for _rank in (1, 2, 3):
    for _name, _key, _change in (("Cropping", "cropping", _crop), ("ZeroPadding", "padding", _pad),
                                 ("UpSampling", "size", _upsample)):
        _rule = _resize(_rank, _key, _change)
        if _rank == 1:
            _rule = (lambda rule: lambda config, shapes: rule(_1d(config), shapes))(_rule)
        CLASSES.append(LayerClass(f"{_name}{_rank}D", family=FAMILY, output_shape=_rule))
