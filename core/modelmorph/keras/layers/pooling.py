"""Pooling layers, local and global, 1D to 3D."""

from __future__ import annotations

from . import LayerClass, ints, join_spatial, spatial, window_length

FAMILY = "pooling"


def _pool_shape(rank: int):
    def shape(config: dict, shapes: list) -> tuple | None:
        split = spatial(shapes[0] if shapes else None, rank, config)
        pool = ints(config.get("pool_size", 2), rank)
        strides = config.get("strides")
        strides = pool if strides is None else ints(strides, rank)
        if split is None or pool is None or strides is None:
            return None
        dims, batch, channels = split
        padding = config.get("padding", "valid")
        return join_spatial(batch, [window_length(d, p, padding, s) for d, p, s in zip(dims, pool, strides)],
                            channels, config)

    return shape


def _global_shape(rank: int):
    def shape(config: dict, shapes: list) -> tuple | None:
        split = spatial(shapes[0] if shapes else None, rank, config)
        if split is None:
            return None
        _, batch, channels = split
        if config.get("keepdims"):
            return join_spatial(batch, [1] * rank, channels, config)
        return (batch, channels)

    return shape


CLASSES = []
for _rank in (1, 2, 3):
    for _kind in ("Max", "Average"):
        CLASSES += [
            LayerClass(f"{_kind}Pooling{_rank}D", family=FAMILY, output_shape=_pool_shape(_rank)),
            LayerClass(f"Global{_kind}Pooling{_rank}D", family=FAMILY, output_shape=_global_shape(_rank)),
        ]
