"""The built-in ONNX converters, one module per layer family: class name → converter.

A converter takes a :class:`~modelmorph_onnx.export.Call` (the layer, its inputs as
:class:`~modelmorph_onnx.builder.Value` s, its weights) and returns its output value(s). A
class's descriptor may carry its own converter (``converters={"onnx": fn}``); it wins.
"""

from __future__ import annotations

from . import activations, attention, conv, core, merging, normalization, operations, recurrent, reshaping

LAYERS = {**core.LAYERS, **activations.LAYERS, **conv.LAYERS, **normalization.LAYERS, **merging.LAYERS,
          **reshaping.LAYERS, **recurrent.LAYERS, **attention.LAYERS}
OPERATIONS = operations.OPERATIONS
