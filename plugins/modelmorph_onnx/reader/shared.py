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
import zlib
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
        # A call is compared only with the earlier layers that share a weight's source (or a
        # scope) with it and whose weights have the same fingerprint, both of which _one_layer
        # needs: comparing it with every earlier layer of the same config made 4,000 Dense layers
        # take 11 s. Same choice as that scan: the first. Weights are read for a fingerprint only
        # when a layer shares a source with another (tied weights), each layer's once.
        bases: list[dict] = []
        waiting: dict[Any, list[int]] = {}  # source or scope → positions in bases not fingerprinted yet
        printed: dict[Any, dict[int, list[int]]] = {}  # source or scope → fingerprint → positions in bases
        prints: dict[str, int] = {}  # layer → fingerprint of its weights
        for entry in members:
            sources = _sources(g, entry["name"])
            near: set[int] = set()
            for source in sources:
                if source in waiting or source in printed:
                    mine = _fingerprint(g, entry["name"], prints)
                    for i in waiting.pop(source, ()):
                        printed.setdefault(source, {}).setdefault(_fingerprint(g, bases[i]["name"], prints), []).append(i)
                    near.update(printed[source].get(mine, ()))
            base = next((bases[i] for i in sorted(near) if _one_layer(g, bases[i]["name"], entry["name"])), None)
            if base is None:
                for source in sources:
                    waiting.setdefault(source, []).append(len(bases))
                bases.append(entry)
                continue
            merged[entry["name"]] = (base["name"], len(base["inbound_nodes"]))
            base["inbound_nodes"].extend(entry["inbound_nodes"])
    if not merged:
        return
    g.rewired()
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


def _sources(g: Any, name: str) -> set:
    """What layer ``name`` can share with another for :func:`_one_layer`: its scope in
    modelmorph's export, and each weight's source (by position), as what :func:`_same_source`
    compares (an array: its memory's owner and its place in it)."""
    out: set = set()
    if g.keras_names and g.scopes.get(name) is not None:
        out.add(("scope", g.scopes[name]))
    for i, w in enumerate(g.weights[name]):
        if isinstance(w, View):
            out.add((i, w))
        elif isinstance(w, np.ndarray):
            face = w.__array_interface__
            out.add((i, id(root(w)), face["data"], face["shape"], face["strides"], face["typestr"]))
    return out


def _one_layer(g: Any, a: str, b: str) -> bool:
    ours, theirs = g.weights[a], g.weights[b]
    if len(ours) != len(theirs):
        return False
    same_scope = g.keras_names and g.scopes.get(a) is not None and g.scopes.get(a) == g.scopes.get(b)
    if not same_scope and not any(_same_source(x, y) for x, y in zip(ours, theirs)):
        return False
    return all(_equal(x, y) for x, y in zip(ours, theirs))


def _fingerprint(g: Any, name: str, prints: dict[str, int]) -> int:
    """A hash of layer ``name``'s weights (shapes, dtypes, bytes), equal for weights
    :func:`_equal` finds equal; computed once per layer."""
    if name not in prints:
        arrays = (w() if isinstance(w, View) else w for w in g.weights[name])
        prints[name] = hash(tuple((tuple(x.shape), np.dtype(x.dtype).str,
                                   zlib.crc32(np.ascontiguousarray(x).view(np.uint8))) for x in arrays))
    return prints[name]


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
