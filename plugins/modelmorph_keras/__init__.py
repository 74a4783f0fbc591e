"""Keras 3 formats: ``.keras`` archives (zip or unzipped folder) and weights files
(``.weights.h5``, sharded ``.weights.json``).

This module is what the entry point loads; it stays light (no h5py). The readers and writers
live in :mod:`modelmorph_keras.archive` (reading archives), :mod:`modelmorph_keras.archive_writer`
and :mod:`modelmorph_keras.weightsfile`.
"""

from __future__ import annotations

import modelmorph
from modelmorph import CERTAIN, NO, PLAUSIBLE

#: The members of a ``.keras`` archive, and the files of its unzipped folder.
CONFIG, METADATA, WEIGHTS, WEIGHTS_NPZ, ASSETS = "config.json", "metadata.json", "model.weights.h5", "model.weights.npz", "assets"

_ZIP_MAGIC = b"PK\x03\x04"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ARCHIVE_MEMBERS = (METADATA.encode(), CONFIG.encode(), WEIGHTS.encode())


def sniff_archive(probe: "modelmorph.Probe") -> int:
    if probe.is_dir:
        return CERTAIN if (probe.path / CONFIG).is_file() and (probe.path / WEIGHTS).exists() else NO
    if not probe.header.startswith(_ZIP_MAGIC):
        return NO
    # The first local header's file name starts at byte 30; Keras writes metadata.json first.
    name_length = int.from_bytes(probe.header[26:28], "little")
    if probe.header[30:30 + name_length] in _ARCHIVE_MEMBERS:
        return CERTAIN
    return PLAUSIBLE if probe.path.name.lower().endswith(".keras") else NO


def sniff_weights(probe: "modelmorph.Probe") -> int:
    # Any HDF5 may hold `vars` groups; the legacy format's sniffer, which opens the file, is
    # CERTAIN of its own and wins (a tf_keras save_weights("x.weights.h5") is legacy).
    if probe.header.startswith(_HDF5_MAGIC):
        return PLAUSIBLE
    head = probe.header.lstrip()
    return CERTAIN if head.startswith(b"{") and b'"weight_map"' in head else NO


@modelmorph.hookimpl
def modelmorph_formats():
    return [
        modelmorph.Format(
            name="keras",
            description="Keras 3 .keras archive (model.save), zipped or unzipped folder; tf_keras 2.13+ archives read too",
            extensions=(".keras",),
            reads=frozenset({"architecture", "weights", "optimizer"}),
            writes=frozenset({"architecture", "weights", "optimizer"}),
            needs=frozenset({"architecture"}),
            reader="modelmorph_keras.archive:read",
            writer="modelmorph_keras.archive_writer:write",
            sniff=sniff_archive,
            options=(
                modelmorph.Option("zipped", "bool", True, "write",
                                  help="false writes the unzipped folder of save_model(zipped=False) "
                                       "(its name must not end in .keras)"),
            ),
        ),
        modelmorph.Format(
            name="keras-weights",
            description="Keras 3 weights (save_weights): .weights.h5, or a sharded .weights.json index with its "
                        "_NNNNN.weights.h5 shards",
            extensions=(".weights.h5", ".weights.json"),
            reads=frozenset({"weights", "optimizer"}),
            writes=frozenset({"weights", "optimizer"}),
            reader="modelmorph_keras.weightsfile:read",
            writer="modelmorph_keras.weightsfile:write",
            sniff=sniff_weights,
            options=(
                modelmorph.Option("max_shard_size", "size", None, "write",
                                  help="largest shard of a .weights.json output (default 5GB, Keras' default; "
                                       "Keras' max_shard_size=N is NGB here)"),
            ),
        ),
    ]
