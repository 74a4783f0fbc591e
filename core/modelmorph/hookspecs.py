"""Hook specifications: everything a plugin can provide.

A plugin is a module (or object) registered under the entry-point group ``modelmorph``
that implements some of these hooks, marked with :data:`modelmorph.hookimpl`::

    # pyproject.toml of a third-party distribution
    [project.entry-points.modelmorph]
    myformat = "modelmorph_myformat"

    # modelmorph_myformat/__init__.py
    import modelmorph

    @modelmorph.hookimpl
    def modelmorph_formats():
        return [modelmorph.Format(name="myformat", ...)]

Hooks are always called with keyword arguments, and an implementation may accept
only the arguments it needs (pluggy passes the subset it asks for), so specs can grow
without breaking plugins. The built-in formats are plugins using exactly these hooks.
Every hook here is documented in ``spec/hooks.md``; a test fails if one is not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .keras.catalogue import LayerSpec
    from .diagnostics import Diagnostics
    from .ir import Model
    from .registry import Format

PROJECT = "modelmorph"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def modelmorph_formats() -> "list[Format]":
    """Return the file formats this plugin provides.

    Each :class:`modelmorph.Format` names the format, its file extensions, how to sniff
    it, what it can read and write (``architecture``, ``weights``, ``optimizer``), its
    ``-O`` options, and its reader and writer. Give the reader and writer as
    ``"package.module:function"`` strings so that listing formats does not import them.

    Called once per registry. Return an empty list (or nothing) to provide no format.
    Format names are unique: when two plugins register the same name the first one
    loaded keeps it (built-ins load first) and a warning names both.
    """


@hookspec
def modelmorph_layer_specs() -> "list[LayerSpec]":
    """Return :class:`modelmorph.LayerSpec` entries that teach the layer catalogue about
    layer classes it does not know (typically your own custom layers): which
    variables a layer of that class has, in saving order, for a given config.

    Without a spec, a layer of an unknown class keeps its variables by position
    (``0``, ``1``, ...), which is enough for same-family conversions but not for formats
    that name variables. A spec for a class the catalogue already knows is refused
    with a warning.
    """


@hookspec
def modelmorph_transform(
    model: "Model", source: str, target: str, options: "dict[str, str]", diagnostics: "Diagnostics"
) -> None:
    """Adjust a model in place after it is read and before it is written by ``convert``.

    ``source`` and ``target`` are format names; ``options`` the ``-O`` options of the
    conversion. Use it to replace a custom layer by built-ins, rename things, or add
    diagnostics. Every implementation is called, in registration order; return values
    are ignored. Do not read weight data here unless you must: it defeats streaming.
    """


def _hook_names() -> list[str]:
    return [name for name, value in globals().items() if name.startswith("modelmorph_") and callable(value)]


HOOK_NAMES: tuple[str, ...] = tuple(_hook_names())

__all__: list[Any] = ["hookspec", "hookimpl", "HOOK_NAMES", "PROJECT"]
