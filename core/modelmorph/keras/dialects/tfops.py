"""TFOpLambda (tf_keras) ↔ ``keras.ops`` operations (Keras 3)."""

from __future__ import annotations

from typing import Any, NamedTuple

from ...diagnostics import Diagnostics
from ...errors import Inexpressible
from .nodes import _history, _is_record, _kwarg_to_keras3, _tensor, _tensors_to_records


# -- TFOpLambda ↔ keras.ops ----------------------------------------------------------------
# tf_keras records a `tf.*` call on symbolic tensors as a TFOpLambda layer naming the function
# (`"function": "math.multiply"`); its node keeps the first argument's structure, with the
# other arguments as keywords on every record. Keras 3 records a `keras.ops` call as an
# operation (`{"module": "keras.src.ops.numpy", "class_name": "Multiply"}`) whose constructor
# takes the options (axis...) and whose call takes the tensors. Functions with an equivalent
# operation are translated both ways; the others are carried with an `unsupported` diagnostic.
TFOP_CLASSES = ("TFOpLambda", "SlicingOpLambda")

_OPS_MODULE = "keras.src.ops."

_CONSTANT = "_CONSTANT_VALUE"  # tf_keras' record of a non-tensor first argument

class _Op(NamedTuple):
    """The Keras 3 operation ``keras.src.ops.<module>.<name>`` equivalent to a TF function.

    ``operands``: the TF keyword names of the further call arguments, in the operation's call
    order. ``options``: TF keyword → the operation's constructor argument.
    """

    module: str
    name: str
    operands: tuple[str, ...] = ()
    options: tuple[tuple[str, str], ...] = ()

_AXIS = (("axis", "axis"),)

_REDUCE = (("axis", "axis"), ("keepdims", "keepdims"))

#: TF function (as TFOpLambda names it) → Keras 3 operation. The first function listed for
#: an operation is the one written back for it.
TF_OPS: dict[str, _Op] = {
    **{fn: _Op("numpy", name) for fn, name in (
        ("math.abs", "Absolute"), ("math.negative", "Negative"), ("math.exp", "Exp"), ("math.log", "Log"),
        ("math.sqrt", "Sqrt"), ("math.square", "Square"), ("math.tanh", "Tanh"))},
    **{fn: _Op("numpy", name, ("y",)) for fn, name in (
        ("__operators__.add", "Add"), ("math.add", "Add"), ("math.subtract", "Subtract"),
        ("math.multiply", "Multiply"), ("math.truediv", "TrueDivide"), ("math.divide", "TrueDivide"),
        ("math.maximum", "Maximum"), ("math.minimum", "Minimum"), ("math.pow", "Power"))},
    **{fn: _Op("numpy", name, options=_REDUCE) for fn, name in (
        ("math.reduce_sum", "Sum"), ("math.reduce_mean", "Mean"), ("math.reduce_max", "Max"),
        ("math.reduce_min", "Min"))},
    "linalg.matmul": _Op("numpy", "Matmul", ("b",)),
    "concat": _Op("numpy", "Concatenate", options=_AXIS),
    "stack": _Op("numpy", "Stack", options=_AXIS),
    "expand_dims": _Op("numpy", "ExpandDims", options=_AXIS),
    "squeeze": _Op("numpy", "Squeeze", options=_AXIS),
    "compat.v1.squeeze": _Op("numpy", "Squeeze", options=_AXIS),
    "reshape": _Op("numpy", "Reshape", options=(("shape", "newshape"),)),
    "transpose": _Op("numpy", "Transpose", options=(("perm", "axes"),)),
    "compat.v1.transpose": _Op("numpy", "Transpose", options=(("perm", "axes"),)),
    "tile": _Op("numpy", "Tile", options=(("multiples", "repeats"),)),
    "clip_by_value": _Op("numpy", "Clip", options=(("clip_value_min", "x_min"), ("clip_value_max", "x_max"))),
    "__operators__.getitem": _Op("numpy", "GetItem", ("slice_spec",)),
    "cast": _Op("core", "Cast", options=(("dtype", "dtype"),)),
    "nn.relu": _Op("nn", "Relu"),
    "nn.relu6": _Op("nn", "Relu6"),
    "math.sigmoid": _Op("nn", "Sigmoid"),
    "nn.sigmoid": _Op("nn", "Sigmoid"),
    "nn.softmax": _Op("nn", "Softmax", options=_AXIS),
    "math.rsqrt": _Op("math", "Rsqrt"),
}

_TF_FUNCTION_OF: dict[tuple[str, str], str] = {}

for _fn, _op in TF_OPS.items():
    _TF_FUNCTION_OF.setdefault((_op.module, _op.name), _fn)
# keras.ops.divide is true division too (its own class, which no TF function reads back as)
_TF_FUNCTION_OF[("numpy", "Divide")] = "math.truediv"

#: Keyword arguments of TF functions that change nothing with these values (None: any value).
_NEUTRAL_KWARGS = {"name": None, "conjugate": (False,), "transpose_a": (False,), "transpose_b": (False,),
                   "adjoint_a": (False,), "adjoint_b": (False,), "a_is_sparse": (False,), "b_is_sparse": (False,)}

def _tfop_to_keras3(entry: dict, diags: Diagnostics, seq_names: set) -> dict:
    config = dict(entry.get("config") or {})
    name = entry.get("name", config.get("name"))
    function = config.get("function")
    calls = [_tfop_call(node, seq_names) for node in entry.get("inbound_nodes") or []]
    op = TF_OPS.get(function) if isinstance(function, str) else None
    operation = _operation(op, name, calls) if op is not None else None
    if operation is not None:
        return operation
    diags.add("unsupported", f"{entry['class_name']} calling tf.{function} has no Keras 3 operation modelmorph "
              "knows to be equivalent; carried as is (Keras 3 cannot load it)", name)
    return {"module": entry.get("module"), "class_name": entry["class_name"], "config": config,
            "registered_name": entry.get("registered_name") or entry["class_name"], "name": name,
            "inbound_nodes": [{"args": [first], "kwargs": kwargs} for first, kwargs in calls]}

def _tfop_call(node: Any, seq_names: set) -> tuple[Any, dict]:
    """The first argument (its structure kept) and the keyword arguments of one TFOpLambda call."""
    kwargs: dict = {}

    def first_argument(value: Any) -> Any:
        if isinstance(value, list) and 3 <= len(value) <= 4 and value[:2] == [_CONSTANT, -1]:
            kwargs.update(value[3] if len(value) == 4 and isinstance(value[3], dict) else {})
            return value[2]
        if _is_record(value):
            kwargs.update(value[3] if len(value) == 4 and isinstance(value[3], dict) else {})
            return _tensor(value[0], value[1] - 1 if value[0] in seq_names else value[1], value[2])
        if isinstance(value, list):
            return [first_argument(v) for v in value]
        if isinstance(value, dict):
            return {k: first_argument(v) for k, v in value.items()}
        raise ValueError(f"malformed TFOpLambda inbound node {value!r:.80}")

    first = first_argument(node)
    return first, {k: _kwarg_to_keras3(v, seq_names) for k, v in kwargs.items()}

def _operation(op: _Op, name: str, calls: list[tuple[Any, dict]]) -> dict | None:
    """The Keras 3 operation entry for TFOpLambda calls, or None when one cannot be expressed."""
    options: dict | None = None
    nodes = []
    for first, kwargs in calls:
        kwargs = dict(kwargs)
        if any(k not in kwargs for k in op.operands):
            return None
        operands = [_slice_key_to_keras3(kwargs.pop(k)) if k == "slice_spec" else _constant_to_keras3(kwargs.pop(k))
                    for k in op.operands]
        call_options = {k3: kwargs.pop(tf) for tf, k3 in op.options if tf in kwargs}
        neutral = all(k in _NEUTRAL_KWARGS and (_NEUTRAL_KWARGS[k] is None or v in _NEUTRAL_KWARGS[k])
                      for k, v in kwargs.items())
        # Keras 3 options belong to the operation, TF ones to each call: every call must agree.
        if not neutral or (options is not None and call_options != options):
            return None
        options = call_options
        nodes.append({"args": [first, *operands], "kwargs": {}})
    return {"module": _OPS_MODULE + op.module, "class_name": op.name, "config": {"name": name, **(options or {})},
            "registered_name": op.name, "name": name, "inbound_nodes": nodes}

def _constant_to_keras3(value: Any) -> Any:
    """tf_keras writes a constant tensor operand as a nested list, which Keras 3 operations
    cannot take: they get the ``__numpy__`` array Keras 3 writes (its dtype is not recorded:
    float32 for floats, as TF made them, else int32 or bool)."""
    if not isinstance(value, list) or any(_history(v) is not None for v in _leaves(value)):
        return value
    leaves = list(_leaves(value))
    dtype = ("float32" if any(isinstance(v, float) for v in leaves)
             else "bool" if leaves and all(isinstance(v, bool) for v in leaves) else "int32")
    return {"class_name": "__numpy__", "config": {"value": value, "dtype": dtype}}

def _leaves(value: Any):
    if isinstance(value, list):
        for v in value:
            yield from _leaves(v)
    else:
        yield value

def _slice_key_to_keras3(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"start", "stop", "step"}:
        return {"class_name": "__slice__", "config": dict(value)}
    if isinstance(value, list):
        return [_slice_key_to_keras3(v) for v in value]
    return value

def _slice_key_to_keras2(value: Any) -> Any:
    if isinstance(value, dict) and value.get("class_name") == "__slice__":
        return dict(value.get("config") or {})
    if isinstance(value, list):
        return [_slice_key_to_keras2(v) for v in value]
    return value

def _operation_to_keras2(entry: dict, diags: Diagnostics, seq_names: set, name: str | None) -> dict:
    """A Keras 3 operation (or a carried TFOpLambda) as the TFOpLambda tf_keras builds."""
    config = dict(entry.get("config") or {})
    nodes = entry.get("inbound_nodes") or []
    if entry["class_name"] in TFOP_CLASSES:
        class_name, function = entry["class_name"], config.get("function")
        calls = [((n.get("args") or [None])[0], dict(n.get("kwargs") or {})) for n in nodes]
    else:
        module = str(entry.get("module"))[len(_OPS_MODULE):]
        function = _TF_FUNCTION_OF.get((module, entry["class_name"]))
        calls = _tf_calls(TF_OPS[function], config, nodes) if function is not None else None
        if calls is None:  # a file tf_keras cannot load is no Keras 2 model: refuse, don't write one
            raise Inexpressible(f"layer {name!r}: Keras 3 operation {entry['class_name']!r} has no tf_keras "
                                "equivalent modelmorph knows, so Keras 2 cannot load this model (write .keras)")
        class_name = "SlicingOpLambda" if function == "__operators__.getitem" else "TFOpLambda"
    tf_config = {"name": name, "trainable": config.get("trainable", True), "dtype": "float32", "function": function}
    return {"class_name": class_name, "config": tf_config, "name": name,
            "inbound_nodes": [_tfop_node(first, kwargs, seq_names) for first, kwargs in calls]}

def _tf_calls(op: _Op, config: dict, nodes: list) -> list[tuple[Any, dict]] | None:
    options = {tf: config[k3] for tf, k3 in op.options if k3 in config}
    calls = []
    for node in nodes:
        args = list(node.get("args") or [])
        if len(args) != 1 + len(op.operands) or node.get("kwargs"):
            return None
        operands = {k: _slice_key_to_keras2(v) if k == "slice_spec" else _constant_to_keras2(v)
                    for k, v in zip(op.operands, args[1:])}
        calls.append((args[0], {**operands, **options}))
    return calls

def _constant_to_keras2(value: Any) -> Any:
    if isinstance(value, dict) and value.get("class_name") == "__numpy__":
        return (value.get("config") or {}).get("value")
    return value

def _tfop_node(first: Any, kwargs: dict, seq_names: set) -> Any:
    """A TFOpLambda node: the first argument's structure, each leaf a record carrying the keywords."""
    kwargs = {k: _tensors_to_records(v, seq_names) for k, v in kwargs.items()}

    def record(value: Any) -> Any:
        ref = _history(value)
        if ref is not None:
            return [ref[0], ref[1] + 1 if ref[0] in seq_names else ref[1], ref[2], kwargs]
        if isinstance(value, list):
            return [record(v) for v in value]
        if isinstance(value, dict):
            return {k: record(v) for k, v in value.items()}
        return [_CONSTANT, -1, value, kwargs]

    return record(first)