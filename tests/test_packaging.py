"""pyproject.toml lists every package by name (so that only ``modelmorph`` and ``modelmorph_*``
become top-level imports): a new subpackage missing from that list would vanish from a regular
install while an editable one still finds it."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _packages_on_disk() -> set[str]:
    found = set()
    for base, prefix in ((ROOT / "core" / "modelmorph", "modelmorph"), *(
            (p, p.name) for p in (ROOT / "plugins").iterdir() if p.name.startswith("modelmorph_"))):
        for init in base.rglob("__init__.py"):
            found.add(".".join([prefix, *init.parent.relative_to(base).parts]))
    return found


def test_every_package_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = _packages_on_disk()
    assert on_disk - listed == set(), "add these to [tool.setuptools] packages"
    assert listed - on_disk == set(), "listed but not on disk"
    assert all(name == "modelmorph" or name.startswith(("modelmorph.", "modelmorph_")) for name in listed)
