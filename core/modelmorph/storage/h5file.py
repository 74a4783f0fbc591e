"""One read interface over HDF5 files, with two backends chosen in one place.

:func:`open` gives an :class:`H5File`: the root :class:`Group`, whose members are groups and
:class:`Dataset`\\ s in HDF5's order (link names in byte order), attributes decoded the same
way by both backends (``str`` for variable-length strings, ``bytes`` for fixed-length ones,
``int``/``float`` for numbers, a ``list`` of those for an array), datasets with their shape,
storage dtype (a :data:`~modelmorph.storage.plainh5.NUMERIC` name, ``"V<n>"`` for opaque data,
``"string"``) and a lazy IR :class:`~modelmorph.ir.Weight`.

Backends:

- ``plain`` — :mod:`modelmorph.storage.plainh5`, pure Python: the HDF5 subset h5py writes with
  its defaults, so every file Keras writes. Neither numpy nor h5py is imported; weights carry a
  :class:`~modelmorph.ir.ByteRange`, so writers copy their bytes file to file.
- ``h5py`` — libhdf5 through h5py, for everything else, with the checks of
  :mod:`modelmorph.storage.hdf5` (links refused over the whole file when it is opened, each
  dataset checked before it becomes a weight or is read).

The environment variable ``MODELMORPH_HDF5`` chooses: ``auto`` (default) reads with ``plain``
and falls back to ``h5py`` when the file is outside the subset (never when the plain reader
found it malformed: ``plainh5.Malformed`` is a read error, as libhdf5 can hang on such files) (or holds string datasets, which
only h5py turns into weights); ``h5py`` always uses h5py (the switch to use in the field if the
pure-Python reader misbehaves); ``plain`` never loads h5py (a file outside the subset is a read
error). :func:`open` makes the reading choice, :func:`write_backend` the writing one.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from ..errors import ReadError, UsageError, WriteError
from ..ir import Weight
from . import plainh5
from .plainh5.weights import weight_from_plain
from .safety import open_input, refuse_special

if TYPE_CHECKING:  # imported when used: the plain backend never loads them
    import h5py

__all__ = ["ENV", "SETTINGS", "setting", "open", "write_backend", "H5File", "Group", "Dataset"]

#: The environment variable that chooses the backend, and its values.
ENV = "MODELMORPH_HDF5"
SETTINGS = ("auto", "plain", "h5py")


def setting() -> str:
    """``auto``, ``plain`` or ``h5py``: the value of ``MODELMORPH_HDF5`` (``auto`` when unset)."""
    value = os.environ.get(ENV, "").strip().lower() or "auto"
    if value not in SETTINGS:
        raise UsageError(f"{ENV} must be one of {', '.join(SETTINGS)}, not {os.environ[ENV]!r}")
    return value


# -- the interface -----------------------------------------------------------------------------

class Group:
    """A group: ``path`` from the root (``""`` for the root, no leading slash), ``name`` as
    HDF5 spells it (``/a/b``), ``attrs``, member names in HDF5's order (``children``, also
    iteration), and ``get(name)`` for a member (``a`` or ``a/b`` relative to this group)."""

    __slots__ = ()
    is_group = True
    path: str

    @property
    def name(self) -> str:
        return "/" + self.path

    @property
    def attrs(self) -> dict[str, Any]:
        raise NotImplementedError

    @property
    def children(self) -> list[str]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[str]:
        return iter(self.children)

    def get(self, name: str) -> "Group | Dataset | None":
        """The member ``name`` below this group, or None. Absolute names and ``.``/``..``
        parts are refused (None): a member name never reaches outside its group."""
        parts = name.split("/") if isinstance(name, str) else []
        if not parts or any(p in ("", ".", "..") for p in parts):
            return None
        return self._get("/".join(([self.path] if self.path else []) + parts))

    def _get(self, path: str) -> "Group | Dataset | None":
        raise NotImplementedError

    def __contains__(self, name: str) -> bool:
        return self.get(name) is not None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class Dataset:
    """A dataset: ``path``, ``name``, ``attrs``, ``shape``, ``dtype`` (storage dtype: a
    ``plainh5.NUMERIC`` name, ``"V<n>"``, ``"string"``; numpy's name for other types h5py
    reads), ``nbytes``, ``offset`` (absolute position of its bytes in the file, when the
    backend knows it; None otherwise or when nothing is stored)."""

    __slots__ = ()
    is_group = False
    path: str
    shape: tuple[int, ...]
    dtype: str
    nbytes: int
    offset: int | None

    @property
    def name(self) -> str:
        return "/" + self.path

    @property
    def attrs(self) -> dict[str, Any]:
        raise NotImplementedError

    def weight(self, path: str, trainable: bool = True) -> Weight:
        """The lazy IR weight ``path`` holding this dataset's value (checked now, read when
        a writer asks; a ``ByteRange`` when the offset is known). Read errors are ReadErrors."""
        raise NotImplementedError

    def read_bytes(self) -> bytes:
        """The stored value as bytes: C order, little-endian, fixed-size elements."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.shape} {self.dtype}>"


class H5File(Group):
    """An open HDF5 file: its root group, ``source`` (the name errors give), ``backend``
    (``"plain"`` or ``"h5py"``), :meth:`walk` and :meth:`close` (also a context manager)."""

    __slots__ = ()
    source: str | Path
    backend: str

    def walk(self) -> Iterator[Group | Dataset]:
        """Every group and dataset below the root, depth first (a group before its members),
        members in HDF5's order."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> "H5File":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- choosing ------------------------------------------------------------------------------------

def open(path: str | Path, *, start: int = 0, size: int | None = None, source: str | Path | None = None,
         what: str | None = None, root_only: bool = False) -> H5File:
    """The HDF5 file at ``path`` (or in its bytes ``[start, start + size)``: a stored zip
    member), read-only, with the backend ``MODELMORPH_HDF5`` asks for (see the module
    docstring). Errors are one-line ReadErrors naming ``source`` (default ``path``); ``what``
    names the file inside it (``model.weights.h5``). With ``root_only``, only the root's
    attributes and member names are read (a format sniffer's question), and nothing is checked."""
    source = path if source is None else source
    choice = setting()
    raw = None
    if choice != "h5py":
        try:
            raw = open_input(path)
        except OSError as exc:
            raise ReadError(source, _open_problem(exc)) from None
        try:
            plain = plainh5.read(raw, start, size, root_only=root_only)
        except plainh5.Unsupported as exc:
            raw.close()
            if isinstance(exc, plainh5.Malformed):  # libhdf5 may hang or over-allocate on it: refused here
                prefix = f"{what} is " if what else ""
                raise ReadError(source, f"{prefix}not a readable HDF5 file ({exc})") from None
            if choice == "plain":
                prefix = f"{what} is " if what else ""
                raise ReadError(source, f"{prefix}not in the plain HDF5 subset ({exc}), and {ENV}=plain "
                                        "forbids h5py") from None
        except BaseException:
            raw.close()
            raise
        else:
            if choice == "plain" or all(ds.dtype != "string" for ds in plain.datasets.values()):
                return _PlainFile(plain, raw, source)
            raw.close()  # string datasets: only h5py makes weights of them
    return _H5pyFile.open(path, start, size, source, what, root_only)


def write_backend(plain_possible: bool, target: str | Path) -> str:
    """``"plain"`` or ``"h5py"``: which backend writes an HDF5 file. ``plain_possible``: the
    writer's plain path (:class:`~modelmorph.storage.plainh5.PlainWriter`) can express the file."""
    choice = setting()
    if choice == "h5py":
        return "h5py"
    if plain_possible:
        return "plain"
    if choice == "plain":
        raise WriteError(target, f"this file needs h5py (it holds strings), which {ENV}=plain forbids")
    return "h5py"


def _open_problem(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if exc.strerror:
        return exc.strerror
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


# -- plain backend -------------------------------------------------------------------------------

class _PlainGroup(Group):
    __slots__ = ("_file", "path")

    def __init__(self, file: "_PlainFile", path: str):
        self._file, self.path = file, path

    @property
    def attrs(self) -> dict[str, Any]:
        return self._file._plain.groups[self.path].attrs

    @property
    def children(self) -> list[str]:
        return list(self._file._plain.groups[self.path].children)

    def _get(self, path: str) -> Group | Dataset | None:
        return self._file._wrap(path)


class _PlainDataset(Dataset):
    __slots__ = ("_file", "_ds")

    def __init__(self, file: "_PlainFile", ds: plainh5.Dataset):
        self._file, self._ds = file, ds

    path = property(lambda self: self._ds.path)
    shape = property(lambda self: self._ds.shape)
    dtype = property(lambda self: self._ds.dtype)
    nbytes = property(lambda self: self._ds.nbytes)
    offset = property(lambda self: self._ds.offset)

    @property
    def attrs(self) -> dict[str, Any]:
        return self._ds.attrs

    def weight(self, path: str, trainable: bool = True) -> Weight:
        return weight_from_plain(self._ds, self._file._raw, path, self._file.source, trainable)

    def read_bytes(self) -> bytes:
        if self.offset is None:
            return b""
        data = os.pread(self._file._raw.fileno(), self.nbytes, self.offset)
        if len(data) != self.nbytes:
            raise ReadError(self._file.source, f"dataset {self.name!r} cannot be read: the file ends early")
        return data


class _PlainFile(_PlainGroup, H5File):
    backend = "plain"

    def __init__(self, plain: plainh5.PlainFile, raw: Any, source: str | Path):
        super().__init__(self, "")
        self._plain, self._raw, self.source = plain, raw, source

    def _wrap(self, path: str) -> Group | Dataset | None:
        if path in self._plain.groups:
            return _PlainGroup(self, path)
        ds = self._plain.datasets.get(path)
        return _PlainDataset(self, ds) if ds is not None else None

    def walk(self) -> Iterator[Group | Dataset]:
        group_type = plainh5.Group
        for obj in self._plain.objects:  # recorded in walk order by the reader
            yield _PlainGroup(self, obj.path) if type(obj) is group_type else _PlainDataset(self, obj)

    def close(self) -> None:
        self._raw.close()


# -- h5py backend --------------------------------------------------------------------------------

def _decode(value: Any) -> Any:
    """An h5py attribute value as the plain backend gives it."""
    import numpy as np

    if isinstance(value, np.ndarray):
        if value.ndim == 0:
            return _decode(value[()])
        return [_decode(v) for v in value]
    if isinstance(value, bytes):  # np.bytes_ too
        return bytes(value)
    if isinstance(value, str):  # np.str_ too
        return str(value)
    if isinstance(value, np.void):
        return value.tobytes()
    if isinstance(value, np.generic):
        return value.item()
    if type(value).__name__ == "Empty":  # h5py.Empty: a null dataspace
        return None
    return value


#: How long libhdf5 may take to read every attribute of a file (see :func:`_attributes_of`).
ATTRIBUTE_SECONDS = 10.0


def _h5py_attrs(obj: Any, source: str | Path) -> dict[str, Any]:
    """The attributes of an h5py object, decoded; libhdf5's errors on a corrupted one (KeyError,
    RuntimeError, OSError...) become a one-line ReadError naming the object."""
    found = _read_attrs(obj)
    if isinstance(found, str):
        raise ReadError(source, f"the attributes of {obj.name!r} cannot be read ({found})")
    return found


def _read_attrs(obj: Any) -> "dict[str, Any] | str":
    """The decoded attributes of ``obj``, or the reason libhdf5 gave for not reading them."""
    try:
        return {key: _decode(value) for key, value in obj.attrs.items()}
    except (OSError, KeyError, RuntimeError, ValueError, TypeError) as exc:
        return str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__


def _attributes_of(h5: "h5py.File", root_only: bool, source: str | Path) -> dict[str, "dict[str, Any] | str"]:
    """Every object's attributes (object name → attributes, or why they cannot be read), read
    once per file in a child process bounded in time and memory: libhdf5 can spin forever or
    allocate gigabytes on a damaged variable-length attribute, which nothing in-process stops."""
    import h5py

    from .bounded import Exceeded, run_bounded

    def work() -> dict[str, "dict[str, Any] | str"]:
        out: dict[str, dict[str, Any] | str] = {"/": _read_attrs(h5)}
        if not root_only:
            names: list[str] = []
            try:
                h5py.h5o.visit(h5.id, lambda name: names.append(name.decode("utf-8", "replace")))
            except (OSError, KeyError, RuntimeError, ValueError, TypeError):
                pass  # the walk itself reports it; attributes of unlisted objects are read directly
            for name in names:
                if name != ".":
                    try:
                        out["/" + name] = _read_attrs(h5["/" + name])
                    except (OSError, KeyError, RuntimeError, ValueError, TypeError) as exc:
                        out["/" + name] = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        return out

    key = _identity(h5)
    cached = _VERDICTS.get(key) if key is not None else None
    if cached is not None and (cached[0] or root_only or isinstance(cached[1], str)):
        found = cached[1]  # detection opens a file several times: one bounded read serves all
    else:
        try:
            found = run_bounded(work, ATTRIBUTE_SECONDS)
        except Exceeded as exc:
            found = f"the HDF5 attributes cannot be read: libhdf5 {exc} (a damaged file)"
        if key is not None:
            _VERDICTS[key] = (not root_only, found)
    if isinstance(found, str):
        raise ReadError(source, found)
    return found


#: Results of :func:`_attributes_of` by file identity (see :func:`_identity`), this process's:
#: (whether every object's attributes were read, the result).
_VERDICTS: dict[tuple, "tuple[bool, dict[str, Any] | str]"] = {}


def _identity(h5: "h5py.File") -> tuple | None:
    """What tells one file's bytes from another's: device, inode, size, modification time
    (None for a file h5py reads through a Python object: a zip member, read once anyway)."""
    name = h5.filename
    if not isinstance(name, str) or not os.path.isfile(name):
        return None
    st = os.stat(name)
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _storage_dtype(dt: Any) -> str:
    if dt.kind in ("S", "U", "O"):
        return "string"
    if dt.kind == "V":
        return f"V{dt.itemsize}"
    return dt.name


class _H5pyGroup(Group):
    __slots__ = ("_file", "path", "_obj", "_attrs")

    def __init__(self, file: "_H5pyFile", path: str, obj: "h5py.Group | None" = None):
        self._file, self.path, self._obj, self._attrs = file, path, obj, None

    @property
    def obj(self) -> "h5py.Group":
        if self._obj is None:
            self._obj = self._file._h5[self.name]
        return self._obj

    @property
    def attrs(self) -> dict[str, Any]:
        if self._attrs is None:
            self._attrs = self._file.attrs_of(self.obj)
        return self._attrs

    @property
    def children(self) -> list[str]:
        return list(self.obj.keys())

    def _get(self, path: str) -> Group | Dataset | None:
        import h5py

        obj = self._file._h5.get("/" + path)
        if isinstance(obj, h5py.Group):
            return _H5pyGroup(self._file, path, obj)
        if isinstance(obj, h5py.Dataset):
            return _H5pyDataset(self._file, path, obj)
        return None  # absent, or a committed datatype


class _H5pyDataset(Dataset):
    __slots__ = ("_file", "path", "obj", "_attrs", "shape", "dtype", "nbytes", "offset")

    def __init__(self, file: "_H5pyFile", path: str, obj: "h5py.Dataset"):
        self._file, self.path, self.obj, self._attrs, self.offset = file, path, obj, None, None
        self.shape = tuple(int(d) for d in obj.shape) if obj.shape is not None else ()
        self.dtype = _storage_dtype(obj.dtype)
        n = obj.dtype.itemsize
        for d in self.shape:
            n *= d
        self.nbytes = n

    @property
    def attrs(self) -> dict[str, Any]:
        if self._attrs is None:
            self._attrs = self._file.attrs_of(self.obj)
        return self._attrs

    def weight(self, path: str, trainable: bool = True) -> Weight:
        from . import hdf5

        self._file.charge(self.obj)
        weight = hdf5.weight_from_dataset(self.obj, path, self._file.source, trainable)
        weight.loader = self._guarded(weight.loader)
        weight.streamer = (weight.loader, self._guarded_blocks())
        return weight

    def _guarded_blocks(self) -> Any:
        from . import hdf5

        obj, source, where = self.obj, self._file.source, self.name

        def blocks(max_bytes: int) -> Iterator[Any]:
            try:
                yield from hdf5.read_blocks(obj, source, max_bytes)
            except OSError as exc:  # a truncated or corrupted file fails only when data is read
                raise ReadError(source, f"dataset {where!r} cannot be read ({str(exc).splitlines()[0][:120]})") from None
        return blocks

    def _guarded(self, loader: Any) -> Any:
        source, where = self._file.source, self.name

        def load() -> Any:
            try:
                return loader()
            except OSError as exc:  # a truncated or corrupted file fails only when data is read
                raise ReadError(source, f"dataset {where!r} cannot be read ({str(exc).splitlines()[0][:120]})") from None
        return load

    def read_bytes(self) -> bytes:
        import numpy as np

        from . import hdf5

        hdf5.check_dataset(self.obj, self._file.source)
        self._file.charge(self.obj)
        if self.dtype == "string" and self.obj.dtype.kind != "S":
            raise ReadError(self._file.source, f"dataset {self.name!r} holds variable-length strings, not bytes")
        try:
            if self.obj.dtype.kind == "V":
                data = np.empty(self.shape, dtype=self.obj.dtype)
                if data.size:
                    self.obj.read_direct(data)
            else:
                data = np.asarray(self.obj[()])
        except OSError as exc:
            raise ReadError(self._file.source, f"dataset {self.name!r} cannot be read "
                                               f"({str(exc).splitlines()[0][:120]})") from None
        if data.dtype.byteorder == ">":
            data = data.astype(data.dtype.newbyteorder("<"))
        return np.ascontiguousarray(data).tobytes()


class _H5pyFile(_H5pyGroup, H5File):
    backend = "h5py"

    def __init__(self, h5: "h5py.File", window: "_Window | None", source: str | Path):
        super().__init__(self, "", h5)
        self._h5, self._window, self.source = h5, window, source
        self._charged: set[str] = set()  # datasets whose inflation is counted
        self._inflation, self._max_inflation = 0, None
        self._all_attrs: dict[str, Any] | None = None
        self.root_only = False

    def attrs_of(self, obj: Any) -> dict[str, Any]:
        """``obj``'s attributes, from the one bounded read of the whole file's (an object that
        read did not reach, through another link name, is read directly)."""
        if self._all_attrs is None:
            self._all_attrs = _attributes_of(self._h5, self.root_only, self.source)
        found = self._all_attrs.get(obj.name)
        if found is None:
            return _h5py_attrs(obj, self.source)
        if isinstance(found, str):
            raise ReadError(self.source, f"the attributes of {obj.name!r} cannot be read ({found})")
        return found

    def charge(self, ds: "h5py.Dataset") -> None:
        """Count what a compressed dataset expands to (once each) against the file's limit
        (``hdf5.max_inflate``), before any of it is read."""
        from . import hdf5

        if ds.name in self._charged:
            return
        self._charged.add(ds.name)
        if self._max_inflation is None:
            self._max_inflation = hdf5.max_inflate()
        self._inflation += hdf5.inflation(ds)
        if self._inflation > self._max_inflation:
            raise ReadError(self.source, f"compressed datasets expand to {self._inflation} bytes more than they "
                                         f"store (at {ds.name!r}), beyond the {self._max_inflation} modelmorph "
                                         f"allows ({hdf5.INFLATE_ENV} raises it)")

    @classmethod
    def open(cls, path: str | Path, start: int, size: int | None, source: str | Path, what: str | None,
             root_only: bool) -> "_H5pyFile":
        import h5py

        refuse_special(path)  # libhdf5 opens the path itself: a named pipe would block it
        window = _Window(path, start, size) if start or size is not None else None
        try:
            # locking=False: reading must work on read-only media and beside other readers.
            h5 = h5py.File(window if window is not None else path, "r", locking=False)
        except OSError as exc:
            if window is not None:
                window.close()
            if isinstance(exc, FileNotFoundError):
                raise ReadError(source, "no such file") from None
            prefix = f"{what} is " if what else ""
            text = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise ReadError(source, f"{prefix}not a readable HDF5 file ({text})") from None
        file = cls(h5, window, source)
        file.root_only = root_only
        if not root_only:
            from . import hdf5

            try:
                hdf5.check_links(h5, source)  # the whole file, once: the walk follows hard links only
            except BaseException:
                file.close()
                raise
        return file

    def walk(self) -> Iterator[Group | Dataset]:
        import h5py

        found: list[tuple[str, int]] = []
        # One traversal inside HDF5, name order; each object once however many hard links reach it.
        h5py.h5o.visit(self._h5.id, lambda name, info: found.append((name.decode("utf-8", "replace"), info.type)),
                       info=True)
        for path, kind in found:
            if path == ".":
                continue
            if kind == h5py.h5o.TYPE_GROUP:
                yield _H5pyGroup(self, path)
            elif kind == h5py.h5o.TYPE_DATASET:
                yield _H5pyDataset(self, path, self._h5["/" + path])

    def close(self) -> None:
        # The HDF5 file first: it reads through the window.
        self._h5.close()
        if self._window is not None:
            self._window.close()


class _Window(io.RawIOBase):
    """Bytes ``[start, start + size)`` of a file, read-only and seekable: how h5py reads a
    stored zip member in place, with a file handle of its own."""

    def __init__(self, path: str | Path, start: int, size: int | None):
        super().__init__()
        self.file = open_input(path, buffering=0)
        end = os.fstat(self.file.fileno()).st_size
        self.start = start
        self.size = max(0, end - start) if size is None else size
        self.pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        n = max(0, min(len(view), self.size - self.pos))
        if n == 0:
            return 0
        self.file.seek(self.start + self.pos)
        got = self.file.readinto(view[:n]) or 0
        self.pos += got
        return got

    def close(self) -> None:
        self.file.close()
        super().close()
