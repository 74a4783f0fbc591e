"""``modelmorph migrate``: convert a tree of models to another format, several at a time.

Each file is converted in a worker process of its own (one bad or hostile file cannot take
the others down), outputs that are already up to date are skipped, and the caller gets one
:class:`Outcome` per file to report. Outputs mirror the input tree under ``--out`` (or sit
next to their inputs), named after the input with the target format's extension.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import shutil
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ..errors import EXIT_DIFFERENT, EXIT_OK, EXIT_READ, ArchitectureOnly, ModelmorphError, UsageError
from ..progress import Progress
from ..registry import Registry, default_registry

#: Files a tree walk picks up: legacy Keras models and architectures (and Keras 3 archives,
#: when migrating back). The target format's own extensions are left out.
SOURCE_SUFFIXES = (".h5", ".hdf5", ".json", ".keras")

CONVERTED, WARNINGS, FAILED, UP_TO_DATE, SKIPPED = "converted", "with warnings", "failed", "up to date", "skipped"
UNVERIFIED = "unverified"  # verification failed and the output was kept (--keep-unverified)


@dataclass(frozen=True)
class Job:
    """One file to convert, and where its output goes."""

    source: Path
    destination: Path


@dataclass(frozen=True)
class Outcome:
    """What became of one job: its status (``converted``, ``failed``...) and exit code."""

    job: Job
    status: str
    detail: str = ""  # the first diagnostic, or why the file failed or was skipped
    exit_code: int = EXIT_OK
    verified: str = ""  # with --verify: the figures, or why the model could not be run


def plan(paths: Iterable[str | Path], target: str, out: str | Path | None = None,
         registry: Registry | None = None) -> tuple[list[Job], list[Outcome]]:
    """The conversions to run for ``paths`` (files, or folders walked recursively), and the
    outcomes already known: inputs whose output another input of the same name writes."""
    fmt = (registry or default_registry()).detect_target("x", target)
    extension = fmt.extensions[0] if fmt.extensions else f".{fmt.name}"
    suffixes = tuple(s for s in SOURCE_SUFFIXES if s not in fmt.extensions)
    jobs: dict[Path, Job] = {}
    skipped = []
    for root, source in _sources(paths, suffixes):
        relative = source.relative_to(root) if root != source else Path(source.name)
        folder = Path(out) / relative.parent if out is not None else source.parent
        job = Job(source, folder / (source.stem + extension))
        first = jobs.get(job.destination)
        if first is None:
            jobs[job.destination] = job
        else:  # model.h5 and model.json both make model.keras: the file holding more wins
            keep, drop = sorted((first, job), key=lambda j: suffixes.index(j.source.suffix.lower())
                                if j.source.suffix.lower() in suffixes else -1)  # a SavedModel directory first
            jobs[job.destination] = keep
            skipped.append(Outcome(drop, SKIPPED, f"{keep.destination} is written from {keep.source}"))
    return list(jobs.values()), skipped


def _sources(paths: Iterable[str | Path], suffixes: tuple[str, ...]) -> Iterable[tuple[Path, Path]]:
    for given in paths:
        path = Path(given)
        if path.is_dir() and not (path / "saved_model.pb").is_file():
            for folder, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # also skips half-written outputs
                if "saved_model.pb" in files and folder != str(path):  # a SavedModel directory is one model
                    dirs[:] = []
                    yield path, Path(folder)
                    continue
                for name in sorted(files):
                    if name.lower().endswith(suffixes):
                        yield path, Path(folder) / name
        elif path.exists():
            yield path, path
        else:
            raise UsageError(f"{path}: no such file or folder")


def run(jobs: list[Job], target: str, workers: int | None = None, progress: Progress | None = None,
        verify: bool = False, keep_unverified: bool = False) -> list[Outcome]:
    """Convert every job whose output is missing or older than its input; never stops early.
    With ``verify``, each output is run against its source (``modelmorph verify``); one that
    computes otherwise is removed and reported, unless ``keep_unverified``."""
    progress = progress or Progress()
    outcomes, pending = [], []
    for job in jobs:
        if _up_to_date(job):
            outcomes.append(Outcome(job, UP_TO_DATE))
        else:
            pending.append(job)
    # Folders are made here, not in the workers, so that one worker's clean-up cannot race another's write.
    created = sorted({p for job in pending for p in _missing_folders(job.destination.parent)},
                     key=lambda p: len(p.parts), reverse=True)
    for folder in reversed(created):
        folder.mkdir(exist_ok=True)
    progress.start(sum(_size(job.source) for job in pending), f"migrating {len(pending)} file(s)")
    if pending:
        # forkserver: workers start from a clean process, never a fork of a caller's threads.
        context = multiprocessing.get_context("forkserver" if "forkserver" in multiprocessing.get_all_start_methods()
                                              else "spawn")
        with ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 1, mp_context=context) as pool:
            futures = {pool.submit(_convert, job, target, verify, keep_unverified): job for job in pending}
            for future in as_completed(futures):
                outcomes.append(future.result())
                progress.advance(_size(futures[future].source))
    progress.finish()
    for folder in created:  # deepest first: leave no empty folder for inputs that failed
        try:
            folder.rmdir()
        except OSError:
            pass  # it holds outputs
    order = {job: i for i, job in enumerate(jobs)}
    return sorted(outcomes, key=lambda o: order[o.job])


def _up_to_date(job: Job) -> bool:
    try:
        return job.destination.stat().st_mtime >= _newest(job.source)
    except FileNotFoundError:
        return False


def _newest(source: Path) -> float:
    """The modification time of a file, or of the newest file in a model folder (a SavedModel's
    ``variables/`` change without touching the folder itself). Links are not followed."""
    if not source.is_dir() or source.is_symlink():
        return source.stat().st_mtime
    newest = source.stat().st_mtime
    for folder, _, files in os.walk(source):
        for name in files:
            newest = max(newest, (Path(folder) / name).lstat().st_mtime)
    return newest


def _size(source: Path) -> int:
    """Bytes to convert, for progress: a folder counts the files in it."""
    if not source.is_dir() or source.is_symlink():
        return source.stat().st_size
    return sum((Path(folder) / name).lstat().st_size for folder, _, files in os.walk(source) for name in files)


def _convert(job: Job, target: str, verify: bool = False, keep_unverified: bool = False) -> Outcome:
    """Runs in a worker process: one conversion, every failure turned into an outcome."""
    from ..api import convert

    try:
        diagnostics = convert(job.source, job.destination, to_format=target, force=True)
    except ArchitectureOnly:
        return Outcome(job, SKIPPED, "architecture only: no weights to migrate")
    except ModelmorphError as exc:
        return Outcome(job, FAILED, str(exc), exc.exit_code)
    except Exception as exc:  # a bug must not stop the migration either
        return Outcome(job, FAILED, f"{job.source}: unexpected {type(exc).__name__}: {exc}", EXIT_READ)
    detail = f"{len(diagnostics)} diagnostic(s), first: {diagnostics.items[0]}" if diagnostics else ""
    outcome = Outcome(job, WARNINGS if diagnostics else CONVERTED, detail)
    return _verified(outcome, keep_unverified) if verify else outcome


def _verified(outcome: Outcome, keep_unverified: bool) -> Outcome:
    """``outcome`` with the figures of its output run against its source."""
    from .verify import verify

    job = outcome.job
    try:
        result = verify(job.source, job.destination)
    except ModelmorphError as exc:  # e.g. an architecture without weights, or a layer ONNX cannot run
        return dataclasses.replace(outcome, verified=f"not verified: {exc}")
    worst = max((o.max_abs for o in result.outputs), default=0.0)
    figures = f"max |difference| {worst:.3g} over {len(result.outputs)} output(s) ({result.engine})"
    if result.ok:
        return dataclasses.replace(outcome, verified=f"verified: {figures}")
    if keep_unverified:
        return dataclasses.replace(outcome, status=UNVERIFIED, verified=f"computes otherwise: {figures}; kept",
                                   exit_code=EXIT_DIFFERENT)
    _remove(job.destination)
    return Outcome(job, FAILED, f"{job.destination}: computes otherwise than its source ({figures}); removed",
                   EXIT_DIFFERENT, verified=figures)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    for sibling in path.parent.glob(path.name + ".*"):  # e.g. an ONNX model's external data
        sibling.unlink(missing_ok=True)


def _missing_folders(folder: Path) -> list[Path]:
    return [p for p in (folder, *folder.parents) if not p.exists()]


def table(outcomes: list[Outcome]) -> str:
    """The closing report: one line per file, then the counts."""
    width = max([len(o.status) for o in outcomes] + [len("STATUS")])
    lines = [f"{'STATUS':<{width}}  FILE"]
    for o in outcomes:
        shown = f"{o.job.source} -> {o.job.destination}" if o.status in (CONVERTED, WARNINGS) else str(o.job.source)
        lines.append(f"{o.status:<{width}}  {shown}" + "".join(f"\n{'':<{width}}    {line}"
                                                               for line in (o.detail, o.verified) if line))
    counts = {status: sum(o.status == status for o in outcomes)
              for status in (CONVERTED, WARNINGS, UNVERIFIED, FAILED, UP_TO_DATE, SKIPPED)}
    if not counts[UNVERIFIED]:
        del counts[UNVERIFIED]  # only --keep-unverified makes any
    lines.append(", ".join(f"{n} {status}" for status, n in counts.items()))
    return "\n".join(lines)


def exit_code(outcomes: list[Outcome]) -> int:
    """Non-zero when any file failed or computes otherwise: the exit status of the first."""
    return next((o.exit_code for o in outcomes if o.status in (FAILED, UNVERIFIED)), EXIT_OK)
