"""modelmorph.storage.protowire against protobuf itself: the same messages, the same values,
and malformed bytes refused; reading checkpoints and SavedModels never imports protobuf."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from modelmorph.storage import protowire as wire
from modelmorph_tfckpt.bundle.protos import tensor_bundle_pb2 as tb
from modelmorph_tfckpt.bundle.protos import trackable_object_graph_pb2 as tog

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def test_scalars_as_protobuf_reads_them():
    e = tb.BundleEntryProto(dtype=tb.DT_BFLOAT16, shard_id=-3, offset=(1 << 62) + 5, size=-1, crc32c=0xFFFFFFFE)
    for size in (0, 1, 127, 128, 1 << 40, -7):
        e.shape.dim.add(size=size)
    s = e.slices.add()
    s.extent.add(start=4, length=0)  # a length present as 0 is not an absent one
    s.extent.add(start=2)
    f = wire.parse(e.SerializeToString())
    assert wire.int32(f, 1) == tb.DT_BFLOAT16 and wire.int32(f, 3) == -3
    assert wire.int64(f, 4) == (1 << 62) + 5 and wire.int64(f, 5) == -1 and wire.fixed32(f, 6) == 0xFFFFFFFE
    assert [wire.int64(d, 1) for d in wire.messages(wire.message(f, 2), 2)] == [d.size for d in e.shape.dim]
    [extents] = wire.messages(f, 7)
    assert [(wire.int64(x, 1), wire.has(x, 2, wire.VARINT)) for x in wire.messages(extents, 1)] == [(4, True), (2, False)]


def test_repeated_packed_or_not_and_merged_messages():
    h = tb.BundleHeaderProto(num_shards=2)
    h.version.bad_consumers.extend([1, -2, 300])
    packed = h.SerializeToString()
    version = wire.message(wire.parse(packed), 3)
    assert wire.repeated_ints(version, 3, wire.to_int32) == [1, -2, 300]
    unpacked = bytes([0x1A, 4, 0x18, 1, 0x18, 5])  # version { bad_consumers: 1  bad_consumers: 5 }, not packed
    assert wire.repeated_ints(wire.message(wire.parse(unpacked), 3), 3) == [1, 5]
    # A message field given twice is merged, as protobuf merges it.
    twice = tb.BundleHeaderProto(num_shards=1)
    twice.version.producer = 7
    data = twice.SerializeToString() + bytes([0x1A, 2, 0x10, 9])  # version { min_consumer: 9 }
    merged = tb.BundleHeaderProto.FromString(data)
    version = wire.message(wire.parse(data), 3)
    assert (wire.int32(version, 1), wire.int32(version, 2)) == (merged.version.producer, merged.version.min_consumer)


def test_last_value_wins_and_wrong_wire_types_are_unknown_fields():
    data = bytes([0x08, 5, 0x08, 6, 0x0D, 1, 0, 0, 0])  # num_shards 5, num_shards 6, num_shards as fixed32
    assert wire.int32(wire.parse(data), 1) == tb.BundleHeaderProto.FromString(data).num_shards == 6
    data += bytes([0xF8, 0x07, 1])  # field 127, unknown: skipped
    assert wire.int32(wire.parse(data), 1) == 6


def test_object_graph_nodes():
    g = tog.TrackableObjectGraph()
    root = g.nodes.add()
    root.children.add(node_id=1, local_name="layer_with_weights-0")
    root.children.add(node_id=300, local_name="naïve")
    var = g.nodes.add()
    var.attributes.add(name="VARIABLE_VALUE", full_name="dense/kernel", checkpoint_key="a/.ATTRIBUTES/VARIABLE_VALUE")
    root.slot_variables.add(original_variable_node_id=1, slot_name="m", slot_variable_node_id=2)
    from modelmorph_tfckpt.source import WireGraph

    read = WireGraph(g.SerializeToString(), ValueError)
    assert [tuple(c) for c in read.nodes[0].children] == [(1, "layer_with_weights-0"), (300, "naïve")]
    assert [tuple(a) for a in read.nodes[1].attributes] == [("VARIABLE_VALUE", "dense/kernel",
                                                             "a/.ATTRIBUTES/VARIABLE_VALUE")]
    assert [tuple(s) for s in read.nodes[0].slot_variables] == [(1, "m", 2)]


@pytest.mark.parametrize("data, problem", [
    (bytes([0x08]), "truncated varint"),
    (bytes([0x08]) + b"\xff" * 10 + b"\x01", "longer than ten bytes"),
    (bytes([0x12, 5, 1, 2]), "past the end"),
    (bytes([0x0D, 1, 2]), "past the end"),
    (bytes([0x0B]), "wire type 3"),  # groups: TensorFlow never writes them
    (bytes([0x00, 1]), "field number 0"),
    (bytes([0x12, 2, 0xC3, 0x28]), "UTF-8"),
])
def test_malformed_bytes_are_refused(data, problem):
    with pytest.raises(wire.WireError, match=problem):
        f = wire.parse(data)
        wire.text(f, 2)


def test_reading_never_imports_protobuf(tmp_path):
    case = FIXTURES / "savedmodel" / "mlp_adam"
    code = ("import sys, modelmorph\n"
            f"modelmorph.convert({str(case)!r}, {str(tmp_path / 'out.keras')!r})\n"
            f"modelmorph.convert({str(case / 'variables')!r}, {str(tmp_path / 'out.weights.h5')!r}, "
            f"arch={str(tmp_path / 'out.keras')!r})\n"
            "print(sorted(m for m in sys.modules if m.startswith('google.protobuf') or m.endswith('_pb2')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("field, problem", [
    (bytes([0x0A, 3, 0x08, 1, 0x12]), "truncated varint"),     # a child reference cut short
    (bytes([0x0A, 4, 0x08, 1, 0x12, 2]), "runs past the end"),
    (bytes([0x12, 4, 0x0A, 2, 0xC3, 0x28]), "UTF-8"),          # an attribute name that is not UTF-8
    (bytes([0x22, 4, 0x0A, 2, 0xC3, 0x28]), "UTF-8"),          # registered_saver.name, unused but checked
])
@pytest.mark.parametrize("with_arch", [False, True])
def test_malformed_object_graph_node_is_a_read_error(tmp_path, field, problem, with_arch):
    """The graph's nodes are parsed when a join visits them; a weights-only read, which carries
    the graph to a writer, parses them all. Either way: one line, exit 4, no output."""
    from fuzzing import run_cli
    from modelmorph_tfckpt.bundle import BundleReader, BundleWriter

    folder = tmp_path / "ckpt"
    folder.mkdir()
    with BundleReader(FIXTURES / "tf_keras" / "ckpt" / "mlp_adam") as reader, BundleWriter(folder / "ckpt") as out:
        for key in reader.keys():
            if key == "_CHECKPOINTABLE_OBJECT_GRAPH":
                nodes = [n.SerializeToString() for n in reader.object_graph().nodes]
                nodes[0] += field  # the root (every join starts there), with a malformed field added
                out.add_object_graph(b"".join(bytes([0x0A]) + _varint(len(n)) + n for n in nodes))
            else:
                out.add(key, reader.read(key), dtype=reader.entries()[key].dtype)
    target = tmp_path / ("out.keras" if with_arch else "out.weights.h5")
    arch = ["--arch", str(FIXTURES / "tf_keras" / "mlp_adam.h5")] if with_arch else []
    run = run_cli("convert", folder / "ckpt", target, *arch)
    assert run.code == 4, (run.code, run.stderr)
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "_CHECKPOINTABLE_OBJECT_GRAPH" in lines[0] and problem in lines[0], run.stderr
    assert not target.exists()


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)
