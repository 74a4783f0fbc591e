"""The layer catalogue: which variables a built-in Keras layer has, in saving order.

Keras saves a layer's variables as ``trainable + non-trainable`` in creation order,
both in Keras 2 (``weight_names``) and Keras 3 (``vars/0``, ``vars/1``...). Which ones exist
depends on the config (``use_bias``, ``center``/``scale``...), and composite layers keep
theirs in sub-objects (an LSTM's ``cell``, a Bidirectional's ``forward_layer``): the path
of a variable (``cell/kernel``) names the sub-object it lives in.

Readers use the catalogue to name positional variables; writers to check and order them.
A class the catalogue does not know has ``None`` here and its variables are carried
by position, never guessed. Plugins add classes through ``modelmorph_layer_specs``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple


class Var(NamedTuple):
    path: str
    trainable: bool = True


VarsFn = Callable[[dict], "list[Var]"]


@dataclass(frozen=True)
class LayerSpec:
    """How to list the variables of layers of class ``class_name`` from their config."""

    class_name: str
    variables: VarsFn
    description: str = ""


#: Classes that are models: their variables live in their sublayers.
MODEL_CLASSES = frozenset({"Functional", "Sequential", "Model"})


def _bias(config: dict, key: str = "use_bias") -> list[Var]:
    return [Var("bias")] if config.get(key, True) else []


def _kernel_bias(kernel: str = "kernel") -> VarsFn:
    return lambda c: [Var(kernel)] + _bias(c)


def _none(config: dict) -> list[Var]:
    return []


def _batch_norm(c: dict) -> list[Var]:
    out = [Var("gamma")] if c.get("scale", True) else []
    out += [Var("beta")] if c.get("center", True) else []
    return out + [Var("moving_mean", False), Var("moving_variance", False)]


def _gamma_beta(c: dict) -> list[Var]:
    out = [Var("gamma")] if c.get("scale", True) else []
    return out + ([Var("beta")] if c.get("center", True) else [])


def _rnn(c: dict) -> list[Var]:
    # Keras 2 and 3 both keep the recurrent weights in the layer's `cell`.
    return [Var("cell/kernel"), Var("cell/recurrent_kernel")] + [Var("cell/" + v.path) for v in _bias(c)]


def _cell(c: dict) -> list[Var]:
    return [Var("kernel"), Var("recurrent_kernel")] + _bias(c)


def _einsum_dense(c: dict) -> list[Var]:
    return [Var("kernel")] + ([Var("bias")] if c.get("bias_axes") else [])


def _mha(c: dict) -> list[Var]:
    out: list[Var] = []
    for part in ("query_dense", "key_dense", "value_dense", "output_dense"):
        out.append(Var(f"{part}/kernel"))
        if c.get("use_bias", True):
            out.append(Var(f"{part}/bias"))
    return out


def _normalization(c: dict) -> list[Var]:
    # Given mean/variance in the config, Keras makes constants, not variables.
    if c.get("mean") is not None and c.get("variance") is not None:
        return []
    return [Var("mean", False), Var("variance", False), Var("count", False)]


def _inner(config: dict, key: str) -> tuple[str, dict] | None:
    layer = config.get(key)
    if isinstance(layer, dict) and isinstance(layer.get("class_name"), str):
        return layer["class_name"], layer.get("config") or {}
    return None


def _wrapped(prefix: str, key: str) -> Callable[[dict], list[Var] | None]:
    def variables(c: dict) -> list[Var] | None:
        inner = _inner(c, key)
        if inner is None:
            return None
        inner_vars = variables_of(*inner)
        return None if inner_vars is None else [Var(f"{prefix}/{v.path}", v.trainable) for v in inner_vars]

    return variables


def _bidirectional(c: dict) -> list[Var] | None:
    forward = _wrapped("forward_layer", "layer")(c)
    backward = _wrapped("backward_layer", "backward_layer" if c.get("backward_layer") else "layer")(c)
    if forward is None or backward is None:
        return None
    return forward + backward


def _attention(c: dict) -> list[Var]:
    out = [Var("scale")] if c.get("use_scale") else []
    return out + ([Var("concat_score_weight")] if c.get("score_mode") == "concat" else [])


_BUILTIN: dict[str, Callable[[dict], list[Var] | None]] = {
    "Dense": _kernel_bias(),
    "EinsumDense": _einsum_dense,
    "Embedding": lambda c: [Var("embeddings")],
    "PReLU": lambda c: [Var("alpha")],
    "BatchNormalization": _batch_norm,
    "LayerNormalization": _gamma_beta,
    "GroupNormalization": _gamma_beta,
    "Normalization": _normalization,
    "LSTM": _rnn, "GRU": _rnn, "SimpleRNN": _rnn, "ConvLSTM1D": _rnn, "ConvLSTM2D": _rnn, "ConvLSTM3D": _rnn,
    "LSTMCell": _cell, "GRUCell": _cell, "SimpleRNNCell": _cell,
    "Bidirectional": _bidirectional,
    "TimeDistributed": _wrapped("layer", "layer"),
    "MultiHeadAttention": _mha,
    "Attention": _attention,
    "AdditiveAttention": lambda c: [Var("scale")] if c.get("use_scale", True) else [],
}
for _name in ("Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"):
    _BUILTIN[_name] = _kernel_bias()
for _name in ("DepthwiseConv1D", "DepthwiseConv2D"):
    _BUILTIN[_name] = _kernel_bias("depthwise_kernel")
for _name in ("SeparableConv1D", "SeparableConv2D"):
    _BUILTIN[_name] = lambda c: [Var("depthwise_kernel"), Var("pointwise_kernel")] + _bias(c)

#: Layers that never have variables.
WEIGHTLESS = frozenset(
    """InputLayer Dropout SpatialDropout1D SpatialDropout2D SpatialDropout3D GaussianDropout GaussianNoise
    AlphaDropout ActivityRegularization Activation ReLU LeakyReLU ELU Softmax ThresholdedReLU
    Flatten Reshape Permute RepeatVector Cropping1D Cropping2D Cropping3D ZeroPadding1D ZeroPadding2D ZeroPadding3D
    UpSampling1D UpSampling2D UpSampling3D MaxPooling1D MaxPooling2D MaxPooling3D AveragePooling1D AveragePooling2D
    AveragePooling3D GlobalMaxPooling1D GlobalMaxPooling2D GlobalMaxPooling3D GlobalAveragePooling1D
    GlobalAveragePooling2D GlobalAveragePooling3D Add Subtract Multiply Average Maximum Minimum Concatenate Dot
    Rescaling Masking Identity UnitNormalization Resizing CenterCrop Lambda TFOpLambda SlicingOpLambda
    RandomFlip RandomRotation RandomZoom RandomTranslation RandomContrast RandomCrop""".split()
)
for _name in WEIGHTLESS:
    _BUILTIN[_name] = _none

_REGISTERED: dict[str, Callable[[dict], list[Var] | None]] = {}


def register(spec: LayerSpec) -> None:
    """Add a plugin's layer class (refused for a class the catalogue already has)."""
    if spec.class_name in _BUILTIN or spec.class_name in MODEL_CLASSES:
        raise ValueError(f"layer class {spec.class_name!r} is built into the catalogue and cannot be redefined")
    if spec.class_name in _REGISTERED and _REGISTERED[spec.class_name] is not spec.variables:
        raise ValueError(f"layer class {spec.class_name!r} is already described by another plugin")
    _REGISTERED[spec.class_name] = spec.variables


def is_known(class_name: str) -> bool:
    return class_name in _BUILTIN or class_name in _REGISTERED or class_name in MODEL_CLASSES


def variables_of(class_name: str, config: dict[str, Any]) -> list[Var] | None:
    """The variables of a layer of ``class_name`` with ``config``, in saving order.

    ``None`` when the class is unknown (carry its variables by position) or is a model
    (its variables belong to its sublayers).
    """
    fn = _BUILTIN.get(class_name) or _REGISTERED.get(class_name)
    return None if fn is None else fn(config or {})


def known_classes() -> list[str]:
    return sorted({*_BUILTIN, *_REGISTERED})
