"""Hostile and corrupted checkpoints: every one must end in a one-line BundleError
(never a crash, a hang, a huge allocation or a read outside the checkpoint)."""

from __future__ import annotations

import os
import struct
import tracemalloc

import numpy as np
import pytest
from tfckpt_snappy import snappy_compress

from modelmorph_tfckpt.bundle import (
    BundleError,
    BundleReader,
    BundleWriter,
    TableWriter,
    build_object_graph,
    checkpoint_key_origins,
    encode_slice_key,
    resolve_checkpoint,
)
from modelmorph_tfckpt.bundle import bundle as bundle_module
from modelmorph_tfckpt.bundle.protos import tensor_bundle_pb2 as tb
from modelmorph_tfckpt.bundle.protos import trackable_object_graph_pb2 as tog
from modelmorph_tfckpt.bundle.table import crc32c, mask_crc

MiB = 1024 * 1024


def _one_line(err: BundleError) -> str:
    msg = str(err)
    assert "\n" not in msg and msg
    return msg


def _good(tmp_path, name="ckpt"):
    prefix = str(tmp_path / name)
    with BundleWriter(prefix) as w:
        w.add("a/kernel", np.arange(12, dtype=np.float32).reshape(3, 4))
        w.add("b/bias", np.ones(3, np.float64))
        w.add("names", np.array([b"x", b"yy"], dtype=object))
    return prefix


def _entry(dtype=tb.DT_FLOAT, shape=(), shard_id=0, offset=0, size=0, crc=None, data=b""):
    e = tb.BundleEntryProto(dtype=dtype, shard_id=shard_id, offset=offset, size=size)
    e.shape.SetInParent()
    for d in shape:
        e.shape.dim.add(size=d)
    e.crc32c = mask_crc(crc32c(data)) if crc is None else crc
    return e


def _raw_bundle(prefix, entries: dict, data=(b"",), num_shards=None, header=None):
    """Write an index with arbitrary (possibly lying) entries, plus the given shards."""
    num_shards = len(data) if num_shards is None else num_shards
    for i, blob in enumerate(data):
        with open(f"{prefix}.data-{i:05d}-of-{num_shards:05d}", "wb") as f:
            f.write(blob)
    if header is None:
        h = tb.BundleHeaderProto(num_shards=num_shards)
        h.version.producer = 1
        header = h.SerializeToString()
    with open(prefix + ".index", "wb") as f:
        t = TableWriter(f)
        t.add(b"", header)
        for key in sorted(entries, key=lambda k: k if isinstance(k, bytes) else k.encode()):
            v = entries[key]
            t.add(key if isinstance(key, bytes) else key.encode(), v if isinstance(v, bytes) else v.SerializeToString())
        t.finish()
    return prefix


def _open_err(prefix, match=None) -> str:
    with pytest.raises(BundleError, match=match) as ei:
        BundleReader(prefix)
    return _one_line(ei.value)


def _read_err(prefix, key, match=None) -> str:
    with BundleReader(prefix) as r:
        with pytest.raises(BundleError, match=match) as ei:
            r.read(key)
    return _one_line(ei.value)


# --------------------------------------------------------------------------- .index table


def test_wrong_magic(tmp_path):
    prefix = _good(tmp_path)
    data = bytearray(open(prefix + ".index", "rb").read())
    data[-1] ^= 0xFF
    open(prefix + ".index", "wb").write(data)
    msg = _open_err(prefix, "bad table magic")
    assert prefix + ".index" in msg


def test_not_an_index_at_all(tmp_path):
    (tmp_path / "x.index").write_bytes(b"PK\x03\x04" + b"\0" * 100)
    _open_err(str(tmp_path / "x"), "magic")
    (tmp_path / "y.index").write_bytes(b"tiny")
    _open_err(str(tmp_path / "y"), "truncated")
    (tmp_path / "z.index").write_bytes(b"")
    _open_err(str(tmp_path / "z"), "truncated")


@pytest.mark.parametrize("cut", [1, 10, 47, 48, 60, 200])
def test_truncated_index(tmp_path, cut):
    prefix = _good(tmp_path)
    data = open(prefix + ".index", "rb").read()
    open(prefix + ".index", "wb").write(data[: len(data) - cut])
    _open_err(prefix)


def test_every_single_byte_flip_in_the_index_is_caught_or_harmless(tmp_path):
    """Flip each byte of a small index in turn: the reader either raises BundleError
    (trailer CRC, handles, magic...) or, for bytes it never uses (the metaindex block,
    which TensorFlow does not read either, and the footer padding), reads the same
    tensors."""
    from modelmorph_tfckpt.bundle import TableReader

    prefix = _good(tmp_path)
    orig = open(prefix + ".index", "rb").read()
    with TableReader(prefix + ".index") as t:
        unused = set(range(t.metaindex_offset, t.metaindex_offset + t.metaindex_size + 5))
    # footer: the metaindex handle (2 one-byte varints here, never followed) + padding
    assert t.metaindex_offset < 128 and t.index_offset < 128 and t.index_size < 128
    unused |= {len(orig) - 48, len(orig) - 47} | set(range(len(orig) - 44, len(orig) - 8))
    with BundleReader(prefix) as r:
        expected = {k: r.read(k) for k in r}
    harmless = 0
    for i in range(len(orig)):
        data = bytearray(orig)
        data[i] ^= 0x55
        open(prefix + ".index", "wb").write(data)
        try:
            with BundleReader(prefix) as r:
                got = {k: r.read(k) for k in r}
        except BundleError as e:
            _one_line(e)
            continue
        assert got.keys() == expected.keys()
        assert all(np.array_equal(got[k], expected[k]) for k in got if k != "names")
        harmless += 1
        assert i in unused
    assert harmless <= len(unused)


def test_flipped_byte_in_block_fails_trailer_crc(tmp_path):
    prefix = _good(tmp_path)
    data = bytearray(open(prefix + ".index", "rb").read())
    data[20] ^= 0x01  # inside the first data block
    open(prefix + ".index", "wb").write(data)
    msg = _open_err(prefix, "checksum mismatch in data block 0")
    assert "stored" in msg and "computed" in msg


def test_block_handles_outside_the_file(tmp_path):
    prefix = _good(tmp_path)
    data = bytearray(open(prefix + ".index", "rb").read())
    footer = len(data) - 48
    # footer: metaindex handle then index handle; point the index far away
    handles = bytes([1, 8]) + bytes([0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 8])
    data[footer : footer + 40] = handles + b"\0" * (40 - len(handles))
    open(prefix + ".index", "wb").write(data)
    _open_err(prefix, "outside the file")
    # absurd size (2**63) for the index block
    handles = bytes([1, 8, 1]) + b"\xff" * 8 + b"\x7f"
    data[footer : footer + 40] = handles + b"\0" * (40 - len(handles))
    open(prefix + ".index", "wb").write(data)
    _open_err(prefix, "outside the file")
    # a varint that never ends
    data[footer : footer + 40] = b"\xff" * 40
    open(prefix + ".index", "wb").write(data)
    _open_err(prefix, "corrupt footer")


@pytest.mark.parametrize("count", [50, 51])
def test_an_index_of_too_many_tensors_is_refused(count, tmp_path, monkeypatch):
    """Entries cost an index a few bytes each (shared key prefixes, snappy: 300,000 in 453 KB)
    and a model read from it ~3 KB: past _MAX_ENTRIES (made small here) the index is refused
    while it is read, with one line; up to it, every entry is there."""
    monkeypatch.setattr(bundle_module, "_MAX_ENTRIES", 50)
    prefix = str(tmp_path / "many")
    data = struct.pack("<f", 1.0)
    with open(prefix + ".data-00000-of-00001", "wb") as f:
        f.write(data)
    header = tb.BundleHeaderProto(num_shards=1)
    header.version.producer = 1
    entry = _entry(size=4, data=data).SerializeToString()  # every one the same 4 bytes
    with open(prefix + ".index", "wb") as f:
        t = TableWriter(f, compress=snappy_compress)
        t.add(b"", header.SerializeToString())
        for i in range(count):
            t.add(b"v%06d" % i, entry)
        t.finish()
    if count > 50:
        assert _open_err(prefix) == f"{prefix}.index: the index holds more than 50 tensors"
    else:
        with BundleReader(prefix) as r:
            assert len(r.keys()) == 50 and r.read("v000049").tolist() == 1.0


def test_snappy_bomb_block(tmp_path):
    """A block whose snappy header declares 4 GiB: refused before any allocation."""
    body = b"\xff\xff\xff\xff\x0f" + b"\x00" * 30
    block = body + b"\x01" + struct.pack("<I", mask_crc(crc32c(body + b"\x01")))
    empty = bytes.fromhex("0000000001000000")
    empty_block = empty + b"\x00" + struct.pack("<I", mask_crc(crc32c(empty + b"\x00")))
    # index block with one entry -> the bomb block
    from modelmorph_tfckpt.bundle.table import _BlockBuilder, encode_varint

    ib = _BlockBuilder(1)
    ib.add(b"z", encode_varint(0) + encode_varint(len(body)))
    index = ib.finish()
    index_block = index + b"\x00" + struct.pack("<I", mask_crc(crc32c(index + b"\x00")))
    meta_off = len(block)
    idx_off = meta_off + len(empty_block)
    handles = encode_varint(meta_off) + encode_varint(len(empty)) + encode_varint(idx_off) + encode_varint(len(index))
    footer = handles + b"\0" * (40 - len(handles)) + bytes.fromhex("57fb808b247547db")
    (tmp_path / "bomb.index").write_bytes(block + empty_block + index_block + footer)
    msg = _open_err(str(tmp_path / "bomb"), "absurd uncompressed size")
    assert "data block" in msg


def test_snappy_compressed_index_is_read(tmp_path):
    """An index whose blocks are all snappy-compressed (TF never writes one but may
    read one) is read like the uncompressed one."""
    prefix = str(tmp_path / "snappy")
    values = {f"layer_{i:04d}/kernel": np.full((2, 2), i, np.float32) for i in range(500)}
    with BundleWriter(prefix) as w:
        for k, v in values.items():
            w.add(k, v)
    # re-encode the index with compression
    from modelmorph_tfckpt.bundle import TableReader

    with TableReader(prefix + ".index") as t:
        items = list(t)
    with open(prefix + ".index", "wb") as f:
        tw = TableWriter(f, block_size=4096, compress=snappy_compress)
        for k, v in items:
            tw.add(k, v)
        tw.finish()
    raw = open(prefix + ".index", "rb").read()
    with BundleReader(prefix) as r:
        assert r.num_data_blocks > 1
        for k, v in values.items():
            assert np.array_equal(r.read(k), v)
    # the compressed form is really there: trailer type bytes of value 1
    with TableReader(prefix + ".index") as t:
        off, size = t._data_handles[0]
        assert raw[off + size] == 1


@pytest.mark.interop
def test_snappy_index_read_by_tensorflow(tmp_path, tf):
    """TensorFlow itself reads the snappy-compressed index our test encoder produced."""
    prefix = str(tmp_path / "s")
    with BundleWriter(prefix) as w:
        for i in range(300):
            w.add(f"v/{i:04d}", np.float32(i))
    from modelmorph_tfckpt.bundle import TableReader

    with TableReader(prefix + ".index") as t:
        items = list(t)
    with open(prefix + ".index", "wb") as f:
        tw = TableWriter(f, block_size=2048, compress=snappy_compress)
        for k, v in items:
            tw.add(k, v)
        tw.finish()
    ref = tf.train.load_checkpoint(prefix)
    assert ref.get_tensor("v/0299") == 299.0


def test_absurd_block_size(tmp_path, monkeypatch):
    from modelmorph_tfckpt.bundle import table

    prefix = _good(tmp_path)
    monkeypatch.setattr(table, "MAX_UNCOMPRESSED_BLOCK", 16)
    _open_err(prefix, "absurd size")


def test_keys_out_of_order(tmp_path):
    prefix = _good(tmp_path)

    class Unsorted(TableWriter):
        def add(self, key, value):  # bypass the ordering check
            self._data.add(key, value)
            self._last_key = key

    h = tb.BundleHeaderProto(num_shards=1).SerializeToString()
    with open(prefix + ".index", "wb") as f:
        t = Unsorted(f)
        t.add(b"", h)
        t.add(b"b", _entry(shape=(0,)).SerializeToString())
        t.add(b"a", _entry(shape=(0,)).SerializeToString())
        t.finish()
    _open_err(prefix, "out of order")


# --------------------------------------------------------------------------- entries


def test_missing_header_and_bad_header(tmp_path):
    p = str(tmp_path / "h")
    with open(p + ".index", "wb") as f:
        t = TableWriter(f)
        t.add(b"a", _entry().SerializeToString())
        t.finish()
    _open_err(p, "no bundle header")
    _raw_bundle(p, {}, header=b"\xff\xff\xff")
    _open_err(p, "unparsable bundle header")
    _raw_bundle(p, {}, num_shards=0, data=())
    _open_err(p, "0 data shards")
    h = tb.BundleHeaderProto(num_shards=1, endianness=tb.BundleHeaderProto.BIG)
    _raw_bundle(p, {}, header=h.SerializeToString())
    _open_err(p, "big-endian")
    h = tb.BundleHeaderProto(num_shards=1)
    h.version.min_consumer = 99
    _raw_bundle(p, {}, header=h.SerializeToString())
    _open_err(p, "version too new")


def test_garbage_entry(tmp_path):
    p = _raw_bundle(str(tmp_path / "g"), {"k": b"\x0a\xff\xff\xff\xff"})
    _open_err(p, "entry 'k': unparsable")


def test_absurd_declared_size_is_refused_without_allocating(tmp_path):
    p = str(tmp_path / "bomb")
    tracemalloc.start()
    try:
        # 2**40 float32 elements but 16 stored bytes: inconsistent, refused at open
        _raw_bundle(p, {"w": _entry(shape=(2**40,), size=16)}, data=(b"\0" * 16,))
        msg = _open_err(p, "needs 4398046511104 bytes but the entry stores 16")
        assert "'w'" in msg
        # consistent but not backed by the data file: refused at read
        _raw_bundle(p, {"w": _entry(shape=(2**40,), size=2**42)}, data=(b"\0" * 16,))
        msg = _read_err(p, "w", "past the end of the data file")
        # 2**50 strings in 100 bytes
        _raw_bundle(p, {"s": _entry(dtype=tb.DT_STRING, shape=(2**50,), size=100)}, data=(b"\0" * 100,))
        _open_err(p, "strings cannot fit")
        # shape product overflowing int64
        _raw_bundle(p, {"w": _entry(shape=(2**40, 2**40), size=16)}, data=(b"\0" * 16,))
        _open_err(p, "needs")
        _raw_bundle(p, {"w": _entry(shape=(-1, 3), size=16)}, data=(b"\0" * 16,))
        _open_err(p, "negative or unknown dimension")
        _raw_bundle(p, {"w": _entry(shape=(1,) * 300, size=4)}, data=(b"\0" * 4,))
        _open_err(p, "rank 300")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * MiB, peak


def test_offset_past_end_of_data(tmp_path):
    data = np.arange(4, dtype=np.float32).tobytes()
    p = _raw_bundle(str(tmp_path / "o"), {"w": _entry(shape=(4,), offset=8, size=16, data=data)}, data=(data,))
    msg = _read_err(p, "w", "past the end of the data file")
    assert ".data-00000-of-00001" in msg
    p = _raw_bundle(str(tmp_path / "n"), {"w": _entry(shape=(4,), offset=-5, size=16)}, data=(data,))
    _open_err(p, "invalid offset")
    p = _raw_bundle(str(tmp_path / "s"), {"w": _entry(shape=(4,), shard_id=3, size=16)}, data=(data,))
    _open_err(p, "shard 3 out of range")


def test_flipped_byte_in_tensor_data_names_the_key(tmp_path):
    prefix = _good(tmp_path)
    path = prefix + ".data-00000-of-00001"
    with BundleReader(prefix) as r:
        e = r.entries()["b/bias"]
    data = bytearray(open(path, "rb").read())
    data[e.offset + 3] ^= 0x10
    open(path, "wb").write(data)
    msg = _read_err(prefix, "b/bias", "checksum mismatch for tensor 'b/bias'")
    assert path in msg
    with BundleReader(prefix) as r:  # other tensors are still readable
        assert r.read("a/kernel").shape == (3, 4)
    with BundleReader(prefix, verify_checksums=False) as r:
        r.read("b/bias")


def test_corrupted_string_tensor(tmp_path):
    prefix = _good(tmp_path)
    path = prefix + ".data-00000-of-00001"
    with BundleReader(prefix) as r:
        e = r.entries()["names"]
    orig = open(path, "rb").read()
    for pos, match in [(e.offset, "string"), (e.offset + 3, "checksum mismatch in the string lengths"),
                       (e.offset + e.size - 1, "checksum mismatch for tensor 'names'")]:
        data = bytearray(orig)
        data[pos] ^= 0x01
        open(path, "wb").write(data)
        _read_err(prefix, "names", match)


def test_missing_shard(tmp_path):
    prefix = str(tmp_path / "sh")
    with BundleWriter(prefix, max_shard_size=100) as w:
        for i in range(4):
            w.add(f"v{i}", np.zeros(20, np.float32))
    missing = prefix + ".data-00002-of-00004"
    os.remove(missing)
    with BundleReader(prefix) as r:
        r.read("v0")
        with pytest.raises(BundleError, match="missing data shard 2 of 4") as ei:
            r.read("v2")
    assert missing in _one_line(ei.value)


def test_missing_index(tmp_path):
    with pytest.raises(BundleError, match="no checkpoint here"):
        BundleReader(str(tmp_path / "nothing"))
    with pytest.raises(BundleError, match="index file not found"):
        BundleReader(str(tmp_path / "nothing.index"))


def test_hostile_partitioned_variables(tmp_path):
    part = np.arange(6, dtype=np.float32)
    good_slice = _entry(shape=(3, 2), size=24, data=part.tobytes())

    def bundle(slices, subs, full_shape=(6, 2), copies=2):
        """Slice entries all hold `part`, stored `copies` times one after the other."""
        full = tb.BundleEntryProto(dtype=tb.DT_FLOAT)
        for d in full_shape:
            full.shape.dim.add(size=d)
        for start, length in slices:
            sp = full.slices.add()
            sp.extent.add(start=start, length=length)
            sp.extent.add(start=0, length=2)
        entries = {"p": full}
        for i, (start, length) in enumerate(subs):
            e = tb.BundleEntryProto()
            e.CopyFrom(good_slice)
            e.offset = 24 * (i % copies)
            entries[encode_slice_key("p", [(start, length), (0, 2)])] = e
        return _raw_bundle(str(tmp_path / "part"), entries, data=(part.tobytes() * copies,))

    p = bundle([(0, 3), (3, 3)], [(0, 3), (3, 3)])
    assert np.array_equal(BundleReader(p).read("p"), np.concatenate([part, part]).reshape(6, 2))
    p = bundle([(0, 3), (3, 3)], [(0, 3)])
    _read_err(p, "p", r"slice \[\(3, 3\), \(0, 2\)\] is missing")
    p = bundle([(0, 3), (1, 3)], [(0, 3), (1, 3)])
    _read_err(p, "p", "do not tile")
    p = bundle([(0, 3)], [(0, 3)])
    _read_err(p, "p", "do not tile")
    p = bundle([(0, 3), (5, 3)], [(0, 3), (5, 3)])
    _read_err(p, "p", "outside shape")
    p = bundle([(0, 3), (0, 3)], [(0, 3)])
    _read_err(p, "p", "listed twice")
    # a huge declared variable tiled by many slices that all reuse the same 24 bytes
    n = 4000
    p = bundle([(3 * i, 3) for i in range(n)], [(3 * i, 3) for i in range(n)], full_shape=(3 * n, 2), copies=1)
    _read_err(p, "p", "claim more bytes than data shard 0 holds")
    p = _raw_bundle(str(tmp_path / "bad"), {b"\x00\x05xx": good_slice}, data=(part.tobytes(),))
    _open_err(p, "malformed slice key")


def test_hostile_object_graph(tmp_path):
    g = tog.TrackableObjectGraph()
    root = g.nodes.add()
    root.children.add(node_id=7, local_name="ghost")
    with pytest.raises(BundleError, match="missing node 7"):
        checkpoint_key_origins(g)
    # a cycle and a dense DAG: path enumeration stays bounded
    g = tog.TrackableObjectGraph()
    n = 60
    for i in range(n):
        node = g.nodes.add()
        for j in range(n):
            if j != i:
                node.children.add(node_id=j, local_name=f"c{j}")
        node.attributes.add(name="VARIABLE_VALUE", checkpoint_key=f"k{i}")
    origins = checkpoint_key_origins(g, max_paths=8)
    assert all(len(o.paths) <= 8 for o in origins.values())
    # garbage in the object graph entry
    prefix = str(tmp_path / "og")
    with BundleWriter(prefix) as w:
        w.add("_CHECKPOINTABLE_OBJECT_GRAPH", b"\xff\xff\xff")
    with BundleReader(prefix) as r:
        with pytest.raises(BundleError, match="unparsable _CHECKPOINTABLE_OBJECT_GRAPH"):
            r.object_graph()
    with BundleWriter(prefix) as w:
        w.add("_CHECKPOINTABLE_OBJECT_GRAPH", np.float32(1))
    with BundleReader(prefix) as r:
        with pytest.raises(BundleError, match="not a string scalar"):
            r.object_graph()


# --------------------------------------------------------------------------- state file


def test_state_file_cannot_escape_its_folder(tmp_path):
    outside = _good(tmp_path, "outside")
    folder = tmp_path / "model"
    folder.mkdir()
    for target in ["../outside", outside, "/etc/passwd", "sub/../../outside"]:
        (folder / "checkpoint").write_text(f'model_checkpoint_path: "{target}"\n')
        with pytest.raises(BundleError, match="points outside its folder"):
            resolve_checkpoint(folder)
    # a state file written on another machine: same base name inside the folder is used
    _good(folder, "ckpt-7")
    (folder / "checkpoint").write_text('model_checkpoint_path: "/elsewhere/run/ckpt-7"\n')
    assert resolve_checkpoint(folder) == str(folder / "ckpt-7")
    (folder / "checkpoint").write_text('model_checkpoint_path: "ckpt-8"\n')
    with pytest.raises(BundleError, match="names .ckpt-8. but that .index file does not exist"):
        resolve_checkpoint(folder)
    (folder / "checkpoint").write_text("this is { not text format")
    with pytest.raises(BundleError, match="unparsable checkpoint state file"):
        resolve_checkpoint(folder)
    (folder / "checkpoint").write_bytes(b"x" * (2 * 1024 * 1024))
    with pytest.raises(BundleError, match="implausibly large"):
        resolve_checkpoint(folder)


def test_symlinks_out_of_the_folder(tmp_path):
    outside = _good(tmp_path, "outside")
    folder = tmp_path / "m"
    folder.mkdir()
    # a state file naming a path through a symlinked directory that leaves the folder
    os.symlink(tmp_path, folder / "up")
    (folder / "checkpoint").write_text('model_checkpoint_path: "up/outside"\n')
    with pytest.raises(BundleError, match="outside its folder"):
        resolve_checkpoint(folder)
    # files that are symlinks to elsewhere: refused when the reader is confined
    os.remove(folder / "checkpoint")
    os.symlink(outside + ".index", folder / "ck.index")
    os.symlink(outside + ".data-00000-of-00001", folder / "ck.data-00000-of-00001")
    with pytest.raises(BundleError, match="resolves outside") as ei:
        BundleReader(folder / "ck", confine_to=folder)
    assert str(folder / "ck.index") in _one_line(ei.value)
    with BundleReader(folder / "ck") as r:  # not confined: followed (shared caches do this)
        assert r.read("b/bias").tolist() == [1, 1, 1]
    # only the shard escapes
    os.remove(folder / "ck.index")
    (folder / "ck.index").write_bytes(open(outside + ".index", "rb").read())
    with BundleReader(folder / "ck", confine_to=folder) as r:
        with pytest.raises(BundleError, match="resolves outside"):
            r.read("b/bias")


def test_writer_abort_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with BundleWriter(tmp_path / "x", max_shard_size=10) as w:
            w.add("a", np.zeros(10))
            w.add("b", np.zeros(10))
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []
    w = BundleWriter(tmp_path / "y")
    with pytest.raises(ValueError):
        w.add("", 1)
    with pytest.raises(ValueError):
        w.add("\x00x", 1)
    w.add("k", 1)
    with pytest.raises(ValueError):
        w.add("k", 2)
    with pytest.raises(ValueError):
        w.add("z", np.array(["a", 1], dtype=object))
    with pytest.raises(ValueError):
        w.add("t", np.zeros(2, dtype="datetime64[s]"))
    w.abort()
    assert os.listdir(tmp_path) == []


def test_writer_recovers_from_a_failed_add(tmp_path, monkeypatch):
    from modelmorph_tfckpt.bundle import bundle

    monkeypatch.setattr(bundle, "_IO_CHUNK", 4096)  # converted in 10-row pieces
    bad = np.arange(10_000, dtype=np.float64).reshape(100, 100).astype(object)
    bad[90, 5] = "not a number"
    with BundleWriter(tmp_path / "c") as w:
        w.add("first", np.arange(5, dtype=np.int32))
        with pytest.raises(ValueError):
            w.add("bad", bad, dtype="float32")  # fails after 9 pieces were written
        w.add("second", np.arange(3, dtype=np.int64))
    with BundleReader(tmp_path / "c") as r:
        assert list(r) == ["first", "second"]
        assert r.read("second").tolist() == [0, 1, 2]
        assert r.entries()["second"].offset == 20


def test_object_graph_builder_rules():
    from modelmorph_tfckpt.bundle import TrackableNode, escape_local_name, unescape_local_name

    assert escape_local_name("a.b/c") == "a..b.Sc"
    assert unescape_local_name("a..b.Sc") == "a.b/c"
    with pytest.raises(ValueError):
        unescape_local_name("a.x")
    root = TrackableNode()
    v = root.child("m").add_variable("w", 1)
    root.child("opt").add_slot_variable(v, "m/x", 2)
    built = build_object_graph(root)
    assert set(built.keys) == {"m/w/.ATTRIBUTES/VARIABLE_VALUE",
                               "m/w/.OPTIMIZER_SLOT/opt/m.Sx/.ATTRIBUTES/VARIABLE_VALUE"}
    stray = TrackableNode(variable=True)
    root.child("opt").add_slot_variable(stray, "m")
    with pytest.raises(ValueError, match="not part of the graph"):
        build_object_graph(root)
