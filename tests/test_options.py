"""Typed ``-O`` options: one parser for booleans and sizes, routing by side, one-line usage
errors naming the format and the option, and the older ``{key: help}`` form still working."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest

import modelmorph
from modelmorph import Format, Layer, Model, Option, UsageError, Weight
from modelmorph.cli import main
from modelmorph.errors import EXIT_OK, EXIT_USAGE
from modelmorph.options import parse_bool, parse_size, resolve, route
from modelmorph.registry import Registry, default_registry

from helpers import FIXTURES

MLP3 = FIXTURES / "keras3" / "mlp_adam"


@pytest.mark.parametrize("text, expected", [
    ("true", True), ("YES", True), ("on", True), ("1", True), (" True ", True),
    ("false", False), ("no", False), ("Off", False), ("0", False),
])
def test_booleans(text, expected):
    assert parse_bool(text) is expected


@pytest.mark.parametrize("text", ["", "2", "maybe", "t"])
def test_bad_booleans(text):
    with pytest.raises(ValueError, match="must be true or false"):
        parse_bool(text)


@pytest.mark.parametrize("text, expected", [
    ("2", 2), ("1048576", 1 << 20), ("100B", 100), ("512kb", 512 << 10), ("500MB", 500 << 20), ("2GB", 2 << 30),
    ("2 GiB", 2 << 30), ("1.5KiB", 1536), ("1TB", 1 << 40), ("0.0000005GB", 536), ("5e-7GB", 536), (".5KB", 512),
])
def test_sizes_are_bytes_with_binary_units(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "0", "-1", "0.5", "lots", "5 parsecs", "2 G", "GB"])
def test_bad_sizes(text):
    with pytest.raises(ValueError, match="must be a positive size"):
        parse_size(text)


def test_max_shard_size_means_the_same_in_every_format():
    formats = default_registry().formats
    declared = [f.options["max_shard_size"] for f in formats.values() if "max_shard_size" in f.options]
    assert len(declared) >= 2  # keras-weights and tf-checkpoint
    assert {o.type for o in declared} == {"size"} and {o.parse("2") for o in declared} == {2}


def test_keras_weights_takes_a_bare_number_as_bytes(tmp_path):
    out = tmp_path / "x.weights.json"
    with pytest.raises(modelmorph.WriteError, match=r"more than max_shard_size \(2 bytes\)"):
        modelmorph.convert(MLP3.with_suffix(".keras"), out, options={"max_shard_size": "2"})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kwargs, problem", [
    (dict(name="Bad"), "lower-case"),
    (dict(name="x", type="float"), "unknown type"),
    (dict(name="x", side="sideways"), "side must be"),
    (dict(name="x", type="choice"), "choices go with type 'choice'"),
    (dict(name="x", choices=("a",)), "choices go with type 'choice'"),
    (dict(name="x", type="bool", default="yes"), "default 'yes' is not a valid bool"),
    (dict(name="x", type="choice", choices=("a", "b"), default="c"), "not a valid choice"),
])
def test_bad_declarations_are_refused(kwargs, problem):
    with pytest.raises(ValueError, match=problem):
        Option(**kwargs)


DECLARED = {o.name: o for o in (
    Option("flag", "bool", False, "read", "a flag"),
    Option("level", "int", 3, "write", "a level"),
    Option("shard", "size", None, "write", "a size"),
    Option("mode", "choice", "a", "both", "a mode", choices=("a", "b")),
)}


def test_resolve_parses_given_values_and_adds_defaults():
    assert resolve("demo", DECLARED, {"flag": "yes"}, "read") == {"flag": True, "mode": "a"}
    assert resolve("demo", DECLARED, {"shard": "1KB", "mode": "b"}, "write") == {"level": 3, "shard": 1024, "mode": "b"}
    # typed values from Python are taken as they are
    assert resolve("demo", DECLARED, {"level": 0, "shard": 10}, "write") == {"level": 0, "shard": 10, "mode": "a"}


@pytest.mark.parametrize("given, side, message", [
    ({"colour": "blue"}, "write", "format demo: unknown option -O colour (accepted when writing: level, mode, shard)"),
    ({"flag": "true"}, "write", "format demo: -O flag applies when reading, not when writing"),
    ({"flag": "perhaps"}, "read", "format demo: -O flag must be true or false (or yes/no, on/off, 1/0), not 'perhaps'"),
    ({"level": "high"}, "write", "format demo: -O level must be a whole number, not 'high'"),
    ({"mode": "c"}, "read", "format demo: -O mode must be one of a, b, not 'c'"),
    ({"shard": "0"}, "write", "format demo: -O shard must be a positive size such as 1048576 (bytes), 500MB or 2GB "
                              "(binary units), not '0'"),
    ({"level": True}, "write", "format demo: -O level must be a whole number, not True"),
    ({"flag": 1}, "read", "format demo: -O flag must be text or a bool, not 1"),
])
def test_bad_options_are_one_line_usage_errors_naming_format_and_option(given, side, message):
    with pytest.raises(UsageError) as err:
        resolve("demo", DECLARED, given, side)
    assert str(err.value) == message


def test_route_sends_each_option_to_the_side_its_format_declares():
    other = {"level": Option("level", "int", 1, "read", "the source's own level")}
    read, write = route(("src", other), ("dst", DECLARED), {"level": "5", "shard": "2"})
    assert read == {"level": 5} and write == {"level": 5, "shard": 2, "mode": "a"}
    with pytest.raises(UsageError, match="format dst: -O flag applies when reading, and dst is the target here"):
        route(("src", other), ("dst", DECLARED), {"flag": "true"})
    with pytest.raises(UsageError, match=r"unknown option -O colour for reading src and writing dst \(accepted: "
                                         r"level, mode, shard\)"):
        route(("src", other), ("dst", DECLARED), {"colour": "red"})


def test_convert_routes_options_and_refuses_misplaced_ones(tmp_path):
    out = tmp_path / "m.json"
    modelmorph.convert(MLP3.with_suffix(".json"), out, options={"indent": "0", "dialect": "keras2"})
    assert out.read_text().count("\n") == 1
    with pytest.raises(UsageError, match="format json: -O indent must be a whole number, not 'wide'"):
        modelmorph.convert(MLP3.with_suffix(".json"), tmp_path / "n.json", options={"indent": "wide"})
    with pytest.raises(UsageError, match="format h5: -O weights_only applies when writing, and h5 is the source here"):
        modelmorph.convert(FIXTURES / "tf_keras" / "mlp_adam.h5", tmp_path / "n.json", options={"weights_only": "1"})
    with pytest.raises(UsageError, match="format keras: -O zipped applies when writing, not when reading"):
        modelmorph.read(MLP3.with_suffix(".keras"), options={"zipped": "false"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]


def test_options_given_the_old_way_still_work(tmp_path):
    seen = []

    def read(path, *, options, diagnostics, arch):
        seen.append(("read", dict(options)))
        return Model("m", has_architecture=False, layers=[Layer("d", "", weights=[Weight.from_array("k", np.ones(1))])])

    def write(model, path, *, options, diagnostics, progress):
        seen.append(("write", dict(options)))
        path.write_text("x")

    def modelmorph_formats():
        return [Format(name="old", description="declares options as {key: help}", extensions=(".old",),
                       reads=frozenset({"weights"}), writes=frozenset({"weights"}), reader=read, writer=write,
                       options={"level": "how hard to try"})]

    reg = Registry([types.SimpleNamespace(__name__="old", modelmorph_formats=modelmorph.hookimpl(modelmorph_formats))])
    assert reg.formats["old"].options["level"] == Option("level", "str", None, "both", "how hard to try")
    (tmp_path / "a.old").write_text("x")
    modelmorph.convert(tmp_path / "a.old", tmp_path / "b.old", options={"level": "9"}, registry=reg)
    modelmorph.convert(tmp_path / "a.old", tmp_path / "c.old", registry=reg)
    assert seen == [("read", {"level": "9"}), ("write", {"level": "9"}), ("read", {}), ("write", {})]


def test_formats_shows_type_default_side_and_help(capsys):
    assert main(["formats", "--json"]) == EXIT_OK
    formats = {f["name"]: f for f in json.loads(capsys.readouterr().out)}
    assert formats["json"]["options"]["dialect"] == {
        "type": "choice", "choices": ["keras3", "keras2"], "default": "keras3", "side": "write",
        "help": "the config dialect to write (keras2 is what tf_keras reads)"}
    assert formats["h5"]["options"]["by_name"]["side"] == "read"
    assert formats["keras-weights"]["options"]["max_shard_size"]["type"] == "size"
    assert main(["formats"]) == EXIT_OK
    text = capsys.readouterr().out
    assert "    -O dialect=keras3|keras2  (writing; default keras3)  the config dialect to write" in text
    assert "    -O by_name=BOOL  (reading; default false)  join a weights-only file" in text


def test_cli_option_errors_are_usage_errors(tmp_path, capsys):
    assert main(["convert", str(MLP3.with_suffix(".json")), str(tmp_path / "m.json"), "-O", "indent=wide"]) == EXIT_USAGE
    assert capsys.readouterr().err == "modelmorph: error: format json: -O indent must be a whole number, not 'wide'\n"
