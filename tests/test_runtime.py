"""The run time stays lean and the package installs only its own top-level names."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from helpers import FIXTURES

ROOT = Path(__file__).resolve().parents[1]
FRAMEWORKS = ("tensorflow", "keras", "tf_keras", "torch", "jax")


def test_reading_and_writing_json_imports_no_framework(tmp_path):
    code = (
        "import sys, modelmorph\n"
        f"m = modelmorph.read({str(FIXTURES / 'tf_keras' / 'mobilenetv2.json')!r})\n"
        f"modelmorph.write(m, {str(tmp_path / 'out.json')!r})\n"
        f"print([f for f in {FRAMEWORKS!r} if f in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"


def test_installed_top_level_names_are_ours():
    """pyproject lists every package on disk, and none is a generic name like core or plugins."""
    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    on_disk = {".".join(init.parent.relative_to(ROOT / "core").parts) for init in (ROOT / "core").rglob("__init__.py")}
    for init in (ROOT / "plugins").rglob("__init__.py"):
        on_disk.add(".".join(init.parent.relative_to(ROOT / "plugins").parts))
    assert set(listed) == on_disk
    assert all(name.split(".")[0] == "modelmorph" or name.startswith("modelmorph_") for name in listed)
    import modelmorph

    assert Path(modelmorph.__file__).parent.name == "modelmorph"


def test_dialect_names_are_never_submodules():
    """The dialects package loads its translators lazily; a submodule named like one of its
    functions would replace the function once anything imported that submodule (CI saw
    'module' object is not callable, depending on test order)."""
    code = (
        "import importlib, pkgutil, types\n"
        "import modelmorph.keras.dialects as d\n"
        "for info in pkgutil.iter_modules(d.__path__):\n"
        "    importlib.import_module(f'{d.__name__}.{info.name}')\n"
        "print([n for n in d.__all__ if isinstance(getattr(d, n), types.ModuleType)])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"
