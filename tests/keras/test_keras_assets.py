"""Assets are streamed: a large vocabulary is copied in chunks (memory does not grow with it),
its CRC checked on the way (a corrupted asset stops the conversion, exit 4, nothing written)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import modelmorph
from kerascases import KERAS3
from modelmorph.cli import main

ASSET = "assets/layers/lookup/vocabulary.txt"


def with_asset(path: Path, size: int, method: int = zipfile.ZIP_STORED) -> bytes:
    """A copy of mlp_adam.keras with one asset of ``size`` bytes; returns the asset's bytes."""
    line = b"".join(b"token%09d\n" % i for i in range(1000))
    data = (line * (size // len(line) + 1))[:size]
    path.write_bytes((KERAS3 / "mlp_adam.keras").read_bytes())
    with zipfile.ZipFile(path, "a") as z:
        z.writestr(zipfile.ZipInfo(ASSET), data, compress_type=method)
    return data


@pytest.mark.parametrize("target", ["out.keras", "folder"])
@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED], ids=["stored", "deflated"])
def test_assets_are_copied_whole(tmp_path, target, method):
    data = with_asset(tmp_path / "src.keras", 3 << 20, method)
    out = tmp_path / target
    modelmorph.convert(tmp_path / "src.keras", out, to_format="keras", options={"zipped": target.endswith(".keras")})
    if target.endswith(".keras"):
        with zipfile.ZipFile(out) as z:
            assert z.testzip() is None  # every CRC, the streamed asset's included
            assert z.read(ASSET) == data
    else:
        assert (out / ASSET).read_bytes() == data
    with modelmorph.read(out) as model:  # and read back through the stream
        assert [(a.path, a.size) for a in model.assets] == [(ASSET, len(data))]
        with model.assets[0].open() as stream:
            assert stream.read() == data


def test_a_corrupted_asset_is_a_read_error(tmp_path, capsys):
    with_asset(tmp_path / "src.keras", 1 << 20)
    raw = bytearray((tmp_path / "src.keras").read_bytes())
    at = raw.index(b"token000000500")
    raw[at] ^= 0x01
    (tmp_path / "src.keras").write_bytes(raw)
    assert main(["info", str(tmp_path / "src.keras")]) == 0  # metadata only
    assert main(["info", str(tmp_path / "src.keras"), "--verify"]) == 4
    out = tmp_path / "out"
    out.mkdir()
    assert main(["convert", str(tmp_path / "src.keras"), str(out / "m.keras")]) == 4
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(f"{ASSET!r} is corrupt" in line for line in err), err
    assert list(out.iterdir()) == []


def _peak_mb(src: Path, dst: Path) -> float:
    code = ("import resource, sys, modelmorph\n"
            f"modelmorph.convert({str(src)!r}, {str(dst)!r})\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return float(out.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss in kilobytes: Linux")
def test_a_large_asset_does_not_grow_memory(tmp_path):
    with_asset(tmp_path / "small.keras", 1 << 20)
    with_asset(tmp_path / "large.keras", 96 << 20)
    small = _peak_mb(tmp_path / "small.keras", tmp_path / "a.keras")
    large = _peak_mb(tmp_path / "large.keras", tmp_path / "b.keras")
    assert os.path.getsize(tmp_path / "b.keras") > 96 << 20
    assert large - small < 24, (small, large)  # not the 95 MB more a whole-asset copy takes
