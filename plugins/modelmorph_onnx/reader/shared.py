"""Shared layers: one Keras layer called on several inputs comes back as one layer with several
inbound nodes, not as copies.

ONNX has no layer to share: a weight read by two nodes is one initializer read twice (PyTorch's
exporter, a module called twice), or, in modelmorph's own export, the layer's weights written
once per call under the layer's name. After the walk, two layer calls are one layer when they
have the same class and config, bitwise equal weights, and the file says they are one: at
least one weight is the same initializer's data, or modelmorph's export named both calls'
nodes after the same Keras layer. The later call becomes the earlier layer's next inbound node
(``keras_history`` ``[layer, node index, tensor index]``, as Keras 3 writes a shared layer).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from .reload import View, root


def share_layers(g: Any) -> None:
    """Merge the calls of ``g.entries`` that are one layer (see the module)."""
    groups: dict[str, list[dict]] = {}
    for entry in g.entries:
        if entry["class_name"] == "InputLayer" or not g.weights.get(entry["name"]) \
                or entry["module"] != "keras.layers":
            continue
        config = {k: v for k, v in entry["config"].items() if k != "name"}
        try:
            key = json.dumps([entry["class_name"], config, entry.get("build_config")], sort_keys=True)
        except TypeError:
            continue
        groups.setdefault(key, []).append(entry)
    merged: dict[str, tuple[str, int]] = {}  # later layer → (the layer, its node index)
    for members in groups.values():
        bases: list[dict] = []
        for entry in members:
            base = next((b for b in bases if _one_layer(g, b["name"], entry["name"])), None)
            if base is None:
                bases.append(entry)
                continue
            merged[entry["name"]] = (base["name"], len(base["inbound_nodes"]))
            base["inbound_nodes"].extend(entry["inbound_nodes"])
    if not merged:
        return
    g.entries[:] = [e for e in g.entries if e["name"] not in merged]
    for name in merged:
        g.weights.pop(name, None)
    records = [t.record for t in g.tensors.values()]
    for entry in g.entries:
        records.extend(_records(entry["inbound_nodes"]))
    for record in {id(r): r for r in records}.values():
        history = record["config"]["keras_history"]
        if history[0] in merged:
            base, node = merged[history[0]]
            history[0], history[1] = base, node + history[1]


def _one_layer(g: Any, a: str, b: str) -> bool:
    ours, theirs = g.weights[a], g.weights[b]
    if len(ours) != len(theirs):
        return False
    same_scope = g.keras_names and g.scopes.get(a) is not None and g.scopes.get(a) == g.scopes.get(b)
    if not same_scope and not any(_same_source(x, y) for x, y in zip(ours, theirs)):
        return False
    return all(_equal(x, y) for x, y in zip(ours, theirs))


def _same_source(x, y) -> bool:
    """Both weights are the same data of one initializer."""
    if isinstance(x, View) and isinstance(y, View):
        return x == y
    if isinstance(x, np.ndarray) and isinstance(y, np.ndarray):
        return root(x) is root(y) and x.__array_interface__ == y.__array_interface__
    return False


def _equal(x, y) -> bool:
    if tuple(x.shape) != tuple(y.shape) or np.dtype(x.dtype) != np.dtype(y.dtype):
        return False
    x, y = (w() if isinstance(w, View) else w for w in (x, y))
    return np.array_equal(np.ascontiguousarray(x).view(np.uint8), np.ascontiguousarray(y).view(np.uint8))


def _records(value) -> list[dict]:
    out: list[dict] = []
    if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
        out.append(value)
    elif isinstance(value, dict):
        for v in value.values():
            out.extend(_records(v))
    elif isinstance(value, list):
        for v in value:
            out.extend(_records(v))
    return out
