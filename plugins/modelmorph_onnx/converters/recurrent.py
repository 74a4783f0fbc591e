"""LSTM, GRU and SimpleRNN as ONNX's own LSTM, GRU and RNN operators; Bidirectional as their
``bidirectional`` direction; TimeDistributed as its layer on (batch · steps, ...)."""

from __future__ import annotations

import dataclasses

import numpy as np

from modelmorph import Layer
from modelmorph.keras import catalogue

from ..builder import Value
from ..export import Call

_OPS = {"LSTM": "LSTM", "GRU": "GRU", "SimpleRNN": "RNN"}
_ACTIVATIONS = {"sigmoid": ("Sigmoid", None, None), "tanh": ("Tanh", None, None), "relu": ("Relu", None, None),
                "linear": ("Affine", 1.0, 0.0)}


def _activation(call: Call, name, dialect: str) -> tuple[str, float | None, float | None]:
    name = str(name or "linear").lower()
    if name == "hard_sigmoid":  # Keras 3: relu6(x + 3) / 6; Keras 2: clip(0.2 x + 0.5)
        return ("HardSigmoid", 0.2 if dialect == "keras2" else 1 / 6, 0.5)
    if name not in _ACTIVATIONS:
        raise call.fail(f"a recurrent activation {name!r} has no ONNX form")
    return _ACTIVATIONS[name]


def _gates(call: Call, class_name: str, config: dict, prefix: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """One direction's (W, R, B) in ONNX's gate order and the operator's attributes."""
    units = int(config["units"])
    kernel, recurrent = call.weight(f"{prefix}cell/kernel"), call.weight(f"{prefix}cell/recurrent_kernel")
    use_bias = config.get("use_bias", True)
    attrs: dict = {}
    if class_name == "LSTM":  # Keras i, f, c, o -> ONNX i, o, f, c
        order = np.concatenate([np.arange(g * units, (g + 1) * units) for g in (0, 3, 1, 2)])
        kernel, recurrent = kernel[:, order], recurrent[:, order]
        bias = call.weight(f"{prefix}cell/bias")[order] if use_bias else np.zeros(4 * units, np.float32)
        b = np.concatenate([bias, np.zeros_like(bias)])
    elif class_name == "GRU":  # z, r, h in both
        reset_after = config.get("reset_after", True)
        attrs["linear_before_reset"] = int(bool(reset_after))
        if not use_bias:
            b = np.zeros(6 * units, np.float32)
        elif reset_after:
            bias = call.weight(f"{prefix}cell/bias").reshape(2, 3 * units)
            b = np.concatenate([bias[0], bias[1]])
        else:
            bias = call.weight(f"{prefix}cell/bias")
            b = np.concatenate([bias, np.zeros_like(bias)])
    else:
        bias = call.weight(f"{prefix}cell/bias") if use_bias else np.zeros(units, np.float32)
        b = np.concatenate([bias, np.zeros_like(bias)])
    return kernel.T, recurrent.T, b, attrs


def _check(call: Call, config: dict) -> None:
    for key in ("stateful", "time_major"):
        if config.get(key):
            raise call.fail(f"{key}=True is not exported")
    if len(call.inputs) > 1 or call.kwargs.get("initial_state") is not None or call.kwargs.get("mask") is not None:
        raise call.fail("initial states and masks are not exported yet")


def _run(call: Call, class_name: str, configs: list[dict], prefixes: list[str], direction: str):
    """Run the ONNX operator; returns (Y (T, dirs, B, U), Y_h (dirs, B, U), Y_c or None, units)."""
    b, config = call.b, configs[0]
    x = b.channels_last(call.x)
    if x.rank != 3:
        raise call.fail("a recurrent layer's input must be (batch, steps, features)")
    weights = [_gates(call, class_name, c, p) for c, p in zip(configs, prefixes)]
    stacked = [np.stack([w[i] for w in weights]).astype(np.float32) for i in range(3)]
    units = int(config["units"])
    names = [_activation(call, config.get("recurrent_activation", "sigmoid"), call.dialect),
             _activation(call, config.get("activation", "tanh"), call.dialect)]
    if class_name == "LSTM":
        names.append(names[1])
    elif class_name == "SimpleRNN":
        names = names[1:]
    per_direction = names * len(configs)
    alphas = [a for _, a, _ in per_direction if a is not None]
    betas = [bb for _, _, bb in per_direction if bb is not None]
    time_major = b.op1("Transpose", [x.name], perm=[1, 0, 2])
    outputs = 3 if class_name == "LSTM" else 2
    results = b.op(_OPS[class_name], [time_major, b.weight(stacked[0], "W"), b.weight(stacked[1], "R"),
                                       b.weight(stacked[2], "B")], outputs,
                   hidden_size=units, direction=direction, activations=[n for n, _, _ in per_direction],
                   activation_alpha=alphas or None, activation_beta=betas or None, **weights[0][3])
    return results[0], results[1], results[2] if class_name == "LSTM" else None, units, x


def _batch_major(call: Call, y: str) -> str:
    """(T, B, U) → (B, T, U)."""
    return call.b.op1("Transpose", [y], perm=[1, 0, 2])


def rnn(call: Call) -> Value | list[Value]:
    b, config, class_name = call.b, call.config, call.layer.class_name
    _check(call, config)
    backwards = bool(config.get("go_backwards"))
    y, y_h, y_c, units, x = _run(call, class_name, [config], [""], "reverse" if backwards else "forward")
    batch, steps = x.shape[0], x.shape[1]
    if config.get("return_sequences"):
        seq = b.op1("Squeeze", [y, b.ints([1], "axes")])
        if backwards:  # Keras returns the steps in the order it processed them
            seq = b.op1("Slice", [seq, b.ints([-1], "starts"), b.ints([np.iinfo(np.int64).min], "ends"),
                                  b.ints([0], "axes"), b.ints([-1], "steps")])
        output = Value(_batch_major(call, seq), (batch, steps, units))
    else:
        output = Value(b.op1("Squeeze", [y_h, b.ints([0], "axes")]), (batch, units))
    if not config.get("return_state"):
        return output
    states = [Value(b.op1("Squeeze", [s, b.ints([0], "axes")]), (batch, units)) for s in (y_h, y_c) if s is not None]
    return [output, *states]


def bidirectional(call: Call) -> Value | list[Value]:
    b, config = call.b, call.config
    inner = config.get("layer") or {}
    class_name, inner_config = inner.get("class_name"), inner.get("config") or {}
    backward = (config.get("backward_layer") or {}).get("config") or dict(inner_config, go_backwards=True)
    if class_name not in _OPS:
        raise call.fail(f"Bidirectional around {class_name} is not exported yet")
    if inner_config.get("go_backwards") or not backward.get("go_backwards", True):
        raise call.fail("a Bidirectional whose forward layer runs backwards is not exported")
    _check(call, inner_config)
    y, y_h, y_c, units, x = _run(call, class_name, [inner_config, backward], ["forward_layer/", "backward_layer/"],
                                 "bidirectional")
    batch, steps = x.shape[0], x.shape[1]
    mode = config.get("merge_mode", "concat")
    if inner_config.get("return_sequences"):
        both = b.op1("Transpose", [y], perm=[2, 0, 1, 3])  # (B, T, 2, U)
        shape, axis = (batch, steps), 2
    else:
        both = b.op1("Transpose", [y_h], perm=[1, 0, 2])  # (B, 2, U)
        shape, axis = (batch,), 1
    if mode == "concat":
        outputs = [Value(b.op1("Reshape", [both, b.ints([0] * len(shape) + [-1], "shape")]), (*shape, 2 * units))]
    else:
        halves = b.op("Split", [both, b.ints([1, 1], "split")], 2, axis=axis)
        halves = [b.op1("Squeeze", [h, b.ints([axis], "axes")]) for h in halves]
        if mode is None:
            outputs = [Value(h, (*shape, units)) for h in halves]
        else:
            op_type = {"sum": "Add", "mul": "Mul", "ave": "Mean"}.get(mode)
            if op_type is None:
                raise call.fail(f"merge_mode {mode!r} is not exported")
            outputs = [Value(b.op1(op_type, halves), (*shape, units))]
    if not inner_config.get("return_state"):
        return outputs[0] if len(outputs) == 1 else outputs
    states = []
    for state in (y_h, y_c):
        if state is not None:
            parts = b.op("Split", [state, b.ints([1, 1], "split")], 2, axis=0)
            states.append([Value(b.op1("Squeeze", [p, b.ints([0], "axes")]), (batch, units)) for p in parts])
    forward = [s[0] for s in states]
    backward_states = [s[1] for s in states]
    return outputs + forward + backward_states


def time_distributed(call: Call) -> Value:
    """The wrapped layer's own converter, inlined on the steps folded into the batch:
    (B, T, ...) → Reshape (B·T, ...) → the layer → Reshape (B, T, ...)."""
    b, c = call.b, call.config
    inner = c.get("layer") or {}
    class_name, config = inner.get("class_name"), dict(inner.get("config") or {})
    mask = call.kwargs.get("mask")
    if mask is not None:
        raise call.fail("masks are not exported yet")
    described = catalogue.get(class_name) if isinstance(class_name, str) else None
    converter = described.converters.get("onnx") if described is not None else None
    if converter is None or class_name in ("Functional", "Sequential", "Model"):
        raise call.fail(f"TimeDistributed around {class_name} is not exported yet")
    x = b.channels_last(call.x)
    if x.rank is None or x.rank < 3:
        raise call.fail("an input of (batch, steps, ...) is needed")
    folded_shape = (None, *x.shape[2:])
    if all(d is not None for d in x.shape[2:]):
        folded = b.op1("Reshape", [x.name, b.ints([-1, *x.shape[2:]], "folded")])
    else:
        folded = b.op1("Reshape", [x.name, b.op1("Concat", [b.ints([-1], "minus_one"), _dims(call, x.name, 2)],
                                                          axis=0)])
    prefix = "layer/"
    weights = [dataclasses.replace(w, path=w.path[len(prefix):]) for w in call.layer.weights
               if w.path.startswith(prefix)]
    layer = Layer(name=call.layer.name, class_name=class_name, config=config, module=inner.get("module"),
                  weights=weights)
    result = converter(dataclasses.replace(call, layer=layer, args=[Value(folded, folded_shape, x.dtype)], kwargs={},
                                           _weights=None))
    if isinstance(result, list):
        if len(result) != 1:
            raise call.fail(f"TimeDistributed around a layer with {len(result)} outputs is not exported")
        result = result[0]
    y = b.channels_last(result)
    if y.rank is None:
        raise call.fail(f"the {class_name} inside gives a tensor of unknown rank")
    sizes = b.op1("Concat", [_dims(call, x.name, 0, 2), _dims(call, y.name, 1)], axis=0)
    shape = None if y.shape is None else (x.shape[0], x.shape[1], *y.shape[1:])
    return Value(b.op1("Reshape", [y.name, sizes]), shape, y.dtype)


def _dims(call: Call, name: str, start: int, end: int | None = None) -> str:
    """Shape(name)[start:end] (Shape's own start/end attributes arrive at opset 15: a Slice)."""
    b = call.b
    shape = b.op1("Shape", [name])
    ends = [np.iinfo(np.int64).max if end is None else end]
    return b.op1("Slice", [shape, b.ints([start], "starts"), b.ints(ends, "ends"), b.ints([0], "axes")])


LAYERS = {"LSTM": rnn, "GRU": rnn, "SimpleRNN": rnn, "Bidirectional": bidirectional,
          "TimeDistributed": time_distributed}
