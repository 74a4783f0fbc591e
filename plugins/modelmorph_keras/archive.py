"""``.keras`` archives: the zip ``model.save`` writes and the folder ``save_model(zipped=False)``
writes, holding ``metadata.json``, ``config.json``, ``model.weights.h5`` and ``assets/``.

The archive is untrusted: member names must stay inside it, declared sizes are checked
before anything is read, JSON is bounded, and the weights are read in place (a stored member
is a window on the archive file, opened through ``modelmorph.storage.h5file``; only the tensors
asked for are read). Their CRC is a check left to ``Model.verify()``: ``info`` reads no tensor
byte, a conversion checks it while the writer copies (a writer that checksums the tensors it
copies does that part of the check: ``ByteRange.claim_crc32``), before the output is kept.
:mod:`.archive_writer` writes archives.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import functools
import os
import shutil
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO

from modelmorph import Asset, Diagnostics, Model, ReadError, Weight
from modelmorph.keras import kerasconfig
from modelmorph.storage import h5file, safety
from modelmorph.storage.filecopy import SharedCrc32
from modelmorph.storage.safety import inside, open_input, parse_json, read_json_file, refuse_special, safe_member_path

from . import ASSETS, CONFIG, METADATA, WEIGHTS, WEIGHTS_NPZ
from .h5store import VarsStore
from .mapping import attach

#: A deflated member larger than this may expand at most MAX_EXPANSION times (Keras' own rule).
BOMB_FLOOR = 1 << 28
MAX_EXPANSION = 100
#: Most members (files and folders) a .keras archive, or files an unzipped one's assets/, may
#: hold: Keras writes three and one or a few per asset-bearing layer. Listed, each costs ~1 KB
#: (zipfile's record, ours): a 60 MB archive of a million empty members took 1.3 GB and 12 s.
MAX_MEMBERS = 10_000
_CHUNK = 1 << 20
_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature ... file name length, extra field length


# -- reading ---------------------------------------------------------------------------------
def read(path: Path, *, options: dict, diagnostics: Diagnostics, arch: Model | None = None) -> Model:
    if arch is not None:
        diagnostics.add("unsupported", "--arch is ignored: a .keras archive holds an architecture of its own")
    archive = FolderArchive(path) if path.is_dir() else ZipArchive(path)
    try:
        model, dialect = architecture(archive.read_json(CONFIG, "config.json"), path, diagnostics)
        metadata = archive.read_json(METADATA, "metadata.json", required=False)
        if isinstance(metadata, dict):
            model.metadata.update({k: v for k, v in metadata.items() if isinstance(v, str)})
        model.metadata["dialect"] = dialect
        store = VarsStore(path)
        archive.scan_weights(store)
        attach(model, store, diagnostics, strict=False, keras2=dialect == "keras2")
        model.assets = archive.assets()
    except ReadError:
        archive.explain_failure()  # corrupted weights are reported as such, not by what broke
        archive.close()
        raise
    except BaseException:
        archive.close()
        raise
    model.on_close(archive.close)
    archive.add_checks(model)  # the CRCs are left to model.verify(): `info` reads no tensor byte
    return model


def architecture(data: Any, source: Path, diagnostics: Diagnostics) -> tuple[Model, str]:
    """The IR of an archive's ``config.json``, Keras 2 (tf_keras) configs translated."""
    if not isinstance(data, dict) or "class_name" not in data or "config" not in data:
        raise ReadError(source, "config.json is not a Keras model config (no 'class_name' and 'config')")
    try:
        model = kerasconfig.read_model_config(data, diagnostics)
    except (kerasconfig.ConfigError, ValueError, TypeError, KeyError) as exc:
        raise ReadError(source, f"invalid Keras architecture in config.json: {exc}") from None
    return model, model.metadata["dialect"]


class ZipArchive:
    """A ``.keras`` zip, checked member by member when opened."""

    def __init__(self, path: Path):
        self.path = path
        self.h5: h5file.H5File | None = None
        self.crc: SharedCrc32 | None = None
        self.checked: set[str] = set()  # members whose CRC zipfile checked (read to their end)
        self.pieces: list[tuple[int, int]] = []  # the stored weights' tensors: (offset, nbytes)
        try:
            self.raw = open_input(path)
        except OSError as exc:
            raise ReadError(path, exc.strerror or _first_line(exc)) from None
        try:
            _count_members(self.raw, path)
            self.zip = zipfile.ZipFile(self.raw)
            self.members = self._check_members()
        except BaseException as exc:
            self.raw.close()
            if isinstance(exc, (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError)):
                raise ReadError(path, f"not a readable .keras zip archive ({_first_line(exc)})") from None
            raise

    def _check_members(self) -> dict[str, zipfile.ZipInfo]:  # at most MAX_MEMBERS (_count_members)
        members: dict[str, zipfile.ZipInfo] = {}
        for info in self.zip.infolist():
            safe_member_path(info.filename.rstrip("/") if info.is_dir() else info.filename, self.path)
            if info.filename in members:
                raise ReadError(self.path, f"member {info.filename!r} appears twice")
            if info.flag_bits & 0x1:
                raise ReadError(self.path, f"member {info.filename!r} is encrypted")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise ReadError(self.path, f"member {info.filename!r} uses compression method {info.compress_type}, "
                                           "which Keras never writes")
            if info.file_size > BOMB_FLOOR and info.file_size > MAX_EXPANSION * info.compress_size:
                raise ReadError(self.path, f"member {info.filename!r} declares {info.file_size} bytes but stores "
                                           f"{info.compress_size}: a decompression bomb; refused")
            members[info.filename] = info
        return members

    def read_json(self, name: str, what: str, required: bool = True) -> Any:
        info = self.members.get(name)
        if info is None:
            if required:
                raise ReadError(self.path, f"the archive has no {name}")
            return None
        limit = safety.MAX_JSON_BYTES
        if info.file_size > limit:
            raise ReadError(self.path, f"{what} declares {info.file_size} bytes, more than the {limit} modelmorph accepts")
        return parse_json(self._read(info, limit + 1), self.path, what)

    def _read(self, info: zipfile.ZipInfo, limit: int = -1) -> bytes:
        try:
            with self.zip.open(info) as member:
                return member.read(limit)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            raise ReadError(self.path, f"member {info.filename!r} is corrupt ({_first_line(exc)})") from None

    def add_checks(self, model: Model) -> None:
        """The CRC-32 of a stored ``model.weights.h5`` (read in place, so nothing else checks
        it) and of each asset (read only when written), as the model's deferred checks."""
        info = self.members.get(WEIGHTS)
        if info is not None and info.compress_type == zipfile.ZIP_STORED:
            self._lend_crcs(model)
            model.add_check(f"CRC-32 of {WEIGHTS}", self.finish_check, start=self.start_check)
        assets = [i for name, i in self.members.items() if name.startswith(ASSETS + "/") and not i.is_dir()]
        if assets:
            model.add_check(f"CRC-32 of {len(assets)} asset(s)", lambda: self._check_assets(assets))

    def _lend_crcs(self, model: Model) -> None:
        """Let a writer that copies a tensor read in place checksum it for the member's check
        (``claim_crc32``), and give the CRC-32 of each tensor the check computed itself
        (``crc32``): either way one CRC pass per byte."""
        weights = [w for _, _, w in model.iter_weights()]
        if model.optimizer is not None:
            weights += model.optimizer.variables + [slot.weight for slot in model.optimizer.slots]
        name = os.fspath(self.path)
        for weight in weights:
            raw = weight.raw
            if raw is not None and raw.crc32 is None and getattr(raw.file, "name", None) == name:
                self.pieces.append((raw.offset, raw.nbytes))
                weight.raw = dataclasses.replace(raw, crc32=functools.partial(self._range_crc32, raw.offset, raw.nbytes),
                                                 claim_crc32=functools.partial(self._claim, raw.offset, raw.nbytes))
            self._start_on_read(weight)

    def _start_on_read(self, weight: Weight) -> None:
        """A writer that decodes tensors (rather than copying them) claims no check: the
        member's check starts in the background at the first tensor it reads."""
        loader, streamer = weight.loader, weight.streamer
        if loader is None:
            return

        def load():
            self.start_check()
            return loader()

        weight.loader = load
        if streamer is not None and streamer[0] is loader:
            stream = streamer[1]

            def pieces(max_bytes: int):
                self.start_check()
                return stream(max_bytes)

            weight.streamer = (load, pieces)

    def _range_crc32(self, offset: int, nbytes: int) -> int | None:
        self.start_check()
        return self.crc.piece_crc32(offset, nbytes)

    def _claim(self, offset: int, nbytes: int):
        self._make_check()
        return self.crc.claim(offset, nbytes)

    def explain_failure(self) -> None:
        """Raise the CRC mismatch of the stored weights, if there is one (a failed read of a
        corrupted member is best reported as the corruption)."""
        info = self.members.get(WEIGHTS)
        if info is None or info.compress_type != zipfile.ZIP_STORED:
            return
        try:
            self._make_check()
        except ReadError:
            return  # the entry itself is broken: the error raised already says so
        self.finish_check()

    def start_check(self) -> None:
        """Start checking the CRC of the stored weights in a thread; :meth:`finish_check` gives the verdict."""
        self._make_check()
        self.crc.start()

    def _make_check(self) -> None:
        if self.crc is None:
            info = self.members[WEIGHTS]
            start = self._data_start(info)
            self.crc = SharedCrc32(self.raw, start, start + info.file_size, self.pieces)

    def finish_check(self) -> None:
        self._make_check()  # what no thread or writer has checked is read now
        try:
            crc = self.crc.result()
        except EOFError:
            crc = None
        if crc != self.members[WEIGHTS].CRC:
            raise ReadError(self.path, f"{WEIGHTS} is corrupt (CRC-32 mismatch)")

    def _check_assets(self, infos: list[zipfile.ZipInfo]) -> None:
        # zipfile checks the CRC when a member has been read to its end; chunks bound the memory.
        for info in infos:
            if info.filename in self.checked:
                continue  # streamed to its end already (written to the output)
            try:
                with self.zip.open(info) as member:
                    while member.read(_CHUNK):
                        pass
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
                raise ReadError(self.path, f"member {info.filename!r} is corrupt ({_first_line(exc)})") from None

    def scan_weights(self, store: VarsStore) -> None:
        info = self.members.get(WEIGHTS)
        if info is None:
            raise ReadError(self.path, _no_weights(WEIGHTS_NPZ in self.members))
        if info.compress_type != zipfile.ZIP_STORED:
            self.h5 = self._extract_weights(info)
        else:  # read in place: the member's bytes are a window on the archive
            self.h5 = h5file.open(self.path, start=self._data_start(info), size=info.file_size, what=WEIGHTS)
        store.scan(self.h5)

    def _data_start(self, info: zipfile.ZipInfo) -> int:
        size = os.fstat(self.raw.fileno()).st_size
        if not 0 <= info.header_offset < size:  # a seek there fails with EINVAL, or reads nothing
            raise ReadError(self.path, f"the zip entry of {info.filename!r} lies outside the archive")
        self.raw.seek(info.header_offset)
        header = self.raw.read(_LOCAL_HEADER.size)
        if len(header) < _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
            raise ReadError(self.path, f"the zip entry of {info.filename!r} is corrupt")
        _, name_length, extra_length = _LOCAL_HEADER.unpack(header)
        start = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
        if info.file_size != info.compress_size or start + info.file_size > os.fstat(self.raw.fileno()).st_size:
            raise ReadError(self.path, f"{info.filename} is truncated")
        return start

    def _extract_weights(self, info: zipfile.ZipInfo) -> h5file.H5File:
        # A deflated member (an archive re-zipped by hand) cannot be read in place: copy it out,
        # bounded by its declared size (zipfile stops there and checks the CRC).
        import tempfile

        tmp = tempfile.NamedTemporaryFile(prefix="modelmorph-", suffix=".weights.h5", delete=False)
        try:
            with tmp, self.zip.open(info) as member:
                shutil.copyfileobj(member, tmp, _CHUNK)
            return h5file.open(tmp.name, source=self.path, what=WEIGHTS)
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise ReadError(self.path, f"{WEIGHTS} is corrupt ({_first_line(exc)})") from None
        finally:
            # An open file keeps its data once unlinked (POSIX); elsewhere the unlink fails harmlessly.
            with contextlib.suppress(OSError):
                os.unlink(tmp.name)

    def assets(self) -> list[Asset]:
        return [Asset(name, info.file_size, loader=lambda info=info: self._read(info),
                      opener=lambda info=info: _MemberStream(self, info))
                for name, info in self.members.items() if name.startswith(ASSETS + "/") and not info.is_dir()]

    def close(self) -> None:
        if self.crc is not None:
            self.crc.stop()  # the thread reads the archive: let it stop first
        for resource in (self.h5, self.zip, self.raw):
            if resource is not None:
                resource.close()


class _MemberStream(io.RawIOBase):
    """A member of the archive read as a stream; zipfile checks its CRC at the end, and any
    problem is a read error naming the archive (not the file being written)."""

    def __init__(self, archive: ZipArchive, info: zipfile.ZipInfo):
        super().__init__()
        self.archive, self.info = archive, info
        self.member = self._guard(lambda: archive.zip.open(info))

    def _guard(self, work):
        try:
            return work()
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            raise ReadError(self.archive.path, f"member {self.info.filename!r} is corrupt ({_first_line(exc)})") from None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._guard(lambda: self.member.read(len(buffer)))
        buffer[:len(data)] = data
        if not data and len(buffer):  # read to its end: zipfile has checked the CRC
            self.archive.checked.add(self.info.filename)
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self.member.close()
        super().close()


class FolderArchive:
    """The unzipped variant: the same members as files in a folder (no symlink may leave it)."""

    def __init__(self, path: Path):
        self.path = path
        self.h5: h5file.H5File | None = None

    def add_checks(self, model: Model) -> None:
        pass  # a folder's files carry no checksum

    def explain_failure(self) -> None:
        pass

    def read_json(self, name: str, what: str, required: bool = True) -> Any:
        if not (self.path / name).exists():
            if required:
                raise ReadError(self.path, f"the folder has no {name}")
            return None
        return read_json_file(inside(self.path, name, self.path), what)

    def scan_weights(self, store: VarsStore) -> None:
        if not (self.path / WEIGHTS).exists():
            raise ReadError(self.path, _no_weights((self.path / WEIGHTS_NPZ).exists()))
        self.h5 = h5file.open(inside(self.path, WEIGHTS, self.path))
        store.scan(self.h5)

    def assets(self) -> list[Asset]:
        out = []
        top = self.path / ASSETS
        if top.is_symlink():  # refused before anything behind it is listed
            raise ReadError(self.path, f"{ASSETS}/ is a symbolic link; refused")
        for folder, dirs, files in os.walk(top):
            links = [d for d in dirs if (Path(folder) / d).is_symlink()]
            if links:
                rel = (Path(folder) / links[0]).relative_to(self.path).as_posix()
                raise ReadError(self.path, f"{rel}/ is a symbolic link; refused")
            if len(out) + len(files) > MAX_MEMBERS:
                raise ReadError(self.path, f"{ASSETS}/ holds more than {MAX_MEMBERS} files (a model has a few): refused")
            for file in sorted(files):
                rel = (Path(folder) / file).relative_to(self.path).as_posix()
                target = inside(self.path, rel, self.path)
                refuse_special(target)  # a named pipe among the assets would block their copy
                out.append(Asset(rel, target.stat().st_size, loader=lambda target=target: _read_all(target),
                                 opener=lambda target=target: open_input(target)))
        return sorted(out, key=lambda a: a.path)

    def close(self) -> None:
        if self.h5 is not None:
            self.h5.close()


def _no_weights(has_npz: bool) -> str:
    if has_npz:
        return f"the archive keeps its weights as {WEIGHTS_NPZ} (weights_format='npz'), which modelmorph does not read"
    return f"the archive has no {WEIGHTS}"


def _count_members(raw: BinaryIO, path: Path) -> None:
    """Refuse an archive of more than MAX_MEMBERS members before zipfile lists them all: the
    central directory zipfile is about to read (found as zipfile finds it: ``_EndRecData`` is
    private, but the function zipfile itself uses) is scanned 1 MiB at a time for the signature
    that begins each entry. That count is an upper bound (a name holding the 4-byte signature
    counts twice; no real one does), and it is made before anything grows with it."""
    end = zipfile._EndRecData(raw)
    if end is None:
        return  # no end record: zipfile says the file is no zip
    size = end[zipfile._ECD_SIZE]
    start = end[zipfile._ECD_LOCATION] - size
    if end[zipfile._ECD_SIGNATURE] == zipfile.stringEndArchive64:
        start -= zipfile.sizeEndCentDir64 + zipfile.sizeEndCentDir64Locator
    if start < 0:
        return  # zipfile refuses it
    signature, count, tail, done = b"PK\x01\x02", 0, b"", 0
    raw.seek(start)
    while done < size:
        chunk = raw.read(min(_CHUNK, size - done))
        if not chunk:
            break
        window = tail + chunk
        count += window.count(signature)
        tail, done = window[-(len(signature) - 1):], done + len(chunk)  # a signature cut in two is counted once
        if count > MAX_MEMBERS:
            raise ReadError(path, f"the archive holds more than {MAX_MEMBERS} members (a .keras holds a few): refused")


def _read_all(path: Path) -> bytes:
    with open_input(path) as f:
        return f.read()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]
