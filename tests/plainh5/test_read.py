"""The plain-HDF5 reader judged by h5py: every fixture and synthetic files read alike (groups
and their order, datasets, the bytes at their offsets, attributes), and whatever lies outside
the subset, or is broken, refused with Unsupported — never another exception, a hang or a huge
allocation."""

from __future__ import annotations

import io
import random
import struct
import sys
import time
import tracemalloc
import zipfile
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest

from modelmorph.storage.plainh5 import NUMERIC, Unsupported
from modelmorph.storage.plainh5 import read

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
from generate_hdf5 import keras_like  # noqa: E402  (the small Keras-shaped file both make)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
H5_FIXTURES = sorted(p for d in ("keras3", "tf_keras") for p in (FIXTURES / d).rglob("*.h5"))
KERAS_FIXTURES = sorted(FIXTURES.rglob("*.keras"))
UNDEFINED = b"\xff" * 8


# -- h5py's view ---------------------------------------------------------------------------

def _norm(value):
    """An h5py attribute value as ``read`` gives it (str, bytes, int, float or a list)."""
    if isinstance(value, np.ndarray):
        assert value.ndim == 1
        return [_norm(v) for v in value]
    if isinstance(value, bytes):  # np.bytes_ too
        return bytes(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def _dtype(ds: h5py.Dataset) -> str:
    if h5py.check_string_dtype(ds.dtype):
        return "string"
    return f"V{ds.dtype.itemsize}" if ds.dtype.kind == "V" else ds.dtype.name


def _h5py_view(f: h5py.File):
    """({path: (attrs, children)}, {path: (shape, dtype, data bytes, attrs)}) as h5py sees them."""
    groups = {"": ({k: _norm(v) for k, v in f.attrs.items()}, list(f))}
    datasets = {}

    def visit(name, obj):
        attrs = {k: _norm(v) for k, v in obj.attrs.items()}
        if isinstance(obj, h5py.Group):
            groups[name] = (attrs, list(obj))  # HDF5's own order
        else:
            datasets[name] = (obj.shape, _dtype(obj), np.asarray(obj[()]).tobytes(), attrs)

    f.visititems(visit)
    return groups, datasets


def _assert_parity(file, f: h5py.File, start: int = 0, size: int | None = None):
    plain = read(file, start, size)
    groups, datasets = _h5py_view(f)
    assert {path: (g.attrs, g.children) for path, g in plain.groups.items()} == groups
    assert all(path == g.path for path, g in plain.groups.items())
    assert set(plain.datasets) == set(datasets)
    for path, (shape, dtype, data, attrs) in datasets.items():
        ds = plain.datasets[path]
        assert (ds.path, ds.shape, ds.dtype, ds.nbytes, ds.attrs) == (path, shape, dtype, len(data), attrs)
        if ds.offset is None:
            assert data == b""
        else:
            file.seek(ds.offset)
            assert file.read(ds.nbytes) == data, path
    return plain


def _make(tmp_path: Path, build, name: str = "t.h5", **kwargs) -> Path:
    path = tmp_path / name
    with h5py.File(path, "w", **kwargs) as f:
        build(f)
    return path


def _parity(path: Path):
    with open(path, "rb") as file, h5py.File(path, "r") as f:
        return _assert_parity(file, f)


# -- fixtures -------------------------------------------------------------------------------

@pytest.mark.parametrize("path", H5_FIXTURES, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_fixture_reads_as_h5py_does(path):
    # Every fixture was written by Keras 3 or tf_keras through h5py's defaults: all plain.
    with open(path, "rb") as file, h5py.File(path, "r") as f:
        plain = _assert_parity(file, f)
    assert plain.datasets


def _member(path: Path, name: str = "model.weights.h5") -> tuple[int, int]:
    """(start, size) of a stored zip member's data, from its local header."""
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(name)
    assert info.compress_type == zipfile.ZIP_STORED
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        header = f.read(30)
    name_len, extra_len = struct.unpack_from("<HH", header, 26)
    return info.header_offset + 30 + name_len + extra_len, info.file_size


@pytest.mark.parametrize("path", KERAS_FIXTURES, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_keras_member_reads_in_place(path):
    start, size = _member(path)
    with open(path, "rb") as file:
        file.seek(start)
        with h5py.File(io.BytesIO(file.read(size)), "r") as f:
            plain = _assert_parity(file, f, start, size)
    assert all(start <= d.offset <= start + size - d.nbytes for d in plain.datasets.values() if d.nbytes)


# -- synthetic files ------------------------------------------------------------------------

def test_every_numeric_dtype(tmp_path):
    rng = np.random.default_rng(0)

    def build(f):
        for name in NUMERIC:
            dt = np.dtype(name)
            if dt.kind == "f":
                data = (rng.standard_normal((3, 5)) * 100).astype(dt)
            else:
                info = np.iinfo(dt)
                data = rng.integers(info.min, info.max, (3, 5), dtype=dt, endpoint=True)
                data[0, :2] = info.min, info.max
            ds = f.create_dataset(name, data=data)
            ds.attrs["scalar"] = data[0, 1]
            ds.attrs["array"] = data[0]
            f.attrs[name] = data[0, 0]

    plain = _parity(_make(tmp_path, build))
    assert {path: ds.dtype for path, ds in plain.datasets.items()} == {name: name for name in NUMERIC}
    assert type(plain.attrs["float16"]) is float and type(plain.attrs["uint64"]) is int
    assert plain.attrs["uint64"] == np.iinfo("uint64").min and plain.datasets["int8"].attrs["scalar"] == 127


def test_bfloat16_as_tagged_opaque(tmp_path):
    bits = np.random.default_rng(1).integers(0, 2**16, (4, 3), dtype=np.uint16)

    def build(f):
        ds = f.create_dataset("w", data=bits.view("V2"))
        ds.attrs["dtype"] = "bfloat16"

    ds = _parity(_make(tmp_path, build)).datasets["w"]
    assert (ds.dtype, ds.shape, ds.nbytes, ds.attrs) == ("V2", (4, 3), 24, {"dtype": "bfloat16"})


def test_scalar_empty_and_string_datasets(tmp_path):
    def build(f):
        f["scalar"] = np.float64(2.5)
        f["empty"] = np.zeros((0,), "float32")
        f["empty2"] = np.zeros((3, 0), "int16")
        f["fixed"] = np.array([b"ab", b"c"])

    plain = _parity(_make(tmp_path, build))
    assert plain.datasets["scalar"].shape == () and plain.datasets["scalar"].nbytes == 8
    assert plain.datasets["empty"].offset is None and plain.datasets["empty2"].shape == (3, 0)
    assert (plain.datasets["fixed"].dtype, plain.datasets["fixed"].nbytes) == ("string", 4)


def test_string_and_numeric_attributes(tmp_path):
    def build(f):
        a = f.attrs
        a["fixed"] = np.bytes_("abc")
        a["fixed_arr"] = np.array([b"a", b"bcd", b""])
        a["fixed_nul_inside"] = np.array(b"a\0b\0\0")
        a.create("fixed_utf8", np.array("é".encode()), dtype=h5py.string_dtype("utf-8", 4))
        a["vlen"] = "héllo"
        a["vlen_arr"] = ["a", "bb", ""]
        a["empty"] = ""
        a.create("ascii", "abc", dtype=h5py.string_dtype("ascii"))
        a.create("ascii_arr", ["x", "yz"], dtype=h5py.string_dtype("ascii"))
        a["naïve ☃"] = 1  # a non-ASCII name: a version-3 attribute message
        a["int"] = 7
        a["float"] = 1.5
        a["list"] = [1, 2, 3]
        a["no_values"] = np.zeros(0)
        a["half"] = np.float16(0.25)

    plain = _parity(_make(tmp_path, build))
    assert plain.attrs["fixed"] == b"abc" and plain.attrs["fixed_arr"] == [b"a", b"bcd", b""]
    assert plain.attrs["fixed_nul_inside"] == b"a\0b"
    assert plain.attrs["vlen"] == "héllo" and plain.attrs["vlen_arr"] == ["a", "bb", ""]
    assert plain.attrs["ascii"] == "abc" and plain.attrs["naïve ☃"] == 1
    assert plain.attrs["no_values"] == [] and plain.attrs["list"] == [1, 2, 3]


def _tree_levels(data: bytes) -> set[int]:
    levels, i = set(), data.find(b"TREE")
    while i >= 0:
        levels.add(data[i + 5])
        i = data.find(b"TREE", i + 1)
    return levels


@pytest.mark.parametrize("count", [10, 600])
def test_groups_with_many_children(tmp_path, count):
    def build(f):
        g = f.create_group("g")
        for i in range(count):  # mixed case and digits: byte order is not numeric order
            name = f"{'Ab'[i % 2]}{i}"
            if i % 3:
                g.create_dataset(name, data=np.int32(i))
            else:
                g.create_group(name).attrs["i"] = i

    path = _make(tmp_path, build)
    plain = _parity(path)
    assert len(plain.groups["g"].children) == count
    assert plain.groups["g"].children == sorted(plain.groups["g"].children, key=str.encode)
    if count == 600:
        assert max(_tree_levels(path.read_bytes())) >= 1  # the B-tree has internal nodes


def test_deep_nesting(tmp_path):
    path = _make(tmp_path, lambda f: f.create_dataset("/".join(["g"] * 60) + "/x", data=[1.0]))
    assert len(_parity(path).groups) == 61
    # Beyond 64 levels the reader stops (h5py would read on): a bound, not a format rule.
    path = _make(tmp_path, lambda f: f.create_group("/".join(["g"] * 70)), "deep.h5")
    with open(path, "rb") as file, pytest.raises(Unsupported, match="too deep"):
        read(file)


def test_many_attributes_use_continuation_blocks(tmp_path):
    def build(f):
        ds = f.create_dataset("d", data=np.arange(3.0))
        for i in range(200):
            ds.attrs[f"a{i:03d}"] = i if i % 2 else f"value {i}"

    path = _make(tmp_path, build)
    with h5py.File(path) as f:
        assert h5py.h5o.get_info(f["d"].id).hdr.nchunks > 1
    assert len(_parity(path).datasets["d"].attrs) == 200


def test_big_vlen_string_attribute(tmp_path):
    text = "".join(chr(0x20 + i % 90) for i in range(100_000)) + "é"
    path = _make(tmp_path, lambda f: f.attrs.__setitem__("config", text))
    data = path.read_bytes()
    at = data.find(b"GCOL")
    assert struct.unpack_from("<Q", data, at + 8)[0] > 100_000  # bigger than a default collection
    assert _parity(path).attrs["config"] == text


def test_user_block(tmp_path):
    path = _make(tmp_path, keras_like, userblock_size=1024)
    data = path.read_bytes()
    with h5py.File(path, "r") as f:
        with open(path, "rb") as file:
            whole = _assert_parity(file, f)  # the superblock found at 1024
        bio = io.BytesIO(data)
        assert _assert_parity(bio, f).datasets == whole.datasets
        assert _assert_parity(bio, f, start=1024).datasets == whole.datasets
        sliced = _assert_parity(io.BytesIO(data[1024:]), f)  # a user block cut off
    assert {p: d.offset + 1024 for p, d in sliced.datasets.items()} == {p: d.offset for p, d in whole.datasets.items()}


# Files only libhdf5's C API can make, written by tests/fixtures/generate_hdf5.py with HDF5 1.14
# and committed: the tests need neither ctypes nor a particular HDF5 version.

def test_superblock_version_1():
    path = FIXTURES / "hdf5" / "superblock_v1.h5"  # a non-default chunk B-tree K
    assert path.read_bytes()[8] == 1
    _parity(path)


def test_attribute_message_version_3():
    path = FIXTURES / "hdf5" / "attribute_v3.h5"  # an attribute with a UTF-8 name
    data = path.read_bytes()
    at = data.find("naïve".encode() + b"\0")
    assert (data[at - 9], data[at - 1]) == (3, 1)  # version 3, UTF-8 encoding byte
    assert _parity(path).attrs == {"naïve": 5, "plain": "x"}


class _Recording(io.BytesIO):
    """Remembers the span of every read."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.spans: list[tuple[int, int]] = []

    def read(self, n=-1):
        pos = self.tell()
        data = super().read(n)
        self.spans.append((pos, pos + len(data)))
        return data


@pytest.mark.parametrize("size_known", [True, False])
def test_file_embedded_at_an_offset(tmp_path, size_known):
    path = _make(tmp_path, keras_like)
    h5 = path.read_bytes()
    prefix = bytes(random.Random(3).randrange(256) for _ in range(777)) + b"\x89HDF\r\n\x1a\n"
    bio = _Recording(prefix + h5 + b"trailing bytes")
    bio.seek(5)
    with h5py.File(path, "r") as f:
        _assert_parity(bio, f, len(prefix), len(h5) if size_known else None)
    bio.spans.clear()
    bio.seek(5)
    read(bio, len(prefix), len(h5) if size_known else None)
    assert bio.tell() == 5  # the position is given back
    assert all(len(prefix) <= a <= b <= len(prefix) + len(h5) for a, b in bio.spans)


# -- outside the subset -----------------------------------------------------------------------

def _compact(f):
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_layout(h5py.h5d.COMPACT)
    ds = h5py.h5d.create(f.id, b"c", h5py.h5t.NATIVE_FLOAT, h5py.h5s.create_simple((4,)), dcpl=dcpl)
    ds.write(h5py.h5s.ALL, h5py.h5s.ALL, np.arange(4, dtype="float32"))


def _vlen_sequence(f):
    ds = f.create_dataset("v", (2,), dtype=h5py.vlen_dtype("int32"))
    ds[0], ds[1] = np.arange(3, dtype="int32"), np.arange(2, dtype="int32")


def _committed(f):
    f["t"] = np.dtype("float32")
    f.create_dataset("d", data=np.arange(3, dtype="float32"), dtype=f["t"])


def _shared(f):
    f["x"] = np.arange(3.0)
    f["y"] = f["x"]


def _cycle(f):
    g = f.create_group("g")
    g["self"] = g


F4 = np.arange(30, dtype="float32")
REFUSED = {
    "libver_latest": (lambda f: f.create_dataset("x", data=F4), {"libver": "latest"}, "superblock version 3"),
    "libver_v108": (lambda f: f.create_dataset("x", data=F4), {"libver": "v108"}, "superblock version 2"),
    "chunked": (lambda f: f.create_dataset("x", data=F4, chunks=(10,)), {}, "chunked layout"),
    "gzip": (lambda f: f.create_dataset("x", data=F4, compression="gzip"), {}, "filter pipeline"),
    "compact": (_compact, {}, "compact layout"),
    "external_storage": (lambda f: f.create_dataset(
        "x", data=F4, external=[(str(f.filename) + ".raw", 0, h5py.h5f.UNLIMITED)]), {}, "external data files"),
    "soft_link": (lambda f: (f.create_dataset("x", data=F4), f.__setitem__("s", h5py.SoftLink("/x"))), {}, "soft link"),
    # Symbol tables cannot hold external links: libhdf5 turns the group into a new-style one.
    "external_link": (lambda f: f.__setitem__("e", h5py.ExternalLink("other.h5", "/x")), {}, "link info"),
    "track_order": (lambda f: f.create_group("g", track_order=True), {}, "object header version 2"),
    "big_endian_float": (lambda f: f.create_dataset("x", data=F4.astype(">f4")), {}, "big-endian"),
    "big_endian_int": (lambda f: f.create_dataset("x", data=F4.astype(">i2")), {}, "big-endian"),
    "bool": (lambda f: f.create_dataset("x", data=F4 > 3), {}, "enum"),
    "compound": (lambda f: f.create_dataset("x", data=np.zeros(3, "f4,i4")), {}, "compound"),
    "vlen_sequence": (_vlen_sequence, {}, "variable-length sequence"),
    "vlen_string_dataset": (lambda f: f.create_dataset("s", data=["a", "bc"]), {}, "variable-length string dataset"),
    "committed_datatype": (_committed, {}, "shared message"),
    "shared_object": (_shared, {}, "reached twice"),
    "hard_link_cycle": (_cycle, {}, "reached twice"),
    "long_name": (lambda f: f.create_group("n" * 5000), {}, "too long"),
    "unallocated": (lambda f: f.create_dataset("x", (10,), "float32"), {}, "not allocated"),
    "empty_attribute": (lambda f: f.attrs.__setitem__("e", h5py.Empty("float32")), {}, "null dataspace"),
    "2d_attribute": (lambda f: f.attrs.__setitem__("a", np.zeros((2, 2))), {}, "rank 2"),
    "opaque_attribute": (lambda f: f.attrs.__setitem__("o", np.void(b"ab")), {}, "opaque"),
    "reference_attribute": (lambda f: f.attrs.__setitem__("r", f.ref), {}, "reference"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_refused(tmp_path, case):
    build, kwargs, match = REFUSED[case]
    path = _make(tmp_path, build, **kwargs)
    with h5py.File(path, "r") as f:  # h5py reads every one of them
        f.visit(lambda name: None)
    with open(path, "rb") as file, pytest.raises(Unsupported, match=match):
        read(file)


def _patched(data: bytes, at: int, value: bytes) -> io.BytesIO:
    return io.BytesIO(data[:at] + value + data[at + len(value):])


def test_hand_made_refusals(tmp_path):
    data = _make(tmp_path, keras_like).read_bytes()
    assert read(io.BytesIO(data)).datasets
    cases = {
        "4-byte addresses": _patched(data, 13, b"\x04"),
        "multi-file driver": _patched(data, 48, b"\0" * 8),
        "no HDF5 signature": io.BytesIO(b"PK\3\4" + data[4:]),
        "empty": io.BytesIO(b""),
    }
    for reason, bio in cases.items():
        with pytest.raises(Unsupported):
            read(bio)
    with pytest.raises(Unsupported, match="truncated"):
        read(io.BytesIO(data), 0, len(data) - 1)  # the window ends before the data


def _header_messages(data: bytes, addr: int) -> dict[int, int]:
    """{message type: position of its 8-byte message header} in a one-chunk version-1 header."""
    size = struct.unpack_from("<I", data, addr + 8)[0]
    found, at = {}, addr + 16
    while at < addr + 16 + size:
        mtype, msize = struct.unpack_from("<HH", data, at)
        found.setdefault(mtype, at)
        at += 8 + msize
    return found


def test_hand_made_dataset_headers(tmp_path):
    path = _make(tmp_path, lambda f: f.create_dataset("x", data=np.arange(6.0)))
    with h5py.File(path) as f:
        addr = h5py.h5o.get_info(f["x"].id).addr
    data = path.read_bytes()
    messages = _header_messages(data, addr)
    nil, layout = messages[0], messages[8]
    assert data[layout + 8:layout + 10] == b"\x03\x01"  # version 3, contiguous

    def patched(at, value):
        return io.BytesIO(data[:at] + value + data[at + len(value):])

    # An unknown message is skipped, unless flagged as one to understand.
    assert read(patched(nil, b"\x55\x00")).datasets["x"].nbytes == 48
    for flags in (b"\x08", b"\x80"):
        with pytest.raises(Unsupported, match="unknown message type 85"):
            read(patched(nil, b"\x55\x00" + data[nil + 2:nil + 4] + flags))
    with pytest.raises(Unsupported, match="shared message"):
        read(patched(layout + 4, b"\x02"))
    end = struct.pack("<Q", len(data) - 40)
    with pytest.raises(Unsupported, match="beyond the end"):
        read(patched(layout + 10, end))  # 48 bytes of data from 40 before the end
    with pytest.raises(Unsupported, match="does not match"):
        read(patched(layout + 18, struct.pack("<Q", 40)))
    with pytest.raises(Unsupported, match="data layout version 2"):
        read(patched(layout + 8, b"\x02"))
    with pytest.raises(Unsupported, match="virtual layout"):
        read(patched(layout + 8, b"\x04\x03"))


def test_truncated_files(tmp_path):
    data = _make(tmp_path, keras_like).read_bytes()
    for cut in (0, 7, 8, 50, 96, 100, 200, 800, 1400, 2100, len(data) // 2, len(data) - 8, len(data) - 1):
        with pytest.raises(Unsupported):
            read(io.BytesIO(data[:cut]))


def _peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_huge_declared_sizes_are_refused_without_allocating(tmp_path):
    data = _make(tmp_path, keras_like).read_bytes()
    huge = struct.pack("<Q", 2**62)
    kernel_space = data.find(struct.pack("<QQQQ", 7, 13, 7, 13))  # a dataset's dims and max dims
    counts_space = data.find(struct.pack("<QQ", 11, 11))  # an attribute's
    root = struct.unpack_from("<Q", data, 64)[0]  # the root group's object header
    tree, snod = data.find(b"TREE"), data.find(b"SNOD")
    assert min(kernel_space, counts_space, tree, snod) > 0
    cases = {
        "global heap collection size": _patched(data, data.find(b"GCOL") + 8, huge),
        "local heap size": _patched(data, data.find(b"HEAP") + 8, huge),
        "dataset dims": _patched(data, kernel_space, huge * 4),
        "attribute dims": _patched(data, counts_space, huge * 2),
        "object header size": _patched(data, root + 8, b"\xf0\xff\xff\xff"),
        "B-tree entries": _patched(data, tree + 6, b"\xff\xff"),
        "symbol node entries": _patched(data, snod + 6, b"\xff\xff"),
        "end of file address": _patched(data, 40, huge),
        "root address": _patched(data, 64, UNDEFINED),
    }
    for reason, bio in cases.items():
        def attempt():
            with pytest.raises(Unsupported):
                read(bio)
        assert _peak_bytes(attempt) < 2 * len(data) + 100_000, reason


def _mutations(data: bytes, seed: int) -> bytes:
    """Random bytes flipped, or an 8-byte field (an address or size, often) set to a tricky value."""
    rng = random.Random(seed)
    out = bytearray(data)
    limit = min(len(out), 6144)
    for _ in range(rng.randint(1, 6)):
        if rng.random() < 0.5:
            out[rng.randrange(limit)] = rng.randrange(256)
        else:
            at = rng.randrange(limit // 8) * 8
            tricky = [0, 1, 8, 96, len(data), len(data) - 8, 2**31, 2**63, 2**64 - 1]
            value = rng.choice(tricky + [rng.randrange(len(data))])
            out[at:at + 8] = struct.pack("<Q", value)
    return bytes(out)


def test_fuzz_only_unsupported_escapes(tmp_path):
    data = _make(tmp_path, keras_like).read_bytes()
    outcomes = Counter()
    began = time.monotonic()
    for seed in range(300):
        try:
            read(io.BytesIO(_mutations(data, seed)))
            outcomes["read"] += 1
        except Unsupported:
            outcomes["refused"] += 1
    assert time.monotonic() - began < 20
    assert outcomes["refused"] > 50 and outcomes["read"] > 0, outcomes


def test_root_only_reads_the_root_group_alone():
    path = FIXTURES / "tf_keras" / "mlp_adam.h5"
    with open(path, "rb") as f:
        whole, root = read(f), read(f, root_only=True)
    assert set(root.groups) == {""} and not root.datasets
    assert root.groups[""].attrs == whole.groups[""].attrs
    assert root.groups[""].children == whole.groups[""].children
