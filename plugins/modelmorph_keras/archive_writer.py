"""Writing ``.keras`` archives: the zip ``model.save`` writes, or with ``-O zipped=false`` the
folder ``save_model(zipped=False)`` writes. HDF5 writes ``model.weights.h5`` straight into the
zip (see :mod:`.storedzip`). Apart from :mod:`.archive`, which reads archives: a conversion to
``.keras`` never imports zipfile (nor shutil, bz2 and lzma with it, ~3 ms of start-up).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from modelmorph import Diagnostics, Model, Progress, ReadError, UsageError, WriteError
from modelmorph.keras import kerasconfig
from modelmorph.storage.filecopy import crc32_range
from modelmorph.storage.safety import safe_member_path

from . import ASSETS, CONFIG, METADATA, WEIGHTS

#: The Keras release whose archive layout modelmorph writes (and is tested against), used as
#: ``keras_version`` unless the model came from a Keras 3 file naming its own.
KERAS_VERSION = "3.15.1"
_CHUNK = 1 << 20


def write(model: Model, path: Path, *, options: dict, diagnostics: Diagnostics, progress: Progress | None = None) -> None:
    zipped = options["zipped"]
    if not zipped and path.name.endswith(".keras"):
        raise UsageError("-O zipped=false writes a folder, which Keras loads only if its name does not end in .keras")
    if not model.has_architecture:
        raise WriteError(path, "a .keras archive holds an architecture, and this model has weights only "
                               "(give one with --arch)")
    for asset in model.assets:
        try:
            safe_member_path(asset.path, path)
        except ReadError as exc:
            raise WriteError(path, f"asset {exc.problem}") from None
        if not asset.path.startswith(ASSETS + "/"):
            raise WriteError(path, f"asset path {asset.path!r} is not under {ASSETS}/")
    config = kerasconfig.model_to_config(model)
    config.setdefault("compile_config", {})  # what Keras writes for a model never compiled
    version = model.metadata.get("keras_version")
    metadata = json.dumps({
        "keras_version": version if isinstance(version, str) and version.startswith("3.") else KERAS_VERSION,
        "date_saved": time.strftime("%Y-%m-%d@%H:%M:%S"),  # local time, as Keras writes it
    })
    progress = progress or Progress()
    if zipped:
        _write_zip(model, path, metadata, json.dumps(config), diagnostics, progress)
    else:
        _write_folder(model, path, metadata, json.dumps(config), diagnostics, progress)


def _write_zip(model: Model, path: Path, metadata: str, config: str, diagnostics: Diagnostics, progress: Progress) -> None:
    # Imported here: reading an archive (info, a conversion from .keras) does without them.
    from .storedzip import StoredZip, local_header_size
    from .weightsfile import write_weights

    # HDF5 writes the weights in place, after a user block that then receives metadata.json,
    # config.json and the weights' zip header (see storedzip). The header always has zip64
    # sizes: its length must be known before the size is. config.json ends in blanks (valid
    # JSON) so that the header ends exactly where the user block does.
    head = [(METADATA, metadata.encode()), (CONFIG, config.encode())]
    prefix = sum(local_header_size(name, len(data)) + len(data) for name, data in head)
    prefix += local_header_size(WEIGHTS, 0, zip64=True)
    userblock = max(512, 1 << (prefix - 1).bit_length())
    head[1] = (CONFIG, head[1][1] + b" " * (userblock - prefix))
    crc = write_weights(model, path, diagnostics, progress, userblock=userblock, checksum=True)
    with open(path, "r+b") as f:
        size = f.seek(0, os.SEEK_END) - userblock
        if crc is None:
            crc = crc32_range(f, userblock, size)
        f.seek(0)
        archive = StoredZip(f)
        for name, data in head:
            archive.add(name, data)
        archive.header(WEIGHTS, crc, size, zip64=True)
        if f.tell() != userblock:  # the user block was sized from these members: a bug, not bad input
            raise WriteError(path, f"the archive's first members end at byte {f.tell()}, not where the "
                                   f"{userblock}-byte HDF5 user block reserved for them does")
        f.seek(userblock + size)
        for asset in model.assets:  # streamed: a large vocabulary never sits in memory whole
            with asset.open() as stream:
                try:
                    archive.add_stream(asset.path, asset.size, stream)
                except ValueError as exc:
                    raise WriteError(path, f"asset {exc}") from None
        archive.finish()


def _write_folder(model: Model, path: Path, metadata: str, config: str, diagnostics: Diagnostics,
                  progress: Progress) -> None:
    from .weightsfile import write_weights

    (path / ASSETS).mkdir(parents=True)
    (path / METADATA).write_text(metadata)
    (path / CONFIG).write_text(config)
    write_weights(model, path / WEIGHTS, diagnostics, progress)
    for asset in model.assets:
        target = path / asset.path
        target.parent.mkdir(parents=True, exist_ok=True)
        with asset.open() as stream, open(target, "wb") as out:
            while chunk := stream.read(_CHUNK):
                out.write(chunk)
