"""The ``modelmorph`` command line. ``main(argv)`` returns the exit status (see :mod:`modelmorph.errors`).

Only argparse is imported at start-up; numpy, h5py and the plugins load when a command
needs them, so ``modelmorph --help`` answers at once.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import warnings
from typing import Sequence

from .errors import (EXIT_DIFFERENT, EXIT_OK, EXIT_USAGE, ModelmorphError, UsageError)

PROG = "modelmorph"

DESCRIPTION = """\
Convert Keras models between formats without TensorFlow, Keras or any other framework:
Keras 3 .keras archives and .weights.h5, legacy Keras 2 .h5, TensorFlow checkpoints and
SavedModel directories, JSON architecture files and ONNX (see `modelmorph formats`).
"""

EPILOG = """\
examples:
  modelmorph convert old_model.h5 new_model.keras       upgrade a Keras 2 model to Keras 3
  modelmorph convert weights.h5 model.keras --arch arch.json
                                                         join a weights-only file with an architecture
  modelmorph convert model.keras model.json -O dialect=keras2
                                                         write the architecture as tf.keras reads it
  modelmorph convert model.keras model.onnx              for onnxruntime, TensorRT, browsers...
  modelmorph info model.keras                            layers, parameters, weights, format
  modelmorph diff a.keras b.h5 --atol 1e-6               compare two models' weights in any formats
  modelmorph verify old.h5 new.keras                     prove they compute the same (no framework)
  modelmorph formats                                     formats, extensions, what each reads/writes

exit status: 0 ok, 1 models differ (diff, verify), 2 usage error, 3 unknown format,
4 read error, 5 write error, 6 diagnostics under --strict; 141 when the reader of the
output stopped early (`| head`), as for any tool.
Set MODELMORPH_DISABLE_PLUGIN_AUTOLOAD=1 to load only the built-in format plugins.
"""


def _columns() -> int:
    """The terminal's width as ``shutil.get_terminal_size`` finds it: $COLUMNS, else stdout's, else 80."""
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class _Width:
    """Gives argparse's formatters their width: left to find it, they import shutil (and with it
    bz2 and lzma, ~3 ms), which a conversion otherwise never needs."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24, width: int | None = None,
                 **kwargs):
        super().__init__(prog, indent_increment, max_help_position, _columns() - 2 if width is None else width,
                         **kwargs)


class _Formatter(_Width, argparse.HelpFormatter):
    pass


class _RawFormatter(_Width, argparse.RawDescriptionHelpFormatter):
    pass


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, formatter_class: type = _Formatter, **kwargs):
        super().__init__(*args, formatter_class=formatter_class, **kwargs)

    def error(self, message: str) -> None:  # one line and exit status 2, like every usage error
        raise UsageError(f"{self.prog}: {message} (see --help)")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or given ``command``, of that one alone: building a command's
    parser costs about a millisecond, and a conversion needs only its own."""
    parser = _Parser(prog=PROG, description=DESCRIPTION, epilog=EPILOG, formatter_class=_RawFormatter)
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, add in _PARSERS.items():
        if command is None or name == command:
            add(sub)
    return parser


def _convert_parser(sub) -> None:
    p = sub.add_parser("convert", help="convert a model to another format",
                       description="Convert SRC to DST.\n\n"
                                   "Formats are detected from content, then from the file name (.keras,\n"
                                   ".weights.h5, .h5, .json, .onnx, a checkpoint prefix, a SavedModel folder);\n"
                                   "--from/--to override. Diagnostics (lossy, unsupported, contains-code) are\n"
                                   "printed on stderr; --strict makes them fatal.",
                       formatter_class=_RawFormatter,
                       epilog="examples:\n  modelmorph convert model.h5 model.keras\n"
                              "  modelmorph convert ckpt/ckpt model.keras --arch model.json\n"
                              "  modelmorph convert model.keras model.json -O dialect=keras2\n")
    p.add_argument("source", metavar="SRC")
    p.add_argument("destination", metavar="DST")
    p.add_argument("--from", dest="from_format", metavar="FORMAT", help="format of SRC (see `modelmorph formats`)")
    p.add_argument("--to", dest="to_format", metavar="FORMAT", help="format of DST")
    _arch_args(p)
    p.add_argument("--strict", action="store_true", help="fail (exit 6, nothing written) on any diagnostic")
    p.add_argument("--force", action="store_true", help="replace DST if it exists")
    _option_args(p)
    p.add_argument("-q", "--quiet", action="store_true", help="print no diagnostics and no progress")


def _info_parser(sub) -> None:
    p = sub.add_parser("info", help="summarize a model: layers, parameters, weights",
                       description="Summarize a model file: its format, layers, classes, parameter counts,\n"
                                   "weights with shapes and dtypes, optimizer state and Keras version.\n"
                                   "Only the metadata is read, never the tensors' bytes: it answers at once\n"
                                   "whatever the size, but does not notice a corrupted tensor. --verify does\n"
                                   "(convert and diff always check).",
                       formatter_class=_RawFormatter,
                       epilog="examples:\n  modelmorph info model.keras\n"
                              "  modelmorph info model.keras --verify    also read every byte the checksums cover\n"
                              "  modelmorph info ckpt/ckpt --json --no-weights\n")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--verify", action="store_true",
                   help="also check every checksum the file holds (a .keras archive's CRC-32s, each checkpoint "
                        "tensor's CRC-32C), reading the whole file; a mismatch fails with exit status 4")
    p.add_argument("--from", dest="from_format", metavar="FORMAT", help="format of FILE")
    _arch_args(p)
    _option_args(p)
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.add_argument("--no-weights", action="store_true", help="leave out the per-weight lines")


def _formats_parser(sub) -> None:
    p = sub.add_parser("formats", help="list the formats installed plugins provide",
                       description="List every format: name, extensions, what it reads and writes, its -O options "
                                   "and the plugin providing it.")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def _plugins_parser(sub) -> None:
    p = sub.add_parser("plugins", help="list installed plugins",
                       description="List installed modelmorph plugins (built-in and third-party) with their "
                                   "distribution, version and the hooks they implement.")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def _diff_parser(sub) -> None:
    p = sub.add_parser("diff", help="compare two models in any formats",
                       description="Compare two models: architecture differences, then the maximum absolute "
                                   "difference of every weight (matched by layer path and weight path). "
                                   "Every checksum of both files is checked first (a mismatch: exit 4). "
                                   "Exit 0 when equal within --atol, 1 when they differ.")
    p.add_argument("a", metavar="A")
    p.add_argument("b", metavar="B")
    p.add_argument("--from-a", metavar="FORMAT", help="format of A")
    p.add_argument("--from-b", metavar="FORMAT", help="format of B")
    p.add_argument("--atol", type=float, default=0.0, help="largest absolute weight difference still equal (default 0)")
    p.add_argument("--weights-only", action="store_true", help="compare weights only, not architectures")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def _verify_parser(sub) -> None:
    p = sub.add_parser("verify", help="prove numerically that two models compute the same function",
                       description="Run A and B on the same inputs and compare every output.\n\n"
                                   "A and B are any formats with an architecture, or .onnx files. Reported: max\n"
                                   "absolute and relative difference, argmax agreement for classifier outputs.\n"
                                   "Both run as ONNX graphs in onnxruntime when installed, else in the onnx\n"
                                   "package's reference evaluator: no framework needed. With A alone, run it\n"
                                   "once and print its outputs' shapes and statistics. Exit 0 when within\n"
                                   "tolerance, 1 when not.",
                       formatter_class=_RawFormatter,
                       epilog="examples:\n  modelmorph verify old.h5 new.keras\n"
                              "  modelmorph verify model.keras model.onnx --samples 8 --atol 1e-5\n"
                              "  modelmorph verify ckpt/ckpt model.keras --arch model.json\n"
                              "  modelmorph verify model.keras --input tokens=batch.npy\n")
    p.add_argument("a", metavar="A")
    p.add_argument("b", metavar="B", nargs="?")
    p.add_argument("--arch", metavar="FILE", help="architecture for a weights-only A or B")
    p.add_argument("--samples", type=int, default=4, metavar="N", help="batch size of random inputs (default 4)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seed of random inputs (default 0)")
    p.add_argument("--input", dest="inputs", action="append", default=[], metavar="NAME=FILE.npy",
                   help="feed this array to input NAME instead of random values (repeatable)")
    p.add_argument("--atol", type=float, default=1e-4, help="absolute tolerance (default 1e-4)")
    p.add_argument("--rtol", type=float, default=1e-4,
                   help="tolerance relative to the largest magnitude of A's output (default 1e-4)")
    p.add_argument("--engine", choices=("auto", "reference", "onnxruntime"), default="auto",
                   help="auto (default): onnxruntime when installed, else the reference evaluator")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def _migrate_parser(sub) -> None:
    p = sub.add_parser("migrate", help="convert a tree of models to another format, in parallel",
                       description="Convert every model under each PATH to FORMAT, several at a time.\n\n"
                                   "Folders are walked for .h5, .hdf5, .json and .keras files and SavedModel\n"
                                   "folders. Outputs mirror the input tree under --out (default: next to each\n"
                                   "input) with FORMAT's extension. Skipped: outputs newer than their input (for a\n"
                                   "SavedModel, than any file in it), and architecture-only files when FORMAT\n"
                                   "needs weights. One bad file never stops the others: a closing table lists\n"
                                   "each file, and the exit status is non-zero if any failed.",
                       formatter_class=_RawFormatter,
                       epilog="example:\n  modelmorph migrate models/ --to keras --out models_keras3/ --jobs 4\n")
    p.add_argument("paths", nargs="+", metavar="PATH", help="a model file or SavedModel folder, or a folder to walk")
    p.add_argument("--to", dest="to_format", required=True, metavar="FORMAT", help="format to write (e.g. keras)")
    p.add_argument("--out", metavar="DIR", help="folder to mirror the input tree into")
    p.add_argument("--jobs", type=int, metavar="N", help="conversions at a time (default: one per CPU)")
    p.add_argument("--verify", action="store_true",
                   help="run each output against its source (as `modelmorph verify`); one that computes "
                        "otherwise is removed and reported")
    p.add_argument("--keep-unverified", action="store_true", help="with --verify, keep outputs that fail it")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


_PARSERS = {"convert": _convert_parser, "info": _info_parser, "formats": _formats_parser, "plugins": _plugins_parser,
            "diff": _diff_parser, "verify": _verify_parser, "migrate": _migrate_parser}


def _arch_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", metavar="FILE",
                   help="architecture to join a weights-only source with (JSON, .keras, .h5...)")
    p.add_argument("--arch-from", metavar="FORMAT", help="format of the --arch file")


def _option_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-O", dest="options", action="append", default=[], metavar="KEY=VALUE",
                   help="format option, repeatable (`modelmorph formats` lists each format's)")


def _parse_options(items: list[str]) -> dict[str, str]:
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"option {item!r} must be KEY=VALUE")
        options[key.strip()] = value.strip()
    return options


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser(args_list[0] if args_list and args_list[0] in _PARSERS else None)
        if not args_list:
            parser.print_help()
            return EXIT_USAGE
        args = parser.parse_args(args_list)
        if args.version:  # the package's own constant: importlib.metadata alone costs ~30 ms
            from . import __version__

            print(f"{PROG} {__version__}")
            return EXIT_OK
        if args.command is None:
            parser.print_help()
            return EXIT_USAGE
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = _show_warning
            return COMMANDS[args.command](args)
    except ModelmorphError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def _print_diagnostics(diags, quiet: bool = False) -> None:
    if quiet:
        return
    for d in diags:
        print(f"{PROG}: {d}", file=sys.stderr)


def cmd_convert(args: argparse.Namespace) -> int:
    from .api import convert
    from .progress import Progress, TerminalProgress

    show_progress = not args.quiet and sys.stderr.isatty()
    diags = None
    try:
        diags = convert(args.source, args.destination, from_format=args.from_format, to_format=args.to_format,
                        arch=args.arch, arch_format=args.arch_from, options=_parse_options(args.options),
                        strict=args.strict, force=args.force,
                        progress=TerminalProgress() if show_progress else Progress())
    except ModelmorphError:
        raise
    _print_diagnostics(diags, args.quiet)
    if not args.quiet:
        print(f"{PROG}: wrote {args.destination}" + (f" ({len(diags)} diagnostic(s))" if diags else ""), file=sys.stderr)
    return EXIT_OK


def cmd_info(args: argparse.Namespace) -> int:
    from .api import read
    from .diagnostics import Diagnostics
    from .commands.summary import render, summarize

    diags = Diagnostics()
    with read(args.file, args.from_format, arch=args.arch, arch_format=args.arch_from,
              options=_parse_options(args.options), diagnostics=diags, verify=False) as model:
        summary = summarize(model)
        if args.verify:
            summary["verified"] = model.verify()
    if args.json:
        summary["diagnostics"] = [{"kind": d.kind, "message": d.message, "where": d.where} for d in diags]
        print(json.dumps(summary, indent=2))
    else:
        print(render(summary, show_weights=not args.no_weights))
        _print_diagnostics(diags)
    return EXIT_OK


def cmd_formats(args: argparse.Namespace) -> int:
    from .registry import default_registry

    reg = default_registry()
    rows = []
    for name in sorted(reg.formats):
        f = reg.formats[name]
        rows.append({"name": f.name, "description": f.description, "extensions": list(f.extensions),
                     "reads": sorted(f.reads) if f.can_read else [], "writes": sorted(f.writes) if f.can_write else [],
                     "options": {key: option.describe() for key, option in f.options.items()}, "plugin": f.plugin})
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    if not rows:
        print("no formats: no format plugin is installed")
        return EXIT_OK
    for r in rows:
        print(f"{r['name']}  ({r['plugin']})  {r['description']}")
        print(f"    extensions: {' '.join(r['extensions']) or '-'}")
        print(f"    reads: {', '.join(r['reads']) or '-'};  writes: {', '.join(r['writes']) or '-'}")
        for key, option in r["options"].items():
            print(f"    -O {_option_line(key, option)}")
    return EXIT_OK


def _option_line(key: str, o: dict) -> str:
    """``dialect=keras3|keras2  (writing; default keras3) help``"""
    value = "|".join(o["choices"]) if o["choices"] else o["type"].upper()
    when = {"read": "reading", "write": "writing", "both": "reading and writing"}[o["side"]]
    default = o["default"]
    if default is not None:
        when += f"; default {str(default).lower() if isinstance(default, bool) else default}"
    return f"{key}={value}  ({when})  {o['help']}".rstrip()


def cmd_plugins(args: argparse.Namespace) -> int:
    from .registry import default_registry

    infos = default_registry().plugin_info()
    rows = [{"name": i.name, "module": i.module, "distribution": i.distribution, "version": i.version,
             "builtin": i.builtin, "hooks": i.hooks, "error": i.error} for i in infos]
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    for r in rows:
        where = "built-in" if r["builtin"] else f"{r['distribution']} {r['version']}"
        state = f"FAILED: {r['error']}" if r["error"] else ", ".join(r["hooks"]) or "no hooks"
        print(f"{r['name']}  ({where}, module {r['module']})  {state}")
    return EXIT_OK


def cmd_diff(args: argparse.Namespace) -> int:
    from .api import read
    from .commands.diff import diff_models

    with read(args.a, args.from_a) as a, read(args.b, args.from_b) as b:
        report = diff_models(a, b, atol=args.atol)
        if args.weights_only:
            report.architecture = []
    if args.json:
        print(json.dumps({"equal": report.equal, "atol": report.atol, "architecture": report.architecture,
                          "weights": [{"path": p, "max_abs_diff": d, "note": n} for p, d, n in report.weights]},
                         indent=2))
    else:
        for line in report.architecture:
            print(f"architecture {line}")
        worst = 0.0
        for path, d, note in report.weights:
            if note or d is None or d > report.atol:
                print(f"weight {path}: {note or f'max abs diff {d:.3g}'}")
            elif d is not None:
                worst = max(worst, d)
        verdict = "equal" if report.equal else "different"
        print(f"{verdict}: {len(report.weights)} weight(s) compared, {len(report.architecture)} architecture "
              f"difference(s), largest weight difference within tolerance {worst:.3g}")
    return EXIT_OK if report.equal else EXIT_DIFFERENT


def cmd_migrate(args: argparse.Namespace) -> int:
    from .commands import migrate
    from .progress import Progress, TerminalProgress

    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"--jobs must be at least 1, not {args.jobs}")
    jobs, skipped = migrate.plan(args.paths, args.to_format, args.out)
    progress = TerminalProgress() if not args.quiet and sys.stderr.isatty() else Progress()
    outcomes = migrate.run(jobs, args.to_format, workers=args.jobs, progress=progress, verify=args.verify,
                           keep_unverified=args.keep_unverified) + skipped
    print(migrate.table(outcomes))
    return migrate.exit_code(outcomes)


def cmd_verify(args: argparse.Namespace) -> int:
    import dataclasses

    from .commands.verify import render, verify

    inputs = {}
    for item in args.inputs:
        name, sep, file = item.partition("=")
        if not sep or not name or not file:
            raise UsageError(f"--input {item!r} must be NAME=FILE.npy")
        inputs[name] = _load_array(file)
    result = verify(args.a, args.b, arch=args.arch, samples=args.samples, seed=args.seed, inputs=inputs,
                    atol=args.atol, rtol=args.rtol, engine=args.engine)
    if args.json:
        print(json.dumps({**dataclasses.asdict(result), "ok": result.ok}, indent=2))
    else:
        print(render(result))
    return EXIT_OK if result.ok else EXIT_DIFFERENT


def _load_array(file: str):
    import numpy as np

    from .errors import ReadError

    try:
        return np.load(file, allow_pickle=False)  # never unpickle: files are data
    except (OSError, ValueError) as exc:
        raise ReadError(file, f"not a readable .npy array ({str(exc).splitlines()[0]})") from None


COMMANDS = {"convert": cmd_convert, "info": cmd_info, "formats": cmd_formats, "plugins": cmd_plugins, "diff": cmd_diff,
            "migrate": cmd_migrate, "verify": cmd_verify}

_GC_YOUNG = 50_000  # see run()
_EXIT_PIPE = 141  # 128 + SIGPIPE, as a shell reports a tool that signal ended


def run() -> None:
    """The ``modelmorph`` program: :func:`main` as a whole process.

    The cyclic garbage collector runs after every 50,000 new container objects instead of
    CPython's 700: a command builds a model's metadata (ResNet50: a 380 KB config, thousands of
    dicts, lists and IR objects), all alive until it ends, which the default rescans: 88
    collections, 7-11 ms by ``gc.callbacks``, in a 0.18 s SavedModel conversion; with this,
    none after start-up. Cycles are still collected, in larger batches. Python's last act at
    exit is a garbage collection over every object still alive, ~25 ms; frozen objects are
    left out of it, and nothing is lost: they die with the process.
    :func:`main` itself leaves the collector alone, being also called in-process (tests,
    scripts); ``migrate``'s workers are processes of their own, with the default."""
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(_GC_YOUNG, older, oldest)
    try:
        status = main()
        sys.stdout.flush()  # a reader gone early is found here, not in Python's last flush
    except BrokenPipeError:
        # The reader of the output stopped early (`modelmorph info m.h5 | head`): stop quietly,
        # with the status of a Unix tool that SIGPIPE ended, and no traceback. Standard output
        # then goes nowhere, so that Python's last flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = _EXIT_PIPE
    gc.freeze()
    sys.exit(status)


if __name__ == "__main__":
    run()
