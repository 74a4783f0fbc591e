"""The written specification keeps up with the code."""

from __future__ import annotations

import re
from pathlib import Path

from modelmorph import hookspecs
from modelmorph.registry import default_registry

SPEC = Path(__file__).resolve().parents[1] / "spec"


def test_every_hook_is_documented():
    text = (SPEC / "hooks.md").read_text()
    documented = set(re.findall(r"^### `(modelmorph_\w+)`", text, flags=re.M))
    assert documented == set(hookspecs.HOOK_NAMES)


def test_hook_docs_are_generated_from_the_hookspecs():
    """The hookspec docstrings are the one source of the hooks' documentation."""
    import importlib.util

    tool = Path(__file__).resolve().parent / "tools" / "gen_hooks_doc.py"
    spec = importlib.util.spec_from_file_location("gen_hooks_doc", tool)
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    current = (SPEC / "hooks.md").read_text()
    assert current == gen.expected(current), "spec/hooks.md is stale: run python tests/tools/gen_hooks_doc.py"


def test_every_builtin_format_has_a_spec_page():
    builtins = {f.name for f in default_registry().formats.values()
                if f.plugin in {p.name for p in default_registry().plugin_info() if p.builtin}}
    assert builtins, "no built-in format registered"
    for name in builtins:
        # keras-weights is specified together with keras
        pages = [SPEC / "formats" / f"{n}.md" for n in (name, name.removesuffix("-weights"))]
        assert any(p.exists() for p in pages), f"spec/formats/{name}.md missing for format {name}"


def test_ir_spec_names_every_ir_class():
    import dataclasses

    from modelmorph import ir

    text = (SPEC / "ir.md").read_text()
    classes = [n for n, v in vars(ir).items() if dataclasses.is_dataclass(v) and v.__module__ == ir.__name__]
    assert classes
    for name in classes:
        assert f"`{name}`" in text, f"spec/ir.md does not describe {name}"
