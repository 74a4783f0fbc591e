"""TensorFlow checkpoints (TensorBundle: ``<prefix>.index`` + ``<prefix>.data-*``), without TensorFlow.

This module is what the entry point loads; it stays light. The reader and writer live in
:mod:`modelmorph_tfckpt.reader` and :mod:`modelmorph_tfckpt.writer`, imported only when used;
the TensorBundle library itself in :mod:`modelmorph_tfckpt.bundle`. The plugin also reads
TensorFlow SavedModel directories (format ``savedmodel``, :mod:`modelmorph_tfckpt.savedmodel`),
whose variables are such a checkpoint.
"""

from __future__ import annotations

import itertools
import re
import struct

import modelmorph
from modelmorph import CERTAIN, NO, PLAUSIBLE

#: The last 8 bytes of an SSTable (LevelDB table), which a checkpoint's ``.index`` is.
_TABLE_MAGIC = struct.pack("<Q", 0xDB4775248B80FB57)
_DATA_SHARD = re.compile(r"\.data-\d{5}-of-\d{5}$")


def sniff(probe: "modelmorph.Probe") -> int:
    path = probe.path
    try:
        if probe.is_dir:
            if (path / "checkpoint").is_file():
                return CERTAIN
            # Without a state file, a folder holding exactly one checkpoint is read as that one.
            return PLAUSIBLE if len(list(itertools.islice(path.glob("*.index"), 2))) == 1 else NO
        if not probe.exists:  # a checkpoint is named by its prefix, which is no file
            return CERTAIN if path.with_name(path.name + ".index").is_file() else NO
        if path.name.endswith(".index"):
            return CERTAIN if _footer(path) == _TABLE_MAGIC else NO
        shard = _DATA_SHARD.search(path.name)
        if shard and path.with_name(path.name[: shard.start()] + ".index").is_file():
            return CERTAIN
    except (OSError, ValueError):  # unreadable, or a path without a name: not ours to judge
        pass
    return NO


def sniff_savedmodel(probe: "modelmorph.Probe") -> int:
    from .savedmodel import savedmodel_dir

    return CERTAIN if probe.exists and savedmodel_dir(probe.path) is not None else NO


def _footer(path) -> bytes:
    from modelmorph.storage.safety import open_input

    with open_input(path) as f:
        size = f.seek(0, 2)
        f.seek(max(0, size - len(_TABLE_MAGIC)))
        return f.read()


def _siblings(path):
    """A checkpoint written at ``path`` (its prefix, or the prefix's ``.index``) always has its
    ``.index``: an existing one is refused before the source is read."""
    name = path.name[: -len(".index")] if path.name.endswith(".index") else path.name
    return [path.with_name(f"{name}.index")] if name else []


@modelmorph.hookimpl
def modelmorph_formats():
    return [
        modelmorph.Format(
            name="tf-checkpoint",
            description="TensorFlow checkpoint (TensorBundle): a prefix with .index and .data-* files, as written "
                        "by tf.train.Checkpoint and tf_keras save_weights; name the prefix, its .index or its folder",
            extensions=(".index",),
            reads=frozenset({"weights", "optimizer"}),
            writes=frozenset({"weights", "optimizer"}),
            reader="modelmorph_tfckpt.reader:read",
            writer="modelmorph_tfckpt.writer:write",
            sniff=sniff,
            options=(
                modelmorph.Option("naming", "choice", None, "write", choices=("keras2", "keras3", "module"),
                                  help="keras2 (default): what tf_keras load_weights(prefix) restores; keras3: "
                                       "tf.train.Checkpoint(model=m) of a Keras 3 model; module: layer path/weight path"),
                modelmorph.Option("max_shard_size", "size", None, "write",
                                  help="largest data shard (default: one shard; a tensor is never split)"),
            ),
            replaceable=("checkpoint",),
            siblings=_siblings,
        ),
        modelmorph.Format(
            name="savedmodel",
            description="TensorFlow SavedModel directory (saved_model.pb, variables/, assets/; tf_keras "
                        "model.save(dir) adds keras_metadata.pb, the architecture); name the directory. "
                        "Read only: writing one needs a TensorFlow graph",
            extensions=(),
            reads=frozenset({"architecture", "weights", "optimizer"}),
            writes=frozenset(),
            reader="modelmorph_tfckpt.savedmodel.reader:read",
            writer=None,
            sniff=sniff_savedmodel,
        ),
    ]
