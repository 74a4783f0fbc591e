"""Activation layers."""

from __future__ import annotations

from . import LayerClass, Var, int_or_none, same_shape

FAMILY = "activations"


def _leaky_to_keras3(entry: dict) -> None:
    # Same slope, renamed: tf_keras `alpha` is Keras 3 `negative_slope` (both default to 0.3).
    config = entry["config"]
    if "alpha" in config:
        config["negative_slope"] = config.pop("alpha")


def _leaky_to_keras2(entry: dict, out: dict) -> None:
    config = out["config"]
    if "negative_slope" in config:
        config["alpha"] = config.pop("negative_slope")


def _thresholded_to_keras3(entry: dict) -> None:
    # Keras 3 has no ThresholdedReLU: ReLU(threshold=theta) computes the same (x if x > theta else 0).
    config = entry["config"]
    entry["class_name"] = "ReLU"
    config["threshold"] = config.pop("theta", 1.0)  # tf_keras' default theta
    config.update(negative_slope=0.0, max_value=None)


def _prelu_weights(config: dict, shapes: list) -> dict:
    """One slope per input element past the batch, 1 along each shared axis (Keras' build)."""
    shape = shapes[0] if shapes else None
    shared = config.get("shared_axes")
    shared = [] if shared is None else [shared] if isinstance(shared, int) else shared
    if not shape or not isinstance(shared, list) or any(int_or_none(a) is None for a in shared):
        return {}
    alpha = [int_or_none(d) for d in shape[1:]]
    for axis in shared:
        alpha[axis - 1] = 1  # as Keras indexes it: axis 0 (the batch) would set the last one
    return {"alpha": tuple(alpha)}


CLASSES = [
    LayerClass("PReLU", lambda c: [Var("alpha")], "max(x, 0) + alpha * min(x, 0)", FAMILY, output_shape=same_shape,
               weight_shapes=_prelu_weights),
    LayerClass("LeakyReLU", description="max(x, 0) + slope * min(x, 0)", family=FAMILY,
               to_keras3=_leaky_to_keras3, to_keras2=_leaky_to_keras2, output_shape=same_shape),
    LayerClass("ThresholdedReLU", description="x if x > theta else 0 (Keras 2 only)", family=FAMILY,
               to_keras3=_thresholded_to_keras3, output_shape=same_shape),
    *(LayerClass(name, family=FAMILY, output_shape=same_shape) for name in ("ReLU", "ELU", "Softmax")),
]
