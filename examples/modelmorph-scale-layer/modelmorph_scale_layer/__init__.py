"""An example plugin for a custom Keras layer: ``Scale`` multiplies the last axis of its input
by a trainable vector ``scale`` (``tests/fixtures/custom_layers.py`` is the Keras side).

One descriptor tells modelmorph everything about the class: its variables (so every format names
the weight ``scale`` instead of ``0``), its output shape (so shapes after it are inferred), and
its ONNX converter (so the model exports). ``spec/layers.md`` documents every field.
"""

from __future__ import annotations

import modelmorph


def scale_to_onnx(call):
    """``x * scale`` in ONNX. ``call.b`` builds the graph, ``call.x`` is the input tensor,
    ``call.weight(path)`` a weight's value (spec/formats/onnx.md)."""
    b = call.b
    x = b.channels_last(call.x)  # scale runs along Keras' last axis
    return b.like(x, b.op1("Mul", [x.name, b.weight(call.weight("scale"), "scale")]))


@modelmorph.hookimpl
def modelmorph_layer_specs():
    return [modelmorph.LayerClass(
        "Scale",
        variables=lambda config: [modelmorph.Var("scale")],  # in saving order
        output_shape=lambda config, shapes: shapes[0],       # the input's shape
        description="x * scale, per feature",
        converters={"onnx": scale_to_onnx},
    )]
