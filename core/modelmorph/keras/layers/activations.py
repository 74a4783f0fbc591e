"""Activation layers."""

from __future__ import annotations

from . import LayerClass, Var, same_shape

FAMILY = "activations"

CLASSES = [
    LayerClass("PReLU", lambda c: [Var("alpha")], "max(x, 0) + alpha * min(x, 0)", FAMILY, output_shape=same_shape),
    *(LayerClass(name, family=FAMILY, output_shape=same_shape)
      for name in ("ReLU", "LeakyReLU", "ELU", "Softmax", "ThresholdedReLU")),
]
