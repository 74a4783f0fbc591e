"""ONNX (``.onnx``): Keras models exported as ONNX graphs that onnxruntime and other runtimes run,
and ONNX graphs (from PyTorch and others) read as Keras 3 functional models, without TensorFlow.

This module is what the entry point loads; it stays light. The export (:mod:`.writer`) walks the
IR's graph and asks each layer class's converter (:mod:`.converters`, or the ``onnx`` converter a
plugin put in its class descriptor) for ONNX nodes, writing protobuf itself (:mod:`.proto`); the
reader (:mod:`.reader`) maps ONNX ops back to Keras layers and ``keras.ops`` calls.
``spec/formats/onnx.md`` has both tables.
"""

from __future__ import annotations

import modelmorph
from modelmorph import CERTAIN, NO

#: ``-O layout`` values; nhwc/nchw are synonyms of channels_last/channels_first.
LAYOUTS = ("channels_last", "channels_first", "nhwc", "nchw")

#: The opsets the exporter writes; 17 unless ``-O opset=N``.
MIN_OPSET, DEFAULT_OPSET, MAX_OPSET = 13, 17, 21


def sniff(probe: "modelmorph.Probe") -> int:
    # A ModelProto starts with field 1 (ir_version, varint): byte 0x08. One byte is weak
    # evidence, so only a `.onnx` file is claimed; other `.onnx` files reach the reader by name.
    if probe.header[:1] == b"\x08" and probe.path.name.lower().endswith(".onnx") and not probe.is_dir:
        return CERTAIN
    return NO


@modelmorph.hookimpl
def modelmorph_formats():
    return [
        modelmorph.Format(
            name="onnx",
            description="ONNX model (.onnx): written as an ONNX graph for onnxruntime and other runtimes "
                        "(channels-last inputs unless -O layout=channels_first, dynamic batch); read into a Keras "
                        "3 functional model with the graph's own interface unless -O layout=channels_last "
                        "(spec/formats/onnx.md)",
            extensions=(".onnx",),
            reads=frozenset({"architecture", "weights"}),
            reader="modelmorph_onnx.reader:read",
            writes=frozenset({"architecture", "weights"}),
            writer="modelmorph_onnx.writer:write",
            sniff=sniff,
            options=(
                modelmorph.Option("opset", "int", DEFAULT_OPSET, "write",
                                  help=f"ONNX opset to target, {MIN_OPSET} to {MAX_OPSET}"),
                modelmorph.Option("external_data", "choice", "auto", "write", choices=("auto", "true", "false"),
                                  help="weights in a file beside the .onnx (auto: when the model is over "
                                       "external_data_threshold)"),
                modelmorph.Option("external_data_threshold", "size", 1 << 30, "write",
                                  help="total weight size above which auto puts weights in external data"),
                modelmorph.Option("layout", "choice", None, "both", choices=LAYOUTS,
                                  help="the written model's float inputs and outputs of rank 3 or more: "
                                       "channels_last (batch, ..., channels) or channels_first (batch, channels, "
                                       "...); nhwc and nchw are synonyms. Default: what the source holds "
                                       "(writing: channels_last, Keras' own; reading: channels_first, the "
                                       "ONNX graph's own interface)"),
                modelmorph.Option("input_shape", "str", None, "read",
                                  help="NAME:DIMS[,NAME:DIMS...] e.g. input:1x3x224x224 fixes an input's "
                                       "symbolic dims (ONNX order); the batch (first dim) stays dynamic"),
            ),
        )
    ]
