"""Normalization layers."""

from __future__ import annotations

from . import LayerClass, Var, same_shape

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


def _single_axis(entry: dict) -> None:
    # tf_keras writes `axis` as a one-element list; Keras 3 keeps an int.
    config = entry["config"]
    if isinstance(config.get("axis"), list) and len(config["axis"]) == 1:
        config["axis"] = config["axis"][0]


CLASSES = [
    LayerClass("BatchNormalization", _batch_norm, "(x - mean) / sqrt(var + eps) * gamma + beta", FAMILY,
               to_keras3=_single_axis, output_shape=same_shape),
    LayerClass("LayerNormalization", _gamma_beta, "normalized over the feature axes", FAMILY,
               to_keras3=_single_axis, output_shape=same_shape),
    LayerClass("GroupNormalization", _gamma_beta, "normalized within channel groups", FAMILY, output_shape=same_shape),
    LayerClass("UnitNormalization", description="x / ||x||", family=FAMILY, output_shape=same_shape),
    LayerClass("Normalization", _normalization, "(x - mean) / sqrt(variance)", FAMILY,
               keras3_attributes={"mean": "adapt_mean", "variance": "adapt_variance"}, output_shape=same_shape),
]
