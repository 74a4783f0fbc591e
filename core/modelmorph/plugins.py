"""Finding and loading plugins through the ``modelmorph`` entry-point group.

Built-in formats ship as entry points of the ``modelmorph`` distribution itself and load
first; third-party ones load after them. A plugin that fails to import, implements an
unknown hook or breaks inside a hook produces a warning and is left out — never a crash.
Set ``MODELMORPH_DISABLE_PLUGIN_AUTOLOAD=1`` to load only the built-in plugins.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

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


def _entry_points() -> list[metadata.EntryPoint]:
    found = list(metadata.entry_points(group=ENTRY_POINT_GROUP))

    def is_builtin(ep: metadata.EntryPoint) -> bool:
        return ep.dist is not None and ep.dist.name == BUILTIN_DISTRIBUTION

    # Built-ins first so that they win name conflicts; then by name for a stable order.
    return sorted(found, key=lambda ep: (not is_builtin(ep), ep.name))


def load_plugins(pm: pluggy.PluginManager, extra: list[Any] = ()) -> list[PluginInfo]:
    """Register every installed plugin (and ``extra`` plugin objects) with ``pm``."""
    infos: list[PluginInfo] = []
    skip_third_party = _autoload_disabled()
    for ep in _entry_points():
        dist = ep.dist.name if ep.dist is not None else "?"
        builtin = dist == BUILTIN_DISTRIBUTION
        if skip_third_party and not builtin:
            continue
        info = PluginInfo(ep.name, ep.value, dist, ep.dist.version if ep.dist else "?", builtin)
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


def call_each(pm: pluggy.PluginManager, hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
    """Call a hook implementation by implementation, so that one broken plugin only
    costs its own contribution. Returns ``(plugin name, result)`` pairs."""
    results = []
    caller = getattr(pm.hook, hook_name)
    for impl in caller.get_hookimpls():  # registration order: built-ins first
        name = pm.get_name(impl.plugin) or repr(impl.plugin)
        args = {key: kwargs[key] for key in impl.argnames if key in kwargs}
        try:
            results.append((name, impl.function(**args)))
        except Exception as exc:
            warnings.warn(f"modelmorph plugin {name!r} failed in {hook_name}: {type(exc).__name__}: {exc}", PluginWarning, stacklevel=2)
    return results
