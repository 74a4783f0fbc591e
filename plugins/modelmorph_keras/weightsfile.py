"""Keras 3 weights files: ``save_weights`` output, one ``.weights.h5`` or a sharded
``.weights.json`` index with its ``_NNNNN.weights.h5`` shards."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from modelmorph import Diagnostics, Model, Progress, ReadError, UsageError, WriteError
from modelmorph.storage.safety import inside, read_json_file

from .h5store import VarsStore, VarsWriter, plain_dtype, read_index, write_plain

if TYPE_CHECKING:
    import h5py
from .mapping import PlanError, attach, plan, structure_of, weights_only

#: Keras' default shard size (``ShardedH5IOStore``), in its unit: GiB.
DEFAULT_SHARD_GB = 5.0
_UNITS = {"": 1024**3, "b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3, "tb": 1024**4}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?(?:e-?\d+)?)\s*([kmgt]?b)?\s*$", re.IGNORECASE)


def read(path: Path, *, options: dict, diagnostics: Diagnostics, arch: Model | None = None) -> Model:
    store = VarsStore(path)
    files: list = []  # what to close: the plain files read in place, or h5py files
    try:
        if path.name.lower().endswith(".json"):
            for name in read_index(read_json_file(path, "sharded weights index"), path):
                _scan(store, inside(path.parent, name, path), files, shard_of=path)
        else:
            _scan(store, path, files)
        if not store.groups:
            raise ReadError(path, "no `vars` groups: not a Keras 3 weights file")
        if arch is None:
            model = weights_only(store, path.name.split(".")[0])
        else:
            model = structure_of(arch)
            attach(model, store, diagnostics, strict=True)
    except BaseException:
        for f in files:
            f.close()
        raise
    for f in files:
        model.on_close(f.close)
    return model


def _scan(store: VarsStore, path: Path, files: list, shard_of: Path | None = None) -> None:
    """Add one weights file (or shard) to ``store``; what must be closed goes to ``files``."""
    try:
        raw = open(path, "rb")
    except OSError as exc:
        problem = "no such file" if isinstance(exc, FileNotFoundError) else (exc.strerror or str(exc))
        raise _in_shard(ReadError(path, problem), path, shard_of) from None
    files.append(raw)
    try:
        h5 = store.scan_file(raw, open_h5=lambda: _open_h5(path))
    except ReadError as exc:
        raise _in_shard(exc, path, shard_of) from None
    if h5 is not None:
        files.append(h5)


def _open_h5(path: Path) -> "h5py.File":
    from modelmorph.storage.hdf5 import open_file

    return open_file(path)


def _in_shard(exc: ReadError, path: Path, index: Path | None) -> ReadError:
    return exc if index is None else ReadError(index, f"shard {path.name}: {exc.problem}")


def write(model: Model, path: Path, *, options: dict, diagnostics: Diagnostics, progress: Progress | None = None) -> None:
    sharded = path.name.lower().endswith(".json")
    size = options.get("max_shard_size")
    if size is not None and not sharded:
        raise UsageError(f"{path}: -O max_shard_size writes a sharded index: name the output *.weights.json")
    max_shard_bytes = parse_size(size if size is not None else str(DEFAULT_SHARD_GB)) if sharded else None
    write_weights(model, path, diagnostics, progress or Progress(), max_shard_bytes)


def write_weights(model: Model, path: Path, diagnostics: Diagnostics, progress: Progress,
                  max_shard_bytes: float | None = None, userblock: int = 0, checksum: bool = False) -> int | None:
    """Write ``model``'s variables where Keras 3 keeps them (also ``model.weights.h5`` of an archive,
    written after a user block that the archive's first members fill). With ``checksum``, returns
    the CRC-32 of the HDF5 data if the writing computed it on the way (None: it did not)."""
    try:
        groups = plan(model, diagnostics)
    except PlanError as exc:
        raise WriteError(path, str(exc)) from None
    progress.start(sum(w.nbytes for g in groups for w in g.weights), f"writing {path.name}")
    if max_shard_bytes is None and all(plain_dtype(w) for g in groups for w in g.weights):
        return write_plain(path, groups, progress, userblock, checksum)
    writer = VarsWriter(path, max_shard_bytes, userblock)
    try:
        writer.write(groups, progress)
    finally:
        writer.close()
    return None


def parse_size(text: str) -> float:
    """``500MB``, ``2GB``, ``512kb`` or a bare number of GB (as Keras' ``max_shard_size``), in bytes;
    units are binary, as Keras counts them (1 GB = 1024**3 bytes)."""
    match = _SIZE.match(text)
    if match is None or float(match.group(1)) <= 0:
        raise UsageError(f"-O max_shard_size must be a positive size such as 500MB, 2GB or 0.5 (GB), not {text!r}")
    return float(match.group(1)) * _UNITS[(match.group(2) or "").lower()]
