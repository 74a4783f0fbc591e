"""Finding and loading plugins through the ``modelmorph`` entry-point group.

Built-in formats ship as entry points of the ``modelmorph`` distribution itself and load
first; third-party ones load after them. A plugin that fails to import, implements an
unknown hook or breaks inside a hook produces a warning and is left out — never a crash.
Set ``MODELMORPH_DISABLE_PLUGIN_AUTOLOAD=1`` to load only the built-in plugins.

Entry points are read straight from the installed distributions' ``entry_points.txt`` (the
packaging specification's format) in the folders on ``sys.path``: importing
``importlib.metadata`` alone costs more than the rest of a conversion's start-up. When
``sys.path`` holds zip archives (zipapps, eggs), whose distributions only it can see,
``importlib.metadata`` is used.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import pluggy

from . import hookspecs

ENTRY_POINT_GROUP = "modelmorph"
DISABLE_AUTOLOAD_ENV = "MODELMORPH_DISABLE_PLUGIN_AUTOLOAD"
BUILTIN_DISTRIBUTION = "modelmorph"


class PluginWarning(UserWarning):
    """A plugin could not be loaded or misbehaved; modelmorph carried on without it."""


@dataclass
class PluginInfo:
    """What ``modelmorph plugins`` shows about one entry point."""

    name: str
    module: str
    distribution: str
    version: str
    builtin: bool
    hooks: list[str] = field(default_factory=list)
    error: str | None = None


def _autoload_disabled() -> bool:
    return os.environ.get(DISABLE_AUTOLOAD_ENV, "").strip().lower() not in ("", "0", "false", "no")


class EntryPoint(NamedTuple):
    """One entry of the ``modelmorph`` group: ``name = module[:attribute]`` of a distribution."""

    name: str
    value: str
    dist: str
    version: str

    def load(self) -> Any:
        module, _, attribute = self.value.split("[")[0].partition(":")  # "module:attr [extras]"
        obj = importlib.import_module(module.strip())
        for part in filter(None, attribute.strip().split(".")):
            obj = getattr(obj, part)
        return obj


def _entry_points() -> list[EntryPoint]:
    found = _scan_path() if not _zips_on_path() else _from_importlib_metadata()
    # Built-ins first so that they win name conflicts; then by name for a stable order.
    return sorted(found, key=lambda ep: (ep.dist != BUILTIN_DISTRIBUTION, ep.name))


def _scan_path() -> list[EntryPoint]:
    found: list[EntryPoint] = []
    seen: set[str] = set()  # the first distribution of a name on sys.path wins, as for imports
    for entry in sys.path:
        folder = entry or "."
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            continue
        for name in names:
            if not name.endswith((".dist-info", ".egg-info")):
                continue
            key = _normalize(name.rsplit(".", 1)[0].split("-")[0])
            if key in seen:
                continue
            seen.add(key)
            info = os.path.join(folder, name)
            entries = _group_entries(_read_text(os.path.join(info, "entry_points.txt")))
            if entries:
                dist, version = _name_and_version(info, name)
                found += [EntryPoint(n, v, dist, version) for n, v in entries]
    return found


def _zips_on_path() -> bool:
    stdlib_zip = f"python{sys.version_info[0]}{sys.version_info[1]}.zip"
    return any(os.path.isfile(entry) and os.path.basename(entry) != stdlib_zip for entry in sys.path if entry)


def _from_importlib_metadata() -> list[EntryPoint]:
    from importlib import metadata

    return [EntryPoint(ep.name, ep.value, ep.dist.name if ep.dist else "?", ep.dist.version if ep.dist else "?")
            for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)]


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        return None


def _group_entries(text: str | None) -> list[tuple[str, str]]:
    """The ``name = value`` lines of the ``[modelmorph]`` section of an entry_points.txt."""
    entries, inside = [], False
    for line in (text or "").splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            inside = line == f"[{ENTRY_POINT_GROUP}]"
        elif inside and "=" in line:
            name, _, value = line.partition("=")
            entries.append((name.strip(), value.strip()))
    return entries


def _name_and_version(info: str, folder_name: str) -> tuple[str, str]:
    """``Name`` and ``Version`` from the core metadata headers, else from the folder's name."""
    fallback = folder_name.rsplit(".", 1)[0].split("-")
    name, version = fallback[0], fallback[1] if len(fallback) > 1 else "?"
    for file in ("METADATA", "PKG-INFO"):
        text = _read_text(os.path.join(info, file))
        if text is None:
            continue
        for line in text.split("\n\n", 1)[0].splitlines():
            key, _, value = line.partition(":")
            if key == "Name":
                name = value.strip()
            elif key == "Version":
                version = value.strip()
        break
    return name, version


def load_plugins(pm: pluggy.PluginManager, extra: list[Any] = ()) -> list[PluginInfo]:
    """Register every installed plugin (and ``extra`` plugin objects) with ``pm``."""
    infos: list[PluginInfo] = []
    skip_third_party = _autoload_disabled()
    for ep in _entry_points():
        dist = ep.dist
        builtin = dist == BUILTIN_DISTRIBUTION
        if skip_third_party and not builtin:
            continue
        info = PluginInfo(ep.name, ep.value, dist, ep.version, builtin)
        infos.append(info)
        if pm.has_plugin(ep.name) or pm.is_blocked(ep.name):
            info.error = "another plugin of the same name is already loaded"
            warnings.warn(f"modelmorph plugin {ep.name!r} ({dist}): {info.error}", PluginWarning, stacklevel=2)
            continue
        try:
            obj = ep.load()
            _register(pm, obj, ep.name)
        except Exception as exc:  # a broken third-party plugin must not take the tool down
            info.error = f"{type(exc).__name__}: {exc}"
            warnings.warn(f"modelmorph plugin {ep.name!r} ({dist}) was not loaded: {info.error}", PluginWarning, stacklevel=2)
            continue
        info.hooks = hook_names_of(pm, obj)
    for obj in extra:
        name = getattr(obj, "__name__", None) or repr(obj)
        info = PluginInfo(name, name, "(registered in code)", "", False)
        infos.append(info)
        try:
            _register(pm, obj, name)
            info.hooks = hook_names_of(pm, obj)
        except Exception as exc:
            info.error = f"{type(exc).__name__}: {exc}"
            warnings.warn(f"modelmorph plugin {name!r} was not loaded: {info.error}", PluginWarning, stacklevel=2)
    return infos


def _register(pm: pluggy.PluginManager, obj: Any, name: str) -> None:
    pm.register(obj, name=name)
    unknown = [
        attr for attr in dir(obj)
        if attr.startswith("modelmorph_") and attr not in hookspecs.HOOK_NAMES and callable(getattr(obj, attr))
    ]
    if unknown:  # a misspelled hook would otherwise be silently ignored
        pm.unregister(obj)
        raise ValueError(f"unknown hook(s) {', '.join(sorted(unknown))}; known hooks: {', '.join(hookspecs.HOOK_NAMES)}")


def hook_names_of(pm: pluggy.PluginManager, obj: Any) -> list[str]:
    callers = pm.get_hookcallers(obj) or []
    return sorted(caller.name for caller in callers)


def make_plugin_manager(extra: list[Any] = ()) -> tuple[pluggy.PluginManager, list[PluginInfo]]:
    """A fresh plugin manager with every plugin loaded (one per registry, never global)."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    infos = load_plugins(pm, list(extra))
    return pm, infos


class HookFailed(Exception):
    """A plugin raised inside a hook whose failure cannot be skipped (``modelmorph_transform``)."""

    def __init__(self, plugin: str, hook: str, error: BaseException):
        self.plugin, self.hook, self.error = plugin, hook, error
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        super().__init__(f"modelmorph plugin {plugin!r} failed in {hook}: {type(error).__name__}"
                         f"{': ' + message if message else ''}")


def call_each(pm: pluggy.PluginManager, hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
    """Call a hook implementation by implementation, so that one broken plugin only
    costs its own contribution (a :class:`PluginWarning` names it). Returns
    ``(plugin name, result)`` pairs."""
    return _call(pm, hook_name, kwargs, skip_failures=True)


def call_each_or_raise(pm: pluggy.PluginManager, hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
    """Like :func:`call_each`, but a plugin that raises stops the call with :class:`HookFailed`:
    for hooks whose half-done work cannot be skipped."""
    return _call(pm, hook_name, kwargs, skip_failures=False)


def _call(pm: pluggy.PluginManager, hook_name: str, kwargs: dict[str, Any], skip_failures: bool) -> list[tuple[str, Any]]:
    # Every hook call of the core goes through here, never through ``pm.hook`` directly, so that
    # a plugin's exception is attributed to it instead of escaping as a traceback.
    results = []
    caller = getattr(pm.hook, hook_name)
    first_result = bool(caller.spec and caller.spec.opts.get("firstresult"))
    for impl in caller.get_hookimpls():  # registration order: built-ins first
        name = pm.get_name(impl.plugin) or repr(impl.plugin)
        args = {key: kwargs[key] for key in impl.argnames if key in kwargs}
        try:
            result = impl.function(**args)
        except Exception as exc:
            if not skip_failures:
                raise HookFailed(name, hook_name, exc) from exc
            warnings.warn(str(HookFailed(name, hook_name, exc)), PluginWarning, stacklevel=3)
            continue
        results.append((name, result))
        if first_result and result is not None:  # pluggy's firstresult: the first answer wins
            break
    return results
