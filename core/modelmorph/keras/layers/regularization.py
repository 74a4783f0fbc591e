"""Layers that act only in training (identity at inference)."""

from __future__ import annotations

from . import LayerClass, same_shape

FAMILY = "regularization"

CLASSES = [
    LayerClass(name, description="identity at inference", family=FAMILY, output_shape=same_shape)
    for name in ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianDropout",
                 "GaussianNoise", "AlphaDropout", "ActivityRegularization")
]
