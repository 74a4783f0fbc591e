"""Hostile and broken Keras files: a one-line error naming the file, exit status 4, nothing
written, nothing executed, nothing outside the model read."""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

import modelmorph
from modelmorph.storage import filecopy, safety
from modelmorph.cli import main
from modelmorph.errors import EXIT_READ

from kerascases import KERAS3

SOURCE = KERAS3 / "mlp_adam.keras"


def refused(capsys, tmp_path: Path, source: Path, problem: str, output: str = "out.keras") -> None:
    before = set(tmp_path.iterdir())
    code = main(["convert", str(source), str(tmp_path / output)])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_READ, err
    assert len(err.splitlines()) == 1 and str(source) in err and problem in err, err
    assert "Traceback" not in err
    assert set(tmp_path.iterdir()) == before, "something was left behind"


def rezip(path: Path, members: dict[str, bytes | None], compression=zipfile.ZIP_STORED) -> Path:
    """The fixture archive with some members replaced (bytes), removed (None) or added."""
    with zipfile.ZipFile(SOURCE) as src:
        contents = {info.filename: src.read(info) for info in src.infolist()}
    contents.update(members)
    with zipfile.ZipFile(path, "w", compression) as dst:
        for name, data in contents.items():
            if data is not None:
                dst.writestr(name, data)
    return path


# -- the zip ----------------------------------------------------------------------------------
def test_not_a_zip(tmp_path, capsys):
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"this is not a zip archive at all")
    refused(capsys, tmp_path, bad, "not a readable .keras zip archive")


def test_truncated_archive(tmp_path, capsys):
    bad = tmp_path / "cut.keras"
    bad.write_bytes(SOURCE.read_bytes()[: SOURCE.stat().st_size * 2 // 3])
    refused(capsys, tmp_path, bad, "not a readable .keras zip archive")


def test_corrupted_weights_fail_the_checksum(tmp_path, capsys):
    data = bytearray(SOURCE.read_bytes())
    with zipfile.ZipFile(SOURCE) as zf:
        info = zf.getinfo("model.weights.h5")
    data[info.header_offset + 30 + len(info.filename) + 5000] ^= 0xFF  # a byte inside the weights
    bad = tmp_path / "flipped.keras"
    bad.write_bytes(bytes(data))
    refused(capsys, tmp_path, bad, "model.weights.h5 is corrupt (CRC-32 mismatch)")


@pytest.mark.parametrize("which", ["first", "last"])
@pytest.mark.parametrize("thread", ["running", "late"])
@pytest.mark.parametrize("output, options", [("out.keras", []), ("out.h5", []),
                                             ("out.weights.json", ["-O", "max_shard_size=2000"])])
def test_a_flipped_tensor_byte_fails_the_checksum_whoever_reads_it(tmp_path, capsys, monkeypatch, which, thread,
                                                                   output, options):
    """The tensors' CRC is taken from the copies when the writer checksums what it copies and
    claimed them first, else read by the check's thread (which, on a small file, gets there
    first; ``late``: a thread that never starts, so every tensor's CRC comes from its copy): a
    flipped byte is caught either way, and nothing is kept."""
    if thread == "late":
        monkeypatch.setattr(filecopy.SharedCrc32, "start", lambda self: None)
    with modelmorph.read(SOURCE, verify=False) as model:
        ranges = sorted((w.raw.offset, w.raw.nbytes) for _, _, w in model.iter_weights()
                        if w.raw is not None and w.raw.nbytes > 16)
    if not ranges:
        pytest.skip("no tensor read in place (MODELMORPH_HDF5=h5py)")
    offset, nbytes = ranges[0] if which == "first" else ranges[-1]
    data = bytearray(SOURCE.read_bytes())
    data[offset + nbytes // 2] ^= 0x01
    bad = tmp_path / "flipped.keras"
    bad.write_bytes(bytes(data))
    out = tmp_path / "out"
    out.mkdir()
    code = main(["convert", str(bad), str(out / output), *options])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_READ, err
    assert len(err.splitlines()) == 1 and str(bad) in err and "model.weights.h5 is corrupt (CRC-32 mismatch)" in err, err
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("members, problem", [
    ({"config.json": None}, "the archive has no config.json"),
    ({"model.weights.h5": None}, "the archive has no model.weights.h5"),
    ({"model.weights.h5": None, "model.weights.npz": b"PK"}, "model.weights.npz (weights_format='npz')"),
    ({"config.json": b"{not json"}, "config.json is malformed"),
    ({"config.json": b"[1, 2]"}, "config.json is not a Keras model config"),
    ({"config.json": b'{"class_name": "Sequential", "config": {"layers": 7}}'}, "invalid Keras architecture"),
    ({"config.json": b"[" * 10000 + b"]" * 10000}, "nested more than"),
    ({"model.weights.h5": b"not hdf5"}, "model.weights.h5 is not a readable HDF5 file"),
    ({"assets/../../evil.txt": b"x"}, "member name 'assets/../../evil.txt' climbs out of its folder"),
    ({"/tmp/evil.txt": b"x"}, "climbs out of its folder"),
    ({"assets\\..\\..\\evil.txt": b"x"}, "is not a plain relative path"),
])
def test_missing_malformed_and_escaping_members(tmp_path, capsys, members, problem):
    refused(capsys, tmp_path, rezip(tmp_path / "bad.keras", members), problem)


def test_duplicate_members(tmp_path, capsys):
    bad = tmp_path / "twice.keras"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("config.json", "{}")
        with pytest.warns(UserWarning, match="Duplicate name"):
            zf.writestr("config.json", "{}")
    refused(capsys, tmp_path, bad, "member 'config.json' appears twice")


def test_oversized_config_is_refused_before_reading(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(safety, "MAX_JSON_BYTES", 1000)
    refused(capsys, tmp_path, SOURCE, "config.json declares 2770 bytes, more than the 1000")


def test_member_declaring_more_than_it_stores_is_a_bomb(tmp_path, capsys):
    bad = tmp_path / "bomb.keras"
    data = bytearray(SOURCE.read_bytes())
    directory = data.rindex(b"PK\x05\x06")  # end of central directory record
    offset = struct.unpack_from("<I", data, directory + 16)[0]
    assert data[offset:offset + 4] == b"PK\x01\x02"
    struct.pack_into("<I", data, offset + 24, 3 * 2**30)  # metadata.json "is" 3 GiB
    bad.write_bytes(bytes(data))
    refused(capsys, tmp_path, bad, "member 'metadata.json' declares 3221225472 bytes but stores 64: a decompression bomb")


def test_real_deflate_bomb(tmp_path, capsys, monkeypatch):
    from modelmorph_keras import archive

    monkeypatch.setattr(archive, "BOMB_FLOOR", 1 << 20)  # a 4 MiB bomb instead of a 300 MiB one
    bad = rezip(tmp_path / "bomb.keras", {"assets/zeros.bin": bytes(4 << 20)}, zipfile.ZIP_DEFLATED)
    refused(capsys, tmp_path, bad, "member 'assets/zeros.bin' declares 4194304 bytes but stores")


def test_deflated_archive_still_reads(tmp_path):
    """An archive re-zipped with compression is not hostile: its weights are extracted, bounded."""
    with modelmorph.read(rezip(tmp_path / "deflated.keras", {}, zipfile.ZIP_DEFLATED)) as model, \
            modelmorph.read(SOURCE) as original:
        assert [w.read().tobytes() for _, _, w in model.iter_weights()] == [
            w.read().tobytes() for _, _, w in original.iter_weights()]


# -- HDF5 -------------------------------------------------------------------------------------
def hostile_h5(tmp_path: Path, how: str) -> bytes:
    """The fixture's model.weights.h5 with dense/vars/0 replaced by something hostile."""
    path = tmp_path / f"{how}.h5"
    with zipfile.ZipFile(SOURCE) as zf:
        path.write_bytes(zf.read("model.weights.h5"))
    outside = tmp_path / "outside.bin"
    outside.write_bytes(np.arange(128, dtype="float32").tobytes())
    with h5py.File(path, "r+") as f:
        group = f["layers/dense/vars"]
        del group["0"]
        if how == "external_link":
            group["0"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/data")
        elif how == "soft_link":
            group["0"] = h5py.SoftLink("/layers/dense_1/vars/0")
        elif how == "external_storage":
            group.create_dataset("0", shape=(8, 16), dtype="f4", external=[(str(outside), 0, 512)])
        elif how == "virtual":
            with h5py.File(tmp_path / "other.h5", "w") as other:
                other["data"] = np.zeros((8, 16), "f4")
            layout = h5py.VirtualLayout(shape=(8, 16), dtype="f4")
            layout[:] = h5py.VirtualSource(str(tmp_path / "other.h5"), "data", shape=(8, 16))
            group.create_virtual_dataset("0", layout)
        elif how == "shape_bomb":
            group.create_dataset("0", shape=(2**20, 2**20), dtype="f4", chunks=(256, 256))
    return path.read_bytes()


HDF5_ATTACKS = [("external_link", "HDF5 external link at '/layers/dense/vars/0' points to another file"),
                ("soft_link", "HDF5 soft link at '/layers/dense/vars/0'"),
                ("external_storage", "keeps its data in an external file"),
                ("virtual", "HDF5 virtual dataset '/layers/dense/vars/0' reads other files"),
                ("shape_bomb", "declares 4398046511104 bytes but stores 0")]


@pytest.mark.parametrize("how, problem", HDF5_ATTACKS)
def test_hostile_hdf5_in_an_archive(tmp_path, capsys, how, problem):
    refused(capsys, tmp_path, rezip(tmp_path / "bad.keras", {"model.weights.h5": hostile_h5(tmp_path, how)}), problem)


@pytest.mark.parametrize("how, problem", HDF5_ATTACKS)
def test_hostile_weights_file(tmp_path, capsys, how, problem):
    bad = tmp_path / "bad.weights.h5"
    bad.write_bytes(hostile_h5(tmp_path, how))
    refused(capsys, tmp_path, bad, problem, output="out.weights.h5")


# -- sharded index and unzipped folders ---------------------------------------------------------
def sharded_copy(folder: Path) -> Path:
    folder.mkdir()
    for p in KERAS3.glob("mlp_adam*.weights.*"):
        (folder / p.name).write_bytes(p.read_bytes())
    return folder / "mlp_adam.weights.json"


@pytest.mark.parametrize("shard, problem", [("../mlp_adam_00000.weights.h5", "not a shard file beside the index"),
                                            ("/etc/passwd", "not a shard file beside the index"),
                                            ("missing_00009.weights.h5", "no such file")])
def test_index_naming_files_elsewhere(tmp_path, capsys, shard, problem):
    index_path = sharded_copy(tmp_path / "shards")
    index = json.loads(index_path.read_text())
    index["weight_map"]["/layers/dense/vars"] = [shard]
    index_path.write_text(json.dumps(index))
    refused(capsys, tmp_path, index_path, problem, output="out.weights.h5")


def test_shard_symlinked_outside_its_folder(tmp_path, capsys):
    index_path = sharded_copy(tmp_path / "shards")
    shard = index_path.parent / "mlp_adam_00000.weights.h5"
    (tmp_path / "elsewhere.h5").write_bytes(shard.read_bytes())
    shard.unlink()
    shard.symlink_to(tmp_path / "elsewhere.h5")
    refused(capsys, tmp_path, index_path, "points outside", output="out.weights.h5")


def test_unzipped_archive_with_a_symlink_out(tmp_path, capsys):
    folder = tmp_path / "model_dir"
    folder.mkdir()
    for p in (KERAS3 / "mlp_adam_dir").iterdir():
        if p.is_file():
            (folder / p.name).write_bytes(p.read_bytes())
    (tmp_path / "secret.json").write_text("{}")
    (folder / "config.json").unlink()
    (folder / "config.json").symlink_to(tmp_path / "secret.json")
    refused(capsys, tmp_path, folder, "points outside")


# -- code is data ------------------------------------------------------------------------------
def test_module_import_attack_and_lambda_are_carried_never_run(tmp_path, capsys):
    """CVE-2025-1550: a layer naming module `os`, class `system`; and a Lambda's bytecode."""
    marker = tmp_path / "pwned"
    with zipfile.ZipFile(KERAS3 / "lambda_layer.keras") as zf:
        config = json.loads(zf.read("config.json"))
    config["config"]["layers"].append({"module": "os", "class_name": "system", "registered_name": "system",
                                       "config": {"name": "evil", "command": f"touch {marker}"},
                                       "name": "evil", "inbound_nodes": []})
    with zipfile.ZipFile(KERAS3 / "lambda_layer.keras") as src, zipfile.ZipFile(tmp_path / "evil.keras", "w") as dst:
        for info in src.infolist():
            dst.writestr(info, json.dumps(config) if info.filename == "config.json" else src.read(info))
    out = tmp_path / "copy.keras"
    assert main(["convert", str(tmp_path / "evil.keras"), str(out)]) == 0
    err = capsys.readouterr().err
    assert "contains-code [lambda]" in err and "contains-code [evil]" in err
    assert not marker.exists()
    with zipfile.ZipFile(out) as zf:
        assert json.loads(zf.read("config.json"))["config"]["layers"][-1]["config"]["command"] == f"touch {marker}"


def test_the_writer_refuses_asset_paths_that_climb(tmp_path):
    with modelmorph.read(SOURCE) as model:
        model.assets = [modelmorph.Asset("assets/../../escape.txt", 1, loader=lambda: b"x")]
        with pytest.raises(modelmorph.WriteError, match="climbs out"):
            modelmorph.write(model, tmp_path / "out", "keras", options={"zipped": "false"})
    assert list(tmp_path.iterdir()) == []
    assert not (tmp_path.parent / "escape.txt").exists()
