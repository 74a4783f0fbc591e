"""Writing a model as a TensorFlow checkpoint: ``<prefix>.index``, data shard(s), the object
graph TensorFlow restores by, and the ``checkpoint`` state file naming it the latest.

Tensors are streamed one at a time: each weight is read, written and dropped; a weight whose
bytes lie in a file (``Weight.raw``) is copied file to file instead: by the kernel when the
source gives its CRC-32C (a checkpoint), else together with the tensors next to it in the
writer's order (``BundleWriter.add_copies``: two threads share them) through a small buffer per
thread that gives the CRC-32C, and the CRC-32 a zip source's check would otherwise read the
bytes again for. A checkpoint's
string tensors are copied as they lie; where the source lets the copy do its check
(``ByteRange.claim_check``), through one small buffer that feeds it: one read, not two.
No protobuf: the index, the object graph and the state file are encoded here (``.bundle``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from modelmorph import Diagnostics, Model, Progress, ReadError, UsageError, Weight, WriteError
from modelmorph.storage import protowire as wire

from . import naming
from .bundle import BundleError, BundleWriter, ByteCopy, TrackableNode, build_object_graph, write_checkpoint_state
from .optimizer import optimizer_object
from .reader import CHECKPOINT_KEYS, OBJECT_GRAPH

#: IR dtypes a checkpoint stores as the bytes a ByteRange holds (C order, little-endian).
_COPYABLE = frozenset({"float16", "bfloat16", "float32", "float64", "int8", "int16", "int32", "int64",
                       "uint8", "uint16", "uint32", "uint64", "bool", "complex64", "complex128"})


def write(model: Model, path: Path, *, options: dict, diagnostics: Diagnostics, progress: Progress | None = None) -> None:
    progress = progress or Progress()
    prefix = path.with_name(path.name[: -len(".index")]) if path.name.endswith(".index") else path
    if not prefix.name:
        raise UsageError(f"{path.name}: a checkpoint needs a prefix name before .index")
    max_shard_size = options.get("max_shard_size")
    weights = _weights(model)
    claims = _claim_copies(weights)  # first: the source's check thread may be running
    checks = _claim_string_checks(weights)
    try:
        _write(model, prefix, max_shard_size, options, diagnostics, progress, claims, checks, path)
    finally:
        for report in claims.values():  # not copied after all: the check reads them itself
            report(None)
        for check in checks.values():
            check(None)  # likewise: given back unfed
    write_checkpoint_state(prefix.parent, prefix.name)


def _write(model: Model, prefix: Path, max_shard_size: int | None, options: dict, diagnostics: Diagnostics,
           progress: Progress, claims: dict[int, Callable[[int | None], None]],
           checks: dict[int, Callable[..., None]], path: Path) -> None:
    tensors, graph = _plan(model, options.get("naming"), diagnostics)
    progress.start(sum(w.nbytes for _, w in tensors), f"writing {prefix.name}")
    with BundleWriter(prefix, max_shard_size=max_shard_size) as bundle:
        copies: list[ByteCopy] = []  # tensors copied together (BundleWriter.add_copies), until another kind comes
        for key, weight in tensors:
            raw = weight.raw
            if _copyable(weight) and raw.crc32c is None:  # the same bytes as a checkpoint stores them, no numpy
                copies.append(ByteCopy(key, weight.dtype, weight.shape, raw.file, raw.offset, raw.nbytes,
                                       claims.pop(id(weight), None)))
                continue
            _add_copies(bundle, copies, progress, path)
            _add_one(bundle, key, weight, checks, path)
            progress.advance(weight.nbytes)
        _add_copies(bundle, copies, progress, path)
        if graph is not None:
            bundle.add_object_graph(graph)


def _add_one(bundle: BundleWriter, key: str, weight: Weight, checks: dict[int, Callable[..., None]], path: Path) -> None:
    """Write one tensor that is not copied together with others (see ``_write``)."""
    raw = weight.raw
    if raw is not None and raw.layout == "tf-string" and weight.dtype == "string":
        try:  # stored as a checkpoint stores strings: copied as it lies, the entry's CRC with it
            bundle.add_string_bytes(key, weight.shape, raw.file, raw.offset, raw.nbytes, crc32c=raw.crc32c,
                                    check=checks.pop(id(weight), None))
        except EOFError:
            raise ReadError(getattr(raw.file, "name", path), f"variable {key!r}: its data ends early") from None
        except BundleError as exc:  # only when the source gave no CRC: the copy's layout is bad
            raise ReadError(getattr(raw.file, "name", path), f"variable {key!r}: {exc.problem}") from None
        return
    if _copyable(weight):
        try:  # a checkpoint's tensor, whose checked CRC-32C the source gives: the kernel copies
            bundle.add_bytes(key, weight.dtype, weight.shape, raw.file, raw.offset, raw.nbytes, crc32c=raw.crc32c)
        except EOFError:
            raise ReadError(getattr(raw.file, "name", path), f"variable {key!r}: its data ends early") from None
        return
    value = weight.read()
    if tuple(value.shape) != tuple(weight.shape):
        raise WriteError(path, f"variable {key!r}: its data has shape {list(value.shape)}, "
                               f"the model declares {list(weight.shape)}")
    bundle.add(key, value, dtype=weight.dtype)  # one tensor in memory at a time: dropped on return


def _add_copies(bundle: BundleWriter, copies: list[ByteCopy], progress: Progress, path: Path) -> None:
    """Copy the tensors gathered in ``copies`` (emptied) into ``bundle``."""
    if not copies:
        return
    try:
        bundle.add_copies(copies, progress.advance)
    except EOFError:
        short = next((c for c in copies if _ends_early(c)), None)
        if short is None:
            raise ReadError(getattr(copies[0].file, "name", path), "a variable's data ends early") from None
        raise ReadError(getattr(short.file, "name", path), f"variable {short.key!r}: its data ends early") from None
    finally:
        copies.clear()


def _ends_early(copy: ByteCopy) -> bool:
    """Whether ``copy``'s file is shorter than its bytes' end (which copy an EOFError came from)."""
    try:
        return os.fstat(copy.file.fileno()).st_size < copy.offset + copy.nbytes
    except (AttributeError, OSError, ValueError):  # an in-memory file: no descriptor
        return False


def _copyable(weight: Weight) -> bool:
    """Whether ``weight`` is copied as the bytes its source holds (``Weight.raw``)."""
    raw = weight.raw
    return raw is not None and raw.layout == "plain" and raw.nbytes == weight.nbytes and weight.dtype in _COPYABLE


def _weights(model: Model) -> list[Weight]:
    weights = [w for _, _, w in model.iter_weights()]
    if model.optimizer is not None:
        weights += model.optimizer.variables + [slot.weight for slot in model.optimizer.slots]
    return weights


def _claim_copies(weights) -> dict[int, Callable[[int | None], None]]:
    """Take over the source's CRC-32 check of the tensors whose bytes the writer reads anyway
    (those without a CRC-32C of their own: it is computed on the way), where the source offers
    it (``ByteRange.claim_crc32``): where to report each one's CRC-32, by ``id`` of the weight.
    All are claimed before anything else (the object graph, protobuf's import), so that the
    source's check (a thread working from the last tensor back) leaves them to the copies and
    reads no byte twice."""
    claims = {}
    for weight in weights:
        claim = getattr(weight.raw, "claim_crc32", None)
        if claim is not None and weight.raw.crc32c is None and _copyable(weight):
            report = claim()
            if report is not None:
                claims[id(weight)] = report
    return claims


def _claim_string_checks(weights) -> dict[int, Callable[..., None]]:
    """Take over the source's CRC-32C check of the string tensors copied as they lie, where it
    offers it (``ByteRange.claim_check``): the copy reads their bytes once, for itself and for
    the check, instead of waiting for the check to read them first. By ``id`` of the weight."""
    checks = {}
    for weight in weights:
        raw = weight.raw
        if raw is not None and raw.layout == "tf-string" and weight.dtype == "string" and raw.claim_check is not None:
            feed = raw.claim_check()
            if feed is not None:
                checks[id(weight)] = feed
    return checks


def _plan(model: Model, scheme: str | None, diagnostics: Diagnostics) -> tuple[list[tuple[str, Weight]], object]:
    """The tensors to write under their keys, and the object graph (None: write none)."""
    if not model.has_architecture:
        if scheme is not None:
            raise UsageError("-O naming applies to models with an architecture; a weights-only model keeps its "
                             "checkpoint keys, or is named by its layer and weight paths (give an architecture with --arch)")
        recorded = _recorded_keys(model)
        if recorded is not None:
            return recorded, _pruned_graph(model.extra.get(OBJECT_GRAPH), {key for key, _ in recorded}, diagnostics)
        scheme = "module"
    scheme = scheme or "keras2"
    variables: dict[str, TrackableNode] = {}
    model_node = TrackableNode()
    _fill(model_node, model, scheme, "", variables, diagnostics)
    optimizer = optimizer_object(model, scheme, variables, diagnostics)
    if optimizer is not None:
        model_node.add_child("optimizer", optimizer)
    root = model_node
    if scheme == "keras3":  # tf.train.Checkpoint(model=m): the model is the root's child
        root = TrackableNode()
        root.add_child("model", model_node)
    built = build_object_graph(root)
    return list(built.values()), built.graph


def _fill(node: TrackableNode, model: Model, scheme: str, prefix: str, variables: dict[str, TrackableNode],
          diagnostics: Diagnostics) -> None:
    """Attach ``model``'s layers and variables under ``node`` as ``scheme`` names them."""
    for obj in naming.layer_objects(model, scheme, prefix):
        layer_node = _descend(node, obj.path)
        for alias in obj.aliases:
            _descend(node, alias[:-1]).add_child(alias[-1], layer_node)
        if obj.layer.submodel is not None:
            _fill(layer_node, obj.layer.submodel, scheme, obj.layer_path + "/", variables, diagnostics)
            continue
        for weight in obj.layer.weights:
            relative = naming.variable_path(obj.layer, weight.path, scheme)
            if relative is None:
                diagnostics.add("unsupported", f"class {obj.layer.class_name!r} is not in the layer catalogue, so the "
                                               f"names Keras gives its variables are unknown; they are written under "
                                               f"their positions, where {scheme} Keras will not restore them",
                                obj.layer_path)
                relative = tuple(weight.path.split("/"))
            elif naming.untracked(obj.layer, weight.path, scheme):
                diagnostics.add("unsupported", "Keras 3 keeps no checkpoint path to the variables of a list of "
                                               f"sub-objects (StackedRNNCells' cells); they are written under "
                                               f"{'/'.join(relative[:-1])}, where it will not restore them",
                                obj.layer_path)
            full_path = f"{obj.layer_path}/{weight.path}"
            owner = _descend(layer_node, relative[:-1])
            variables[full_path] = owner.add_variable(relative[-1], weight, full_name=full_path)


def _descend(node: TrackableNode, path: tuple[str, ...]) -> TrackableNode:
    for name in path:
        node = node.child(name)
    return node


def _recorded_keys(model: Model) -> list[tuple[str, Weight]] | None:
    """A weights-only model read from a checkpoint goes back under the keys it came from."""
    out = []
    for _, layer in model.iter_layers():
        keys = layer.extra.get(CHECKPOINT_KEYS)
        if not isinstance(keys, dict) or any(w.path not in keys for w in layer.weights):
            return None
        out += [(keys[w.path], w) for w in layer.weights]
    return out


def _keys_all_in(graph: bytes, written: set[str]) -> bool:
    """Whether every checkpoint key the serialized object graph names is in ``written``
    (TrackableObjectGraph: nodes = 1; each node's attributes = 2; each one's checkpoint_key = 3)."""
    try:
        return all(wire.text(attribute, 3) in written
                   for node in wire.messages(wire.parse(graph), 1) for attribute in wire.messages(node, 2))
    except wire.WireError:  # protobuf's parse below decides, as it did
        return False


def _pruned_graph(data: bytes | None, written: set[str], diagnostics: Diagnostics):
    """The source's object graph, without the attributes of variables no longer written
    (TensorFlow fails on a key the graph names and the bundle lacks): its bytes as they are
    when it names none, else a message."""
    if not isinstance(data, bytes):
        return None
    if _keys_all_in(data, written):
        return data  # as it came: no protobuf import (tens of ms) to write the same bytes
    from .bundle.protos.trackable_object_graph_pb2 import TrackableObjectGraph  # protobuf: when needed only

    graph = TrackableObjectGraph.FromString(data)
    dropped = 0
    for node in graph.nodes:
        kept = [a for a in node.attributes if a.checkpoint_key in written]
        if len(kept) != len(node.attributes):
            dropped += len(node.attributes) - len(kept)
            del node.attributes[:]
            node.attributes.extend(kept)
    if dropped:
        diagnostics.add("lossy", f"{dropped} variable(s) of the source checkpoint are no longer in the model; "
                                 "the object graph is written without them")
    return graph

