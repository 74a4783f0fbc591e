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

# onnx-seq: recurrent ops, and the readers of their time-major outputs (see ops/recurrent.py)
from .recurrent import RECURRENT, VIEW_OPS, around  # noqa: E402

CONVERTERS.update(RECURRENT)
for _op in (*VIEW_OPS, "ConstantOfShape"):
    CONVERTERS[_op] = around(_op, CONVERTERS.get(_op))

# onnx-ops: the further op families (their modules say what each maps to); Softmax, Cast,
# Max/Min and Resize are replaced by converters covering more of their forms.
from .channelwise import instance_norm, lrn, prelu  # noqa: E402
from .conv_transpose import conv_transpose  # noqa: E402
from .einsum import einsum  # noqa: E402
from .logic import COMPARE, UNARY, cast as real_cast, compare, mod, unary, variadic, where  # noqa: E402
from .reduce_math import _PLAN as _REDUCTIONS, arg_reduce, reduce_math  # noqa: E402
from .resize_interp import resize as resize_interp  # noqa: E402
from .select import expand, gather, slice_op, split, tile  # noqa: E402
from .softmax import softmax as softmax_any_opset  # noqa: E402

CONVERTERS.update({
    "ConvTranspose": conv_transpose, "PRelu": prelu, "InstanceNormalization": instance_norm, "LRN": lrn,
    "Softmax": softmax_any_opset, "LogSoftmax": softmax_any_opset, "Einsum": einsum,
    "Cast": real_cast, "CastLike": real_cast, "Where": where, "Mod": mod,
    "Sum": variadic, "Mean": variadic, "Max": variadic, "Min": variadic,
    "ArgMax": arg_reduce, "ArgMin": arg_reduce, "Resize": resize_interp, "Upsample": resize_interp,
    "Slice": slice_op, "Split": split, "Tile": tile, "Expand": expand,
    **{op: compare for op in COMPARE}, **{op: unary for op in UNARY}, **{op: reduce_math for op in _REDUCTIONS},
})
CONVERTERS["Gather"] = around("Gather", gather)  # recurrent outputs' views are read first, as above

# onnx-seq: LayerNormalization, and its decomposed form found from the first ReduceMean
from .normalization import layer_norm, layer_norm_pattern  # noqa: E402

CONVERTERS["LayerNormalization"] = layer_norm
CONVERTERS["ReduceMean"] = layer_norm_pattern(CONVERTERS["ReduceMean"])

# onnx-ops: forms the converters above would compute differently from ONNX, refused first (ops/guards.py)
from .guards import guard  # noqa: E402

for _op in ("Div", "Pow", "Clip", "Dropout", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceMean"):
    CONVERTERS[_op] = guard(_op, CONVERTERS[_op])

# onnx-layout: layers folded back where a sequence of nodes is one Keras layer (ops/fuse.py)
from .fuse import FUSED_OPS, fused  # noqa: E402

for _op in FUSED_OPS:
    CONVERTERS[_op] = fused(_op, CONVERTERS[_op])

# onnx-ops: wider forms of Pad, Gemm/MatMul and some activations (each falls back to the converter
# above for the forms that one reads), and a few more activations and CumSum
from .activations_more import celu, hardmax, mish, shrink, thresholded_relu  # noqa: E402
from .activations_more import gelu as _gelu_any, hard_sigmoid as _hard_sigmoid_any, is_inf as _is_inf  # noqa: E402
from .activations_more import selu as _selu_any  # noqa: E402
from .matrix import gemm as _gemm_any, matmul as _matmul_any  # noqa: E402
from .pad_modes import pad as _pad_any  # noqa: E402
from .reduce_math import cumsum  # noqa: E402

CONVERTERS.update({"Pad": _pad_any(CONVERTERS["Pad"]), "Gemm": _gemm_any(CONVERTERS["Gemm"]),
                   "MatMul": _matmul_any(CONVERTERS["MatMul"]), "Gelu": _gelu_any(CONVERTERS["Gelu"]),
                   "HardSigmoid": _hard_sigmoid_any(CONVERTERS["HardSigmoid"]), "IsInf": _is_inf, "Shrink": shrink,
                   "Celu": celu, "Mish": mish, "ThresholdedRelu": thresholded_relu, "Hardmax": hardmax,
                   "CumSum": cumsum, "Selu": _selu_any(CONVERTERS["Selu"])})

# onnx-classes: multi-head attention written as MatMuls and a Softmax → MultiHeadAttention (ops/attention.py)
from .attention import attention_first  # noqa: E402

CONVERTERS["MatMul"] = attention_first(CONVERTERS["MatMul"])

# onnx-classes: a float16 Dense as modelmorph exports mixed precision (roundings as Cast pairs) (ops/half.py)
from .half import mixed_first  # noqa: E402

CONVERTERS["Cast"] = mixed_first(CONVERTERS["Cast"])
