"""The layer-class descriptors' shape rules judged by Keras 3: the same config, called on a
symbolic tensor of the same shape, gives the same output shape."""

from __future__ import annotations

import pytest

from modelmorph.keras import catalogue

pytestmark = pytest.mark.interop

CASES = [
    ("Dense", {"units": 5}, [(None, 7, 3)]),
    ("EinsumDense", {"equation": "ab,bc->ac", "output_shape": [4], "bias_axes": "c"}, [(None, 3)]),
    ("EinsumDense", {"equation": "...b,bc->...c", "output_shape": 4, "bias_axes": "c"}, [(None, 5, 3)]),
    ("Embedding", {"input_dim": 10, "output_dim": 4}, [(None, 6)]),
    ("Conv1D", {"filters": 4, "kernel_size": 3, "padding": "causal", "dilation_rate": 2}, [(None, 11, 2)]),
    ("Conv2D", {"filters": 4, "kernel_size": 3, "strides": 2, "padding": "same"}, [(None, 9, 8, 3)]),
    ("Conv2D", {"filters": 4, "kernel_size": [3, 2], "strides": [2, 1], "padding": "valid"}, [(None, 9, 8, 3)]),
    ("Conv2D", {"filters": 4, "kernel_size": 3, "data_format": "channels_first"}, [(None, 3, 9, 8)]),
    ("Conv3D", {"filters": 2, "kernel_size": 2, "dilation_rate": 2}, [(None, 7, 6, 5, 1)]),
    ("Conv2D", {"filters": 6, "kernel_size": 3, "groups": 3}, [(None, 9, 9, 3)]),
    ("Conv1DTranspose", {"filters": 3, "kernel_size": 3, "strides": 2}, [(None, 5, 2)]),
    ("Conv2DTranspose", {"filters": 3, "kernel_size": 3, "strides": 2, "padding": "same"}, [(None, 5, 4, 2)]),
    ("Conv2DTranspose", {"filters": 3, "kernel_size": 4, "strides": 2, "output_padding": 1}, [(None, 5, 4, 2)]),
    ("Conv3DTranspose", {"filters": 2, "kernel_size": 2, "strides": 2}, [(None, 3, 3, 3, 1)]),
    ("DepthwiseConv2D", {"kernel_size": 3, "depth_multiplier": 2, "strides": 2}, [(None, 8, 8, 3)]),
    ("DepthwiseConv1D", {"kernel_size": 3, "padding": "same"}, [(None, 8, 3)]),
    ("SeparableConv2D", {"filters": 5, "kernel_size": 3}, [(None, 8, 8, 3)]),
    ("SeparableConv1D", {"filters": 5, "kernel_size": 2, "strides": 2}, [(None, 9, 3)]),
    ("MaxPooling2D", {"pool_size": 3, "strides": 2}, [(None, 9, 9, 3)]),
    ("AveragePooling1D", {"pool_size": 2, "padding": "same"}, [(None, 7, 3)]),
    ("MaxPooling3D", {"pool_size": 2}, [(None, 4, 5, 6, 2)]),
    ("AveragePooling2D", {"pool_size": 2, "data_format": "channels_first"}, [(None, 3, 6, 7)]),
    ("GlobalAveragePooling2D", {"keepdims": True}, [(None, 5, 5, 3)]),
    ("GlobalMaxPooling1D", {}, [(None, 5, 3)]),
    ("GlobalAveragePooling3D", {"data_format": "channels_first"}, [(None, 3, 4, 4, 4)]),
    ("Flatten", {}, [(None, 3, 4, 5)]),
    ("Reshape", {"target_shape": [-1, 4]}, [(None, 3, 8)]),
    ("Permute", {"dims": [2, 1, 3]}, [(None, 3, 4, 5)]),
    ("RepeatVector", {"n": 3}, [(None, 4)]),
    ("Cropping2D", {"cropping": [[1, 2], [0, 1]]}, [(None, 8, 8, 3)]),
    ("Cropping1D", {"cropping": [1, 2]}, [(None, 8, 3)]),
    ("ZeroPadding2D", {"padding": [[1, 0], [2, 2]]}, [(None, 4, 4, 3)]),
    ("ZeroPadding3D", {"padding": 1}, [(None, 2, 3, 4, 1)]),
    ("UpSampling2D", {"size": [2, 3]}, [(None, 4, 4, 3)]),
    ("UpSampling1D", {"size": 3}, [(None, 4, 3)]),
    ("LSTM", {"units": 5, "return_sequences": True}, [(None, 7, 3)]),
    ("GRU", {"units": 5, "return_state": True}, [(None, 7, 3)]),
    ("SimpleRNN", {"units": 2}, [(None, 7, 3)]),
    ("RNN", {"cell": {"module": "keras.layers", "class_name": "LSTMCell", "config": {"units": 3}}, "return_state": True},
     [(None, 7, 3)]),
    ("RNN", {"return_sequences": True, "cell": {"module": "keras.layers", "class_name": "StackedRNNCells", "config": {
        "cells": [{"module": "keras.layers", "class_name": c, "config": {"units": u}} for c, u in (("GRUCell", 4), ("SimpleRNNCell", 2))]}}},
     [(None, 7, 3)]),
    ("Bidirectional", {"layer": {"module": "keras.layers", "class_name": "LSTM", "config": {"units": 4, "return_sequences": True}}},
     [(None, 6, 3)]),
    ("Bidirectional", {"merge_mode": "sum", "layer": {"module": "keras.layers", "class_name": "GRU", "config": {"units": 4}}}, [(None, 6, 3)]),
    ("TimeDistributed", {"layer": {"module": "keras.layers", "class_name": "Dense", "config": {"units": 2}}}, [(None, 6, 3)]),
    ("MultiHeadAttention", {"num_heads": 2, "key_dim": 3}, [(None, 4, 8), (None, 6, 5)]),
    ("Attention", {}, [(None, 4, 8), (None, 6, 8)]),
    ("Concatenate", {"axis": 1}, [(None, 2, 3), (None, 4, 3)]),
    ("Add", {}, [(None, 1, 3), (None, 4, 3)]),
    ("Dot", {"axes": 1}, [(None, 4), (None, 4)]),
    ("Dot", {"axes": [2, 2]}, [(None, 3, 4), (None, 5, 4)]),
    ("BatchNormalization", {}, [(None, 4, 3)]),
    ("Resizing", {"height": 5, "width": 6}, [(None, 8, 8, 3)]),
    ("CenterCrop", {"height": 5, "width": 6}, [(None, 8, 8, 3)]),
]


def _keras_shape(keras, class_name, config, shapes):
    layer = keras.layers.deserialize({"class_name": class_name, "config": config, "module": "keras.layers"})
    inputs = [keras.KerasTensor(shape) for shape in shapes]
    if class_name == "MultiHeadAttention":
        out = layer(inputs[0], inputs[1])
    else:
        out = layer(inputs if len(inputs) > 1 else inputs[0])
    out = out if isinstance(out, (list, tuple)) else [out]
    return [tuple(t.shape) for t in out]


@pytest.mark.parametrize("class_name,config,shapes", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_output_shape_is_what_keras3_computes(keras3, class_name, config, shapes):
    rule = catalogue.get(class_name).output_shape
    ours = rule(config, shapes)
    ours = ours if isinstance(ours, list) else [ours]
    assert ours == _keras_shape(keras3, class_name, config, shapes)
