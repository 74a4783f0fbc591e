"""Hook calls are guarded, transforms run (or stop a conversion, naming the plugin), readers
may decline a file (``CannotHandle``), and ``read(arch=path)`` closes what it opened."""

from __future__ import annotations

import json
import types

import pluggy
import pytest

import modelmorph
from modelmorph import CannotHandle, Format, Layer, Model
from modelmorph.cli import main
from modelmorph.errors import EXIT_WRITE
from modelmorph.plugins import HookFailed, PluginWarning, call_each, call_each_or_raise
from modelmorph.registry import CERTAIN, PLAUSIBLE, Registry

from helpers import FIXTURES

MLP3 = FIXTURES / "keras3" / "mlp_adam.json"


def plugin(**hooks) -> types.SimpleNamespace:
    """An in-code plugin: each keyword is a hook implementation."""
    return types.SimpleNamespace(__name__="in-code", **{name: modelmorph.hookimpl(fn) for name, fn in hooks.items()})


# -- modelmorph_transform ---------------------------------------------------------------------
def test_a_transform_adjusts_the_model_between_reading_and_writing(tmp_path):
    seen = {}

    def modelmorph_transform(model, source, target, options, diagnostics):
        seen.update(source=source, target=target, options=dict(options))
        model.layers[-1].config["units"] = 7
        diagnostics.add("lossy", "changed the last layer")

    reg = Registry([plugin(modelmorph_transform=modelmorph_transform)])
    out = tmp_path / "m.json"
    diags = modelmorph.convert(MLP3, out, options={"indent": "0"}, registry=reg)
    assert seen == {"source": "json", "target": "json", "options": {"indent": "0"}}
    assert [d.message for d in diags] == ["changed the last layer"]
    assert json.loads(out.read_text())["config"]["layers"][-1]["config"]["units"] == 7


def test_a_raising_transform_stops_the_conversion_naming_the_plugin(tmp_path):
    def modelmorph_transform(model):
        model.layers.clear()  # half-done work: writing this would be wrong
        raise KeyError("no such layer")

    reg = Registry([plugin(modelmorph_transform=modelmorph_transform)])
    out = tmp_path / "m.json"
    with pytest.raises(modelmorph.WriteError) as err:
        modelmorph.convert(MLP3, out, registry=reg)
    assert str(err.value) == (f"{out}: not written: modelmorph plugin 'in-code' failed in modelmorph_transform: "
                              "KeyError: 'no such layer'")
    assert err.value.exit_code == EXIT_WRITE
    assert list(tmp_path.iterdir()) == []


def test_a_raising_transform_is_one_line_on_the_command_line(tmp_path, capsys, monkeypatch):
    def modelmorph_transform():
        raise RuntimeError("boom\nsecond line")

    reg = Registry([plugin(modelmorph_transform=modelmorph_transform)])
    monkeypatch.setattr(modelmorph.registry, "_default", reg)
    code = main(["convert", str(MLP3), str(tmp_path / "m.json")])
    err = capsys.readouterr().err
    assert code == EXIT_WRITE
    assert err == (f"modelmorph: error: {tmp_path / 'm.json'}: not written: modelmorph plugin 'in-code' failed in "
                   "modelmorph_transform: RuntimeError: boom\n")


# -- the guarded call path ---------------------------------------------------------------------
def test_a_raising_hook_is_a_warning_naming_the_plugin():
    def modelmorph_formats():
        raise ValueError("broken formats")

    with pytest.warns(PluginWarning, match="plugin 'in-code' failed in modelmorph_formats: ValueError: broken formats"):
        reg = Registry([plugin(modelmorph_formats=modelmorph_formats)])
    assert "json" in reg.formats


def test_call_each_honours_firstresult_and_call_each_or_raise_raises():
    hookspec = pluggy.HookspecMarker("demo")
    hookimpl = pluggy.HookimplMarker("demo")

    class Spec:
        @hookspec(firstresult=True)
        def first(self, x): ...

        @hookspec
        def every(self, x): ...

    def impl(name, value):
        ns = types.SimpleNamespace(first=hookimpl(lambda x: value), every=hookimpl(lambda x: value))
        return name, ns

    pm = pluggy.PluginManager("demo")
    pm.add_hookspecs(Spec)
    for name, ns in (impl("a", None), impl("b", 2), impl("c", 3)):
        pm.register(ns, name=name)
    assert call_each(pm, "first", x=1) == [("a", None), ("b", 2)]
    assert call_each(pm, "every", x=1) == [("a", None), ("b", 2), ("c", 3)]

    def broken(x):
        raise OSError("disk")

    pm.register(types.SimpleNamespace(every=hookimpl(broken)), name="d")
    with pytest.warns(PluginWarning, match="'d' failed in every: OSError: disk"):
        assert call_each(pm, "every", x=1) == [("a", None), ("b", 2), ("c", 3)]
    with pytest.raises(HookFailed, match="'d' failed in every: OSError: disk"):
        call_each_or_raise(pm, "every", x=1)


# -- CannotHandle: declining a file -------------------------------------------------------------
def _decliner(tmp_path, sniff_score=CERTAIN):
    calls = []

    def read(path, *, options, diagnostics, arch):
        calls.append(path)
        raise CannotHandle("not one of mine after all")

    def modelmorph_formats():
        return [Format(name="greedy", description="claims JSON, then declines it", extensions=(".model.json", ".greedy"),
                       reads=frozenset({"architecture"}), reader=read, sniff=lambda probe: sniff_score)]

    return Registry([plugin(modelmorph_formats=modelmorph_formats)]), calls


def test_a_declining_reader_passes_the_file_to_the_next_candidate(tmp_path):
    source = tmp_path / "mlp.model.json"
    source.write_bytes(MLP3.read_bytes())
    reg, calls = _decliner(tmp_path)
    assert [f.name for f in reg.source_candidates(source)][:2] == ["greedy", "json"]
    with modelmorph.read(source, registry=reg) as model:
        assert model.metadata["source_format"] == "json" and model.layers
    assert calls == [source]
    diags = modelmorph.convert(source, tmp_path / "out.json", registry=reg)  # convert too
    assert not diags and len(calls) == 2


def test_declining_when_named_with_from_is_a_read_error(tmp_path):
    reg, _ = _decliner(tmp_path)
    with pytest.raises(modelmorph.ReadError) as err:
        modelmorph.read(MLP3, "greedy", registry=reg)
    assert str(err.value) == f"{MLP3}: not a greedy file: greedy (not one of mine after all)"


def test_when_every_candidate_declines_the_format_is_unknown(tmp_path):
    source = tmp_path / "x.greedy"
    source.write_text("not json at all")  # only the greedy format claims it
    reg, calls = _decliner(tmp_path, PLAUSIBLE)
    with pytest.raises(modelmorph.UnknownFormatError, match="every format that could read it declined: greedy"):
        modelmorph.read(source, registry=reg)
    assert calls == [source]


# -- read(arch=<path>) closes what it opens -----------------------------------------------------
def _arch_format(closed: list):
    def read(path, *, options, diagnostics, arch):
        model = Model(name="arch", layers=[Layer("dense", "Dense", config={"name": "dense", "units": 1})])
        model.on_close(lambda: closed.append(path.name))
        return model

    def modelmorph_formats():
        return [Format(name="archspy", description="architectures that record being closed",
                       extensions=(".archspy",), reads=frozenset({"architecture"}), reader=read)]

    return Registry([plugin(modelmorph_formats=modelmorph_formats)])


def test_an_architecture_read_from_a_path_is_closed_with_the_model(tmp_path):
    closed: list = []
    reg = _arch_format(closed)
    (tmp_path / "a.archspy").write_text("x")
    with modelmorph.read(MLP3, arch=tmp_path / "a.archspy", registry=reg):
        assert closed == []
    assert closed == ["a.archspy"]


def test_an_architecture_read_from_a_path_is_closed_when_reading_fails(tmp_path):
    closed: list = []
    reg = _arch_format(closed)
    (tmp_path / "a.archspy").write_text("x")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(modelmorph.ReadError):
        modelmorph.read(bad, arch=tmp_path / "a.archspy", registry=reg)
    assert closed == ["a.archspy"]


def test_an_architecture_given_as_a_model_stays_open(tmp_path):
    closed: list = []
    arch = Model(name="arch", layers=[Layer("dense", "Dense", config={"name": "dense", "units": 1})])
    arch.on_close(lambda: closed.append("arch"))
    with modelmorph.read(MLP3, arch=arch):
        pass
    assert closed == []
