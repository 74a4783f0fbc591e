"""Keras 3 weights files: ``save_weights`` output, one ``.weights.h5`` or a sharded
``.weights.json`` index with its ``_NNNNN.weights.h5`` shards."""

from __future__ import annotations

from pathlib import Path

from modelmorph import Diagnostics, Model, Progress, ReadError, UsageError, WriteError
from modelmorph.keras.join import structure_of
from modelmorph.storage import h5file
from modelmorph.storage.safety import inside, read_json_file

from .h5store import VarsStore, VarsWriter, plain_dtype, plan_shards, read_index, write_plain, write_sharded_plain
from .mapping import PlanError, attach, plan, weights_only

#: Keras' default shard size (``ShardedH5IOStore``: 5 in its unit, GiB), in bytes.
DEFAULT_SHARD_BYTES = 5 * 1024**3


def read(path: Path, *, options: dict, diagnostics: Diagnostics, arch: Model | None = None) -> Model:
    store = VarsStore(path)
    files: list = []  # the open HDF5 files (shards), to close with the model
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
    """Add one weights file (or shard) to ``store``; the open file goes to ``files``."""
    try:
        h5 = h5file.open(path)
        files.append(h5)
        store.scan(h5)
    except ReadError as exc:
        raise _in_shard(exc, path, shard_of) from None


def _in_shard(exc: ReadError, path: Path, index: Path | None) -> ReadError:
    return exc if index is None else ReadError(index, f"shard {path.name}: {exc.problem}")


def write(model: Model, path: Path, *, options: dict, diagnostics: Diagnostics, progress: Progress | None = None) -> None:
    sharded = path.name.lower().endswith(".json")
    size = options.get("max_shard_size")
    if size is not None and not sharded:
        raise UsageError(f"{path}: -O max_shard_size writes a sharded index: name the output *.weights.json")
    max_shard_bytes = (size or DEFAULT_SHARD_BYTES) if sharded else None
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
    plain_possible = all(plain_dtype(w) for g in groups for w in g.weights)
    if max_shard_bytes is not None:
        shards = plan_shards(path, groups, max_shard_bytes)  # a too-large weight refused before any is read
    if h5file.write_backend(plain_possible, path) == "plain":
        if max_shard_bytes is not None:
            write_sharded_plain(path, shards, progress)
            return None
        return write_plain(path, groups, progress, userblock, checksum)
    writer = VarsWriter(path, max_shard_bytes, userblock)
    try:
        writer.write(groups, progress)
    finally:
        writer.close()
    return None

