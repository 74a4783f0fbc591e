"""Keras 3 weights files: ``save_weights`` output, one ``.weights.h5`` or a sharded
``.weights.json`` index with its ``_NNNNN.weights.h5`` shards."""

from __future__ import annotations

import re
from pathlib import Path

import h5py

from modelmorph import Diagnostics, Model, Progress, ReadError, UsageError, WriteError
from modelmorph.hdf5 import open_file
from modelmorph.safety import inside, read_json_file

from .h5store import VarsStore, VarsWriter, read_index
from .mapping import PlanError, attach, plan, structure_of, weights_only

#: Keras' default shard size (``ShardedH5IOStore``), in its unit: GiB.
DEFAULT_SHARD_GB = 5.0
_UNITS = {"": 1024**3, "b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3, "tb": 1024**4}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?(?:e-?\d+)?)\s*([kmgt]?b)?\s*$", re.IGNORECASE)


def read(path: Path, *, options: dict, diagnostics: Diagnostics, arch: Model | None = None) -> Model:
    store = VarsStore(path)
    files = []
    try:
        if path.name.lower().endswith(".json"):
            for name in read_index(read_json_file(path, "sharded weights index"), path):
                files.append(_open_shard(path, name))
                store.scan(files[-1])
        else:
            files.append(open_file(path))
            store.scan(files[-1])
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


def _open_shard(index: Path, name: str) -> h5py.File:
    try:
        return open_file(inside(index.parent, name, index))
    except ReadError as exc:
        raise ReadError(index, f"shard {name}: {exc.problem}") from None


def write(model: Model, path: Path, *, options: dict, diagnostics: Diagnostics, progress: Progress | None = None) -> None:
    sharded = path.name.lower().endswith(".json")
    size = options.get("max_shard_size")
    if size is not None and not sharded:
        raise UsageError(f"{path}: -O max_shard_size writes a sharded index: name the output *.weights.json")
    max_shard_bytes = parse_size(size if size is not None else str(DEFAULT_SHARD_GB)) if sharded else None
    write_weights(model, path, diagnostics, progress or Progress(), max_shard_bytes)


def write_weights(model: Model, path: Path, diagnostics: Diagnostics, progress: Progress,
                  max_shard_bytes: float | None = None, userblock: int = 0) -> None:
    """Write ``model``'s variables where Keras 3 keeps them (also ``model.weights.h5`` of an archive,
    written after a user block that the archive's first members fill)."""
    try:
        groups = plan(model, diagnostics)
    except PlanError as exc:
        raise WriteError(path, str(exc)) from None
    progress.start(sum(w.nbytes for g in groups for w in g.weights), f"writing {path.name}")
    writer = VarsWriter(path, max_shard_bytes, userblock)
    try:
        writer.write(groups, progress)
    finally:
        writer.close()


def parse_size(text: str) -> float:
    """``500MB``, ``2GB``, ``512kb`` or a bare number of GB (as Keras' ``max_shard_size``), in bytes;
    units are binary, as Keras counts them (1 GB = 1024**3 bytes)."""
    match = _SIZE.match(text)
    if match is None or float(match.group(1)) <= 0:
        raise UsageError(f"-O max_shard_size must be a positive size such as 500MB, 2GB or 0.5 (GB), not {text!r}")
    return float(match.group(1)) * _UNITS[(match.group(2) or "").lower()]
