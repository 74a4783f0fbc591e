"""Each layer family's ONNX converter judged by onnxruntime against Keras 3 on small models built
here (random weights; BatchNormalization statistics set away from 0/1), at opsets 13 and 17."""

from __future__ import annotations

import numpy as np
import pytest

import modelmorph
from helpers import assert_close_to_recorded, require

pytestmark = pytest.mark.interop


def _cases(keras):
    L = keras.layers

    def seq(shape, *layers, dtype="float32"):
        x = keras.Input(shape, dtype=dtype, name="x")
        y = x
        for layer in layers:
            y = layer(y)
        return keras.Model(x, y)

    def two(shape_a, shape_b, build):
        a, b = keras.Input(shape_a, name="a"), keras.Input(shape_b, name="b")
        return keras.Model([a, b], build(a, b))

    def mha(x, y):
        return L.MultiHeadAttention(num_heads=3, key_dim=4, value_dim=5)(x, y)

    return {
        "dense_activations": lambda: seq((7,), L.Dense(6, activation="gelu"), L.Dense(5, activation="swish"),
                                         L.Dense(5, activation="hard_sigmoid"), L.Dense(4, activation="softplus"),
                                         L.Dense(4, activation="relu6"), L.Dense(3, activation="softmax")),
        "dense_3d_no_bias": lambda: seq((4, 6), L.Dense(5, use_bias=False, activation="elu"), L.Dense(2)),
        "activation_layers": lambda: seq((10,), L.ReLU(max_value=1.5, negative_slope=0.1), L.Dense(8),
                                         L.LeakyReLU(negative_slope=0.2), L.ELU(alpha=0.7), L.PReLU(),
                                         L.Dense(6), L.Softmax(), L.Activation("tanh")),
        "conv2d_variants": lambda: seq((11, 10, 3), L.Conv2D(4, 3, strides=2, padding="same", activation="relu"),
                                       L.Conv2D(6, (3, 2), padding="valid", dilation_rate=(1, 2)),
                                       L.Conv2D(6, 1, groups=2), L.BatchNormalization(),
                                       L.DepthwiseConv2D(3, depth_multiplier=2, padding="same"),
                                       L.SeparableConv2D(5, 3, padding="same"), L.GlobalAveragePooling2D()),
        "conv1d_causal_pool": lambda: seq((12, 3), L.Conv1D(4, 3, padding="causal", dilation_rate=2),
                                          L.MaxPooling1D(2), L.AveragePooling1D(2, padding="same"),
                                          L.SeparableConv1D(3, 2), L.DepthwiseConv1D(2),
                                          L.GlobalMaxPooling1D(keepdims=True), L.Flatten()),
        "conv3d": lambda: seq((6, 7, 5, 2), L.Conv3D(3, 2, padding="same"), L.MaxPooling3D(2),
                              L.AveragePooling3D(1), L.GlobalAveragePooling3D()),
        "transposed": lambda: seq((5, 4, 3), L.Conv2DTranspose(4, 3, strides=2, padding="same"),
                                  L.Conv2DTranspose(3, 2, strides=3), L.Conv2DTranspose(2, 4, strides=2,
                                                                                         output_padding=1),
                                  L.Flatten()),
        "transposed_1d_3d": lambda: two((6, 3), (3, 3, 3, 2), lambda a, b: L.Concatenate()([
            L.Flatten()(L.Conv1DTranspose(2, 3, strides=2)(a)),
            L.Flatten()(L.Conv3DTranspose(2, 2, strides=2, padding="same")(b))])),
        "pools_2d": lambda: seq((9, 9, 3), L.MaxPooling2D(3, strides=2, padding="same"),
                                L.AveragePooling2D(2, padding="same"), L.GlobalMaxPooling2D()),
        "reshaping": lambda: seq((4, 6), L.Reshape((3, -1)), L.Permute((2, 1)), L.Flatten(), L.RepeatVector(3),
                                 L.Reshape((2, 3, 12)), L.ZeroPadding2D(((1, 0), (2, 1))),
                                 L.Cropping2D(((0, 1), (1, 1))), L.UpSampling2D((2, 1)), L.Flatten()),
        "pad_crop_upsample_1d_3d": lambda: two((5, 3), (2, 3, 2, 1), lambda a, b: L.Concatenate()([
            L.Flatten()(L.UpSampling1D(3)(L.Cropping1D((1, 0))(L.ZeroPadding1D(2)(a)))),
            L.Flatten()(L.UpSampling3D(2)(L.Cropping3D(((0, 1), (1, 0), (0, 0)))(L.ZeroPadding3D(1)(b))))])),
        "bilinear_upsampling": lambda: seq((4, 5, 2), L.UpSampling2D(2, interpolation="bilinear"), L.Flatten()),
        "merging": lambda: two((6,), (6,), lambda a, b: L.Concatenate()([
            L.Add()([a, b]), L.Subtract()([a, b]), L.Multiply()([a, b]), L.Average()([a, b]),
            L.Maximum()([a, b]), L.Minimum()([a, b]), L.Dot(axes=1)([a, b]), L.Dot(axes=1, normalize=True)([a, b])])),
        "dot_3d": lambda: two((3, 4), (5, 4), lambda a, b: L.Flatten()(L.Dot(axes=(2, 2))([a, b]))),
        "cnn_merge_channels_first_inside": lambda: seq((8, 8, 3), L.Conv2D(4, 3, padding="same"),
                                                       L.BatchNormalization(), L.ReLU(), L.MaxPooling2D(),
                                                       L.Conv2D(4, 1), L.Flatten(), L.Dense(3)),
        "normalization": lambda: seq((5, 6), L.LayerNormalization(epsilon=1e-5), L.Dense(6),
                                     L.LayerNormalization(center=False), L.BatchNormalization(axis=1),
                                     L.Rescaling(0.5, offset=0.1), L.Flatten()),
        "embedding": lambda: seq((5,), L.Embedding(20, 4), L.Flatten(), dtype="int32"),
        "lstm_variants": lambda: seq((6, 3), L.LSTM(5, return_sequences=True), L.LSTM(4, go_backwards=True,
                                                                                        return_sequences=True),
                                     L.LSTM(3, recurrent_activation="hard_sigmoid")),
        "gru_simple_rnn": lambda: seq((6, 3), L.GRU(5, return_sequences=True), L.GRU(4, reset_after=False,
                                                                                      return_sequences=True),
                                      L.SimpleRNN(3, go_backwards=True)),
        "bidirectional_modes": lambda: two((6, 3), (6, 3), lambda a, b: L.Concatenate()([
            L.Bidirectional(L.LSTM(3))(a), L.Bidirectional(L.GRU(3), merge_mode="sum")(b),
            L.Bidirectional(L.SimpleRNN(2), merge_mode="mul")(a), L.Bidirectional(L.GRU(2), merge_mode="ave")(b),
            L.Flatten()(L.Bidirectional(L.LSTM(2, return_sequences=True))(a))])),
        "rnn_states": lambda: two((6, 3), (6, 3), lambda a, b: L.Concatenate()([
            *L.LSTM(3, return_state=True)(a), *L.GRU(2, return_state=True)(b)])),
        "attention": lambda: two((4, 6), (5, 7), lambda a, b: L.Flatten()(mha(a, b))),
        "self_attention_no_bias": lambda: seq((4, 6), L.Dense(6), _SelfAttention(L.MultiHeadAttention(
            2, 3, use_bias=False, output_shape=5)), L.Flatten()),
    }


CASES = [
    "dense_activations", "dense_3d_no_bias", "activation_layers", "conv2d_variants", "conv1d_causal_pool", "conv3d",
    "transposed", "transposed_1d_3d", "pools_2d", "reshaping", "pad_crop_upsample_1d_3d", "bilinear_upsampling",
    "merging", "dot_3d", "cnn_merge_channels_first_inside", "normalization", "embedding", "lstm_variants",
    "gru_simple_rnn", "bidirectional_modes", "rnn_states", "attention", "self_attention_no_bias"]


class _SelfAttention:
    """Calls a MultiHeadAttention on one tensor as query and value (for ``seq``)."""

    def __init__(self, layer):
        self.layer = layer

    def __call__(self, x):
        return self.layer(x, x)


def _inputs(model, rng) -> dict:
    out = {}
    for tensor in model.inputs:
        shape = (3, *tensor.shape[1:])
        name = tensor.name.split(":")[0]
        if "int" in str(tensor.dtype):
            out[name] = rng.integers(0, 20, shape).astype(np.int32)
        else:
            out[name] = rng.standard_normal(shape).astype(np.float32)
    return out


@pytest.mark.parametrize("opset", [13, 17])
@pytest.mark.parametrize("case", CASES)
def test_layer_family_exports(case, opset, keras3, tmp_path):
    ort = require("onnxruntime")
    keras3.utils.set_random_seed(abs(hash(case)) % 10_000)
    model = _cases(keras3)[case]()
    rng = np.random.default_rng(3)
    for layer in model.layers:  # statistics away from 0/1, so that a wrong formula shows
        if isinstance(layer, keras3.layers.BatchNormalization):
            layer.moving_mean.assign(rng.standard_normal(layer.moving_mean.shape).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2, layer.moving_variance.shape).astype("float32"))
    source = tmp_path / f"{case}.keras"
    model.save(source)
    out = tmp_path / f"{case}.onnx"
    modelmorph.convert(source, out, options={"opset": opset})
    inputs = _inputs(model, rng)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(None, {i.name: inputs[i.name] for i in session.get_inputs()})
    feed = inputs if len(inputs) > 1 else next(iter(inputs.values()))
    want = model.predict(feed, verbose=0)
    assert_close_to_recorded(got, want if isinstance(want, list) else [want], rtol=1e-4)
