"""The checkpoint writer encodes its index messages (BundleEntryProto, BundleHeaderProto), the
object graph (TrackableObjectGraph) and the ``checkpoint`` state file without protobuf: the bytes
must be protobuf's own, for every kind of field value; TensorFlow's reader judges whole
checkpoints and state files in test_tfckpt_interop.py (partitioned variables included), and
tf_keras restores models from them in tests/tfckpt/test_ckpt_interop.py."""

from __future__ import annotations

import subprocess
import sys

import pytest

from modelmorph_tfckpt.bundle.bundle import _header_bytes, _IndexEntry
from modelmorph_tfckpt.bundle.protos import tensor_bundle_pb2 as tb


def _theirs(entry: _IndexEntry) -> bytes:
    p = tb.BundleEntryProto(dtype=entry.dtype, shard_id=entry.shard_id, offset=entry.offset, size=entry.size,
                            crc32c=entry.crc32c)
    p.shape.SetInParent()  # a scalar's shape is present but empty, as TensorFlow writes it
    for d in entry.shape:
        p.shape.dim.add(size=d)
    for extents in entry.slices:
        sp = p.slices.add()
        for start, length in extents:
            sp.extent.add(start=start, length=length)
    return p.SerializeToString()


@pytest.mark.parametrize("entry", [
    _IndexEntry(1, ()),  # a scalar float at offset 0 of shard 0, CRC 0: every zero field left out
    _IndexEntry(7, (3, 4), 0, 12, 100, 0xFFFFFFFF),
    _IndexEntry(14, (0, 1, 127, 128, 1 << 40), 2, (1 << 62) + 5, 1 << 33, 0x80000000),
    _IndexEntry(9, (5,), -3, 1, 2, 1),  # negative int32: ten bytes, as protobuf writes it
    _IndexEntry(1, (4, 6), slices=[((0, 2), (0, 6)), ((2, 2), (3, 0)), ((300, 1 << 35), (1, 1))]),
])
def test_entries_are_protobufs_bytes(entry):
    assert entry.encode() == _theirs(entry)
    assert tb.BundleEntryProto.FromString(entry.encode()).SerializeToString() == _theirs(entry)


@pytest.mark.parametrize("shards", [0, 1, 2, 127, 128, 99999])
def test_the_header_is_protobufs_bytes(shards):
    header = tb.BundleHeaderProto(num_shards=shards)
    header.version.producer = 1
    assert _header_bytes(shards) == header.SerializeToString()


@pytest.mark.parametrize("paths, timestamps, preserved", [
    (["ckpt"], None, None),
    (["ckpt-1", "ckpt-2", "/elsewhere/ckpt-3"], [1.0, 2.5, 1e-7, 1733150000.123456], 0.5),
    (["x\"y'z\\w", "tab\tnl\ncr\rnul\x00del\x7f", "\u00e9t\u00e9 \u4e2d \U0001f600 \x85"], [0.0, -3.0], 0.0),
    ([""], [float("inf")], 1e300),
])
def test_the_state_file_is_protobufs_text(tmp_path, paths, timestamps, preserved):
    from google.protobuf import text_format

    from modelmorph_tfckpt.bundle import write_checkpoint_state
    from modelmorph_tfckpt.bundle.protos import checkpoint_state_pb2

    written = write_checkpoint_state(tmp_path, paths[-1], paths, all_model_checkpoint_timestamps=timestamps,
                                     last_preserved_timestamp=preserved)
    state = checkpoint_state_pb2.CheckpointState(model_checkpoint_path=paths[-1], all_model_checkpoint_paths=paths,
                                                 all_model_checkpoint_timestamps=timestamps or [],
                                                 last_preserved_timestamp=preserved or 0.0)
    with open(written, encoding="utf-8") as f:
        assert f.read() == text_format.MessageToString(state)


def _protobuf_graph(built, mark: bool) -> bytes:
    """What build_object_graph wrote when it built the message with protobuf."""
    from modelmorph_tfckpt.bundle.protos.trackable_object_graph_pb2 import TrackableObjectGraph

    ids = {id(n): i for i, n in enumerate(built.nodes)}
    key_of = {id(n): k for k, n in built.keys.items()}
    graph = TrackableObjectGraph()
    for node in built.nodes:
        proto = graph.nodes.add()
        for name, child in node.children.items():
            proto.children.add(node_id=ids[id(child)], local_name=name)
        if node.is_variable:
            proto.attributes.add(name="VARIABLE_VALUE", full_name=node.full_name, checkpoint_key=key_of[id(node)])
    for i, node in enumerate(built.nodes):
        for original, slot_name, slot_node in node.slot_variables:
            graph.nodes[i].slot_variables.add(original_variable_node_id=ids[id(original)], slot_name=slot_name,
                                              slot_variable_node_id=ids[id(slot_node)])
    if mark:
        parents, marked = {}, set()
        for i, n in enumerate(graph.nodes):
            if n.attributes or n.slot_variables:
                marked.add(i)
            for ref in n.children:
                parents.setdefault(ref.node_id, set()).add(i)
        todo = list(marked)
        while todo:
            for p in parents.pop(todo.pop(), ()):
                if p not in marked:
                    marked.add(p)
                    todo.append(p)
        for i, n in enumerate(graph.nodes):
            n.has_checkpoint_values.value = i in marked
    return graph.SerializeToString()


def _trees():
    from modelmorph_tfckpt.bundle import TrackableNode

    root = TrackableNode()
    v = root.child("m").add_variable("w", 1)
    root.child("opt").add_slot_variable(v, "m/x", 2)
    yield root
    # Keras 2's aliases (one node under two names), empty objects, full names, non-ASCII names,
    # more than 127 nodes (two-byte node ids), slots of several variables
    root = TrackableNode()
    model = root.child("model")
    variables = []
    for i in range(70):
        layer = model.child(f"layer-{i}")
        model.add_child(f"layer_with_weights-{i}", layer)
        variables.append(layer.add_variable("kernel", i, full_name=f"dense_{i}/kernel:0" if i % 2 else ""))
        layer.child("empty")
    model.child("\u00e9t\u00e9/.x").add_variable("b\u4e2d", 0)
    optimizer = model.child("optimizer")
    optimizer.add_variable("iter", 0)
    for i, variable in enumerate(variables[:5]):
        optimizer.add_slot_variable(variable, "m", 1, full_name=f"m{i}")
        optimizer.add_slot_variable(variable, "v", 2)
    yield root
    yield {"model": {"dense": {"kernel": 1, "bias": 2}}, "save_counter": 3}


@pytest.mark.parametrize("mark", [True, False])
def test_the_object_graph_is_protobufs_bytes(mark):
    from modelmorph_tfckpt.bundle import build_object_graph

    for tree in _trees():
        built = build_object_graph(tree, mark_has_checkpoint_values=mark)
        assert built.graph == _protobuf_graph(built, mark)


def test_writing_a_checkpoint_never_imports_protobuf(tmp_path):
    """A weights-only checkpoint written back as a checkpoint (index, object graph as it came,
    state file), and a .keras model written as one (its object graph built)."""
    from pathlib import Path

    fixtures = Path(__file__).resolve().parents[1] / "fixtures"
    for name in ("copy", "keras"):
        (tmp_path / name).mkdir()
    code = ("import sys, modelmorph\n"
            f"modelmorph.convert({str(fixtures / 'tf_keras' / 'ckpt' / 'mlp_adam')!r}, "
            f"{str(tmp_path / 'copy' / 'ckpt')!r}, to_format='tf-checkpoint')\n"
            f"modelmorph.convert({str(fixtures / 'keras3' / 'embed_lstm_bigru.keras')!r}, "
            f"{str(tmp_path / 'keras' / 'ckpt')!r}, to_format='tf-checkpoint')\n"
            "print(sorted(m for m in sys.modules if m.startswith('google.protobuf') or m.endswith('_pb2')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert (tmp_path / "copy" / "ckpt.index").exists() and (tmp_path / "keras" / "ckpt.index").exists()
