"""TensorFlow SavedModel directories, read without TensorFlow (format ``savedmodel``).

A SavedModel directory holds ``saved_model.pb`` (the TensorFlow graph: never parsed here,
only its meta-graph tags and signature names are looked up for ``info``), ``variables/``
(a TensorBundle checkpoint: read with :mod:`modelmorph_tfckpt.bundle`), ``assets/`` and,
when tf_keras wrote it, ``keras_metadata.pb`` (the Keras 2 config of the model and of
every layer). This module stays light: the reader is :mod:`.reader`, imported on first use.
"""

from __future__ import annotations

from pathlib import Path

SAVED_MODEL = "saved_model.pb"
KERAS_METADATA = "keras_metadata.pb"
VARIABLES = "variables"
ASSETS = "assets"


def savedmodel_dir(path: Path) -> Path | None:
    """The SavedModel directory ``path`` names (the directory, or its ``saved_model.pb``), or None."""
    try:
        if path.is_dir():
            return path if (path / SAVED_MODEL).is_file() else None
        if path.name == SAVED_MODEL and path.is_file():
            return path.parent
    except (OSError, ValueError):
        pass
    return None
