"""The Python API: :func:`read`, :func:`write`, :func:`convert`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping

from .keras import catalogue
from .keras.weightcheck import check_weights
from .diagnostics import Diagnostics
from .errors import (ArchitectureOnly, CannotHandle, Inexpressible, ModelmorphError, ReadError, StrictError,
                     UnknownFormatError, UsageError, WriteError)
from .ir import Model
from .options import resolve, route
from .plugins import HookFailed, call_each_or_raise
from .progress import Progress
from .registry import Format, Registry, default_registry
from .storage.safety import atomic_output, check_destination, refuse_special

DEBUG_ENV = "MODELMORPH_DEBUG"  # set to 1 to see tracebacks of unexpected errors


def read(
    path: str | Path,
    format: str | None = None,
    *,
    arch: "str | Path | Model | None" = None,
    arch_format: str | None = None,
    options: Mapping[str, Any] | None = None,
    diagnostics: Diagnostics | None = None,
    registry: Registry | None = None,
    verify: bool = True,
) -> Model:
    """Read a model file. ``format`` overrides detection; ``arch`` (a path or a model)
    supplies the architecture that a weights-only file's weights are joined with.
    ``options`` are the format's read-side ``-O`` options (strings, or typed values).

    The returned model reads weight data lazily: use it as a context manager (or call
    ``close()``) to release the file. With ``verify`` (the default) every checksum the file
    holds is checked before it is returned; ``verify=False`` reads the metadata only, leaving
    the checks to ``model.verify()`` (which :func:`write` runs too).
    """
    reg = registry or default_registry()
    given = dict(options or {})
    with catalogue.activate(reg.catalogue):
        model, _ = _read(reg, path, format, arch, arch_format,
                         lambda fmt: resolve(fmt.name, fmt.options, given, "read"), diagnostics)
    if verify:
        try:
            model.verify()
        except BaseException:
            model.close()
            raise
    return model


def _read(reg: Registry, path: str | Path, override: str | None, arch: "str | Path | Model | None",
          arch_format: str | None, options_for: Callable[[Format], dict[str, Any]],
          diagnostics: Diagnostics | None) -> tuple[Model, Format]:
    """Read ``path`` with the first candidate format whose reader does not decline it;
    ``options_for(format)`` gives that reader's typed options."""
    diags = diagnostics if diagnostics is not None else Diagnostics()
    refuse_special(path)  # before anything opens it: a named pipe would block the first open
    candidates = reg.source_candidates(path, override)
    options_for(candidates[0])  # bad options fail before any file is opened
    arch_model = None
    if arch is not None and not isinstance(arch, Model):
        arch_model = read(arch, arch_format, diagnostics=diags, registry=reg, verify=False)  # its weights go unused
    elif arch is not None:
        arch_model = arch
    try:
        if arch_model is not None and not arch_model.has_architecture:
            raise UsageError(f"{arch}: --arch needs a file with an architecture; this one holds weights only")
        declined = []
        for fmt in candidates:
            opts = options_for(fmt)
            try:
                model = _guarded(fmt, path, ReadError,
                                 lambda: fmt.load_reader()(Path(path), options=opts, diagnostics=diags, arch=arch_model))
            except CannotHandle as exc:
                declined.append(f"{fmt.name} ({str(exc).strip() or 'declined'})")
                continue
            break
        else:
            if override:
                raise ReadError(path, f"not a {override} file: {declined[0]}")
            raise UnknownFormatError(f"{path}: every format that could read it declined: {'; '.join(declined)}")
    except BaseException:
        if arch_model is not None and arch_model is not arch:
            arch_model.close()
        raise
    if arch_model is not None and arch_model is not arch and arch_model is not model:
        model.on_close(arch_model.close)  # the architecture read here lives as long as the model
    try:  # every reader's and joiner's weights against the architecture, in one place
        check_weights(model, path)
    except BaseException:
        model.close()
        raise
    model.metadata.setdefault("source_format", fmt.name)
    _note_code(model, diags)
    return model, fmt


def write(
    model: Model,
    path: str | Path,
    format: str | None = None,
    *,
    options: Mapping[str, Any] | None = None,
    diagnostics: Diagnostics | None = None,
    force: bool = False,
    strict: bool = False,
    progress: Progress | None = None,
    registry: Registry | None = None,
) -> Format:
    """Write ``model`` to ``path`` atomically (nothing is left behind on failure).

    ``options`` are the format's write-side ``-O`` options (strings, or typed values).
    With ``strict``, any diagnostic (from earlier steps or from the writer) is an error
    and no output is written. Returns the format written.
    """
    reg = registry or default_registry()
    fmt = reg.detect_target(path, format)
    with catalogue.activate(reg.catalogue):
        return _write(fmt, model, path, resolve(fmt.name, fmt.options, dict(options or {}), "write"),
                      diagnostics, force, strict, progress)


def _write(fmt: Format, model: Model, path: str | Path, opts: dict[str, Any], diagnostics: Diagnostics | None,
           force: bool, strict: bool, progress: Progress | None, source: Any = None) -> Format:
    diags = diagnostics if diagnostics is not None else Diagnostics()
    _check_capabilities(model, fmt, diags, path, source)
    prog = progress or Progress()
    with atomic_output(path, force=force, replaceable=fmt.replaceable) as tmp:
        # The source's checks are not started here: a writer first claims those its copies
        # compute, and a check thread started before that would read their bytes twice. The
        # checks start when a writer first needs one (see Model.start_checks).
        checked = "weights" in fmt.writes  # an architecture alone holds no byte the checksums cover
        try:
            _guarded(fmt, path, WriteError,
                     lambda: fmt.load_writer()(model, tmp, options=opts, diagnostics=diags, progress=prog))
        except WriteError as exc:
            if exc.path.startswith(str(tmp.parent)):  # name the user's file, not our temporary one
                raise WriteError(path, exc.problem) from None
            raise
        if checked:
            model.verify()  # a corrupted source leaves no output
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
    options: Mapping[str, Any] | None = None,
    strict: bool = False,
    force: bool = False,
    progress: Progress | None = None,
    registry: Registry | None = None,
) -> Diagnostics:
    """Convert a model file to another format; returns the diagnostics collected.

    Each of ``options`` goes to the source's reader or the target's writer (or both),
    as their formats declare it."""
    reg = registry or default_registry()
    diags = Diagnostics()
    given = dict(options or {})
    dst_fmt = reg.detect_target(destination, to_format)
    routed: dict[str, dict[str, Any]] = {}

    def options_for(src_fmt: Format) -> dict[str, Any]:
        read_opts, routed["write"] = route((src_fmt.name, src_fmt.options), (dst_fmt.name, dst_fmt.options), given)
        return read_opts

    reg.source_candidates(source, from_format)  # an unknown source fails before the overwrite check
    if Path(source).resolve() == Path(destination).resolve():
        raise UsageError(f"{destination}: the output would overwrite the input")
    # Before the read, which may be long: the output and the files its writer surely adds.
    for path in (destination, *(dst_fmt.siblings(Path(destination)) if dst_fmt.siblings else ())):
        check_destination(path, force)
    with catalogue.activate(reg.catalogue):  # the registry's layer classes, for reader and writer
        model, src_fmt = _read(reg, source, from_format, arch, arch_format, options_for, diags)
        with model:
            options_for(src_fmt)  # route by the format that read it
            try:
                call_each_or_raise(reg.pm, "modelmorph_transform", model=model, source=src_fmt.name,
                                   target=dst_fmt.name, options=given, diagnostics=diags)
            except HookFailed as exc:  # the model may be half-modified: write nothing
                raise WriteError(destination, f"not written: {exc}") from None
            _write(dst_fmt, model, destination, routed["write"], diags, force, strict, progress, source)
    return diags


def _check_capabilities(model: Model, fmt: Format, diags: Diagnostics, path: Any, source: Any = None) -> None:
    has_weights = any(True for _ in model.iter_weights())
    if not model.has_architecture and ("architecture" in fmt.needs
                                       or ("architecture" in fmt.writes and "weights" not in fmt.writes)):
        if source is not None:  # the input's problem: it lacks what the target needs
            raise ReadError(source, f"holds weights only, and {fmt.name} needs an architecture (give one with --arch)")
        raise WriteError(path, f"{fmt.name} holds an architecture, and this model has weights only (give one with --arch)")
    if model.has_architecture and not has_weights and "weights" in fmt.writes and "architecture" in fmt.writes \
            and any(catalogue.variables_of(layer.class_name, layer.config) for _, layer in model.iter_layers()):
        raise ArchitectureOnly(source or path, f"holds an architecture without weights, and {fmt.name} stores "
                                               "weights with it (convert a weights file with --arch set to this "
                                               "one, or write json)")
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
    except (ModelmorphError, CannotHandle):
        raise
    except Inexpressible as exc:
        raise error(path, str(exc)) from None
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
