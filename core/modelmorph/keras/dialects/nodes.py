"""Graph edges in both dialects: Keras 2 node records ``[layer, node, tensor, kwargs]`` and Keras 3 ``__keras_tensor__`` objects."""

from __future__ import annotations

from typing import Any

from ...diagnostics import Diagnostics
from .. import catalogue


def _is_record(value: Any) -> bool:
    return (isinstance(value, list) and 3 <= len(value) <= 4 and isinstance(value[0], str)
            and isinstance(value[1], int) and isinstance(value[2], int))

def _kwarg_to_keras3(value: Any, seq_names: set) -> Any:
    # tf.keras writes a tensor passed as a keyword argument as [layer, node, tensor].
    if _is_record(value) and len(value) == 3:
        node_index = value[1] - 1 if value[0] in seq_names else value[1]
        return _tensor(value[0], node_index, value[2])
    if isinstance(value, list):
        return [_kwarg_to_keras3(v, seq_names) for v in value]
    return value

def _tensor(layer: str, node_index: int, tensor_index: int) -> dict:
    # Keras 2 records no shape or dtype: left out, the shape inference fills them in.
    return {"class_name": "__keras_tensor__", "config": {"keras_history": [layer, node_index, tensor_index]}}

def _shift_refs(value: Any, names: set, delta: int) -> Any:
    if _is_record(value) and len(value) == 3:
        return [value[0], value[1] + delta if value[0] in names else value[1], value[2]]
    if isinstance(value, list):
        return [_shift_refs(v, names, delta) for v in value]
    if isinstance(value, dict):
        return {k: _shift_refs(v, names, delta) for k, v in value.items()}
    return value

def _history(value: Any) -> list | None:
    if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
        return (value.get("config") or {}).get("keras_history")
    return None

def _tensors_to_records(value: Any, seq_names: set) -> Any:
    ref = _history(value)
    if ref is not None:
        return [ref[0], ref[1] + 1 if ref[0] in seq_names else ref[1], ref[2]]
    if isinstance(value, list):
        return [_tensors_to_records(v, seq_names) for v in value]
    if isinstance(value, dict):
        return {k: _tensors_to_records(v, seq_names) for k, v in value.items()}
    return value


def _node_to_keras3(node: Any, class_name: str, seq_names: set) -> dict:
    """A Keras 2 list-form node (records ``[layer, node, tensor, kwargs]``) as ``{args, kwargs}``."""
    if isinstance(node, dict):
        return node
    if not isinstance(node, list):
        raise ValueError(f"malformed inbound node {node!r:.80}")
    if node and _is_record(node):  # TFOpLambda-style: one record, not a list of records
        node = [node]
    refs, kwargs = [], {}
    for record in node:
        if not _is_record(record):
            raise ValueError(f"malformed inbound node record {record!r:.80}")
        name, node_index, tensor_index = record[0], record[1], record[2]
        if name in seq_names:
            node_index -= 1
        refs.append(_tensor(name, node_index, tensor_index))
        if len(record) > 3 and isinstance(record[3], dict):
            kwargs = record[3]
    kwargs = {k: _kwarg_to_keras3(v, seq_names) for k, v in kwargs.items()}
    described = catalogue.get(class_name)
    keyword = described.keras2_inputs_keyword if described is not None else None
    if keyword is not None:
        # tf_keras flattened [inputs, *initial_state]; its Bidirectional also records unset
        # `initial_state` and `constants` (an argument Keras 3 does not have) as None.
        kwargs = {k: v for k, v in kwargs.items() if not (k in (keyword, "constants") and v is None)}
        if len(refs) > 1:
            return {"args": [refs[0]], "kwargs": {**kwargs, keyword: refs[1:]}}
    args = [refs[0]] if len(refs) == 1 else [refs]
    return {"args": args, "kwargs": kwargs}


def _node_to_keras2(node: Any, class_name: str, seq_names: set, diags: Diagnostics, name: str | None) -> list:
    if isinstance(node, list):
        return node
    args, kwargs = list(node.get("args") or []), dict(node.get("kwargs") or {})
    inputs = args[0] if args else []
    described = catalogue.get(class_name)  # Keras 2 records carry positional arguments after the first as kwargs
    extra_names = described.call_args[1:] if described is not None else ()
    keyword = described.keras2_inputs_keyword if described is not None else None
    if keyword is not None and kwargs.get(keyword) is not None:  # tf_keras lists them as inputs after the first
        extra = kwargs.pop(keyword)
        inputs = [inputs, *(extra if isinstance(extra, list) else [extra])]
    for i, value in enumerate(args[1:]):
        if i < len(extra_names):
            kwargs[extra_names[i]] = value
        else:
            diags.add("unsupported", f"call argument {i + 1} cannot be written in Keras 2 node form; dropped", name)
    kwargs = {k: _tensors_to_records(v, seq_names) for k, v in kwargs.items()}
    flat = inputs if isinstance(inputs, list) else [inputs]
    records = []
    for t in flat:
        ref = _history(t)
        if ref is None:
            diags.add("unsupported", "a non-tensor positional input cannot be written in Keras 2 node form; dropped", name)
            continue
        layer, node_index, tensor_index = ref
        records.append([layer, node_index + 1 if layer in seq_names else node_index, tensor_index, kwargs])
    return records