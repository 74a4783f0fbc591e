"""Preprocessing layers without variables (the lookups, whose vocabularies are assets, are not
described: their variables are carried by position)."""

from __future__ import annotations

from . import LayerClass, channels_first, same_shape

FAMILY = "preprocessing"


def _to_size(height_key: str, width_key: str):
    def shape(config: dict, shapes: list):
        shape = shapes[0] if shapes else None
        if not shape or len(shape) not in (3, 4):
            return None
        size = (config.get(height_key), config.get(width_key))
        if channels_first(config):
            return (*shape[:-2], *size)
        return (*shape[:-3], *size, shape[-1])

    return shape


CLASSES = [
    LayerClass("Rescaling", description="x * scale + offset", family=FAMILY, output_shape=same_shape),
    LayerClass("Resizing", family=FAMILY, output_shape=_to_size("height", "width")),
    LayerClass("CenterCrop", family=FAMILY, output_shape=_to_size("height", "width")),
    LayerClass("RandomCrop", family=FAMILY, output_shape=_to_size("height", "width")),
    *(LayerClass(name, description="identity at inference", family=FAMILY, output_shape=same_shape)
      for name in ("RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation", "RandomContrast")),
]
