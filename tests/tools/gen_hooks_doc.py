"""Write the hook sections of spec/hooks.md from the docstrings of core/modelmorph/hookspecs.py.

The docstrings are the one source of the hooks' documentation; tests/test_spec.py fails when
spec/hooks.md differs from what this writes. Run:  python tests/tools/gen_hooks_doc.py
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from modelmorph import hookspecs

HOOKS_MD = Path(__file__).resolve().parents[2] / "spec" / "hooks.md"
QUOTES = "\"'"  # string annotations (from __future__ import annotations) keep their quotes
MARKER = ("<!-- Everything below is generated from the docstrings of core/modelmorph/hookspecs.py by "
          "tests/tools/gen_hooks_doc.py: edit those, then run it. -->")


def _markdown(doc: str) -> str:
    doc = re.sub(r":[a-z]+:`~?([^`]+)`", r"`\1`", doc)  # Sphinx roles -> code
    return doc.replace("``", "`")


def _signature(name: str) -> str:
    sig = inspect.signature(getattr(hookspecs, name))
    params = ", ".join(f"{p.name}: {str(p.annotation).strip(QUOTES)}" for p in sig.parameters.values())
    return f"{name}({params}) -> {str(sig.return_annotation).strip(QUOTES)}"


def render() -> str:
    sections = []
    for name in hookspecs.HOOK_NAMES:
        function = getattr(hookspecs, name)
        opts = getattr(function, f"{hookspecs.PROJECT}_spec", {}) or {}
        first = " (firstresult: the first non-None answer wins)" if opts.get("firstresult") else ""
        sections.append(f"### `{name}`\n`{_signature(name)}`{first}\n\n{_markdown(inspect.getdoc(function) or '')}\n")
    return "\n".join(sections)


def expected(current: str) -> str:
    """``current`` with everything after the marker regenerated (the marker is appended if missing)."""
    head = current.split(MARKER)[0].rstrip("\n")
    return f"{head}\n\n{MARKER}\n\n{render()}"


if __name__ == "__main__":
    HOOKS_MD.write_text(expected(HOOKS_MD.read_text()))
    print(f"wrote {HOOKS_MD}")
