"""TensorFlow judges our reader and writer (TensorFlow is imported only here)."""

from __future__ import annotations

import os

import ml_dtypes
import numpy as np
import pytest

from helpers import require

from modelmorph_tfckpt.bundle import (
    BundleReader,
    BundleWriter,
    TrackableNode,
    build_object_graph,
    checkpoint_key_origins,
    compute_checkpoint_keys,
    read_checkpoint_state,
    resolve_checkpoint,
    write_checkpoint_state,
)

pytestmark = pytest.mark.interop

RNG = np.random.default_rng(1234)


def _values():
    """One value per dtype the bundle format carries, incl. a scalar and 0-element tensors."""
    return {
        "f16": RNG.standard_normal((3, 4)).astype(np.float16),
        "bf16": RNG.standard_normal((5, 2)).astype(ml_dtypes.bfloat16),
        "f32": RNG.standard_normal((2, 3, 4)).astype(np.float32),
        "f64": RNG.standard_normal(7),
        "i8": np.array([-128, 0, 127], np.int8),
        "i16": np.array([-32768, 4, 32767], np.int16),
        "i32": np.arange(-5, 5, dtype=np.int32).reshape(2, 5),
        "i64": np.array([2**40, -1, -(2**63)], np.int64),
        "u8": np.array([0, 255, 7], np.uint8),
        "u16": np.array([65535, 1], np.uint16),
        "u32": np.array([2**32 - 1], np.uint32),
        "u64": np.array([2**64 - 1], np.uint64),
        "bool": np.array([[True, False], [False, True]]),
        "c64": np.array([1 + 2j, -3.5j], np.complex64),
        "c128": np.array([3 - 4j]),
        "str": np.array([b"a", b"", b"\x00\xffxyz", "héllo".encode()], dtype=object).reshape(2, 2),
        "str_scalar": np.array(b"hello", dtype=object),
        "str_empty": np.array([], dtype=object),
        "scalar": np.float32(3.5),
        "empty": np.zeros((0, 3), np.float32),
        "non_contiguous": np.arange(24, dtype=np.float64).reshape(4, 6)[:, ::2],
    }


def _same(a, b) -> bool:
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        return False
    if a.dtype == object or b.dtype == object:
        return [bytes(x) for x in a.ravel()] == [bytes(x) for x in b.ravel()]
    return np.array_equal(a.astype(b.dtype) if a.dtype != b.dtype else a, b)


# --------------------------------------------------------------------------- our writer -> TF


def test_tf_reads_every_dtype_we_write(tmp_path, tf):
    vals = _values()
    with BundleWriter(tmp_path / "ckpt") as w:
        for k, v in vals.items():
            w.add(k, v)
    r = tf.train.load_checkpoint(str(tmp_path / "ckpt"))
    dtypes = r.get_variable_to_dtype_map()
    assert set(dtypes) == set(vals)
    expected_tf = {"f16": "float16", "bf16": "bfloat16", "str": "string", "str_scalar": "string", "str_empty": "string",
                   "bool": "bool", "scalar": "float32", "empty": "float32", "non_contiguous": "float64"}
    for k, v in vals.items():
        got = r.get_tensor(k)
        assert _same(got, v), k
        assert dtypes[k].name == expected_tf.get(k, np.asarray(v).dtype.name), k
    # and our reader agrees with what we wrote
    with BundleReader(tmp_path / "ckpt") as ours:
        for k, v in vals.items():
            assert _same(ours.read(k), v), k


def test_dtype_conversion_on_write(tmp_path, tf):
    x = RNG.standard_normal((4, 1000)).astype(np.float32)
    with BundleWriter(tmp_path / "c") as w:
        w.add("as_bf16", x, dtype="bfloat16")
        w.add("as_f16", x.T, dtype=np.float16)  # non-contiguous and converted
        w.add("strings", ["x", b"y"])
    r = tf.train.load_checkpoint(str(tmp_path / "c"))
    assert np.array_equal(r.get_tensor("as_bf16"), x.astype(ml_dtypes.bfloat16))
    assert np.array_equal(r.get_tensor("as_f16"), x.T.astype(np.float16))
    assert list(r.get_tensor("strings")) == [b"x", b"y"]


def _module_tree(tf, values):
    """tf.Module tree: model.{a.b (a name needing escaping), dense_1.{w, b}, nested.deep.v}."""
    root = tf.Module()
    dense = tf.Module()
    dense.w = tf.Variable(tf.zeros_like(values["w"]))
    dense.b = tf.Variable(tf.zeros_like(values["b"]))
    root.dense_1 = dense
    setattr(root, "a.b", tf.Variable(tf.zeros_like(values["ab"])))
    nested = tf.Module()
    nested.deep = tf.Module()
    nested.deep.v = tf.Variable(tf.zeros_like(values["v"]))
    nested.deep.s = tf.Variable(b"")
    root.nested = nested
    root.alias = dense  # the same object reachable twice
    return root


def test_checkpoint_read_restores_object_graph_we_build(tmp_path, tf):
    values = {
        "w": RNG.standard_normal((3, 2)).astype(np.float32),
        "b": RNG.standard_normal(2).astype(np.float32),
        "ab": np.int64(42),
        "v": RNG.standard_normal((2, 2)).astype(np.float64),
    }
    root = TrackableNode()
    model = root.child("model")
    dense = model.child("dense_1")
    dense.add_variable("w", values["w"])
    dense.add_variable("b", values["b"])
    model.add_variable("a.b", values["ab"])
    deep = model.child("nested").child("deep")
    deep.add_variable("v", values["v"])
    deep.add_variable("s", b"restored string")
    model.add_child("alias", dense)
    built = build_object_graph(root)
    assert set(built.keys) == {
        "model/dense_1/w/.ATTRIBUTES/VARIABLE_VALUE",
        "model/dense_1/b/.ATTRIBUTES/VARIABLE_VALUE",
        "model/a..b/.ATTRIBUTES/VARIABLE_VALUE",
        "model/nested/deep/v/.ATTRIBUTES/VARIABLE_VALUE",
        "model/nested/deep/s/.ATTRIBUTES/VARIABLE_VALUE",
    }
    prefix = str(tmp_path / "ckpt-1")
    with BundleWriter(prefix) as w:
        for key, value in built.values():
            w.add(key, value)
        w.add_object_graph(built.graph)

    # What TF itself writes for the same objects has the same keys.
    fresh = _module_tree(tf, values)
    tf_prefix = tf.train.Checkpoint(model=fresh).write(str(tmp_path / "tf" / "ckpt"))
    tf_keys = set(tf.train.load_checkpoint(tf_prefix).get_variable_to_shape_map()) - {"_CHECKPOINTABLE_OBJECT_GRAPH"}
    assert tf_keys == set(built.keys)

    status = tf.train.Checkpoint(model=fresh).read(prefix)
    status.assert_consumed()
    assert np.array_equal(fresh.dense_1.w.numpy(), values["w"])
    assert np.array_equal(fresh.alias.b.numpy(), values["b"])
    assert getattr(fresh, "a.b").numpy() == 42
    assert np.array_equal(fresh.nested.deep.v.numpy(), values["v"])
    assert fresh.nested.deep.s.numpy() == b"restored string"


def test_keras2_slot_variables_we_write_are_restored(tmp_path, tf):
    tf_keras = require("tf_keras")
    shapes = [(3, 4), (4,), (4, 2), (2,)]
    root = TrackableNode()
    weights = []
    for i in range(2):
        layer = root.child(f"layer_with_weights-{i}")
        weights.append(layer.add_variable("kernel", RNG.standard_normal(shapes[2 * i]).astype(np.float32)))
        weights.append(layer.add_variable("bias", RNG.standard_normal(shapes[2 * i + 1]).astype(np.float32)))
    opt = root.child("optimizer")
    opt.add_variable("iter", np.int64(7))
    opt.add_variable("learning_rate", np.float32(0.25))
    for v in weights:
        opt.add_slot_variable(v, "m", v.value * 10)
        opt.add_slot_variable(v, "v", v.value * 100)
    built = build_object_graph(root)
    assert "layer_with_weights-1/bias/.OPTIMIZER_SLOT/optimizer/v/.ATTRIBUTES/VARIABLE_VALUE" in built.keys
    folder = tmp_path / "k2"
    with BundleWriter(folder / "ckpt") as w:
        for key, value in built.values():
            w.add(key, value)
        w.add_object_graph(built.graph)
    write_checkpoint_state(folder, str(folder / "ckpt"))
    assert tf.train.latest_checkpoint(str(folder)) == str(folder / "ckpt")

    inp = tf_keras.Input((3,))
    x = tf_keras.layers.Dense(4)(inp)
    x = tf_keras.layers.Dropout(0.1)(x)
    out = tf_keras.layers.Dense(2)(x)
    m = tf_keras.Model(inp, out)
    m.compile(optimizer=tf_keras.optimizers.legacy.Adam(), loss="mse")
    m.load_weights(str(folder / "ckpt"))
    m.optimizer._create_all_weights(m.trainable_variables)  # slots restore when created
    tvars = m.trainable_variables
    for var, node in zip(tvars, weights):
        assert np.array_equal(var.numpy(), node.value)
        assert np.allclose(m.optimizer.get_slot(var, "m").numpy(), node.value * 10)
        assert np.allclose(m.optimizer.get_slot(var, "v").numpy(), node.value * 100)
    assert int(m.optimizer.iterations.numpy()) == 7


# --------------------------------------------------------------------------- TF writer -> us


def _tf_module_all_dtypes(tf):
    m = tf.Module()
    vals = {k: v for k, v in _values().items() if k not in ("non_contiguous",)}
    for k, v in vals.items():
        if k.startswith("str"):
            setattr(m, k, tf.Variable(tf.constant(np.asarray(v, dtype=object).astype(bytes) if np.asarray(v).size else np.asarray([], dtype=bytes), dtype=tf.string)))
        else:
            setattr(m, k, tf.Variable(v))
    return m, vals


def _compare_with_tf(tf, prefix):
    ref = tf.train.load_checkpoint(prefix)
    shapes = ref.get_variable_to_shape_map()
    dtypes = ref.get_variable_to_dtype_map()
    with BundleReader(prefix) as ours:
        entries = ours.entries()
        assert set(entries) == set(shapes)
        for key, e in entries.items():
            assert list(e.shape) == shapes[key], key
            assert e.dtype == dtypes[key].name, key
            expected = ref.get_tensor(key)
            got = ours.read(key)
            assert _same(got, expected), key
            if e.dtype not in ("string",):
                assert got.dtype == np.asarray(expected).dtype, key
    return entries


def test_we_read_every_dtype_tf_writes(tmp_path, tf):
    m, vals = _tf_module_all_dtypes(tf)
    prefix = tf.train.Checkpoint(model=m).write(str(tmp_path / "ckpt"))
    entries = _compare_with_tf(tf, prefix)
    assert {e.dtype for e in entries.values()} >= {
        "float16", "bfloat16", "float32", "float64", "int8", "int16", "int32", "int64",
        "uint8", "uint16", "uint32", "uint64", "bool", "complex64", "complex128", "string",
    }
    with BundleReader(prefix) as r:
        assert r.read("model/scalar/.ATTRIBUTES/VARIABLE_VALUE").shape == ()
        assert r.read("model/empty/.ATTRIBUTES/VARIABLE_VALUE").shape == (0, 3)
        assert r.object_graph() is not None


def test_save_state_file_and_folder_resolution(tmp_path, tf):
    m = tf.Module()
    m.v = tf.Variable([1.0, 2.0])
    ck = tf.train.Checkpoint(model=m)
    ck.save(str(tmp_path / "run" / "ckpt"))
    m.v.assign([3.0, 4.0])
    last = ck.save(str(tmp_path / "run" / "ckpt"))
    state = read_checkpoint_state(tmp_path / "run")
    assert state.model_checkpoint_path == "ckpt-2"
    assert "ckpt-2" in state.all_model_checkpoint_paths
    assert resolve_checkpoint(tmp_path / "run") == last
    assert resolve_checkpoint(last + ".index") == last
    assert resolve_checkpoint(last + ".data-00000-of-00001") == last
    with BundleReader(tmp_path / "run") as r:
        assert r.read("model/v/.ATTRIBUTES/VARIABLE_VALUE").tolist() == [3.0, 4.0]
        assert r.read("save_counter/.ATTRIBUTES/VARIABLE_VALUE") == 2


def test_checkpoint_state_we_write_is_read_by_tf(tmp_path, tf):
    for i in (1, 2, 3):
        with BundleWriter(tmp_path / f"ckpt-{i}") as w:
            w.add("x", np.float32(i))
    write_checkpoint_state(tmp_path, str(tmp_path / "ckpt-3"), [f"ckpt-{i}" for i in (1, 2, 3)],
                           all_model_checkpoint_timestamps=[1.0, 2.0, 3.0], last_preserved_timestamp=0.5)
    st = tf.train.get_checkpoint_state(str(tmp_path))
    assert st.model_checkpoint_path == str(tmp_path / "ckpt-3")
    assert list(st.all_model_checkpoint_paths) == [str(tmp_path / f"ckpt-{i}") for i in (1, 2, 3)]
    assert tf.train.load_checkpoint(str(tmp_path)).get_tensor("x") == 3.0


def test_byte_identical_to_tensorflow(tmp_path, tf):
    """Rewriting a TF checkpoint with our writer, tensors in TF's data order,
    reproduces TF's .index and data file byte for byte."""
    m, _ = _tf_module_all_dtypes(tf)
    for i in range(40):  # keys sharing prefixes, empty tensors in between
        setattr(m, f"layer_{i:02d}", tf.Variable(np.full((i % 5, 3), i, np.float32)))
    prefix = tf.train.Checkpoint(model=m).write(str(tmp_path / "tf" / "ckpt"))
    with BundleReader(prefix) as r:
        order = sorted(r.entries().values(), key=lambda e: (e.shard_id, e.offset))
        with BundleWriter(tmp_path / "ours" / "ckpt") as w:
            for e in order:
                w.add(e.key, r.read(e.key), dtype=e.dtype)
    for suffix in (".index", ".data-00000-of-00001"):
        assert (tmp_path / "ours" / ("ckpt" + suffix)).read_bytes() == open(prefix + suffix, "rb").read(), suffix


def test_multi_block_index_both_ways(tmp_path, tf):
    # > 16 entries per block and > 256 KiB of index: several data blocks in the table
    n = 3000
    long = "x" * 80
    with BundleWriter(tmp_path / "ours") as w:
        for i in range(n):
            w.add(f"group_{i % 7}/var_{i:05d}/{long}", np.array([i, -i], np.int32))
    with BundleReader(tmp_path / "ours") as r:
        assert r.num_data_blocks > 1
        assert len(r) == n
    size = os.path.getsize(tmp_path / "ours.index")
    assert size > 256 * 1024
    ref = tf.train.load_checkpoint(str(tmp_path / "ours"))
    assert len(ref.get_variable_to_shape_map()) == n
    assert ref.get_tensor(f"group_3/var_02999/{long}").tolist() == [2999, -2999]

    m = tf.Module()
    for i in range(3000):
        setattr(m, f"v{i}_{long}", tf.Variable(np.float32(i)))
    prefix = tf.train.Checkpoint(model=m).write(str(tmp_path / "tf" / "ckpt"))
    with BundleReader(prefix) as r:
        assert r.num_data_blocks > 1
    _compare_with_tf(tf, prefix)


def test_sharded_writing_read_by_tf(tmp_path, tf):
    vals = {f"v{i:02d}": RNG.standard_normal((50, 10)).astype(np.float32) for i in range(12)}
    vals["big"] = RNG.standard_normal((100, 100))  # larger than a shard: gets its own
    vals["s"] = np.array([b"abc"] * 10, dtype=object)
    prefix = str(tmp_path / "sharded")
    with BundleWriter(prefix, max_shard_size=5000) as w:
        for k, v in vals.items():
            w.add(k, v)
    with BundleReader(prefix) as r:
        assert r.num_shards > 5
        assert {e.shard_id for e in r.entries().values()} == set(range(r.num_shards))
        data_files = r.data_files()
    assert all(os.path.exists(p) for p in data_files)
    assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]
    ref = tf.train.load_checkpoint(prefix)
    for k, v in vals.items():
        assert _same(ref.get_tensor(k), v), k

    # A sharded checkpoint with an object graph restores through tf.train.Checkpoint.
    built = build_object_graph({"model": {f"w{i}": RNG.standard_normal((40, 40)).astype(np.float32) for i in range(6)}})
    with BundleWriter(tmp_path / "g" / "ckpt", max_shard_size=10_000) as w:
        for key, value in built.values():
            w.add(key, value)
        w.add_object_graph(built.graph)
    m = tf.Module()
    for i in range(6):
        setattr(m, f"w{i}", tf.Variable(tf.zeros((40, 40))))
    tf.train.Checkpoint(model=m).read(str(tmp_path / "g" / "ckpt")).assert_consumed()
    for i, (key, value) in enumerate(built.values()):
        assert np.array_equal(getattr(m, f"w{i}").numpy(), value)


def test_tf_sharded_and_sliced_checkpoint(tmp_path, tf):
    m = tf.Module()
    m.big = tf.Variable(RNG.standard_normal((1000, 4)).astype(np.float32))
    m.wide = tf.Variable(RNG.standard_normal((7, 300)))
    m.small = tf.Variable(np.arange(3, dtype=np.int64))
    m.s = tf.Variable("hello")
    opts = tf.train.CheckpointOptions(
        experimental_sharding_callback=tf.train.experimental.MaxShardSizePolicy(max_shard_size=5000)
    )
    prefix = tf.train.Checkpoint(model=m).write(str(tmp_path / "ck"), options=opts)
    entries = _compare_with_tf(tf, prefix)
    big = entries["model/big/.ATTRIBUTES/VARIABLE_VALUE"]
    assert big.is_partitioned and len(big.slices) > 1
    with BundleReader(prefix) as r:
        assert r.num_shards > 1
        assert len(r.slice_entries(big.key)) == len(big.slices)
        assert np.array_equal(r.read(big.key), m.big.numpy())
        assert np.array_equal(r.read("model/wide/.ATTRIBUTES/VARIABLE_VALUE"), m.wide.numpy())


def test_partitioned_variables_we_write(tmp_path, tf):
    full = RNG.standard_normal((10, 6)).astype(np.float32)
    with BundleWriter(tmp_path / "p") as w:
        w.add_slice("part", full.shape, (0, 0), full[:3])
        w.add_slice("part", full.shape, (3, 0), full[3:4])
        w.add_slice("part", full.shape, (4, 0), full[4:])
        w.add("plain", np.int8(1))
    with BundleReader(tmp_path / "p") as r:
        assert r.entries()["part"].is_partitioned
        assert np.array_equal(r.read("part"), full)
    ref = tf.train.load_checkpoint(str(tmp_path / "p"))
    assert ref.get_variable_to_shape_map()["part"] == [10, 6]
    assert np.array_equal(ref.get_tensor("part"), full)


def test_keras2_save_weights_key_origins(tmp_path, tf):
    tf_keras = require("tf_keras")
    inp = tf_keras.Input((3,))
    x = tf_keras.layers.Dense(4)(inp)
    x = tf_keras.layers.Dropout(0.1)(x)
    out = tf_keras.layers.Dense(2)(x)
    m = tf_keras.Model(inp, out)
    m.compile(optimizer=tf_keras.optimizers.legacy.Adam(), loss="mse")
    m.fit(np.ones((4, 3)), np.ones((4, 2)), verbose=0)
    m.save_weights(str(tmp_path / "w" / "ckpt"))
    with BundleReader(tmp_path / "w") as r:  # through the `checkpoint` state file
        graph = r.object_graph()
        origins = checkpoint_key_origins(graph)
        assert set(origins) == set(r.entries()) - {"_CHECKPOINTABLE_OBJECT_GRAPH"}
        k = origins["layer_with_weights-1/kernel/.ATTRIBUTES/VARIABLE_VALUE"]
        assert k.paths[0] == ("layer_with_weights-1", "kernel")
        assert ("layer-3", "kernel") in k.paths  # Functional counts the InputLayer
        assert np.array_equal(r.read(k.key), m.layers[3].kernel.numpy())
        slot = origins["layer_with_weights-0/bias/.OPTIMIZER_SLOT/optimizer/m/.ATTRIBUTES/VARIABLE_VALUE"].slot
        assert slot.slot_name == "m"
        assert slot.original_variable_key == "layer_with_weights-0/bias/.ATTRIBUTES/VARIABLE_VALUE"
        assert slot.optimizer_paths[0] == ("optimizer",)
        # our naming rule reproduces every key TF stored, slots included
        for (node_id, attr), key in compute_checkpoint_keys(graph).items():
            stored = [a.checkpoint_key for a in graph.nodes[node_id].attributes if a.name == attr]
            assert stored == [key]
        assert len(compute_checkpoint_keys(graph)) == len(origins)


def test_keras3_checkpoint_key_origins(tmp_path, tf):
    keras = require("keras")
    inp = keras.Input((3,))
    out = keras.layers.Dense(2)(keras.layers.Dense(4)(inp))
    m = keras.Model(inp, out)
    m.compile(optimizer="adam", loss="mse")
    m.fit(np.ones((4, 3)), np.ones((4, 2)), verbose=0)
    prefix = tf.train.Checkpoint(model=m, optimizer=m.optimizer).write(str(tmp_path / "ck"))
    with BundleReader(prefix) as r:
        origins = checkpoint_key_origins(r.object_graph())
        # with the optimizer tracked, the kernel's shortest path goes through it
        k = origins["optimizer/_trainable_variables/0/.ATTRIBUTES/VARIABLE_VALUE"]
        assert ("model", "_operations", "1", "_kernel") in k.paths
        assert np.array_equal(r.read(k.key), m.layers[1].kernel.numpy())
