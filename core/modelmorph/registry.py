"""The format registry: what formats exist, which plugin provides each, and detection.

Detection sniffs content first (every sniffer sees the same header bytes, read once),
then compound extensions (``.weights.h5`` before ``.h5``); ``--from``/``--to`` override both.
"""

from __future__ import annotations

import importlib
import re
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from .errors import UnknownFormatError, UsageError
from .options import Option, schema
from .plugins import PluginInfo, PluginWarning, call_each, make_plugin_manager

if TYPE_CHECKING:
    from .keras.catalogue import Catalogue

#: What a format may read or write.
CAPABILITIES = ("architecture", "weights", "optimizer")

#: Sniff results: the content certainly is / plausibly is / is not this format.
CERTAIN, PLAUSIBLE, NO = 2, 1, 0

HEADER_BYTES = 512


@dataclass(frozen=True)
class Probe:
    """What sniffers look at: the path as given, and the first bytes if it is a file.

    ``path`` may not exist (a TF checkpoint is named by its prefix), or be a directory.
    """

    path: Path
    header: bytes = b""
    is_dir: bool = False
    exists: bool = False

    @classmethod
    def of(cls, path: str | Path) -> "Probe":
        p = Path(path)
        if p.is_dir():
            return cls(p, b"", True, True)
        if p.is_file():
            with open(p, "rb") as f:
                return cls(p, f.read(HEADER_BYTES), False, True)
        return cls(p)


Sniffer = Callable[[Probe], int]
Function = Callable[..., Any]

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


@dataclass(frozen=True)
class Format:
    """A file format a plugin provides.

    ``reader(path, *, options, diagnostics, arch)`` returns a :class:`modelmorph.Model`;
    ``arch`` is an architecture-bearing model to join weights-only files with, or None.
    ``writer(model, path, *, options, diagnostics, progress)`` writes it. ``needs`` lists what a
    model must hold for the writer to write it at all (``{"architecture"}`` for a .keras archive):
    a model without it is refused before writing, as the input's problem. Both reader and writer may be
    given as ``"module:function"`` strings, imported on first use. ``sniff(probe)``
    returns ``CERTAIN``, ``PLAUSIBLE`` or ``NO`` (``2``/``1``/``0``) and must be cheap.
    ``options`` lists the ``-O`` options the format accepts as :class:`modelmorph.Option`
    items (a ``{key: help}`` dict is still accepted: each key is then a ``str`` option of
    both sides); it is kept as a dict by option name. ``replaceable`` names sibling files
    the writer produces that may replace existing ones without ``force`` (a checkpoint's
    ``checkpoint`` state file, which only points at the newest checkpoint). ``siblings(path)``
    (optional) names the files besides ``path`` that writing ``path`` surely produces (a
    checkpoint prefix's ``.index``): a conversion refuses an existing one before it reads.
    """

    name: str
    description: str
    extensions: tuple[str, ...] = ()
    reads: frozenset[str] = frozenset()
    writes: frozenset[str] = frozenset()
    needs: frozenset[str] = frozenset()
    reader: Function | str | None = None
    writer: Function | str | None = None
    sniff: Sniffer | None = None
    options: Mapping[str, Option] | Iterable[Option] = field(default_factory=dict)
    replaceable: tuple[str, ...] = ()
    siblings: Callable[[Path], Iterable[Path]] | None = None
    plugin: str = ""

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"format name {self.name!r} must be lower-case letters, digits, '-' or '_'")
        for ext in self.extensions:
            if not ext.startswith("."):
                raise ValueError(f"format {self.name!r}: extension {ext!r} must start with '.'")
        for cap in (*self.reads, *self.writes, *self.needs):
            if cap not in CAPABILITIES:
                raise ValueError(f"format {self.name!r}: unknown capability {cap!r} (known: {', '.join(CAPABILITIES)})")
        object.__setattr__(self, "reads", frozenset(self.reads))
        object.__setattr__(self, "writes", frozenset(self.writes))
        object.__setattr__(self, "needs", frozenset(self.needs))
        object.__setattr__(self, "options", schema(self.options, self.name))
        object.__setattr__(self, "replaceable", tuple(self.replaceable))

    @property
    def can_read(self) -> bool:
        return self.reader is not None and bool(self.reads)

    @property
    def can_write(self) -> bool:
        return self.writer is not None and bool(self.writes)

    def load_reader(self) -> Function:
        return _resolve(self.reader, f"format {self.name!r} cannot be read")

    def load_writer(self) -> Function:
        return _resolve(self.writer, f"format {self.name!r} cannot be written")

    def matches_extension(self, path: Path) -> int:
        """Length of the longest of this format's extensions ``path`` ends with (0 if none)."""
        name = path.name.lower()
        return max((len(ext) for ext in self.extensions if name.endswith(ext.lower())), default=0)


def _resolve(target: Function | str | None, missing: str) -> Function:
    if target is None:
        raise UsageError(missing)
    if callable(target):
        return target
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


class Registry:
    """The formats of one set of plugins. Use :func:`default_registry` for the installed ones."""

    def __init__(self, extra_plugins: Iterable[Any] = ()):
        self.pm, self.plugins = make_plugin_manager(list(extra_plugins))
        self.formats: dict[str, Format] = {}
        for plugin_name, result in call_each(self.pm, "modelmorph_formats"):
            for fmt in result or ():
                self._add(plugin_name, fmt)
        self._catalogue: Catalogue | None = None

    def _add(self, plugin_name: str, fmt: Any) -> None:
        if not isinstance(fmt, Format):
            warnings.warn(f"modelmorph plugin {plugin_name!r} returned {type(fmt).__name__}, not a Format; ignored", PluginWarning, stacklevel=3)
            return
        if fmt.name in self.formats:
            owner = self.formats[fmt.name].plugin
            warnings.warn(
                f"modelmorph plugin {plugin_name!r} registers format {fmt.name!r}, which plugin {owner!r} already provides; keeping {owner!r}'s",
                PluginWarning, stacklevel=3,
            )
            return
        self.formats[fmt.name] = Format(**{**fmt.__dict__, "plugin": plugin_name})

    # -- lookups ---------------------------------------------------------------------
    def get(self, name: str) -> Format:
        try:
            return self.formats[name]
        except KeyError:
            raise UnknownFormatError(f"unknown format {name!r}; known formats: {self.known()}") from None

    def known(self) -> str:
        return ", ".join(sorted(self.formats)) or "(none: no format plugin is installed)"

    def plugin_info(self) -> list[PluginInfo]:
        return list(self.plugins)

    @property
    def catalogue(self) -> "Catalogue":
        """The layer classes this registry knows: the built-in descriptors and those its plugins
        describe through ``modelmorph_layer_specs`` (asked once, on first use)."""
        if self._catalogue is None:
            from .keras.catalogue import Catalogue

            catalogue = Catalogue()
            for plugin_name, specs in call_each(self.pm, "modelmorph_layer_specs"):
                for spec in specs or ():
                    try:
                        catalogue.register(spec)
                    except ValueError as exc:
                        warnings.warn(f"modelmorph plugin {plugin_name!r}: {exc}", PluginWarning, stacklevel=2)
            self._catalogue = catalogue
        return self._catalogue

    # -- detection -------------------------------------------------------------------
    def detect_source(self, path: str | Path, override: str | None = None) -> Format:
        """The format to read ``path`` with: ``override``, else sniffed, else by extension."""
        return self.source_candidates(path, override)[0]

    def source_candidates(self, path: str | Path, override: str | None = None) -> list[Format]:
        """The formats to try reading ``path`` with, best first: ``[override]``, else those whose
        sniffer recognises the content (``CERTAIN`` before ``PLAUSIBLE``, then the longest
        matching extension, then load order), then those matching by extension only. A reader
        that raises :class:`modelmorph.CannotHandle` passes the file to the next one."""
        if override:
            fmt = self.get(override)
            if not fmt.can_read:
                raise UnknownFormatError(f"format {fmt.name!r} cannot be read; readable formats: {self._names(lambda f: f.can_read)}")
            return [fmt]
        probe = Probe.of(path)
        readable = [f for f in self.formats.values() if f.can_read]
        scored = []
        for fmt in readable:
            score = _sniff(fmt, probe)
            if score > NO:
                scored.append((score, fmt.matches_extension(probe.path), fmt))
        scored.sort(key=lambda item: (item[0], item[1]), reverse=True)  # stable: load order breaks ties
        candidates = [fmt for _, _, fmt in scored]
        by_ext = sorted((f for f in readable if f.matches_extension(probe.path) and not any(f is c for c in candidates)),
                        key=lambda f: f.matches_extension(probe.path), reverse=True)
        candidates += by_ext
        if candidates:
            return candidates
        if not probe.exists:
            raise UnknownFormatError(f"{path}: no such file or directory")
        raise UnknownFormatError(
            f"{path}: not a format modelmorph recognises (readable formats: {self._names(lambda f: f.can_read)}); "
            "name one with --from"
        )

    def detect_target(self, path: str | Path, override: str | None = None) -> Format:
        """The format to write ``path`` in: ``override``, else by extension."""
        if override:
            fmt = self.get(override)
            if not fmt.can_write:
                raise UnknownFormatError(f"format {fmt.name!r} cannot be written; writable formats: {self._names(lambda f: f.can_write)}")
            return fmt
        fmt = self._by_extension(Path(path), [f for f in self.formats.values() if f.can_write])
        if fmt is None:
            raise UnknownFormatError(
                f"{path}: cannot tell the output format from the name (writable formats: "
                f"{self._names(lambda f: f.can_write)}); name one with --to"
            )
        return fmt

    def _by_extension(self, path: Path, candidates: list[Format]) -> Format | None:
        best = max(candidates, key=lambda f: f.matches_extension(path), default=None)
        return best if best is not None and best.matches_extension(path) else None

    def _names(self, keep: Callable[[Format], bool]) -> str:
        return ", ".join(sorted(n for n, f in self.formats.items() if keep(f))) or "(none)"


def _sniff(fmt: Format, probe: Probe) -> int:
    if fmt.sniff is None:
        return NO
    try:
        return int(fmt.sniff(probe))
    except Exception as exc:  # a sniffer must never stop detection; a failure means "not mine",
        # silently: a warning would be a second line beside the reader's one-line error.
        if os.environ.get("MODELMORPH_DEBUG"):
            warnings.warn(f"format {fmt.name!r} sniffer failed on {probe.path}: {exc}", PluginWarning, stacklevel=3)
        return NO


_default: Registry | None = None


def default_registry() -> Registry:
    """The registry of the installed plugins, built on first use."""
    global _default
    if _default is None:
        _default = Registry()
    return _default
