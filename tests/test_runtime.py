"""The run time stays lean and the package installs only its own top-level names."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

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


@pytest.mark.parametrize("package,names", [("modelmorph", None), ("modelmorph.keras.dialects", None),
                                           ("modelmorph.storage.plainh5", ["read", "FixedStrings", "PlainWriter"])])
def test_lazy_names_are_never_hidden_by_submodules(package, names):
    """These packages load some of their names on first use (PEP 562 ``__getattr__``); a
    submodule named like one of them would replace it once anything imported that submodule
    (CI saw 'module' object is not callable for dialects.to_keras3, depending on test order)."""
    code = (
        "import importlib, pkgutil, types\n"
        f"p = importlib.import_module({package!r})\n"
        "for info in pkgutil.iter_modules(p.__path__):\n"
        "    if info.name != '__main__':  # the CLI\n"
        "        importlib.import_module(f'{p.__name__}.{info.name}')\n"
        f"print([n for n in {names!r} or p.__all__ if isinstance(getattr(p, n), types.ModuleType)])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"
