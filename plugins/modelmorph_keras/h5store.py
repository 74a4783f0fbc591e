"""The ``vars`` groups of Keras 3 weights files: found in one file or across shards, and
written back in Keras' order, sharded exactly as Keras' ``ShardedH5IOStore`` shards.

Reading only looks at the structure (no tensor is read here); every dataset is checked by
:mod:`modelmorph.hdf5` before it becomes a lazy :class:`~modelmorph.Weight`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import h5py

from modelmorph import Progress, ReadError, Weight, WriteError
from modelmorph.hdf5 import attr_str, check_links, weight_from_dataset, write_dataset


@dataclass
class StoredGroup:
    """One ``vars`` group (``path`` in ``file``) and its datasets by index."""

    file: h5py.File
    path: str
    datasets: dict[int, h5py.Dataset] = field(default_factory=dict)

    @property
    def name(self) -> str | None:
        """The ``name`` attribute (Keras 3.6+), read only when asked for."""
        value = self.file[self.path].attrs.get("name")
        return None if value is None else attr_str(value)

    def ordered(self) -> list[h5py.Dataset]:
        return [self.datasets[i] for i in sorted(self.datasets)]


class VarsStore:
    """Every ``vars`` group of a weights file (or of all the shards of one), by object path:
    ``""`` for the model itself, ``layers/dense``, ``optimizer``..."""

    def __init__(self, source: str | Path):
        self.source = source
        self.groups: dict[str, StoredGroup] = {}
        self.strays: list[str] = []  # datasets Keras would never read: outside `vars`, not numbered

    def scan(self, root: h5py.File) -> None:
        """Add the groups of one file (a shard adds to those of the others)."""
        check_links(root, self.source)
        objects: list[tuple[str, int]] = []
        # One traversal inside HDF5 (hard links only, after check_links refused the others).
        h5py.h5o.visit(root.id, lambda name, info: objects.append((name.decode("utf-8", "replace"), info.type)),
                       info=True)
        for name, kind in objects:
            parent, _, leaf = name.rpartition("/")
            if kind == h5py.h5o.TYPE_GROUP and leaf == "vars":
                self.groups.setdefault(parent, StoredGroup(root, name))
            elif kind == h5py.h5o.TYPE_DATASET:
                self._add_dataset(root, name, parent, leaf)

    def _add_dataset(self, root: h5py.File, name: str, parent: str, leaf: str) -> None:
        owner, _, last = parent.rpartition("/")
        if last != "vars" or not leaf.isdigit():
            self.strays.append(name)
            return
        group = self.groups.setdefault(owner, StoredGroup(root, parent))
        if int(leaf) in group.datasets:
            raise ReadError(self.source, f"variable {name} is stored twice")
        group.datasets[int(leaf)] = root[name]

    def weight(self, ds: h5py.Dataset, path: str, trainable: bool = True) -> Weight:
        return weight_from_dataset(ds, path, self.source, trainable)


def read_index(data: dict, source: str | Path) -> list[str]:
    """The shard file names a sharded ``.weights.json`` index lists, checked to be plain names."""
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict):
        raise ReadError(source, "not a sharded Keras weights index: no 'weight_map' object")
    names: list[str] = []
    for key, files in weight_map.items():
        for name in files if isinstance(files, list) else [files]:
            if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in (".", ".."):
                raise ReadError(source, f"weight_map[{key!r}] names {name!r}, not a shard file beside the index")
            if name not in names:
                names.append(name)
    return names


# -- writing ----------------------------------------------------------------------------------
@dataclass
class Group:
    """A ``vars`` group to write: object path, ``name`` attribute, weights in ``vars/N`` order."""

    path: str
    name: str | None
    weights: list[Weight] = field(default_factory=list)


class VarsWriter:
    """Writes groups into ``path``: one ``.weights.h5`` (after a user block of ``userblock``
    bytes left for the caller, if asked), or, with ``max_shard_bytes``, the ``.weights.json``
    index ``path`` plus ``<base>_NNNNN.weights.h5`` shards beside it."""

    def __init__(self, path: Path, max_shard_bytes: float | None = None, userblock: int = 0):
        self.path = path
        self.userblock = userblock
        self.max_shard_bytes = max_shard_bytes
        self.shards: list[str] = []
        self.weight_map: dict[str, str | list[str]] = {}
        self.total_bytes = 0.0
        self.shard_bytes = 0.0
        self.file = self._new_file()
        self.group: h5py.Group | None = None
        self.current: Group | None = None

    def _new_file(self) -> h5py.File:
        if self.max_shard_bytes is None:
            return h5py.File(self.path, "w", userblock_size=self.userblock or None)
        base = self.path.stem.replace(".weights", "")
        self.shards.append(f"{base}_{len(self.shards):05}.weights.h5")
        return h5py.File(self.path.with_name(self.shards[-1]), "w")

    def write(self, groups: Iterable[Group], progress: Progress) -> None:
        for group in groups:
            self._make(group)
            for index, weight in enumerate(group.weights):
                self._put(index, weight)
                progress.advance(weight.nbytes)

    def _make(self, group: Group) -> None:
        # Like Keras' store.make(path, metadata): the group exists (named) even with no variables.
        self.current = group
        self.group = self.file.create_group(f"{group.path}/vars" if group.path else "vars")
        if group.name is not None:
            self.group.attrs["name"] = group.name

    def _put(self, index: int, weight: Weight) -> None:
        assert self.current is not None and self.group is not None
        array = weight.read()
        if tuple(array.shape) != tuple(weight.shape):
            raise WriteError(self.path, f"weight {weight.path!r} declares shape {weight.shape} but holds {array.shape}")
        if self.max_shard_bytes is not None:
            self._fit_in_shard(weight)
        write_dataset(self.group, str(index), array)
        if self.max_shard_bytes is not None:
            self._record(self.group.name)

    def _fit_in_shard(self, weight: Weight) -> None:
        # ShardedH5IOStore.__setitem__: a weight that overflows the shard opens the next one,
        # where the group is created again, without its name attribute.
        size = float(weight.nbytes)
        if size > self.max_shard_bytes:
            raise WriteError(self.path, f"weight {weight.path!r} is {weight.nbytes} bytes, more than "
                                        f"max_shard_size ({int(self.max_shard_bytes)} bytes)")
        self.total_bytes += size
        self.shard_bytes += size
        if self.shard_bytes > self.max_shard_bytes:
            self.file.close()
            self.file = self._new_file()
            self.shard_bytes = size
            path = self.current.path
            self.group = self.file.create_group(f"{path}/vars" if path else "vars")

    def _record(self, group_name: str) -> None:
        shard = self.shards[-1]
        listed = self.weight_map.get(group_name)
        if listed is None:
            self.weight_map[group_name] = shard
        else:
            listed = listed if isinstance(listed, list) else [listed]
            if shard not in listed:
                listed.append(shard)
            self.weight_map[group_name] = listed

    def close(self) -> None:
        self.file.close()
        if self.max_shard_bytes is not None:
            index = {"metadata": {"total_size": self.total_bytes}, "weight_map": self.weight_map}
            self.path.write_text(json.dumps(index, indent=4))
