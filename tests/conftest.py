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

from helpers import require  # noqa: E402


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def keras3():
    keras = require("keras")
    assert keras.__version__.startswith("3."), keras.__version__
    return keras


@pytest.fixture(scope="session")
def tf_keras():
    return require("tf_keras")


@pytest.fixture(scope="session")
def tf():
    return require("tensorflow")


@pytest.fixture()
def registry():
    """A fresh registry per test (plugins loaded anew), as pluggy recommends."""
    from modelmorph.registry import Registry

    return Registry()


def pytest_terminal_summary(terminalreporter):
    """Name the setting a run judged with: predictions and HDF5 behaviour depend on it."""
    from importlib import metadata
    import platform

    versions = []
    for dist in ("keras", "tensorflow-cpu", "tf-keras", "onnxruntime", "onnx", "h5py", "numpy", "protobuf"):
        try:
            versions.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{dist} -")
    hdf5 = "?"
    if "h5py" in sys.modules:  # imported by the tests already: costs nothing more
        hdf5 = sys.modules["h5py"].version.hdf5_version
    backend = os.environ.get("MODELMORPH_HDF5", "").strip()  # which HDF5 backend modelmorph read with
    terminalreporter.write_line(f"judged with: {', '.join(versions)}, HDF5 {hdf5}"
                                f"{f' (MODELMORPH_HDF5={backend})' if backend else ''}; "
                                f"Python {platform.python_version()}, CPU {_cpu_model()}")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        import platform

        return platform.processor() or platform.machine()
