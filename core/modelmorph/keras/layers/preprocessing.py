"""Preprocessing layers without variables, and the lookups (StringLookup, IntegerLookup,
TextVectorization): Keras 3 keeps their vocabulary in an asset file, tf_keras in the config
(``modelmorph.keras.vocabularies`` moves it). In tf_idf mode Keras 3 saves their idf weights
by name, ``vars/idf_weights``; a TextVectorization saves them twice, for itself and for the
StringLookup it keeps as ``_lookup_layer`` (which Keras 3 also visits and loads)."""

from __future__ import annotations

from . import LayerClass, Var, channels_first, int_or_none, same_shape

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


def _lookup_to_keras2(entry: dict, out: dict) -> None:
    config = out["config"]
    # tf_keras derives the size from the vocabulary again (its constructor pops the key).
    config.pop("vocabulary_size", None)
    if config.get("oov_method", "floormod") == "floormod" and config.get("salt") is None:
        # Keras 3's default, the only way tf_keras spreads out-of-vocabulary tokens.
        config.pop("oov_method", None)
        config.pop("salt", None)
    if entry["class_name"] == "TextVectorization":
        config["dtype"] = "string"  # the only dtype tf_keras accepts for it
    elif config.get("output_mode", "int") == "int":
        # tf_keras' dtype is the int output's (it refuses a float one); Keras 3 outputs int64 whatever its policy.
        config["dtype"] = "int64"


def _lookup_variables(config: dict) -> list[Var] | None:
    # Not a tf.Variable Keras lists among the layer's weights: never trained, no optimizer slot.
    if config.get("output_mode") != "tf_idf":
        return None  # no variables in Keras 3; kept by position as found (as before)
    return [Var("idf_weights", trainable=False, named=True)]


def _text_vectorization_variables(config: dict) -> list[Var] | None:
    own = _lookup_variables(config)
    if own is None:
        return None
    # Its save_own_variables writes its lookup's weights, and the walk then saves that
    # lookup (attribute `_lookup_layer`) too: Keras 3 loads both, the lookup's last.
    return own + [Var("_lookup_layer/idf_weights", trainable=False, named=True)]


def _lookup_weights(config: dict, shapes: list) -> dict:
    """A tf_idf lookup's ``idf_weights`` (the key Keras 3 saves them under): one per token of
    the vocabulary, special tokens included, or ``max_tokens`` when padded to it."""
    if config.get("output_mode") != "tf_idf":
        return {}
    size = int_or_none(config.get("max_tokens")) if config.get("pad_to_max_tokens") else None
    size = size if size is not None else int_or_none(config.get("vocabulary_size"))
    return {"idf_weights": (size,)}


CLASSES = [
    *(LayerClass(name, description=what, family=FAMILY, variables=variables, to_keras2=_lookup_to_keras2,
                 weight_shapes=_lookup_weights)
      for name, what, variables in (("StringLookup", "strings → vocabulary indices", _lookup_variables),
                                    ("IntegerLookup", "integers → vocabulary indices", _lookup_variables),
                                    ("TextVectorization", "text → token indices", _text_vectorization_variables))),
    LayerClass("Discretization", description="the index of the bin each value falls in", family=FAMILY,
               to_keras3=_discretization_to_keras3, to_keras2=_discretization_to_keras2),
    LayerClass("Rescaling", description="x * scale + offset", family=FAMILY, output_shape=same_shape),
    LayerClass("Resizing", family=FAMILY, output_shape=_to_size("height", "width")),
    LayerClass("CenterCrop", family=FAMILY, output_shape=_to_size("height", "width")),
    LayerClass("RandomCrop", family=FAMILY, output_shape=_to_size("height", "width")),
    *(LayerClass(name, description="identity at inference", family=FAMILY, output_shape=same_shape)
      for name in ("RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation", "RandomContrast")),
]
