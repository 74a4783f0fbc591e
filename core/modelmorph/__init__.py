"""modelmorph: convert Keras models between formats without any deep-learning framework.

    import modelmorph
    modelmorph.convert("old.h5", "new.keras")
    with modelmorph.read("new.keras") as model:
        print(model.weight_count())

Names load lazily so that ``import modelmorph`` and ``modelmorph --help`` stay fast
(even pluggy loads only with the plugins).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    # writing a plugin
    "hookimpl": "hookspecs", "hookspec": "hookspecs",
    # the Python API
    "read": "api", "write": "api", "convert": "api", "verify": "commands.verify", "VerifyResult": "commands.verify",
    # the IR
    "Model": "ir", "Layer": "ir", "Weight": "ir", "ByteRange": "ir", "Node": "ir", "TensorRef": "ir",
    "OptimizerState": "ir", "OptimizerSlot": "ir", "Asset": "ir", "dtype_name": "ir", "numpy_dtype": "ir",
    "DTYPES": "ir",
    # plugin API
    "Format": "registry", "Probe": "registry", "Registry": "registry", "default_registry": "registry",
    "CERTAIN": "registry", "PLAUSIBLE": "registry", "NO": "registry", "Option": "options",
    "LayerClass": "keras.catalogue", "LayerSpec": "keras.catalogue", "Var": "keras.catalogue", "Child": "keras.catalogue",
    "Diagnostics": "diagnostics", "Diagnostic": "diagnostics",
    "Progress": "progress",
    "ModelmorphError": "errors", "ReadError": "errors", "WriteError": "errors", "UsageError": "errors",
    "UnknownFormatError": "errors", "StrictError": "errors", "CannotHandle": "errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'modelmorph' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from .api import convert, read, write
    from .commands.verify import VerifyResult, verify
    from .keras.catalogue import Child, LayerClass, LayerSpec, Var
    from .diagnostics import Diagnostic, Diagnostics
    from .hookspecs import hookimpl, hookspec
    from .errors import (CannotHandle, ModelmorphError, ReadError, StrictError, UnknownFormatError, UsageError,
                         WriteError)
    from .ir import (DTYPES, Asset, ByteRange, Layer, Model, Node, OptimizerSlot, OptimizerState, TensorRef, Weight,
                     dtype_name, numpy_dtype)
    from .options import Option
    from .progress import Progress
    from .registry import CERTAIN, NO, PLAUSIBLE, Format, Probe, Registry, default_registry
