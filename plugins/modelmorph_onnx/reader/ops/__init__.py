"""The op converters: ONNX op type → a function mapping one node onto Keras layers.

Each converter is ``convert(graph, node, attributes)``; it reads its inputs through the
graph (``graph.tensor``, ``graph.const``), appends layers with ``graph.layer`` and raises
``Unsupported`` for what Keras cannot express faithfully. One module per family.
"""

from __future__ import annotations

from .activations import activation, clip, elu, gelu, hard_sigmoid, leaky_relu, softmax, unary_op
from .conv import conv, global_pool, pool
from .dense import gemm, matmul
from .elementwise import binary, cast, identity
from .normalization import batch_norm
from .reduce import reduce_op
from .shape import concat, flatten, pad, reshape, resize, squeeze_unsqueeze, transpose

CONVERTERS = {
    "Conv": conv, "Gemm": gemm, "MatMul": matmul, "BatchNormalization": batch_norm,
    "Relu": activation("relu"), "Sigmoid": activation("sigmoid"), "Tanh": activation("tanh"),
    "Softplus": activation("softplus"), "Softsign": activation("softsign"), "Selu": activation("selu"),
    "HardSwish": activation("hard_silu"), "LeakyRelu": leaky_relu, "Elu": elu, "HardSigmoid": hard_sigmoid,
    "Gelu": gelu, "Softmax": softmax, "Clip": clip,
    "Erf": unary_op("Erf", "keras.src.ops.math"), "Exp": unary_op("Exp"), "Log": unary_op("Log"),
    "Sqrt": unary_op("Sqrt"), "Abs": unary_op("Absolute"), "Neg": unary_op("Negative"),
    "Reciprocal": unary_op("Reciprocal"), "Floor": unary_op("Floor"), "Ceil": unary_op("Ceil"),
    "MaxPool": pool("Max"), "AveragePool": pool("Average"),
    "GlobalAveragePool": global_pool("Average"), "GlobalMaxPool": global_pool("Max"),
    "ReduceMean": reduce_op("Average", "Mean"), "ReduceMax": reduce_op("Max", "Max"), "ReduceSum": reduce_op("", "Sum"),
    "Flatten": flatten, "Reshape": reshape, "Transpose": transpose, "Squeeze": squeeze_unsqueeze,
    "Unsqueeze": squeeze_unsqueeze, "Identity": identity, "Dropout": identity, "Cast": cast,
    "Add": binary, "Sub": binary, "Mul": binary, "Div": binary, "Pow": binary, "Max": binary, "Min": binary,
    "Concat": concat, "Pad": pad, "Resize": resize, "Upsample": resize,
}
"""ONNX op type (default domain) → converter."""
