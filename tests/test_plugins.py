"""Plugin discovery through the `modelmorph` entry-point group, third parties included."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from modelmorph.plugins import DISABLE_AUTOLOAD_ENV, PluginWarning
from modelmorph.registry import Registry

from helpers import FIXTURES

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "modelmorph-npz"


def _fake_distribution(where: Path, dist: str, module: str, source: str) -> None:
    """A minimal installed distribution (dist-info + module) with an entry point in group modelmorph."""
    (where / f"{module}.py").write_text(textwrap.dedent(source))
    info = where / f"{dist.replace('-', '_')}-0.1.dist-info"  # as installers name it
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[modelmorph]\n{dist} = {module}\n")


@pytest.fixture()
def site(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_broken_plugins_warn_and_never_crash(site):
    _fake_distribution(site, "raises-on-import", "mm_raises", "raise RuntimeError('boom at import')\n")
    _fake_distribution(site, "misspelled-hook", "mm_misspelled", """
        import modelmorph
        @modelmorph.hookimpl
        def modelmorph_format():
            return []
    """)
    _fake_distribution(site, "raises-in-hook", "mm_hook_raises", """
        import modelmorph
        @modelmorph.hookimpl
        def modelmorph_formats():
            raise ValueError('broken hook')
    """)
    _fake_distribution(site, "steals-json", "mm_steals", """
        import modelmorph
        @modelmorph.hookimpl
        def modelmorph_formats():
            return [modelmorph.Format(name="json", description="impostor", extensions=(".json",),
                                      reads=frozenset({"architecture"}), reader=lambda *a, **k: None)]
    """)
    with pytest.warns(PluginWarning) as record:
        reg = Registry()
    messages = "\n".join(str(w.message) for w in record)
    assert "boom at import" in messages
    assert "unknown hook(s) modelmorph_format" in messages
    assert "broken hook" in messages
    assert "already provides" in messages
    assert reg.formats["json"].plugin == "json"  # the built-in keeps its name
    infos = {i.name: i for i in reg.plugin_info()}
    assert infos["raises-on-import"].error and infos["misspelled-hook"].error


def test_autoload_can_be_turned_off(site, monkeypatch):
    _fake_distribution(site, "extra-format", "mm_extra", """
        import modelmorph
        @modelmorph.hookimpl
        def modelmorph_formats():
            return [modelmorph.Format(name="extra", description="x", extensions=(".extra",))]
    """)
    assert "extra" in Registry().formats
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    reg = Registry()
    assert "extra" not in reg.formats and "json" in reg.formats


def test_layer_specs_hook_teaches_the_catalogue(site):
    _fake_distribution(site, "scale-layer", "mm_scale", """
        import modelmorph
        @modelmorph.hookimpl
        def modelmorph_layer_specs():
            return [modelmorph.LayerSpec("MyScale", lambda config: [modelmorph.Var("scale")])]
    """)
    from modelmorph.keras import catalogue

    reg = Registry()
    assert reg.catalogue.variables_of("MyScale", {}) == [catalogue.Var("scale")]
    assert catalogue.variables_of("MyScale", {}) is None  # the registry's own: nothing leaks
    with catalogue.activate(reg.catalogue):
        assert catalogue.variables_of("MyScale", {}) == [catalogue.Var("scale")]


def test_third_party_distribution_installs_and_shows_up(tmp_path):
    """pip-install the example plugin into a throwaway folder; `formats` and `plugins` see it."""
    target = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
           "--target", str(target), str(EXAMPLE)]
    subprocess.run(pip, check=True, capture_output=True, cwd=tmp_path)
    env = {**os.environ, "PYTHONPATH": str(target)}
    cli = [sys.executable, "-m", "modelmorph.cli"]
    formats = json.loads(subprocess.run(cli + ["formats", "--json"], env=env, check=True, capture_output=True,
                                        text=True).stdout)
    npz = next(f for f in formats if f["name"] == "npz")
    assert npz["plugin"] == "npz" and npz["extensions"] == [".npz"]
    plugins = json.loads(subprocess.run(cli + ["plugins", "--json"], env=env, check=True, capture_output=True,
                                        text=True).stdout)
    entry = next(p for p in plugins if p["name"] == "npz")
    assert entry["distribution"] == "modelmorph-npz" and not entry["builtin"] and entry["version"] == "0.1.0"
    # and it works: weights out and back in through the third-party format
    script = textwrap.dedent(f"""
        import numpy as np, modelmorph
        from modelmorph import Model, Layer, Weight
        k = np.arange(6, dtype=np.float32).reshape(2, 3)
        m = Model("m", has_architecture=False, layers=[Layer("dense", "", weights=[Weight.from_array("kernel", k)])])
        modelmorph.write(m, {str(tmp_path / 'w.npz')!r})
        with modelmorph.read({str(tmp_path / 'w.npz')!r}) as back:
            np.testing.assert_array_equal(back.layer("dense").weight("kernel").read(), k)
        modelmorph.write(m, {str(tmp_path / 'z.npz')!r}, options={{"compressed": "yes"}})  # a typed option
        import zipfile
        assert zipfile.ZipFile({str(tmp_path / 'z.npz')!r}).infolist()[0].compress_type == zipfile.ZIP_DEFLATED
        with modelmorph.read({str(tmp_path / 'z.npz')!r}) as back:
            np.testing.assert_array_equal(back.layer("dense").weight("kernel").read(), k)
        # joined with an architecture from another format (JSON: no weights of its own)
        source = {str(FIXTURES / 'keras3' / 'seq_cnn_bn.keras')!r}
        modelmorph.convert(source, {str(tmp_path / 'cnn.npz')!r})
        joined = modelmorph.read({str(tmp_path / 'cnn.npz')!r}, arch={str(FIXTURES / 'keras3' / 'seq_cnn_bn.json')!r})
        with joined, modelmorph.read(source) as original:
            got = {{p: w.read() for p, _, w in joined.iter_weights()}}
            want = {{p: w.read() for p, _, w in original.iter_weights()}}
            assert len(got) == len(want) == 10 and all(np.array_equal(got[p], want[p]) for p in want), sorted(got)
            assert [w.trainable for _, _, w in joined.iter_weights()] == [w.trainable for _, _, w in original.iter_weights()]
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr[-2000:]


def test_entry_point_scan_agrees_with_importlib_metadata(site):
    """modelmorph reads entry_points.txt itself (for start-up time); importlib.metadata is the judge."""
    from modelmorph import plugins

    _fake_distribution(site, "dashed-name.plugin", "mm_dashed", "")
    (site / "other_dist-2.0.dist-info").mkdir()
    (site / "other_dist-2.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: Other.Dist\nVersion: 2.0\n")
    (site / "other_dist-2.0.dist-info" / "entry_points.txt").write_text(
        "# comment\n[console_scripts]\nx = y:z\n\n[modelmorph]\nother = mm_other:plugin [extra]\n")
    key = lambda ep: (ep.name, ep.value, ep.dist, ep.version)  # noqa: E731
    ours = sorted(map(key, plugins._scan_path()))
    assert ours == sorted(map(key, plugins._from_importlib_metadata()))
    assert ("other", "mm_other:plugin [extra]", "Other.Dist", "2.0") in ours
    assert ("dashed-name.plugin", "mm_dashed", "dashed-name.plugin", "0.1") in ours
