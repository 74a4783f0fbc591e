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


def _discretization_to_keras3(entry: dict) -> None:
    config = entry["config"]
    _boundaries_are_the_bins(config)
    dtype = config.get("dtype")
    if config.get("output_mode", "int") == "int" and isinstance(dtype, str) and dtype.startswith(("int", "uint")):
        # tf_keras' dtype is the int output's; Keras 3 computes in it, so an int64 policy would
        # truncate the inputs before binning (its int output is int32 whatever the policy).
        config["dtype"] = "float32"


def _discretization_to_keras2(entry: dict, out: dict) -> None:
    _boundaries_are_the_bins(out["config"])


def _boundaries_are_the_bins(config: dict) -> None:
    # Both libraries refuse num_bins beside bin_boundaries, yet write both once adapted.
    if config.get("bin_boundaries") is not None:
        config.pop("num_bins", None)


CLASSES = [
    LayerClass("Discretization", description="the index of the bin each value falls in", family=FAMILY,
               to_keras3=_discretization_to_keras3, to_keras2=_discretization_to_keras2),
    LayerClass("Rescaling", description="x * scale + offset", family=FAMILY, output_shape=same_shape),
    LayerClass("Resizing", family=FAMILY, output_shape=_to_size("height", "width")),
    LayerClass("CenterCrop", family=FAMILY, output_shape=_to_size("height", "width")),
    LayerClass("RandomCrop", family=FAMILY, output_shape=_to_size("height", "width")),
    *(LayerClass(name, description="identity at inference", family=FAMILY, output_shape=same_shape)
      for name in ("RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation", "RandomContrast")),
]
