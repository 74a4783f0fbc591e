"""Reader and writer of the example ``npz`` format."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

import modelmorph
from modelmorph import Layer, Model, ReadError, Weight
from modelmorph.keras.join import join_by_path


def read(path: Path, *, options, diagnostics, arch=None) -> Model:
    try:
        archive = np.load(path, allow_pickle=False)  # never unpickle: files are data
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ReadError(path, f"not a readable .npz archive ({exc})") from None
    weights = {key: _lazy(archive, key) for key in archive.files}
    if arch is not None:  # the core's join: by full weight path, shapes checked, arch left untouched
        model = join_by_path(arch, weights, path, diagnostics)
    else:
        model = Model(name=Path(path).stem, has_architecture=False)
        groups: dict[str, Layer] = {}
        for key, weight in weights.items():
            layer_name, _, weight.path = key.rpartition("/")
            layer = groups.setdefault(layer_name, Layer(name=layer_name, class_name=""))
            layer.weights.append(weight)
        model.layers = list(groups.values())
    model.on_close(archive.close)
    return model


def _lazy(archive, key: str) -> Weight:
    # np.load reads an array only when indexed; peek at the header for shape and dtype.
    with archive.zip.open(key + ".npy") as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(f)
    return Weight(key, tuple(shape), modelmorph.dtype_name(dtype), loader=lambda: archive[key])


def write(model: Model, path: Path, *, options, diagnostics, progress) -> None:
    total = sum(w.nbytes for _, _, w in model.iter_weights())
    progress.start(total, "npz")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED if options["compressed"] else zipfile.ZIP_STORED) as archive:
        for full_path, _, weight in model.iter_weights():
            array = weight.read()
            with archive.open(full_path + ".npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asarray(array), allow_pickle=False)
            progress.advance(weight.nbytes)
