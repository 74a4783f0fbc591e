"""Reading and writing ``model.to_json()`` files."""

from __future__ import annotations

import json
from pathlib import Path

from modelmorph import Diagnostics, Model, ReadError, UsageError
from modelmorph.keras import dialects, kerasconfig
from modelmorph.storage.safety import read_json_file


def read(path: Path, *, options: dict, diagnostics: Diagnostics, arch: Model | None = None) -> Model:
    data = read_json_file(path, "architecture JSON")
    if not isinstance(data, dict) or "class_name" not in data or "config" not in data:
        raise ReadError(path, "not a Keras architecture: expected a JSON object with 'class_name' and 'config'")
    try:
        dialect = dialects.detect(data)
        cfg = dialects.to_keras3(data, diagnostics) if dialect == "keras2" else data
        model = kerasconfig.model_from_config(cfg)
    except (kerasconfig.ConfigError, ValueError, TypeError, KeyError) as exc:
        raise ReadError(path, f"invalid Keras architecture: {exc}") from None
    model.metadata["dialect"] = dialect
    for key in ("keras_version", "backend"):
        if isinstance(data.get(key), str):
            model.metadata[key] = data[key]
    if arch is not None:
        diagnostics.add("unsupported", "--arch is ignored: a JSON file holds an architecture of its own")
    return model


def write(model: Model, path: Path, *, options: dict, diagnostics: Diagnostics, progress=None) -> None:
    dialect = options.get("dialect", "keras3")
    if dialect not in ("keras3", "keras2"):
        raise UsageError(f"-O dialect must be keras3 or keras2, not {dialect!r}")
    try:
        indent = int(options.get("indent", "2")) or None
    except ValueError:
        raise UsageError(f"-O indent must be a whole number, not {options['indent']!r}") from None
    cfg = kerasconfig.model_to_config(model, include_compile=dialect == "keras3")
    if dialect == "keras2":
        if model.compile_config:
            diagnostics.add("lossy", "Keras 2 architecture JSON holds no compile config; it is not written")
        cfg = dialects.to_keras2(cfg, diagnostics)
        cfg["backend"] = "tensorflow"
    with open(path, "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=indent)
        f.write("\n")
