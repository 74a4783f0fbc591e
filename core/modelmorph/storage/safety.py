"""Treating files as data: bounded JSON parsing, paths that stay inside a folder, regular files
only, atomic output.

Shared by every format plugin so that each one gets the same guarantees.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Iterable, Iterator

from ..errors import ReadError, WriteError

#: Largest JSON document (architecture, metadata, shard index) modelmorph will parse. The
#: largest real Keras configs (hundreds of layers, inline vocabularies) are a few MB: 32 MiB
#: leaves room, and bounds what a decompression bomb in config.json can cost.
MAX_JSON_BYTES = 32 * 1024 * 1024
#: Most values (arrays, objects, numbers, strings...) in a JSON document, counted before parsing
#: from its commas and brackets (an upper bound). ResNet50's config has ~20,000; two million
#: parsed empty objects already take ~150 MB, so `[{},{},...]` cannot cost more than that.
MAX_JSON_NODES = 2_000_000
#: Deepest nesting accepted in a JSON document; real Keras configs stay far below.
MAX_JSON_DEPTH = 128


def parse_json(data: bytes | str, source: str | Path, what: str = "JSON") -> Any:
    """Parse JSON from an untrusted file: size, value count and depth bounded, one-line errors."""
    if len(data) > MAX_JSON_BYTES:
        raise ReadError(source, f"{what} is {len(data)} bytes, more than the {MAX_JSON_BYTES} modelmorph accepts")
    # Every value but the last of each array or object is followed by a comma, so this bounds
    # the number of values (strings holding commas only make it larger): checked in C, before
    # json builds anything, it keeps parsing time and memory in proportion to a real config.
    marks = (b",", b"[", b"{") if isinstance(data, bytes) else (",", "[", "{")
    nodes = sum(data.count(mark) for mark in marks)
    if nodes > MAX_JSON_NODES:
        raise ReadError(source, f"{what} holds about {nodes} values, more than the {MAX_JSON_NODES} "
                                "modelmorph accepts")
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ReadError(source, f"{what} is not UTF-8 text (byte {exc.start})") from None
    try:
        value = json.loads(data)
    except json.JSONDecodeError as exc:
        raise ReadError(source, f"{what} is malformed: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise ReadError(source, f"{what} is nested more than {MAX_JSON_DEPTH} levels deep") from None
    if isinstance(value, (dict, list)):
        _check_depth(value, source, what)
    return value


def _check_depth(value: Any, source: str | Path, what: str) -> None:
    # json.loads itself stops at Python's recursion limit; the code that walks a config later
    # is recursive too, so nesting is bounded well below that (iteratively: no recursion here,
    # one level of containers at a time, so that no tuple is made per value). json.loads makes
    # plain dicts and lists only: exact type tests, in a plain loop, take a third of the time
    # of isinstance in a comprehension (2 ms of a ResNet50 SavedModel's metadata, measured).
    level, depth = [value], 1
    while level:
        if depth > MAX_JSON_DEPTH:
            raise ReadError(source, f"{what} is nested more than {MAX_JSON_DEPTH} levels deep")
        below: list[Any] = []
        for item in level:
            for child in (item.values() if type(item) is dict else item):
                if type(child) is dict or type(child) is list:
                    below.append(child)
        level, depth = below, depth + 1


def read_json_file(path: str | Path, what: str = "JSON") -> Any:
    try:
        with open_input(path) as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_JSON_BYTES:
                raise ReadError(path, f"{what} is {size} bytes, more than the {MAX_JSON_BYTES} modelmorph accepts")
            data = f.read(MAX_JSON_BYTES + 1)  # bounded even if the file grows meanwhile (parse_json refuses more)
    except OSError as exc:
        raise ReadError(path, exc.strerror or str(exc)) from None
    return parse_json(data, path, what)


# -- regular files only ------------------------------------------------------------------------
#: What a path that is neither a regular file nor a folder is, for the error message.
_SPECIAL = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
            (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # POSIX; Windows has no named pipes in the file system


def _not_regular(path: str | Path, mode: int) -> ReadError:
    kind = next((kind for test, kind in _SPECIAL if test(mode)), "something else")
    return ReadError(path, f"not a regular file but {kind}; modelmorph reads model files and folders only")


def refuse_special(path: str | Path) -> None:
    """Raise :class:`ReadError` if ``path`` exists but is neither a regular file nor a folder
    (symbolic links followed). Opening a named pipe for reading waits for a writer, and reading
    a device may never end: a model file from a stranger, or a tree ``migrate`` walks, must not
    hang the program. For paths given to a library that opens them itself; modelmorph's own
    opens use :func:`open_input`, which also closes the gap between the test and the open."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return  # missing or unreadable: whoever opens it reports that
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise _not_regular(path, mode)


def open_input(path: str | Path, buffering: int = -1) -> BinaryIO:
    """``open(path, "rb")`` for a file a model is read from, refusing (:class:`ReadError`)
    anything but a regular file: the open itself never waits (``O_NONBLOCK``, so that a named
    pipe without a writer is opened at once and then refused), and the test is made on what was
    opened, not on the name. Other failures raise ``OSError`` as ``open`` does."""

    def opener(name: str, flags: int) -> int:
        fd = os.open(name, flags | _NONBLOCK)
        try:
            mode = os.fstat(fd).st_mode
            if stat.S_ISDIR(mode):
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), name)
            if not stat.S_ISREG(mode):
                raise _not_regular(path, mode)
            if _NONBLOCK:
                os.set_blocking(fd, True)  # reads of a regular file ignore it; cleared all the same
            return fd
        except BaseException:
            os.close(fd)
            raise

    return open(path, "rb", buffering=buffering, opener=opener)


def safe_member_path(name: str, source: str | Path) -> PurePosixPath:
    """A relative path from an archive or index that must stay inside its container."""
    if "\\" in name or "\x00" in name:
        raise ReadError(source, f"member name {name!r} is not a plain relative path")
    p = PurePosixPath(name)
    if p.is_absolute() or any(part in ("..", "") for part in p.parts) or not p.parts:
        raise ReadError(source, f"member name {name!r} climbs out of its folder")
    return p


def inside(folder: Path, relative: str, source: str | Path) -> Path:
    """``folder / relative``, refusing anything that resolves outside ``folder``."""
    safe_member_path(relative, source)
    loop = ReadError(source, f"{relative!r} is a loop of symbolic links")
    try:
        target = (folder / relative).resolve()
    except RuntimeError:  # how resolve() reports a loop before Python 3.13
        raise loop from None
    if target.is_symlink():  # resolved as far as it goes and still a link: a loop (3.13 on)
        raise loop
    if not target.is_relative_to(folder.resolve()):
        raise ReadError(source, f"{relative!r} points outside {folder}")
    return target


def check_destination(destination: str | Path, force: bool = False) -> Path:
    """Raise the WriteError :func:`atomic_output` would raise at once (no folder to write in,
    an existing file without ``force``); returns the folder. A conversion asks first, so that
    a long read is not wasted on an output it may not write."""
    dst = Path(destination)
    parent = dst.parent if str(dst.parent) else Path(".")
    if not parent.is_dir():
        raise WriteError(dst, f"folder {parent} does not exist")
    if (dst.exists() or dst.is_symlink()) and not force:
        raise WriteError(dst, "already exists; use --force to replace it")
    return parent


@contextlib.contextmanager
def atomic_output(destination: str | Path, force: bool = False, replaceable: Iterable[str] = ()) -> Iterator[Path]:
    """Yield a path to write ``destination`` at, inside a private temporary folder next to it.

    A writer may create the path itself and sibling files that share its folder (a
    checkpoint's ``.index``/``.data-*``/``checkpoint``). On success everything is moved into
    place; on any error nothing is left behind. Existing files are replaced only with ``force``,
    except the siblings named in ``replaceable`` (a checkpoint's ``checkpoint`` state file,
    which only says which checkpoint of the folder is the newest, as TensorFlow rewrites it).
    """
    dst = Path(destination)
    replaceable = frozenset(replaceable)
    parent = check_destination(dst, force)
    try:
        tmp = _private_folder(parent)
    except OSError as exc:
        raise WriteError(dst, f"cannot write in {parent}: {exc.strerror}") from None
    try:
        yield tmp / dst.name
        produced = sorted(tmp.iterdir())
        if not produced:
            raise WriteError(dst, "the writer produced no output")
        clashes = [parent / p.name for p in produced if (parent / p.name).exists()
                   and not (p.name in replaceable and p.is_file() and (parent / p.name).is_file())]
        if clashes and not force:
            raise WriteError(clashes[0], "already exists; use --force to replace it")
        for item in produced:
            _replace(item, parent / item.name)
    finally:
        _remove_folder(tmp)


def _remove_folder(folder: Path) -> None:
    try:
        os.rmdir(folder)  # empty after a success; shutil (~2 ms to import) is for what a failure left
    except OSError:
        _rmtree(folder)


def _rmtree(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


def _private_folder(parent: Path) -> Path:
    """A new folder in ``parent`` that only this process uses (mode 0700, a random name), as
    ``tempfile.mkdtemp`` makes it: without importing tempfile and random (~2 ms of start-up)."""
    for _ in range(100):
        folder = parent / f".modelmorph-{os.urandom(8).hex()}"
        try:
            os.mkdir(folder, 0o700)
            return folder
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no unused name for a temporary folder")


def _replace(src: Path, dst: Path) -> None:
    if dst.is_dir() and not dst.is_symlink():
        # A folder cannot be renamed over another: move the old one aside first.
        aside = dst.with_name(f".{dst.name}.modelmorph-old-{os.getpid()}")
        os.rename(dst, aside)
        os.rename(src, dst)
        _rmtree(aside)
    else:
        os.replace(src, dst)
