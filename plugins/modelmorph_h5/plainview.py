"""A read-only view of a plain HDF5 file (:mod:`modelmorph.storage.plainh5`) shaped like the few parts
of h5py the reader uses — ``attrs``, ``name``, ``get``, ``in`` — so that one reader serves
both: plain files without numpy or h5py, any other file through h5py."""

from __future__ import annotations

from typing import Any

from modelmorph.storage import plainh5


class PlainObject:
    def __init__(self, plain: plainh5.PlainFile, path: str):
        self.plain, self.path = plain, path

    @property
    def name(self) -> str:
        return "/" + self.path


class PlainGroup(PlainObject):
    @property
    def attrs(self) -> dict[str, Any]:
        return self.plain.groups[self.path].attrs

    def get(self, name: str) -> "PlainGroup | PlainDataset | None":
        parts = [p for p in name.split("/") if p]
        if name.startswith("/") or any(p in (".", "..") for p in parts):
            return None  # h5py would resolve these elsewhere; the reader only asks for members
        path = "/".join(([self.path] if self.path else []) + parts)
        if path in self.plain.groups:
            return PlainGroup(self.plain, path)
        if path in self.plain.datasets:
            return PlainDataset(self.plain, path)
        return None

    def __contains__(self, name: str) -> bool:
        return self.get(name) is not None


class PlainDataset(PlainObject):
    @property
    def ds(self) -> plainh5.Dataset:
        return self.plain.datasets[self.path]

    @property
    def attrs(self) -> dict[str, Any]:
        return self.ds.attrs
