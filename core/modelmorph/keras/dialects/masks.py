"""Keras 3 mask computations in a Functional graph, which tf_keras does not record.

Keras 3 computes a layer's output mask with ``keras.ops`` calls (``Embedding(mask_zero=True)``:
``not_equal(ids, 0)``; ``Masking``: ``any(not_equal(x, mask_value), axis=-1)``; merge layers:
``logical_or`` of their inputs' masks) and records those calls as operations in the graph,
passing their result to the consumer as its ``mask`` argument. tf_keras recomputes masks
itself from the same layers, so the Keras 2 config carries neither the operations nor the
``mask`` arguments. Where the recorded mask is not the one tf_keras computes (merged masks:
tf_keras keeps a step only when *every* input keeps it, Keras 3 when *any* does; masks built
by hand), the numbers may change, and a ``lossy`` diagnostic says so.
"""

from __future__ import annotations

from typing import Any

from ...diagnostics import Diagnostics
from .nodes import _history
from .tfops import TFOP_CLASSES, _OPS_MODULE


def _is_operation(entry: dict) -> bool:
    return entry.get("class_name") in TFOP_CLASSES or str(entry.get("module")).startswith(_OPS_MODULE)


def _tensors(value: Any):
    """Every tensor reference (``keras_history``) inside a call argument."""
    ref = _history(value)
    if ref is not None:
        if isinstance(ref, list) and len(ref) == 3 and isinstance(ref[0], str) \
                and all(isinstance(i, int) and i >= 0 for i in ref[1:]):
            yield ref  # anything else is data that only looks like a tensor: never followed
    elif isinstance(value, list):
        for v in value:
            yield from _tensors(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors(v)


def drop_mask_operations(entries: list[dict], output_names: set, diags: Diagnostics) -> list[dict]:
    """The Keras 3 layer entries of a Functional config without its mask computations: every
    ``mask`` call argument is removed, and so is every operation used only to compute one
    (``output_names``: the layers the model outputs, kept whatever they are)."""
    by_name = {e.get("name"): e for e in entries}
    # Only masks computed by operations: a mask tensor from a layer or an input was passed on
    # purpose (``lstm(x, mask=m)``), and tf_keras takes it as a call argument too.
    masked = [(e, node) for e in entries if not _is_operation(e)
              for node in e.get("inbound_nodes") or [] if isinstance(node, dict)
              and isinstance(node.get("kwargs"), dict) and _computed(node["kwargs"].get("mask"), by_name)]
    if not masked:
        return entries
    for entry, node in masked:
        why = _differs(node["kwargs"]["mask"], by_name)
        if why:
            diags.add("lossy", f"its input mask {why}; tf_keras computes masks itself from the layers, "
                      "so the numbers may change", entry.get("name"))
        node["kwargs"] = {k: v for k, v in node["kwargs"].items() if k != "mask"}
    # Operations nothing reads any more (iteratively: a mask's inputs become unread in turn).
    kept = list(entries)
    while True:
        read = {ref[0] for e in kept for node in e.get("inbound_nodes") or [] for ref in _tensors(node)}
        read |= output_names
        unread = [e for e in kept if _is_operation(e) and e.get("name") not in read]
        if not unread:
            return kept
        kept = [e for e in kept if e not in unread]


def _computed(mask: Any, by_name: dict) -> bool:
    """Whether a ``mask`` call argument holds tensors, all made by operations."""
    refs = list(_tensors(mask))
    return bool(refs) and all(_is_operation(by_name.get(ref[0]) or {}) for ref in refs)


def _differs(mask: Any, by_name: dict) -> str | None:
    """Why a recorded mask may not be the one tf_keras computes, or ``None`` when it is."""
    refs = list(_tensors(mask))
    if len(refs) != 1:
        return "is a structure of masks"
    return _auto_mask(refs[0], by_name)


def _auto_mask(ref: list, by_name: dict) -> str | None:
    entry = by_name[ref[0]]
    nodes = entry.get("inbound_nodes") or []
    node = nodes[ref[1]] if ref[1] < len(nodes) and isinstance(nodes[ref[1]], dict) else {}
    args = list(node.get("args") or [])
    kind, config = entry.get("class_name"), entry.get("config") or {}
    if kind == "LogicalOr":
        return "merges the masks of several inputs (Keras 3 keeps a step any input keeps, tf_keras one all keep)"
    if kind == "NotEqual" and len(args) == 2:
        source = next(_tensors(args[0]), None)
        if source is not None and _called_on(by_name, source, "Embedding", lambda c: c.get("mask_zero") is True
                                             and args[1] == 0):
            return None
    if kind == "Any" and config.get("axis") == -1 and not config.get("keepdims") and len(args) == 1:
        inner = next(_tensors(args[0]), None)
        inner_entry = by_name.get(inner[0]) if inner is not None else None
        inner_node = (inner_entry or {}).get("inbound_nodes") or []
        if inner_entry is not None and inner_entry.get("class_name") == "NotEqual" and inner[1] < len(inner_node) \
                and isinstance(inner_node[inner[1]], dict):
            inner_args = list(inner_node[inner[1]].get("args") or [])
            source = next(_tensors(inner_args[0]), None) if len(inner_args) == 2 else None
            if source is not None and _called_on(by_name, source, "Masking",
                                                 lambda c: c.get("mask_value", 0.0) == inner_args[1]):
                return None
    return f"is computed by {kind!r} ({ref[0]!r}), not as tf_keras computes masks"


def _called_on(by_name: dict, tensor: list, class_name: str, matches) -> bool:
    """Whether a layer of ``class_name`` whose config ``matches`` is called on ``tensor``."""
    for entry in by_name.values():
        if entry.get("class_name") != class_name or not matches(entry.get("config") or {}):
            continue
        for node in entry.get("inbound_nodes") or []:
            args = (node.get("args") or []) if isinstance(node, dict) else []
            if args and next(_tensors(args[0]), None) == tensor:
                return True
    return False
