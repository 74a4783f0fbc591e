"""The Python API: :func:`read`, :func:`write`, :func:`convert`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from .keras import catalogue
from .diagnostics import Diagnostics
from .errors import ModelmorphError, ReadError, StrictError, UsageError, WriteError
from .ir import Model
from .progress import Progress
from .registry import Format, Registry, default_registry
from .storage.safety import atomic_output

DEBUG_ENV = "MODELMORPH_DEBUG"  # set to 1 to see tracebacks of unexpected errors


def read(
    path: str | Path,
    format: str | None = None,
    *,
    arch: "str | Path | Model | None" = None,
    arch_format: str | None = None,
    options: Mapping[str, str] | None = None,
    diagnostics: Diagnostics | None = None,
    registry: Registry | None = None,
) -> Model:
    """Read a model file. ``format`` overrides detection; ``arch`` (a path or a model)
    supplies the architecture that a weights-only file's weights are joined with.

    The returned model reads weight data lazily: use it as a context manager (or call
    ``close()``) to release the file.
    """
    reg = registry or default_registry()
    diags = diagnostics if diagnostics is not None else Diagnostics()
    fmt = reg.detect_source(path, format)
    opts = dict(options or {})
    _check_options(opts, [fmt])
    reg.load_layer_specs()
    arch_model = None
    if arch is not None:
        arch_model = arch if isinstance(arch, Model) else read(arch, arch_format, diagnostics=diags, registry=reg)
        if not arch_model.has_architecture:
            raise UsageError(f"{arch}: --arch needs a file with an architecture; this one holds weights only")
    model = _guarded(fmt, path, ReadError, lambda: fmt.load_reader()(Path(path), options=opts, diagnostics=diags, arch=arch_model))
    model.metadata.setdefault("source_format", fmt.name)
    _note_code(model, diags)
    return model


def write(
    model: Model,
    path: str | Path,
    format: str | None = None,
    *,
    options: Mapping[str, str] | None = None,
    diagnostics: Diagnostics | None = None,
    force: bool = False,
    strict: bool = False,
    progress: Progress | None = None,
    registry: Registry | None = None,
) -> Format:
    """Write ``model`` to ``path`` atomically (nothing is left behind on failure).

    With ``strict``, any diagnostic (from earlier steps or from the writer) is an error
    and no output is written. Returns the format written.
    """
    reg = registry or default_registry()
    diags = diagnostics if diagnostics is not None else Diagnostics()
    fmt = reg.detect_target(path, format)
    opts = dict(options or {})
    _check_options(opts, [fmt])
    _check_capabilities(model, fmt, diags, path)
    prog = progress or Progress()
    with atomic_output(path, force=force) as tmp:
        try:
            _guarded(fmt, path, WriteError,
                     lambda: fmt.load_writer()(model, tmp, options=opts, diagnostics=diags, progress=prog))
        except WriteError as exc:
            if exc.path.startswith(str(tmp.parent)):  # name the user's file, not our temporary one
                raise WriteError(path, exc.problem) from None
            raise
        prog.finish()
        if strict and diags:
            raise StrictError(f"{path}: not written because --strict is set and the conversion has "
                              f"{len(diags)} diagnostic(s): {diags.items[0]}")
    return fmt


def convert(
    source: str | Path,
    destination: str | Path,
    *,
    from_format: str | None = None,
    to_format: str | None = None,
    arch: "str | Path | Model | None" = None,
    arch_format: str | None = None,
    options: Mapping[str, str] | None = None,
    strict: bool = False,
    force: bool = False,
    progress: Progress | None = None,
    registry: Registry | None = None,
) -> Diagnostics:
    """Convert a model file to another format; returns the diagnostics collected."""
    reg = registry or default_registry()
    diags = Diagnostics()
    opts = dict(options or {})
    src_fmt = reg.detect_source(source, from_format)
    dst_fmt = reg.detect_target(destination, to_format)
    _check_options(opts, [src_fmt, dst_fmt])
    src_opts = {k: v for k, v in opts.items() if k in src_fmt.options}
    dst_opts = {k: v for k, v in opts.items() if k in dst_fmt.options}
    if Path(source).resolve() == Path(destination).resolve():
        raise UsageError(f"{destination}: the output would overwrite the input")
    with read(source, src_fmt.name, arch=arch, arch_format=arch_format, options=src_opts, diagnostics=diags, registry=reg) as model:
        reg.pm.hook.modelmorph_transform(model=model, source=src_fmt.name, target=dst_fmt.name,
                                         options=opts, diagnostics=diags)
        write(model, destination, dst_fmt.name, options=dst_opts, diagnostics=diags, force=force,
              strict=strict, progress=progress, registry=reg)
    return diags


def _check_options(options: Mapping[str, str], formats: list[Format]) -> None:
    known = {key for fmt in formats for key in fmt.options}
    unknown = sorted(set(options) - known)
    if unknown:
        accepted = ", ".join(sorted(known)) or "none"
        names = " and ".join(f.name for f in formats)
        raise UsageError(f"unknown option(s) {', '.join(unknown)} for {names} (accepted: {accepted})")


def _check_capabilities(model: Model, fmt: Format, diags: Diagnostics, path: Any) -> None:
    has_weights = any(True for _ in model.iter_weights())
    if not model.has_architecture and "architecture" in fmt.writes and "weights" not in fmt.writes:
        raise WriteError(path, f"{fmt.name} holds an architecture, and this model has weights only (give one with --arch)")
    if model.has_architecture and model.layers and "architecture" not in fmt.writes:
        diags.add("lossy", f"{fmt.name} holds no architecture; only the weights are written")
    if has_weights and "weights" not in fmt.writes:
        diags.add("lossy", f"{fmt.name} holds no weights; only the architecture is written")
    if model.optimizer is not None and "optimizer" not in fmt.writes:
        diags.add("lossy", f"{fmt.name} holds no optimizer state; it is not written")


def _note_code(model: Model, diags: Diagnostics) -> None:
    """Every format carries Lambda and custom layers as data; say so once, centrally."""
    for path, layer in model.iter_layers():
        if layer.class_name == "Lambda":
            diags.add("contains-code", "Lambda layer holds Python bytecode: carried as data, never run; "
                      "loading it needs safe_mode=False", path)
        elif layer.class_name and layer.submodel is None and not catalogue.is_known(layer.class_name) \
                and (layer.module or "").split(".")[0] not in ("keras", "tf_keras"):
            name = layer.registered_name or layer.class_name
            diags.add("contains-code", f"custom layer class {name!r} (module {layer.module!r}) is carried as "
                      "data, never imported; loading it needs that class registered", path)


def _guarded(fmt: Format, path: Any, error: type, work: Any) -> Any:
    """Run a plugin's reader or writer; anything it raises becomes a one-line error naming the file."""
    try:
        return work()
    except ModelmorphError:
        raise
    except MemoryError:
        raise error(path, "not enough memory (the file declares more data than can be held)") from None
    except RecursionError:
        raise error(path, "structure nested too deeply") from None
    except Exception as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        what = "reading" if error is ReadError else "writing"
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise error(path, f"{fmt.name} {what} failed: {type(exc).__name__}{': ' + message if message else ''}") from None
