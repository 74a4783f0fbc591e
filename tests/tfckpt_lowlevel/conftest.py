"""Fixtures for the TensorBundle low-level tests (and the import path of the plugin).

TensorFlow is only a judge here: tests that need it ask for it through ``helpers.require``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from helpers import require

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
if str(_PLUGINS) not in sys.path:
    sys.path.insert(0, str(_PLUGINS))


@pytest.fixture(scope="session")
def tf():
    return require("tensorflow")
