"""``modelmorph.storage.plainh5.writer``: files written by ``PlainWriter`` (metadata) plus the caller (data)
must be, for libhdf5/h5py, what h5py itself writes: h5py is the judge throughout."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from modelmorph.storage.plainh5 import NUMERIC
from modelmorph.storage.plainh5 import PlainWriter

from helpers import assert_close_to_recorded, assert_same_values

KERAS3 = Path(__file__).resolve().parents[1] / "fixtures" / "keras3"
WEIGHTS = sorted(p.name for p in KERAS3.glob("*.weights.h5"))

# A tree: ("group", path, attrs) / ("dataset", path, shape, dtype, attrs).
Tree = list[tuple]


# ---------------------------------------------------------------------------- helpers

def arrays_for(tree: Tree, seed: int = 0) -> dict[str, np.ndarray]:
    """Random data for every dataset of ``tree``, full 0-255 bytes (NaNs and all)."""
    rng = np.random.default_rng(seed)
    out = {}
    for item in tree:
        if item[0] == "dataset":
            _, path, shape, dtype, _ = item
            np_dtype = np.dtype(dtype)
            raw = rng.integers(0, 256, int(np.prod(shape, dtype=np.int64)) * np_dtype.itemsize, dtype=np.uint8)
            out[path] = np.frombuffer(raw.tobytes(), np_dtype).reshape(shape)
    return out


def write_plain(path: Path, tree: Tree, data: dict[str, np.ndarray], start: int = 0,
                prefix: bytes | None = None) -> tuple[int, list]:
    """Write ``tree`` with PlainWriter at ``start`` of ``path`` (after ``prefix``), then its data."""
    with open(path, "w+b") as f:
        f.write(prefix if prefix is not None else bytes(start))
        w = PlainWriter(f, start)
        placed = []
        for item in tree:
            if item[0] == "group":
                w.group(item[1], item[2])
            else:
                placed.append(w.dataset(*item[1:]))
        end = w.layout()
        for ds in placed:
            if ds.offset is None:
                assert ds.nbytes == 0
            else:
                f.seek(ds.offset)
                f.write(data[ds.path].tobytes())
        assert f.seek(0, os.SEEK_END) == end  # the caller's last write ends the file
    return end, placed


def write_h5py(path: Path, tree: Tree, data: dict[str, np.ndarray]) -> None:
    with h5py.File(path, "w") as f:
        for item in tree:
            if item[0] == "group":
                g = f.require_group(item[1] or "/")
                for k, v in (item[2] or {}).items():
                    g.attrs[k] = v
            else:
                _, p, shape, dtype, attrs = item
                ds = f.create_dataset(p, data=data[p])
                for k, v in (attrs or {}).items():
                    ds.attrs[k] = v


def plain_value(v):
    return [x.decode() if isinstance(x, bytes) else x for x in v.tolist()] if isinstance(v, np.ndarray) else v


def dump(path: Path | h5py.File) -> dict:
    """All libhdf5 reports about a file, in comparable form: per object its kind, member order,
    attributes (HDF5 type and dataspace serialized, value) and for datasets the HDF5 type,
    dataspace, creation properties (layout, allocation and fill time, time tracking) and bytes."""
    f = path if isinstance(path, h5py.File) else h5py.File(path, "r")
    out = {}

    def one(name, obj):
        attrs = {}
        for k in obj.attrs:
            aid = obj.attrs.get_id(k)
            attrs[k] = (aid.get_type().encode(), aid.get_space().encode(), plain_value(obj.attrs[k]))
        if isinstance(obj, h5py.Group):
            out[name] = ("group", list(obj), attrs)
        else:
            dcpl = obj.id.get_create_plist()
            props = (dcpl.get_layout(), dcpl.get_alloc_time(), dcpl.get_fill_time(), dcpl.fill_value_defined(),
                     dcpl.get_obj_track_times(), dcpl.get_nfilters(), obj.id.get_storage_size())
            out[name] = ("dataset", obj.id.get_type().encode(), obj.id.get_space().encode(), obj.shape,
                         obj.dtype, props, obj[()].tobytes(), attrs)

    try:
        one("/", f)
        f.visititems(one)
    finally:
        if f is not path:
            f.close()
    return out


def replicate(src: Path, dst, start: int = 0) -> int:
    """Rewrite an h5py-written file with PlainWriter; the data is copied file to file by the
    kernel (``os.copy_file_range``), as the converter does."""
    placed = []
    with h5py.File(src, "r") as f, open(src, "rb") as raw:
        w = PlainWriter(dst, start)
        w.group("", {k: plain_value(v) for k, v in f.attrs.items()})

        def one(name, obj):
            attrs = {k: plain_value(v) for k, v in obj.attrs.items()}
            if isinstance(obj, h5py.Group):
                w.group(name, attrs)
            else:
                dtype = f"V{obj.dtype.itemsize}" if obj.dtype.kind == "V" else obj.dtype.name
                placed.append((w.dataset(name, obj.shape, dtype, attrs), obj.id.get_offset()))

        f.visititems(one)
        end = w.layout()
        dst.flush()
        for ds, src_offset in placed:
            if ds.nbytes:
                done = os.copy_file_range(raw.fileno(), dst.fileno(), ds.nbytes, src_offset, ds.offset)
                assert done == ds.nbytes
    return end


def superblock(path: Path, at: int = 0) -> tuple[int, int]:
    """(base address, end-of-file address) of the superblock at ``at``."""
    with open(path, "rb") as f:
        f.seek(at)
        head = f.read(56)
    assert head[:8] == b"\x89HDF\r\n\x1a\n"
    base, _, eof = struct.unpack_from("<QQQ", head, 24)
    return base, eof


def btree_levels(path: Path, group: str) -> int:
    """The height of a group's B-tree (1: the root node points at symbol nodes), read by hand."""
    with h5py.File(path, "r") as f:
        header = h5py.h5o.get_info(f[group].id).addr
    raw = path.read_bytes()
    pos = header + 16  # version-1 object header prefix
    while struct.unpack_from("<H", raw, pos)[0] != 0x11:  # the Symbol Table message
        pos += 8 + struct.unpack_from("<H", raw, pos + 2)[0]
    btree = struct.unpack_from("<Q", raw, pos + 8)[0]
    assert raw[btree:btree + 4] == b"TREE"
    return raw[btree + 5] + 1


def assert_tree(path: Path, tree: Tree, data: dict[str, np.ndarray]) -> None:
    """h5py sees exactly ``tree``: objects, shapes, dtypes, values, attributes (str as
    variable-length UTF-8 strings, scalar or 1-D)."""
    expected = {""}
    with h5py.File(path, "r") as f:
        for item in tree:
            kind, p, attrs = item[0], item[1], item[-1] or {}
            parts = p.strip("/").split("/") if p.strip("/") else []
            expected.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
            obj = f[p] if p else f["/"]
            if kind == "group":
                assert isinstance(obj, h5py.Group)
            else:
                assert isinstance(obj, h5py.Dataset)
                assert obj.shape == tuple(item[2]) and obj.dtype == np.dtype(item[3])
                assert obj[()].tobytes() == data[p].tobytes()  # exact: NaN payloads and all
            for k, v in attrs.items():
                t = obj.attrs.get_id(k).get_type()
                assert t.get_class() == h5py.h5t.STRING and t.is_variable_str() and t.get_cset() == h5py.h5t.CSET_UTF8
                assert plain_value(obj.attrs[k]) == v
                assert obj.attrs.get_id(k).shape == (() if isinstance(v, str) else (len(v),))
        found = {""}
        f.visit(found.add)
        assert found == expected


def keras_like(layers: int) -> Tree:
    """A ResNet-like Keras 3 weights tree: layers/<name>/vars with 0-4 datasets and a name attr."""
    tree: Tree = []
    for i in range(layers):
        name = f"conv2d_{i}" if i % 3 else f"batch_normalization_{i}"
        tree.append(("group", f"layers/{name}/vars", {"name": name}))
        for j in range(i % 5):
            tree.append(("dataset", f"layers/{name}/vars/{j}", (3, 3, 4, 8) if j == 0 else (8,), "float32", None))
    tree.append(("group", "optimizer/vars", {"name": "adam"}))
    tree.append(("dataset", "optimizer/vars/0", (), "int64", None))
    tree.append(("group", "vars", {"name": "model"}))
    return tree


BASIC: Tree = [
    ("group", "layers/dense/vars", {"name": "dense"}),
    ("dataset", "layers/dense/vars/0", (2, 3), "float32", None),
    ("dataset", "layers/dense/vars/1", (3,), "float32", None),
    ("group", "layers/empty/vars", {"name": "empty"}),  # Keras writes empty vars groups
    ("dataset", "bf16", (4, 2), "V2", {"dtype": "bfloat16"}),
    ("dataset", "nothing", (3, 0), "float16", None),
    ("group", "", {"names": ["dense", "empty", "ünï"], "big": "x" * 100_000}),
]


# ---------------------------------------------------------------------------- round trips

def test_round_trip(tmp_path):
    data = arrays_for(BASIC)
    write_plain(tmp_path / "p.h5", BASIC, data)
    assert_tree(tmp_path / "p.h5", BASIC, data)


@pytest.mark.parametrize("dtype", [*NUMERIC, "V2", "V1", "V16"])
def test_every_dtype(tmp_path, dtype):
    tree = [("dataset", "x", (5, 3), dtype, None), ("dataset", "s", (), dtype, None)]
    data = arrays_for(tree)
    write_plain(tmp_path / "p.h5", tree, data)
    write_h5py(tmp_path / "r.h5", tree, data)
    assert_tree(tmp_path / "p.h5", tree, data)
    assert dump(tmp_path / "p.h5") == dump(tmp_path / "r.h5")
    with h5py.File(tmp_path / "r.h5") as f:
        if dtype.startswith("V"):
            assert f["x"].dtype == np.dtype(dtype)  # what h5py reports for numpy 'V<n>' it wrote


@pytest.mark.parametrize("shape", [(), (0,), (3, 0), (1,), (2, 3, 4, 5), (0, 0, 7), (1,) * 32])
def test_shapes(tmp_path, shape):
    tree = [("dataset", "a/x", shape, "float32", None), ("dataset", "a/y", shape, "uint8", {"k": "v"})]
    data = arrays_for(tree)
    _, placed = write_plain(tmp_path / "p.h5", tree, data)
    write_h5py(tmp_path / "r.h5", tree, data)
    assert_tree(tmp_path / "p.h5", tree, data)
    assert dump(tmp_path / "p.h5") == dump(tmp_path / "r.h5")
    empty = 0 in shape
    assert all((ds.offset is None) == empty for ds in placed)  # libhdf5: undefined address, no storage
    with h5py.File(tmp_path / "p.h5") as f:
        assert (f["a/x"].id.get_offset() is None) == empty


def children_tree(n: int) -> Tree:
    """A group with ``n`` members (datasets and groups, names of varied length, some UTF-8) whose
    byte order differs from creation order."""
    tree: Tree = [("group", "big", {"n": str(n)})]
    for i in range(n):
        name = f"m{i}" + "_" * (i % 13) + ("é" if i % 7 == 0 else "")
        member = ("group", f"big/{name}", None) if i % 4 == 0 else ("dataset", f"big/{name}", (i % 3,), "int16", None)
        tree.append(member)
    return tree


@pytest.mark.parametrize("n", [0, 1, 8, 9, 32 * 8, 32 * 8 + 1, 33 * 8 + 1, 600, 32 * 32 * 8 + 1])
def test_group_sizes_and_multi_level_btrees(tmp_path, n):
    tree = children_tree(n)
    data = arrays_for(tree)
    write_plain(tmp_path / "p.h5", tree, data)
    names = sorted((item[1].split("/", 1)[1] for item in tree[1:]), key=str.encode)
    with h5py.File(tmp_path / "p.h5") as f:
        g = f["big"]
        assert list(g) == names and len(g) == n  # iteration follows the B-tree
        for name in names:  # lookups search it
            assert name in g
        for absent in ["a", "m", "m0_", "zz", "m99999", "\x7f"]:
            assert absent not in g
    assert btree_levels(tmp_path / "p.h5", "big") == (1 if n <= 32 * 8 else 2 if n <= 32 * 32 * 8 else 3)
    if n <= 600:  # (the equivalence dump of 8193 members is slow and adds little)
        write_h5py(tmp_path / "r.h5", tree, data)
        assert dump(tmp_path / "p.h5") == dump(tmp_path / "r.h5")


def test_deep_nesting_and_empty_groups(tmp_path):
    deep = "/".join(f"level{i}" for i in range(60))
    tree = [("group", deep, {"here": "deep"}), ("dataset", deep + "/x", (2,), "float64", None),
            ("group", "e1", None), ("group", "e2/vars", {"name": "e2"}), ("group", "e3/vars", None)]
    data = arrays_for(tree)
    write_plain(tmp_path / "p.h5", tree, data)
    write_h5py(tmp_path / "r.h5", tree, data)
    assert_tree(tmp_path / "p.h5", tree, data)
    assert dump(tmp_path / "p.h5") == dump(tmp_path / "r.h5")


def test_a_file_with_nothing_declared(tmp_path):
    with open(tmp_path / "p.h5", "w+b") as f:
        assert PlainWriter(f).layout() == os.path.getsize(tmp_path / "p.h5")
    with h5py.File(tmp_path / "p.h5") as f:
        assert list(f) == [] and dict(f.attrs) == {}


def test_string_attributes(tmp_path):
    # strings around the 4 KiB global heap collection size: objects that fill it exactly, leave
    # too little room for the free-space object, or need a collection of their own
    sizes = [0, 1, 7, 8, 9, 4048, 4056, 4064, 4072, 4073, 4080, 4081, 8192, 100_000]
    tree: Tree = [
        ("group", "", {"big": "x" * 100_000, "list": ["a", "", "ünïcødé ☃", "b" * 5000], "empty": ""}),
        ("group", "sizes", {f"s{n}": "y" * n for n in sizes}),
        ("group", "lists", {"l": ["z" * n for n in sizes], "long": [f"item{i}" for i in range(3000)]}),
        ("group", "many", {f"attr_{i:03d}": f"value {i}" for i in range(300)}),
        ("group", "名前/グループ", {"属性": "値 ✓", "emoji": "🙂" * 100}),
        ("dataset", "名前/データ", (2,), "int8", {"ключ": "значение"}),
    ]
    data = arrays_for(tree)
    write_plain(tmp_path / "p.h5", tree, data)
    write_h5py(tmp_path / "r.h5", tree, data)
    assert_tree(tmp_path / "p.h5", tree, data)
    assert dump(tmp_path / "p.h5") == dump(tmp_path / "r.h5")


def test_groups_merge_attributes_and_datasets_keep_order(tmp_path):
    with open(tmp_path / "p.h5", "w+b") as f:
        w = PlainWriter(f, 8)
        w.group("g", {"a": "1", "b": "2"})
        w.group("/g", {"b": "3", "c": ["x"]})  # declared again: attributes merge
        placed = [w.dataset(f"g/d{i}", (i + 1,), "uint8") for i in range(5)] + [w.dataset("g/e", (0,), "uint8")]
        end = w.layout()
    offsets = [ds.offset for ds in placed[:5]]
    assert offsets == sorted(offsets) and all(o % 8 == 0 for o in offsets)
    assert placed[-1].offset is None and offsets[-1] + 5 == end
    assert all(a.offset + a.nbytes <= b.offset for a, b in zip(placed[:4], placed[1:5]))
    with open(tmp_path / "p.h5", "r+b") as f:
        for ds in placed[:5]:
            f.seek(ds.offset)
            f.write(bytes(range(ds.nbytes)))
    with open(tmp_path / "p.h5", "rb") as f, open(tmp_path / "s.h5", "wb") as s:
        s.write(f.read()[8:])
    with h5py.File(tmp_path / "s.h5") as f:
        assert {k: plain_value(v) for k, v in f["g"].attrs.items()} == {"a": "1", "b": "3", "c": ["x"]}
        assert f["g/d4"][()].tolist() == [0, 1, 2, 3, 4]


# ---------------------------------------------------------------------------- placement

@pytest.mark.parametrize("start", [0, 8, 512, 1024, 4096, 175_810])
def test_start(tmp_path, start):
    """The HDF5 bytes [start, end) are a standalone file (a .keras zip member); at 512, 1024, ...
    the whole file also opens, as a file with a user block."""
    data = arrays_for(BASIC)
    write_plain(tmp_path / "ref.h5", BASIC, data)
    prefix = np.random.default_rng(start).integers(0, 256, start, dtype=np.uint8).tobytes()
    end, placed = write_plain(tmp_path / "p.h5", BASIC, data, start, prefix)
    raw = (tmp_path / "p.h5").read_bytes()
    assert raw[:start] == prefix and len(raw) == end
    assert all(ds.offset is None or ds.offset >= start + 96 for ds in placed)
    assert superblock(tmp_path / "p.h5", start) == (0, end - start)  # addresses relative to the superblock
    (tmp_path / "member.h5").write_bytes(raw[start:end])
    assert dump(tmp_path / "member.h5") == dump(tmp_path / "ref.h5")
    if start and start % 512 == 0 and start & (start - 1) == 0:
        with h5py.File(tmp_path / "p.h5") as f:
            assert f.userblock_size == start
            assert dump(f) == dump(tmp_path / "ref.h5")


# ---------------------------------------------------------------------------- equivalence with h5py

def test_same_as_h5py_for_a_keras_like_tree(tmp_path):
    tree = keras_like(60) + BASIC
    data = arrays_for(tree)
    write_plain(tmp_path / "p.h5", tree, data)
    write_h5py(tmp_path / "r.h5", tree, data)
    assert dump(tmp_path / "p.h5") == dump(tmp_path / "r.h5")


@pytest.mark.parametrize("name", WEIGHTS)
def test_keras_fixtures_rewritten_are_the_same(tmp_path, name):
    with open(tmp_path / "p.h5", "w+b") as f:
        replicate(KERAS3 / name, f)
    assert dump(tmp_path / "p.h5") == dump(KERAS3 / name)


@pytest.mark.interop
@pytest.mark.parametrize("case", ["mlp_adam", "mobilenetv2"])
def test_keras_loads_an_archive_whose_weights_plainwriter_wrote(tmp_path, keras3, case):
    """The .keras archive rebuilt with its model.weights.h5 written in place (a stored zip member
    at an odd offset) by PlainWriter: Keras 3 loads it and predicts as recorded."""
    src = KERAS3 / f"{case}.keras"
    (tmp_path / "w.h5").write_bytes(zipfile.ZipFile(src).read("model.weights.h5"))
    member = io.BytesIO()
    with open(tmp_path / "m.h5", "w+b") as m:
        m.write(b"\0" * 12_345)  # the writer's start need not be 0
        end = replicate(tmp_path / "w.h5", m, 12_345)
        m.seek(12_345)
        member.write(m.read(end - 12_345))
    out = tmp_path / f"{case}.keras"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            body = member.getvalue() if info.filename == "model.weights.h5" else zin.read(info)
            zout.writestr(info.filename, body, zipfile.ZIP_STORED)
    model = keras3.saving.load_model(out)
    original = keras3.saving.load_model(src)
    variables = lambda m: list(m.weights) + list(m.optimizer.variables)  # noqa: E731
    assert [v.path for v in variables(model)] == [v.path for v in variables(original)]
    assert_same_values([v.numpy() for v in variables(model)], [v.numpy() for v in variables(original)])
    recorded = np.load(KERAS3 / f"{case}.io.npz")
    predicted = model.predict(recorded["in_0"], verbose=0)
    assert_same_values([predicted], [original.predict(recorded["in_0"], verbose=0)])  # same process
    assert_close_to_recorded([predicted], [recorded["out_0"]])


# ---------------------------------------------------------------------------- libhdf5 as a writer

@pytest.mark.parametrize("start", [0, 1024])
def test_h5py_can_append_to_and_modify_a_plainwriter_file(tmp_path, start):
    tree = children_tree(33 * 8 + 1) + BASIC  # full symbol nodes and B-tree nodes must split
    data = arrays_for(tree)
    write_plain(tmp_path / "p.h5", tree, data, start)
    before = dump(tmp_path / "p.h5")
    with h5py.File(tmp_path / "p.h5", "r+") as f:
        for i in range(100):
            f.create_dataset(f"big/new{i}", data=np.arange(i, dtype="int32"))
        f.create_group("big/m0_extra")
        del f["big/m1_"]
        f["layers/dense/vars"].attrs["name"] = "renamed"
        f["layers/dense/vars"].attrs["added"] = ["p", "q"]
        f.attrs["root"] = "attr"
        f["layers/empty/vars/x"] = np.ones(3)
    with h5py.File(tmp_path / "p.h5", "r") as f:
        assert f.userblock_size == start
        assert [f[f"big/new{i}"][()].tolist() for i in range(100)] == [list(range(i)) for i in range(100)]
        assert "big/m1_" not in f and "big/m0_extra" in f and len(f["big"]) == 33 * 8 + 1 + 100
        attrs = {k: plain_value(v) for k, v in f["layers/dense/vars"].attrs.items()}
        assert attrs == {"name": "renamed", "added": ["p", "q"]} and f.attrs["root"] == "attr"
        assert f["layers/empty/vars/x"][()].tolist() == [1, 1, 1]
    after = dump(tmp_path / "p.h5")
    for path, value in before.items():  # everything else is as it was
        if path not in ("/", "big", "layers/dense/vars", "layers/empty/vars", "big/m1_"):
            assert after[path] == value, path


# ---------------------------------------------------------------------------- errors

@pytest.mark.parametrize("dtype", ["float128", "bool", "complex64", "bfloat16", "V0", "V", "V-1", "Vx", "V02", "V²",
                                   "S5", "string", "<f4", "f4", None, np.float32])
def test_unsupported_dtypes(dtype):
    w = PlainWriter(io.BytesIO())
    with pytest.raises(ValueError):
        w.dataset("a/x", (1,), dtype)
    w.group("b")
    assert set(w._groups) == {"", "b"}  # a refused declaration leaves nothing behind


@pytest.mark.parametrize("attrs", [{"a": 1}, {"a": 1.5}, {"a": b"x"}, {"a": ["x", 1]}, {"a": []}, {"a": None},
                                   {"a": ("x",)}, {"a": np.array(["x"])}, {"a": "x\0y"}, {"a": ["\0"]},
                                   {"a": "\ud800"}, {"": "x"}, {"a\0": "x"}, {1: "x"}, {"\udcff": "x"},
                                   {"a": ["x"] * 5000}, ["a"]])
def test_unsupported_attributes(attrs):
    w = PlainWriter(io.BytesIO())
    with pytest.raises(ValueError):
        w.group("g", attrs)
    with pytest.raises(ValueError):
        w.dataset("d", (1,), "uint8", attrs)
    assert set(w._groups) == {""} and not w._datasets


@pytest.mark.parametrize("path", ["", "/", "a//b", "a/./b", ".", "a/..", "a/", "//a", "x\0y", "\ud800", None, b"a"])
def test_bad_dataset_paths(path):
    with pytest.raises(ValueError):
        PlainWriter(io.BytesIO()).dataset(path, (1,), "uint8")


@pytest.mark.parametrize("path", ["a//b", "a/./b", ".", "..", "a/", "//", "x\0y", 3])
def test_bad_group_paths(path):
    with pytest.raises(ValueError):
        PlainWriter(io.BytesIO()).group(path)


@pytest.mark.parametrize("shape", [(-1,), (1.5,), (True,), "ab", 3, (1,) * 33, (2**40, 2**40)])
def test_bad_shapes(shape):
    with pytest.raises(ValueError):
        PlainWriter(io.BytesIO()).dataset("x", shape, "uint8")


def test_too_many_attributes():
    w = PlainWriter(io.BytesIO())
    many = {f"a{i}": "" for i in range(0xFFFF)}
    with pytest.raises(ValueError):
        w.group("g", many)
    w.group("g", dict(list(many.items())[:40_000]))
    with pytest.raises(ValueError):
        w.group("g", dict(list(many.items())[40_000:]))  # merged: too many
    with pytest.raises(ValueError):
        w.dataset("d", (), "uint8", many)


def test_groups_and_datasets_do_not_overlap():
    w = PlainWriter(io.BytesIO())
    w.group("g/h")
    w.dataset("d", (1,), "uint8")
    for bad in [lambda: w.dataset("g", (1,), "uint8"), lambda: w.dataset("g/h", (1,), "uint8"),
                lambda: w.dataset("d", (1,), "uint8"), lambda: w.group("d"), lambda: w.group("d/x"),
                lambda: w.dataset("d/x", (1,), "uint8")]:
        with pytest.raises(ValueError):
            bad()
    w.layout()
    with pytest.raises(RuntimeError):
        w.group("late")


def test_the_writer_imports_neither_numpy_nor_h5py():
    code = "import sys, modelmorph.storage.plainh5.writer; print(sorted({'numpy', 'h5py'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"
