"""Hostile inputs found by fuzzing (issue 15): each one built by mutating a fixture, converted
in a subprocess with limits (tests/fuzzing.py), and answered with one line, in bounded time and
memory, leaving nothing behind."""

from __future__ import annotations

import json
import shutil
import struct
import zipfile
from pathlib import Path

import pytest

from fuzzing import FIXTURES, run_cli

K3, K2 = FIXTURES / "keras3", FIXTURES / "tf_keras"
MB = 1 << 20


def refused(run, source: Path, problem: str, code: int = 4) -> None:
    assert run.code == code, (run.code, run.stderr)
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"modelmorph: error: {source}: "), run.stderr
    assert problem in lines[0], lines[0]


def no_output(folder: Path, *keep: str) -> None:
    assert sorted(p.name for p in folder.iterdir()) == sorted(keep)


# -- 1. a config.json that inflates to 256 MiB of tiny values ------------------------------------

def _deflated_config_bomb(path: Path, unit: bytes, size: int) -> Path:
    """The fixture archive with a config.json of ``[unit,unit,...]``, ``size`` bytes inflated."""
    import zlib

    squeeze = zlib.compressobj(9, zlib.DEFLATED, -15)
    crc, compressed = 0, bytearray()
    block = unit * (MB // len(unit))
    for piece in [b"["] + [block] * (size // len(block)) + [b"0]"]:
        crc = zlib.crc32(piece, crc)
        compressed += squeeze.compress(piece)
    compressed += squeeze.flush()
    total = 1 + len(block) * (size // len(block)) + 2
    with zipfile.ZipFile(K3 / "mlp_adam.keras") as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            if info.filename != "config.json":
                dst.writestr(info, src.read(info))
    # Append config.json by hand: zipfile would inflate it again to write it.
    data = bytearray(path.read_bytes())
    end = data.rindex(b"PK\x05\x06")
    count, dir_size, dir_offset = struct.unpack_from("<HII", data, end + 10)
    directory = bytes(data[dir_offset:dir_offset + dir_size])
    name = b"config.json"
    local = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(compressed), total, len(name), 0)
    central = struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, crc, len(compressed), total,
                          len(name), 0, 0, 0, 0, 0, dir_offset)
    new = bytes(data[:dir_offset]) + local + name + bytes(compressed)
    new_dir = directory + central + name
    eocd = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, count + 1, count + 1, len(new_dir), len(new), 0)
    path.write_bytes(new + new_dir + eocd)
    return path


@pytest.mark.parametrize("unit", [b"[],", b"{},", b"0,"])
def test_config_bomb_is_refused_fast_and_small(tmp_path, unit):
    """~280 KB deflated, 256 MiB inflated: refused by its declared size, before inflating."""
    bad = _deflated_config_bomb(tmp_path / "bomb.keras", unit, 256 * MB)
    assert bad.stat().st_size < 2 * MB
    run = run_cli("convert", bad, tmp_path / "out.h5")
    refused(run, bad, "config.json' declares 268435459 bytes" if unit == b"0," else "config.json declares 268435203")
    assert run.seconds < 5 and run.max_rss < 200 * MB, (run.seconds, run.max_rss)
    no_output(tmp_path, "bomb.keras")


@pytest.mark.parametrize("unit", [b"[],", b"{},", b"0,"])
def test_config_of_too_many_values_is_refused_before_parsing(tmp_path, unit):
    """Under the size limit but millions of values: refused from a count, before json builds them."""
    bad = _deflated_config_bomb(tmp_path / "many.keras", unit, 24 * MB)
    run = run_cli("convert", bad, tmp_path / "out.h5")
    refused(run, bad, "values, more than the")
    assert run.seconds < 5 and run.max_rss < 200 * MB, (run.seconds, run.max_rss)
    no_output(tmp_path, "many.keras")


def test_json_value_budget_in_process():
    from modelmorph.errors import ReadError
    from modelmorph.storage import safety

    assert safety.parse_json(b"[" + b"0," * 1000 + b"0]", "x") == [0] * 1001
    with pytest.raises(ReadError, match="about 6000001 values"):
        safety.parse_json(b"[" + b"[]," * 3_000_000 + b"0]", "x")


# -- 2. corrupted global heap objects: refused, never given to libhdf5 ------------------------------

def _global_heap_objects(data: bytes) -> list[tuple[int, int, int]]:
    """(offset, index, size) of each object of the first global heap collection, as the plain
    reader reads them."""
    start = data.index(b"GCOL")
    size = struct.unpack_from("<Q", data, start + 8)[0]
    found, p = [], start + 16
    while p + 16 <= start + size:
        index, _, osize = struct.unpack_from("<HH4xQ", data, p)
        if index == 0:
            break
        found.append((p, index, osize))
        p += 16 + ((osize + 7) & ~7)
    return found


def _layer_names_object(data: bytes) -> tuple[int, int, int]:
    # tf_keras stores layer_names as variable-length strings; "dense_1" is one of them.
    return next(o for o in _global_heap_objects(data) if data[o[0] + 16:o[0] + 16 + o[2]] == b"dense_1")


@pytest.mark.parametrize("how, problem", [
    ("size", "global heap object beyond its collection"),  # libhdf5 allocated 2 GB
    ("index", "missing global heap object"),  # h5py spun forever in attrs['layer_names']
])
def test_corrupted_global_heap_is_refused_not_handed_to_libhdf5(tmp_path, how, problem):
    data = bytearray((K2 / "mlp_adam.h5").read_bytes())
    offset, index, size = _layer_names_object(data)
    if how == "size":
        struct.pack_into("<I", data, offset + 8, 0x7FFF_FFFF)  # 4 bytes of the declared size
    else:
        data[offset:offset + 3] = b"\x05\x01\x01"  # 3 bytes: the object's index and refcount
    bad = tmp_path / "bad.h5"
    bad.write_bytes(bytes(data))
    run = run_cli("convert", bad, tmp_path / "out.keras", timeout=20)
    refused(run, bad, f"not a readable HDF5 file ({problem})")
    assert run.seconds < 5 and run.max_rss < 200 * MB
    no_output(tmp_path, "bad.h5")


def test_malformed_is_told_from_unsupported():
    import io

    from modelmorph.storage import plainh5

    data = bytearray((K2 / "mlp_adam.h5").read_bytes())
    offset, _, _ = _layer_names_object(data)
    struct.pack_into("<I", data, offset + 8, 0x7FFF_FFFF)
    with pytest.raises(plainh5.Malformed):
        plainh5.read(io.BytesIO(bytes(data)))
    data[:16] = b"\x89HDF\r\n\x1a\n\x02" + bytes(7)  # superblock version 2: outside the subset only
    with pytest.raises(plainh5.Unsupported) as info:
        plainh5.read(io.BytesIO(bytes(data)))
    assert not isinstance(info.value, plainh5.Malformed)


# -- 3. a compressed dataset that inflates far beyond what it stores -------------------------------

def test_inflating_dataset_is_bounded(tmp_path):
    h5py = pytest.importorskip("h5py")
    np = pytest.importorskip("numpy")

    bad = tmp_path / "zeros.weights.h5"
    shutil.copy(K3 / "mlp_adam.weights.h5", bad)
    with h5py.File(bad, "r+") as f:
        group = f["layers/dense/vars"]
        del group["0"]
        values = np.zeros(200 * MB // 4, "float32")
        values[::64] = np.random.default_rng(0).random(len(values[::64]))  # ratio ~100: no "shape bomb"
        group.create_dataset("0", data=values, compression="gzip", chunks=(MB // 4,))
    assert bad.stat().st_size < 8 * MB
    run = run_cli("convert", bad, tmp_path / "out.weights.h5", env={"MODELMORPH_MAX_INFLATE": "64MB"})
    refused(run, bad, "compressed datasets expand to")
    assert "MODELMORPH_MAX_INFLATE" in run.stderr
    assert run.seconds < 10 and run.max_rss < 200 * MB, (run.seconds, run.max_rss)
    no_output(tmp_path, "zeros.weights.h5")
    # The limit is the documented one, and raising it lets a trusted file through.
    run = run_cli("convert", bad, tmp_path / "out.weights.h5", env={"MODELMORPH_MAX_INFLATE": "1GB"})
    assert run.code == 0, run.stderr


# -- 4. a corrupted legacy .h5: one line naming the problem, not the keras-weights reader's ------

def test_unreadable_root_attribute_is_one_line_from_the_h5_reader(tmp_path):
    h5py = pytest.importorskip("h5py")
    from fuzzing import latest_h5

    # libver='latest' puts it outside the plain subset: libhdf5 reads it.
    data = bytearray(latest_h5(K2 / "mlp_adam.h5"))
    offset, _, _ = _layer_names_object(data)
    struct.pack_into("<I", data, offset + 8, 0x7FFF_FFFF)
    bad = tmp_path / "bad.h5"
    bad.write_bytes(bytes(data))
    with pytest.raises(Exception):
        with h5py.File(bad, "r") as f:
            dict(f.attrs)
    run = run_cli("convert", bad, tmp_path / "out.keras")
    assert run.code == 4 and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert "vars" not in run.stderr and "cannot be read" in run.stderr, run.stderr
    no_output(tmp_path, "bad.h5")


# -- 8. a symlinked assets/ folder of an unzipped archive -----------------------------------------

@pytest.mark.parametrize("where", ["assets", "assets/sub"])
def test_symlinked_assets_folder_is_refused_unlisted(tmp_path, where):
    folder = tmp_path / "model"
    shutil.copytree(K3 / "mlp_adam_dir", folder)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("not the model's")
    shutil.rmtree(folder / "assets", ignore_errors=True)
    if where == "assets/sub":
        (folder / "assets").mkdir()
    (folder / where).symlink_to(outside, target_is_directory=True)
    run = run_cli("convert", folder, tmp_path / "out.keras")
    refused(run, folder, f"{where}/ is a symbolic link; refused")
    assert "secret" not in run.stderr
    assert not (tmp_path / "out.keras").exists()


# -- 6. configs the Keras 2 writer crashed on -------------------------------------------------------

@pytest.mark.parametrize("key, value", [
    ("kernel_initializer", {"class_name": "GlorotUniform", "config": {}, "module": {}}),
    ("kernel_initializer", {"class_name": "GlorotUniform", "config": ["x"], "module": "keras.initializers"}),
    ("dtype", {"class_name": "DTypePolicy", "config": ["float32"], "module": "keras"}),
])
def test_odd_nested_objects_do_not_crash_the_keras2_writer(tmp_path, key, value):
    cfg = json.loads((K3 / "mlp_adam.json").read_text())
    layer = next(l for l in cfg["config"]["layers"] if l["class_name"] == "Dense")
    layer["config"][key] = value
    src = tmp_path / "odd.json"
    src.write_text(json.dumps(cfg))
    run = run_cli("convert", src, tmp_path / "out.json", "-O", "dialect=keras2")
    assert run.code == 0 and "Traceback" not in run.stderr, run.stderr


# -- 7. bugs the catch-all hid ---------------------------------------------------------------------

def test_nul_byte_in_checkpoint_state_file(tmp_path):
    folder = tmp_path / "ckpt"
    shutil.copytree(K2 / "ckpt" / "mlp_adam", folder)
    (folder / "checkpoint").write_text('model_checkpoint_path: "ck\\000pt"\n')
    run = run_cli("convert", folder, tmp_path / "out.weights.h5", "--arch", K2 / "mlp_adam.json")
    assert run.code == 4 and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert "NUL byte" in run.stderr and "ValueError" not in run.stderr, run.stderr
    assert not (tmp_path / "out.weights.h5").exists()


def test_zip_entry_outside_the_archive(tmp_path):
    data = bytearray((K3 / "mlp_adam.keras").read_bytes())
    end = data.rindex(b"PK\x05\x06")
    p = struct.unpack_from("<I", data, end + 16)[0]
    while data[p:p + 4] == b"PK\x01\x02":
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", data, p + 28)
        if data[p + 46:p + 46 + name_len] == b"model.weights.h5":
            struct.pack_into("<I", data, p + 42, 0xFFFF_FF00)  # its local header "lies" at 4 GiB
        p += 46 + name_len + extra_len + comment_len
    bad = tmp_path / "bad.keras"
    bad.write_bytes(bytes(data))
    run = run_cli("convert", bad, tmp_path / "out.h5")
    refused(run, bad, "the zip entry of 'model.weights.h5' lies outside the archive")
