"""Normalization layers."""

from __future__ import annotations

from . import LayerClass, Var, int_or_none, same_shape

FAMILY = "normalization"


def _gamma_beta(c: dict) -> list[Var]:
    out = [Var("gamma")] if c.get("scale", True) else []
    return out + ([Var("beta")] if c.get("center", True) else [])


def _batch_norm(c: dict) -> list[Var]:
    return _gamma_beta(c) + [Var("moving_mean", False), Var("moving_variance", False)]


def _normalization(c: dict) -> list[Var]:
    # Given mean/variance in the config, Keras makes constants, not variables.
    if c.get("mean") is not None and c.get("variance") is not None:
        return []
    return [Var("mean", False), Var("variance", False), Var("count", False)]


def _axes(config: dict, default: int) -> list[int] | None:
    axis = config.get("axis", default)
    axes = [axis] if not isinstance(axis, list) else axis
    return axes if axes and all(int_or_none(a) is not None for a in axes) else None


def _param_shape(config: dict, shapes: list, default: int) -> tuple | None:
    """One dimension per normalized axis: the input's size there, if known."""
    axes = _axes(config, default)
    if axes is None:
        return None
    shape = shapes[0] if shapes else None
    if not shape or any(not -len(shape) <= a < len(shape) for a in axes):
        return (None,) * len(axes)
    return tuple(int_or_none(shape[a]) for a in axes)


def _batch_norm_weights(config: dict, shapes: list) -> dict:
    shape = _param_shape(config, shapes, -1)
    if shape is None or len(shape) != 1:  # tf_keras' multi-axis batch norm keeps a broadcastable shape
        return {}
    return dict.fromkeys(("gamma", "beta", "moving_mean", "moving_variance"), shape)


def _layer_norm_weights(config: dict, shapes: list) -> dict:
    shape = _param_shape(config, shapes, -1)
    return {} if shape is None else dict.fromkeys(("gamma", "beta"), shape)


def _group_norm_weights(config: dict, shapes: list) -> dict:
    shape = _param_shape(config, shapes, -1)
    return {} if shape is None or len(shape) != 1 else dict.fromkeys(("gamma", "beta"), shape)


def _normalization_weights(config: dict, shapes: list) -> dict:
    """The input's size along each kept axis, in axis order (Keras sorts them); a scalar for
    ``axis=None``. ``count`` is an int64: not a shape this check covers."""
    axis = config.get("axis", -1)
    axes = [] if axis is None else [axis] if isinstance(axis, int) else axis
    if not isinstance(axes, list) or any(int_or_none(a) is None for a in axes):
        return {}
    shape = shapes[0] if shapes else None
    if not shape or any(not -len(shape) <= a < len(shape) for a in axes):
        kept = (None,) * len(axes)
    else:
        kept = tuple(int_or_none(shape[a]) for a in sorted(a % len(shape) for a in axes))
    return dict.fromkeys(("mean", "variance"), kept)


def _single_axis(entry: dict) -> None:
    # tf_keras writes `axis` as a one-element list; Keras 3 keeps an int.
    config = entry["config"]
    if isinstance(config.get("axis"), list) and len(config["axis"]) == 1:
        config["axis"] = config["axis"][0]


CLASSES = [
    LayerClass("BatchNormalization", _batch_norm, "(x - mean) / sqrt(var + eps) * gamma + beta", FAMILY,
               to_keras3=_single_axis, output_shape=same_shape, weight_shapes=_batch_norm_weights),
    LayerClass("LayerNormalization", _gamma_beta, "normalized over the feature axes", FAMILY,
               to_keras3=_single_axis, output_shape=same_shape, weight_shapes=_layer_norm_weights),
    LayerClass("GroupNormalization", _gamma_beta, "normalized within channel groups", FAMILY, output_shape=same_shape,
               weight_shapes=_group_norm_weights),
    LayerClass("UnitNormalization", description="x / ||x||", family=FAMILY, output_shape=same_shape),
    LayerClass("Normalization", _normalization, "(x - mean) / sqrt(variance)", FAMILY,
               keras3_attributes={"mean": "adapt_mean", "variance": "adapt_variance"}, output_shape=same_shape,
               weight_shapes=_normalization_weights),
]
