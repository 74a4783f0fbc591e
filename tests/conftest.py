"""Shared test fixtures. The real libraries (keras, tf_keras, tensorflow, onnxruntime) are
test extras: tests that need one ask for it through the fixtures below."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Keras 3 must use TensorFlow (the only backend the extras install); quiet TF's start-up noise.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

TESTS = Path(__file__).resolve().parent
FIXTURES = TESTS / "fixtures"
sys.path.insert(0, str(TESTS))  # for `import helpers`


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def keras3():
    keras = pytest.importorskip("keras")
    assert keras.__version__.startswith("3."), keras.__version__
    return keras


@pytest.fixture(scope="session")
def tf_keras():
    return pytest.importorskip("tf_keras")


@pytest.fixture(scope="session")
def tf():
    return pytest.importorskip("tensorflow")


@pytest.fixture()
def registry():
    """A fresh registry per test (plugins loaded anew), as pluggy recommends."""
    from modelmorph.registry import Registry

    return Registry()
