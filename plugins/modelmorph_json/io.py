"""Reading and writing ``model.to_json()`` files."""

from __future__ import annotations

import json
from pathlib import Path

from modelmorph import Diagnostics, Model, ReadError, UsageError
from modelmorph.keras import dialects, kerasconfig, vocabularies
from modelmorph.storage.safety import read_json_file


def read(path: Path, *, options: dict, diagnostics: Diagnostics, arch: Model | None = None) -> Model:
    data = read_json_file(path, "architecture JSON")
    if not isinstance(data, dict) or "class_name" not in data or "config" not in data:
        raise ReadError(path, "not a Keras architecture: expected a JSON object with 'class_name' and 'config'")
    try:
        model = kerasconfig.read_model_config(data, diagnostics)
    except (kerasconfig.ConfigError, ValueError, TypeError, KeyError) as exc:
        raise ReadError(path, f"invalid Keras architecture: {exc}") from None
    for key in ("keras_version", "backend"):
        if isinstance(data.get(key), str):
            model.metadata[key] = data[key]
    if arch is not None:
        diagnostics.add("unsupported", "--arch is ignored: a JSON file holds an architecture of its own")
    return model


def write(model: Model, path: Path, *, options: dict, diagnostics: Diagnostics, progress=None) -> None:
    dialect = options["dialect"]
    if options["indent"] < 0:
        raise UsageError(f"format json: -O indent must be 0 or more, not {options['indent']}")
    indent = options["indent"] or None
    cfg = kerasconfig.model_to_config(model, include_compile=dialect == "keras3")
    if dialect == "keras2":
        if model.compile_config:
            diagnostics.add("lossy", "Keras 2 architecture JSON holds no compile config; it is not written")
        # tf_keras keeps a lookup's vocabulary in its config, Keras 3 in an asset file.
        cfg = dialects.to_keras2(vocabularies.inline(cfg, vocabularies.vocabularies(model, diagnostics)), diagnostics)
        cfg["backend"] = "tensorflow"
    with open(path, "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=indent)
        f.write("\n")
