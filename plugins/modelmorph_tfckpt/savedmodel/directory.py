"""The files of a SavedModel directory, read as data.

Every file is opened only after its real path (symbolic links resolved) is found inside the
directory, and only after its size is checked against a limit; ``keras_metadata.pb`` is read
from its wire format (:mod:`modelmorph.storage.protowire`: protobuf is not imported). ``saved_model.pb`` is never
parsed: :func:`graph_summary` walks its protobuf wire format by hand, reads the few bytes of
each meta graph's tags and signature names, and seeks over everything else (the graph, the
functions, the object graph) without reading it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, NamedTuple

from modelmorph import ReadError
from modelmorph.storage import protowire as wire
from modelmorph.storage.safety import open_input

from . import ASSETS, KERAS_METADATA, SAVED_MODEL

#: keras_metadata.pb holds one JSON document per Keras object; MobileNetV2 needs 360 KB,
#: ResNet50 ~1 MB. Anything beyond this is refused before it is read.
MAX_METADATA_BYTES = 256 * 1024 * 1024
#: A vocabulary (or any asset) read into memory to be inlined into a layer's config.
MAX_VOCABULARY_BYTES = 64 * 1024 * 1024
#: Assets listed from assets/ (a hostile directory cannot make reading slow).
MAX_ASSETS = 10_000
#: Meta-graph headers read from saved_model.pb (tags, signature names: a few bytes each).
MAX_HEADER_BYTES = 16 * 1024 * 1024


class Directory:
    """A SavedModel directory whose files must all stay inside it."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.real = Path(os.path.realpath(path))
        except OSError as exc:
            raise ReadError(path, f"cannot resolve the directory: {exc.strerror or exc}") from None

    def error(self, problem: str, where: Path | None = None) -> ReadError:
        return ReadError(where or self.path, problem)

    def inside(self, relative: str) -> Path:
        """``relative`` inside the directory, refused when it (or a link on the way) leads out."""
        candidate = self.path / relative
        real = Path(os.path.realpath(candidate))
        if real != self.real and self.real not in real.parents:
            raise self.error(f"{relative} leads outside the SavedModel directory (to {real}); refused", candidate)
        return candidate

    def exists(self, relative: str) -> bool:
        candidate = self.path / relative
        return candidate.exists() or candidate.is_symlink()

    def read_bytes(self, relative: str, limit: int, what: str) -> bytes:
        path = self.inside(relative)
        try:
            with open_input(path) as f:
                size = os.fstat(f.fileno()).st_size
                if size > limit:
                    raise self.error(f"{what} is {size} bytes, more than the {limit} this reader accepts", path)
                data = f.read(limit + 1)
        except FileNotFoundError:
            raise self.error(f"missing {what}", path) from None
        except IsADirectoryError:
            raise self.error(f"{what} is a directory, not a file", path) from None
        except OSError as exc:
            raise self.error(f"cannot read {what}: {exc.strerror or exc}", path) from None
        if len(data) > limit:
            raise self.error(f"{what} grew past {limit} bytes while being read", path)
        return data

    def keras_metadata(self) -> "SavedMetadata | None":
        """The parsed ``keras_metadata.pb``, or None when there is none."""
        if not self.exists(KERAS_METADATA):
            return None
        data = self.read_bytes(KERAS_METADATA, MAX_METADATA_BYTES, KERAS_METADATA)
        try:
            return SavedMetadata.parse(data)
        except wire.WireError as exc:
            raise self.error(f"malformed {KERAS_METADATA}: {exc}", self.path / KERAS_METADATA) from None

    def assets(self) -> list[tuple[str, Path, int]]:
        """Every file under ``assets/``: (path relative to the directory, file, size). Links
        leading out of the directory are refused; nothing is read."""
        if not self.exists(ASSETS):
            return []
        top = self.inside(ASSETS)
        if not top.is_dir():
            raise self.error(f"{ASSETS} is not a directory", top)
        out = []
        for folder, dirs, files in os.walk(top, followlinks=False):
            for name in sorted(dirs):
                if (Path(folder) / name).is_symlink():  # os.walk does not enter it: check where it leads
                    self.inside(str((Path(folder) / name).relative_to(self.path)))
            dirs.sort()
            for name in sorted(files):
                rel = str((Path(folder) / name).relative_to(self.path)).replace(os.sep, "/")
                path = self.inside(rel)
                if not path.is_file():
                    raise self.error(f"{rel} is not a regular file", path)
                out.append((rel, path, path.stat().st_size))
                if len(out) > MAX_ASSETS:
                    raise self.error(f"more than {MAX_ASSETS} files under {ASSETS}/")
        return out


# -- keras_metadata.pb -------------------------------------------------------------------------
class SavedObject(NamedTuple):
    """One Keras object of ``keras_metadata.pb`` (``SavedObject``: node_id = 2, node_path = 3,
    identifier = 4, metadata = 5, the object's JSON)."""

    node_id: int
    node_path: str
    identifier: str
    metadata: str


@dataclass
class SavedMetadata:
    """``keras_metadata.pb`` (``SavedMetadata``: repeated nodes = 1), read from its wire format
    (:mod:`modelmorph.storage.protowire`): protobuf is never imported for it."""

    nodes: list[SavedObject] = field(default_factory=list)

    @classmethod
    def parse(cls, data: bytes) -> "SavedMetadata":
        return cls([SavedObject(wire.int32(n, 2), wire.text(n, 3), wire.text(n, 4), wire.text(n, 5))
                    for n in wire.messages(wire.parse(data), 1)])


# -- saved_model.pb: tags and signature names only -------------------------------------------
@dataclass
class MetaGraphHeader:
    tags: list[str] = field(default_factory=list)
    signatures: list[str] = field(default_factory=list)
    tensorflow_version: str = ""


def graph_summary(directory: Directory) -> list[MetaGraphHeader]:
    """The tags, signature names and TensorFlow version of each meta graph in
    ``saved_model.pb`` (``SavedModel.meta_graphs`` = field 2; in a ``MetaGraphDef``,
    ``meta_info_def`` = 1 with ``tags`` = 4 and ``tensorflow_version`` = 5, and the map
    ``signature_def`` = 5 whose entries' keys are field 1). Everything else is skipped by
    seeking: the graph is never read."""
    path = directory.inside(SAVED_MODEL)
    try:
        with open_input(path) as f:
            size = os.fstat(f.fileno()).st_size
            reader = _Wire(f, size, path, directory)
            headers = []
            budget = [MAX_HEADER_BYTES]
            for number, kind, length in reader.fields(0, size):
                if number == 2 and kind == 2:
                    headers.append(_meta_graph(reader, reader.tell(), reader.tell() + length, budget))
            return headers
    except OSError as exc:
        raise directory.error(f"cannot read {SAVED_MODEL}: {exc.strerror or exc}", path) from None


def _meta_graph(reader: "_Wire", start: int, end: int, budget: list[int]) -> MetaGraphHeader:
    header = MetaGraphHeader()
    for number, kind, length in reader.fields(start, end):
        if kind == 2 and number in (1, 5):
            data = reader.take(length, budget)
            if number == 1:
                for n, k, value in _fields_of(data, reader):
                    if n == 4 and k == 2:
                        header.tags.append(reader.text(value))
                    elif n == 5 and k == 2:
                        header.tensorflow_version = reader.text(value)
            else:
                for n, k, value in _fields_of(data, reader):
                    if n == 1 and k == 2:
                        header.signatures.append(reader.text(value))
    return header


def _fields_of(data: bytes, reader: "_Wire"):
    """(field number, wire type, value) of a small message held in memory; length-delimited
    values are bytes, the others are skipped."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos, reader)
        number, kind = key >> 3, key & 7
        if kind == 0:
            _, pos = _varint(data, pos, reader)
        elif kind == 1:
            pos += 8
        elif kind == 5:
            pos += 4
        elif kind == 2:
            length, pos = _varint(data, pos, reader)
            if pos + length > len(data):
                raise reader.malformed("a field runs past the end of its message")
            yield number, kind, data[pos:pos + length]
            pos += length
        else:
            raise reader.malformed(f"unsupported wire type {kind}")
        if pos > len(data):
            raise reader.malformed("a field runs past the end of its message")


def _varint(data: bytes, pos: int, reader: "_Wire") -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise reader.malformed("truncated or overlong varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


class _Wire:
    """Protobuf wire format over a file, by seeking: fields are listed, values read on demand."""

    def __init__(self, f: BinaryIO, size: int, path: Path, directory: Directory):
        self.f, self.size, self.path, self.directory = f, size, path, directory

    def malformed(self, problem: str) -> ReadError:
        return self.directory.error(f"malformed {SAVED_MODEL}: {problem}", self.path)

    def tell(self) -> int:
        return self.f.tell()

    def fields(self, start: int, end: int):
        """(number, wire type, length) of each field between ``start`` and ``end``; the file
        is left at the field's value, which the caller may read; the next field is found by
        seeking past it, whatever the caller did."""
        if end > self.size:
            raise self.malformed("a message runs past the end of the file")
        pos = start
        while pos < end:
            self.f.seek(pos)
            key = self._read_varint()
            number, kind = key >> 3, key & 7
            if kind == 2:
                length = self._read_varint()
            elif kind == 0:
                length = 0
            elif kind in (1, 5):
                length = 8 if kind == 1 else 4
            else:
                raise self.malformed(f"unsupported wire type {kind}")
            value_start = self.f.tell()
            if value_start + length > end:
                raise self.malformed("a field runs past the end of its message")
            yield number, kind, length
            pos = value_start + length if kind != 0 else self.f.tell()
            if kind == 0:  # the varint value itself
                self.f.seek(value_start)
                self._read_varint()
                pos = self.f.tell()

    def take(self, length: int, budget: list[int]) -> bytes:
        budget[0] -= length
        if budget[0] < 0:
            raise self.malformed(f"meta-graph headers larger than {MAX_HEADER_BYTES} bytes")
        data = self.f.read(length)
        if len(data) != length:
            raise self.malformed("truncated")
        return data

    def text(self, value: bytes) -> str:
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise self.malformed("a tag or signature name is not UTF-8") from None

    def _read_varint(self) -> int:
        value = shift = 0
        while True:
            byte = self.f.read(1)
            if not byte or shift > 63:
                raise self.malformed("truncated or overlong varint")
            value |= (byte[0] & 0x7F) << shift
            shift += 7
            if not byte[0] & 0x80:
                return value
