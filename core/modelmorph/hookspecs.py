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
The core calls hooks through :func:`modelmorph.plugins.call_each` (never ``pm.hook``
directly) so that a failing plugin is named, and honours ``firstresult`` specs there.

These docstrings are the hooks' documentation: the hook sections of ``spec/hooks.md`` are
generated from them (``python tests/tools/gen_hooks_doc.py``) and a test checks they agree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .keras.catalogue import LayerClass
    from .diagnostics import Diagnostics
    from .ir import Model
    from .registry import Format

PROJECT = "modelmorph"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def modelmorph_formats() -> "list[Format]":
    """Return the formats this plugin provides. A `modelmorph.Format` has:
    `name` (lower-case, unique), `description`, `extensions` (with the dot; compound ones such
    as `.weights.h5` win over shorter ones), `reads`/`writes` (subsets of `architecture`,
    `weights`, `optimizer`), `needs` (what a model must hold for the writer to write it at all:
    `keras` needs `architecture`; a model without it is refused before writing as a read error
    naming the source, exit 4), `reader` and `writer` (callables or `"module:function"` strings,
    imported on first use so that listing formats stays cheap), `sniff` (a cheap callable
    taking a `Probe(path, header, is_dir, exists)` and returning `CERTAIN`, `PLAUSIBLE` or
    `NO`), `options` (its `-O` options: `modelmorph.Option` items, see below) and
    `replaceable` (names of sibling files its writer produces that may replace existing
    ones without `--force`, such as a checkpoint's `checkpoint` state file) and `siblings`
    (a callable naming, for an output path, the other files writing it surely produces, such as
    a checkpoint prefix's `.index`: `convert` refuses an existing one before reading the source).

    - Reader: `read(path, *, options, diagnostics, arch) -> Model`. `arch` is an
      architecture model to join weights-only files with, or `None`. Raise
      `modelmorph.ReadError(path, problem)` for bad input (one line, no traceback); anything
      else a reader raises is turned into a one-line read error by the core. Raise
      `modelmorph.CannotHandle(reason)` when the file turns out not to be this format (a
      sniffer is only a guess): the next candidate format is tried, in detection order, and
      the file is an unknown format when every candidate declines. With `--from`, declining
      is a read error.
    - Writer: `write(model, path, *, options, diagnostics, progress) -> None`. `path` is
      inside a private temporary folder; the writer may also create sibling files there
      (a checkpoint's `.index` and `.data-*`). The core moves everything into place only when
      the writer returns and `--strict` is satisfied, so output is atomic. Call
      `progress.start(total_bytes, label)` and `progress.advance(nbytes)`; read weights one at
      a time.
    - Options: `Option(name, type, default, side, help, choices)` with `type` one of `bool`
      (`true`/`false`, `yes`/`no`, `on`/`off`, `1`/`0`), `int`, `size` (bytes: a bare number
      is bytes; `B`, `KB`, `MB`, `GB`, `TB` are binary, 1 KB = 1024 bytes, as Keras and
      TensorFlow count; `KiB`... are synonyms), `choice` (one of `choices`) or `str`, and
      `side` `read`, `write` or `both`. The core parses `-O` values once: readers and writers
      receive `options` as a dict of typed values holding every option of their side that was
      given or has a default (a `None` default leaves the key out). In `convert` each option
      goes to the side its format declares. Unknown, wrong-side or ill-typed options are usage
      errors naming the format and the option. A plain `{key: help}` dict (the older form) is
      still accepted: each key is a `str` option of both sides.

    Called once per registry; every implementation's formats are collected. Return an empty
    list (or nothing) to provide no format. Format names are unique: when two plugins
    register the same name the first one loaded keeps it (built-ins load first) and a
    warning names both. An implementation that raises is left out with a warning.
    """


@hookspec
def modelmorph_layer_specs() -> "list[LayerClass]":
    """Return :class:`modelmorph.LayerClass` descriptors (also named ``LayerSpec``) for layer
    classes the catalogue does not know, typically your own custom layers: their variables in
    saving order for a given config, and optionally their sub-objects, config fixups between the
    Keras dialects, output shapes and per-format converters (``spec/layers.md`` has every field
    and a worked example).

    Without a descriptor, a layer of an unknown class keeps its variables by position
    (``0``, ``1``, ...), which is enough for same-family conversions but not for formats that
    name variables, its output shapes are not inferred, and formats that translate layers
    (ONNX) refuse it. A descriptor for a class the catalogue already knows is refused with a
    warning, except one that carries nothing but ``converters``: those are added to the known
    class's converter slot, the later plugin winning (``LayerClass("Dense",
    converters={"onnx": my_dense})`` overrides the built-in ONNX converter of Dense). Asked
    once per registry; the classes stay that registry's own.
    """


@hookspec
def modelmorph_transform(
    model: "Model", source: str, target: str, options: "dict[str, str]", diagnostics: "Diagnostics"
) -> None:
    """Adjust a model in place between reading and writing in `modelmorph.convert`: replace
    a custom layer by built-ins, rename, add diagnostics. `source`/`target` are format names,
    `options` the conversion's `-O` options as given (strings from the command line).

    Every implementation runs, in registration order; return values are ignored. An
    implementation that raises stops the conversion with a one-line write error naming the
    plugin, and nothing is written: the model may be half-modified, so carrying on could
    write a wrong model. Avoid reading weight data here: it defeats streaming.
    """


def _hook_names() -> list[str]:
    return [name for name, value in globals().items() if name.startswith("modelmorph_") and callable(value)]


HOOK_NAMES: tuple[str, ...] = tuple(_hook_names())

__all__: list[Any] = ["hookspec", "hookimpl", "HOOK_NAMES", "PROJECT"]
