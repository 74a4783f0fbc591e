"""Plugins import only the documented plugin API (spec/hooks.md): the names `modelmorph`
exports, `modelmorph.keras` and `modelmorph.storage` with their submodules, never another
plugin. The built-in formats are plugins like any other, so they are held to it too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import modelmorph

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_ROOTS = [ROOT / "plugins", *(p for p in (ROOT / "examples").iterdir() if (p / "pyproject.toml").exists())]
ALLOWED_PACKAGES = ("modelmorph.keras", "modelmorph.storage")


def _packages(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if (p / "__init__.py").is_file())


PACKAGES = [pkg for root in PLUGIN_ROOTS for pkg in _packages(root)]
PLUGIN_NAMES = {pkg.name for pkg in PACKAGES}


def _allowed_module(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in ALLOWED_PACKAGES)


def violations(source: str, own_package: str) -> list[str]:
    """What a module's imports take from outside the plugin API, as ``line: import``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                if (top == "modelmorph" and alias.name != "modelmorph" and not _allowed_module(alias.name)) \
                        or (top in PLUGIN_NAMES and top != own_package):
                    found.append(f"{node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            top = node.module.split(".")[0]
            if top in PLUGIN_NAMES and top != own_package:
                found.append(f"{node.lineno}: from {node.module} import ...")
            elif node.module == "modelmorph":
                found += [f"{node.lineno}: from modelmorph import {a.name}" for a in node.names
                          if a.name not in modelmorph.__all__ and not _allowed_module(f"modelmorph.{a.name}")]
            elif top == "modelmorph" and not _allowed_module(node.module):
                found.append(f"{node.lineno}: from {node.module} import ...")
    return found


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_plugins_import_only_the_plugin_api(package):
    assert PACKAGES, "no plugin package found"
    bad = [f"{path.relative_to(ROOT)}:{v}" for path in sorted(package.rglob("*.py"))
           for v in violations(path.read_text(encoding="utf-8"), package.name)]
    assert not bad, "outside the plugin API (spec/hooks.md):\n" + "\n".join(bad)


@pytest.mark.parametrize("source, expected", [
    ("import modelmorph\nfrom modelmorph import Model, DTYPES, keras\nfrom modelmorph.keras import dialects\n"
     "from modelmorph.storage.plainh5 import weights\nimport modelmorph.storage.hdf5\nfrom . import io\n", []),
    ("from modelmorph.ir import DTYPES", ["1: from modelmorph.ir import ..."]),
    ("import modelmorph.registry", ["1: import modelmorph.registry"]),
    ("from modelmorph import registry", ["1: from modelmorph import registry"]),
    ("def f():\n    from modelmorph.api import read", ["2: from modelmorph.api import ..."]),
    ("from modelmorph_json.io import read", ["1: from modelmorph_json.io import ..."]),
    ("import modelmorph_h5.reader", ["1: import modelmorph_h5.reader"]),
])
def test_the_scan_catches_what_it_should(source, expected):
    assert violations(source, "modelmorph_keras") == expected
