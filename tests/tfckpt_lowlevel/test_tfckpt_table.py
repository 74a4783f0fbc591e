"""SSTable, varint, CRC, snappy and OrderedCode building blocks (no TensorFlow)."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from helpers import require
from tfckpt_snappy import snappy_compress

from modelmorph_tfckpt.bundle import BundleError, TableReader, TableWriter, decode_slice_key, encode_slice_key
from modelmorph_tfckpt.bundle.table import (
    crc32c,
    decode_varint,
    encode_varint,
    mask_crc,
    snappy_decompress,
    unmask_crc,
)


def test_crc32c_known_values():
    assert crc32c(b"123456789") == 0xE3069283
    assert mask_crc(0) == 0xA282EAD8
    for c in (0, 1, 0xDEADBEEF, 0xFFFFFFFF):
        assert unmask_crc(mask_crc(c)) == c
    # numpy buffers (fed in chunks) give the same answer as bytes
    a = np.arange(3_000_000, dtype=np.uint16)
    assert crc32c(a) == crc32c(a.tobytes())


def test_varints():
    for v in (0, 1, 127, 128, 300, 2**32 - 1, 2**63, 2**64 - 1):
        enc = encode_varint(v)
        assert decode_varint(enc, 0, len(enc)) == (v, len(enc))
    with pytest.raises(BundleError, match="truncated"):
        decode_varint(b"\x80\x80", 0, 2)
    with pytest.raises(BundleError, match="longer than"):
        decode_varint(b"\xff" * 11, 0, 11)
    with pytest.raises(BundleError, match="does not fit"):
        decode_varint(encode_varint(2**32), 0, 5, bits=32)


def _table_bytes(items, **kw):
    buf = io.BytesIO()
    w = TableWriter(buf, **kw)
    for k, v in items:
        w.add(k, v)
    w.finish()
    return buf.getvalue()


def _read_table(tmp_path, data: bytes):
    p = tmp_path / "t.index"
    p.write_bytes(data)
    with TableReader(p) as t:
        return list(t), t.num_data_blocks


def test_empty_table_layout(tmp_path):
    data = _table_bytes([])
    # empty data... no data blocks: metaindex (8 bytes + trailer), index (8 + trailer), footer
    assert len(data) == 13 + 13 + 48
    assert data[:8] == bytes.fromhex("0000000001000000")
    assert data[-8:] == bytes.fromhex("57fb808b247547db")
    assert _read_table(tmp_path, data) == ([], 0)


def test_table_roundtrip_many_blocks(tmp_path):
    items = [(f"key/{i:06d}".encode(), os.urandom(i % 300)) for i in range(5000)]
    data = _table_bytes(items, block_size=4096)
    got, nblocks = _read_table(tmp_path, data)
    assert got == items
    assert nblocks > 50


def test_writer_rejects_unsorted_keys():
    w = TableWriter(io.BytesIO())
    w.add(b"b", b"")
    with pytest.raises(ValueError):
        w.add(b"a", b"")
    with pytest.raises(ValueError):
        w.add(b"b", b"")


def test_snappy_known_streams():
    # literal with 1..4-byte lengths (tags 60..63), copies with 1-, 2- and 4-byte offsets
    assert snappy_decompress(b"\x03" + b"\x08abc") == b"abc"
    lit = os.urandom(300)
    assert snappy_decompress(encode_varint(200) + bytes([60 << 2, 199]) + lit[:200]) == lit[:200]
    assert snappy_decompress(encode_varint(300) + bytes([61 << 2]) + (299).to_bytes(2, "little") + lit) == lit
    assert snappy_decompress(encode_varint(300) + bytes([62 << 2]) + (299).to_bytes(3, "little") + lit) == lit
    assert snappy_decompress(encode_varint(300) + bytes([63 << 2]) + (299).to_bytes(4, "little") + lit) == lit
    # "ab" then copy-1 of length 6 at offset 2 (overlapping) -> "abababab"
    assert snappy_decompress(bytes([8, 1 << 2]) + b"ab" + bytes([1 | (2 << 2), 2])) == b"abababab"
    # copy-2 and copy-4 with the same meaning
    assert snappy_decompress(bytes([8, 1 << 2]) + b"ab" + bytes([2 | (5 << 2), 2, 0])) == b"abababab"
    assert snappy_decompress(bytes([8, 1 << 2]) + b"ab" + bytes([3 | (5 << 2), 2, 0, 0, 0])) == b"abababab"


@pytest.mark.parametrize(
    "stream, message",
    [
        (b"", "truncated snappy length"),
        (b"\xff\xff\xff\xff\x0f", "absurd"),  # 4 GiB declared from 5 bytes
        (b"\x05\x10ab", "runs past"),  # literal of 5 with 2 bytes present
        (b"\x04" + bytes([1 << 2]) + b"ab" + bytes([2 | (1 << 2), 9, 0]), "offset out of range"),
        (b"\x04" + bytes([1 << 2]) + b"ab" + bytes([2 | (1 << 2), 0, 0]), "offset out of range"),
        (b"\x03" + bytes([3 << 2]) + b"abcd", "longer than its declared size"),
        (b"\x05" + bytes([1 << 2]) + b"ab", "shorter than its declared size"),
        (b"\x04" + bytes([1 << 2]) + b"ab" + bytes([3]), "truncated snappy copy"),
    ],
)
def test_snappy_rejects_bad_streams(stream, message):
    with pytest.raises(BundleError, match=message):
        snappy_decompress(stream)


def test_snappy_test_encoder_roundtrip():
    rng = np.random.default_rng(1)
    head = rng.integers(0, 256, 70_000, dtype=np.uint8).tobytes()
    data = head + b"x" * 1000 + head[:5000] + b"abc" * 2000 + b"".join(b"item%03d;" % i for i in range(300))
    packed = snappy_compress(data)
    assert len(packed) < len(data)
    assert snappy_decompress(packed) == data
    tags = set()
    pos = decode_varint(packed, 0, len(packed))[1]
    # walk the elements to prove all copy kinds were exercised
    while pos < len(packed):
        tag = packed[pos]
        kind = tag & 3
        tags.add(kind)
        if kind == 0:
            ln = tag >> 2
            extra = ln - 59 if ln >= 60 else 0
            ln = int.from_bytes(packed[pos + 1 : pos + 1 + extra], "little") if extra else ln
            pos += 1 + extra + ln + 1
        else:
            pos += {1: 2, 2: 3, 3: 5}[kind]
    assert tags == {0, 1, 2, 3}


def test_snappy_against_cramjam():
    cramjam = require("cramjam")
    data = os.urandom(1000) + b"hello world " * 5000 + bytes(range(256)) * 40
    assert snappy_decompress(bytes(cramjam.snappy.compress_raw(data))) == data


def test_snappy_compressed_table(tmp_path):
    items = [(f"layer_{i:05d}/kernel".encode(), b"value-%d" % (i % 7) * 20) for i in range(3000)]
    data = _table_bytes(items, compress=snappy_compress)
    got, nblocks = _read_table(tmp_path, data)
    assert got == items and nblocks > 1
    assert len(data) < len(_table_bytes(items)) // 2
    with TableReader(tmp_path / "t.index") as t:  # data blocks stored with type byte 1
        assert all(data[off + size] == 1 for off, size in t._data_handles)


def test_ordered_code_vectors():
    from modelmorph_tfckpt.bundle.ordered_code import _write_signed

    for value, hexstr in [(0, "80"), (1, "81"), (-1, "7f"), (63, "bf"), (64, "c040"), (-64, "40"), (-65, "3fbf"),
                          (0x424242, "f0424242"), (-0x800, "3800"), (2**63 - 1, "ffc07fffffffffffffff"),
                          (-(2**63), "003f8000000000000000")]:
        out = bytearray()
        _write_signed(out, value)
        assert out.hex() == hexstr, value
    key = encode_slice_key("model/big/.ATTRIBUTES/VARIABLE_VALUE", [(250, 58), (0, 4)])
    # bytes TensorFlow 2.21 wrote for that slice
    assert key == b"\x00model/big/.ATTRIBUTES/VARIABLE_VALUE\x00\x01\x01\x02\xc0\xfa\xba\x80\x84"
    assert decode_slice_key(key) == ("model/big/.ATTRIBUTES/VARIABLE_VALUE", ((250, 58), (0, 4)))
    assert decode_slice_key(encode_slice_key("a\x00b\xffc", [(0, None)])) == ("a\x00b\xffc", ((0, None),))
    for bad in (b"\x01", b"\x00abc", b"\x00ab\x00\x01\x00", b"\x00ab\x00\x01\x01\x01\x80"):
        with pytest.raises(BundleError, match="malformed slice key"):
            decode_slice_key(bad)


def _run_isolated(code: str, **env) -> str:
    import subprocess
    import sys
    from pathlib import Path

    plugins = str(Path(__file__).resolve().parents[2] / "plugins")
    full_env = {**os.environ, "PYTHONPATH": plugins, **env}
    out = subprocess.run([sys.executable, "-W", "error", "-c", code], env=full_env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


_ROUNDTRIP = """
import sys, tempfile, numpy as np
from modelmorph_tfckpt.bundle import BundleReader, BundleWriter, build_object_graph, checkpoint_key_origins
from google.protobuf.internal import api_implementation
d = tempfile.mkdtemp()
built = build_object_graph({"model": {"w": np.arange(6, dtype=np.float32), "s": b"x"}})
with BundleWriter(d + "/ck") as w:
    for k, v in built.values():
        w.add(k, v)
    w.add_object_graph(built.graph)
with BundleReader(d) as r:
    assert r.read("model/w/.ATTRIBUTES/VARIABLE_VALUE").tolist() == list(range(6))
    assert list(checkpoint_key_origins(r.object_graph())) == list(built.keys)
assert "tensorflow" not in sys.modules and "keras" not in sys.modules
print(api_implementation.Type())
"""


def test_library_never_imports_tensorflow():
    assert _run_isolated(_ROUNDTRIP).strip() in ("upb", "cpp", "python")


def test_generated_protos_work_with_pure_python_protobuf():
    assert _run_isolated(_ROUNDTRIP, PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION="python").strip() == "python"
