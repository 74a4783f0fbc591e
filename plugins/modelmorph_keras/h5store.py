"""The ``vars`` groups of Keras 3 weights files: found in one file or across shards, and
written back in Keras' order, sharded exactly as Keras' ``ShardedH5IOStore`` shards.

Reading only looks at the structure (no tensor is read here), through the one HDF5 interface
:mod:`modelmorph.storage.h5file`: every file Keras writes is scanned in pure Python and its
weights know where their bytes lie, so that writing a plain file copies them file to file
(:mod:`modelmorph.storage.filecopy`) without numpy or h5py ever loading; any other file (or every
file, with ``MODELMORPH_HDF5=h5py``) is read through h5py, each dataset checked by
:mod:`modelmorph.storage.hdf5` before it becomes a lazy weight. Writing takes the plain writer when
it can express the file and the switch allows (``h5file.write_backend``), else h5py.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Iterable

from modelmorph import Progress, ReadError, Weight, WriteError
from modelmorph.storage import plainh5
from modelmorph.storage.filecopy import CopyClaims, assemble_crc32, stored_as_is
from modelmorph.storage.h5file import Dataset, H5File

if TYPE_CHECKING:
    import h5py


@dataclass
class StoredGroup:
    """One ``vars`` group and its datasets (:class:`modelmorph.storage.h5file.Dataset`) by index,
    and those stored by name (``idf_weights``: a class's own ``save_own_variables``)."""

    path: str
    name_of: Callable[[], Any] = field(repr=False)  # the raw `name` attribute, read when asked for
    datasets: dict[int, Dataset] = field(default_factory=dict)
    named: dict[str, Dataset] = field(default_factory=dict)

    @property
    def name(self) -> str | None:
        """The ``name`` attribute (Keras 3.6+)."""
        value = self.name_of()
        if value is None or isinstance(value, str):
            return value
        from modelmorph.storage.hdf5 import attr_str

        return attr_str(value)

    def ordered(self) -> list[Dataset]:
        return [self.datasets[i] for i in sorted(self.datasets)]


class VarsStore:
    """Every ``vars`` group of a weights file (or of all the shards of one), by object path:
    ``""`` for the model itself, ``layers/dense``, ``optimizer``..."""

    def __init__(self, source: str | Path):
        self.source = source
        self.groups: dict[str, StoredGroup] = {}
        self.strays: list[str] = []  # datasets Keras would never read: outside a `vars` group

    def scan(self, h5: H5File) -> None:
        """Add the groups of one open file (a shard adds to those of the others)."""
        seen: dict[str, Any] = {"": h5}
        for obj in h5.walk():  # a group comes before its members
            path = obj.path
            parent, _, leaf = path.rpartition("/")
            if obj.is_group:
                seen[path] = obj
                if leaf == "vars" and parent not in self.groups:
                    self.groups[parent] = StoredGroup(path, lambda g=obj: g.attrs.get("name"))
                continue
            owner, _, last = parent.rpartition("/")
            if last != "vars":
                self.strays.append(path)  # Keras reads only datasets of `vars` groups
                continue
            group = self.groups.get(owner)
            if group is None:  # defensive: walk() gives a group before its members
                group = self.groups[owner] = StoredGroup(parent, lambda g=seen.get(parent): g.attrs.get("name") if g else None)
            if not leaf.isdigit():
                # a variable a class saves by name (the lookups' vars/idf_weights)
                if leaf in group.named:
                    raise ReadError(self.source, f"variable {path} is stored twice")
                group.named[leaf] = obj
                continue
            index = int(leaf)
            if index in group.datasets:
                raise ReadError(self.source, f"variable {path} is stored twice")
            group.datasets[index] = obj

    def weight(self, ds: Dataset, path: str, trainable: bool = True) -> Weight:
        return ds.weight(path, trainable)


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
    start: int = 0  # N of the first weight's vars/N (a group that a shard boundary cut goes on at N > 0)
    # Each weight's dataset name when some are stored by name (vars/idf_weights); None: numbered from start.
    keys: list[str] | None = None

    def dataset_names(self) -> list[str]:
        """The dataset name of each weight in ``vars``, in order."""
        if self.keys is not None:
            return list(self.keys)
        return [str(i) for i in range(self.start, self.start + len(self.weights))]


def plain_dtype(weight: Weight) -> tuple[str, dict[str, str]] | None:
    """How the plain writer stores ``weight`` (dtype, dataset attributes), if it can."""
    if weight.dtype in plainh5.NUMERIC:
        return weight.dtype, {}
    if weight.dtype == "bfloat16":
        return "V2", {"dtype": "bfloat16"}  # as Keras 3 stores it
    return None


def write_plain(path: Path, groups: list[Group], progress: Progress, userblock: int = 0,
                checksum: bool = False, claims: CopyClaims | None = None) -> int | None:
    """One unsharded weights file, written as Keras would (same groups, datasets, attributes)
    without h5py: the metadata first, then each tensor's bytes — copied from the source file
    when the weight says where they are (checksummed on the way, for the source's check and for
    this file's: :class:`~modelmorph.storage.filecopy.CopyClaims`), else taken from its array.
    With ``checksum``, returns the CRC-32 of the HDF5 file (after the user block), assembled
    from the tensors' CRCs and the metadata read back: no tensor byte is read again for it.
    ``claims``: made by the caller for several files (else here, for this one)."""
    from modelmorph.storage.plainh5 import PlainWriter

    own = claims is None
    if own:
        claims = CopyClaims(w for g in groups for w in g.weights)
    try:
        with open(path, "w+b") as f:
            writer = PlainWriter(f, start=userblock)
            placed = []
            for group in groups:
                where = f"{group.path}/vars" if group.path else "vars"
                writer.group(where, {"name": group.name} if group.name is not None else None)
                for key, weight in zip(group.dataset_names(), group.weights):
                    dtype, attrs = plain_dtype(weight)
                    placed.append((writer.dataset(f"{where}/{key}", tuple(weight.shape), dtype, attrs or None), weight))
            end = writer.layout()  # flushed: from here on the data goes through the file descriptor
            known: list[tuple[int, int, int]] = []
            copies = []  # (weight, offset): the bytes lie in a file, copied all at once below
            for ds, weight in placed:
                if ds.offset is not None and stored_as_is(weight, ds.nbytes):
                    copies.append((weight, ds.offset))
                    continue
                crc = _put_plain(f, ds, weight, path)
                if crc is not None:
                    known.append((ds.offset, ds.nbytes, crc))
                progress.advance(weight.nbytes)
            crcs = claims.copy(copies, f, progress.advance)
            known += [(offset, weight.raw.nbytes, crc) for (weight, offset), crc in zip(copies, crcs)]
            if f.seek(0, os.SEEK_END) < end:
                f.truncate(end)  # trailing empty datasets: the file still ends where HDF5 says
            return assemble_crc32(f, userblock, end, known) if checksum else None
    finally:
        if own:
            claims.release()


def _put_plain(f: BinaryIO, ds: plainh5.Dataset, weight: Weight, path: Path) -> int | None:
    """Write one dataset's bytes from its value; returns their CRC-32 (None: nothing written)."""
    if ds.offset is None:
        return None
    from modelmorph.storage.hdf5 import write_weight_bytes

    try:  # the whole tensor, or piece by piece when its reader streams it
        return write_weight_bytes(f.fileno(), ds.offset, ds.nbytes, weight)
    except ValueError as exc:
        raise WriteError(path, str(exc)) from None


@dataclass
class ShardPlan:
    """Which groups (and which of their weights) each shard of a ``.weights.json`` holds, and
    the index Keras writes for them: decided from declared sizes alone, before a byte is read."""

    shards: list[tuple[str, list[Group]]]  # (file name, its groups)
    weight_map: dict[str, str | list[str]]
    total_bytes: float

    def index_json(self) -> str:
        return json.dumps({"metadata": {"total_size": self.total_bytes}, "weight_map": self.weight_map}, indent=4)


def plan_shards(path: Path, groups: list[Group], max_shard_bytes: float) -> ShardPlan:
    """Shard ``groups`` exactly as Keras' ``ShardedH5IOStore`` (and :class:`VarsWriter`) do: a
    weight that would push its shard past ``max_shard_bytes`` opens the next, where its group
    is made again, unnamed; a group is made (named) in the shard current when it starts, even
    without weights; a weight larger than the limit is refused."""
    base = path.stem.replace(".weights", "")
    names = [f"{base}_00000.weights.h5"]
    shards: list[list[Group]] = [[]]
    weight_map: dict[str, str | list[str]] = {}
    total = shard_bytes = 0.0
    for group in groups:
        keys = group.dataset_names()
        current = Group(group.path, group.name, keys=[])
        shards[-1].append(current)
        h5_name = "/" + (f"{group.path}/vars" if group.path else "vars")  # h5py's Group.name
        for index, weight in enumerate(group.weights):
            if weight.nbytes > max_shard_bytes:
                raise WriteError(path, f"weight {weight.path!r} is {weight.nbytes} bytes, more than "
                                       f"max_shard_size ({int(max_shard_bytes)} bytes)")
            size = float(weight.nbytes)
            total += size
            shard_bytes += size
            if shard_bytes > max_shard_bytes:
                names.append(f"{base}_{len(names):05}.weights.h5")
                shards.append([])
                shard_bytes = size
                current = Group(group.path, None, start=index, keys=[])
                shards[-1].append(current)
            current.weights.append(weight)
            current.keys.append(keys[index])
            listed = weight_map.get(h5_name)
            if listed is None:
                weight_map[h5_name] = names[-1]
            else:
                listed = listed if isinstance(listed, list) else [listed]
                if names[-1] not in listed:
                    listed.append(names[-1])
                weight_map[h5_name] = listed
    return ShardPlan(list(zip(names, shards)), weight_map, total)


def write_sharded_plain(path: Path, plan: ShardPlan, progress: Progress) -> None:
    """The ``.weights.json`` index ``path`` and the shards ``plan`` lays out, each written by
    :func:`write_plain` (tensor bytes copied file to file where the source has them): no h5py,
    no numpy on that path."""
    claims = CopyClaims(w for _, shard_groups in plan.shards for g in shard_groups for w in g.weights)
    try:
        for name, shard_groups in plan.shards:
            write_plain(path.with_name(name), shard_groups, progress, claims=claims)
    finally:
        claims.release()
    path.write_text(plan.index_json())


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
        self.group: "h5py.Group | None" = None
        self.current: Group | None = None

    def _new_file(self) -> "h5py.File":
        import h5py

        if self.max_shard_bytes is None:
            return h5py.File(self.path, "w", userblock_size=self.userblock or None)
        base = self.path.stem.replace(".weights", "")
        self.shards.append(f"{base}_{len(self.shards):05}.weights.h5")
        return h5py.File(self.path.with_name(self.shards[-1]), "w")

    def write(self, groups: Iterable[Group], progress: Progress) -> None:
        for group in groups:
            self._make(group)
            for key, weight in zip(group.dataset_names(), group.weights):
                self._put(key, weight)
                progress.advance(weight.nbytes)

    def _make(self, group: Group) -> None:
        # Like Keras' store.make(path, metadata): the group exists (named) even with no variables.
        self.current = group
        self.group = self.file.create_group(f"{group.path}/vars" if group.path else "vars")
        if group.name is not None:
            self.group.attrs["name"] = group.name

    def _put(self, key: str, weight: Weight) -> None:
        assert self.current is not None and self.group is not None
        if self.max_shard_bytes is not None and weight.nbytes > self.max_shard_bytes:
            # refused from its declared size, before a byte of it is read
            raise WriteError(self.path, f"weight {weight.path!r} is {weight.nbytes} bytes, more than "
                                        f"max_shard_size ({int(self.max_shard_bytes)} bytes)")
        if self.max_shard_bytes is not None:
            self._fit_in_shard(weight)
        from modelmorph.storage.hdf5 import write_weight

        try:
            write_weight(self.group, key, weight)  # piece by piece when the reader streams it
        except ValueError as exc:
            raise WriteError(self.path, str(exc)) from None
        if self.max_shard_bytes is not None:
            self._record(self.group.name)

    def _fit_in_shard(self, weight: Weight) -> None:
        # ShardedH5IOStore.__setitem__: a weight that overflows the shard opens the next one,
        # where the group is created again, without its name attribute.
        size = float(weight.nbytes)
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
