#!/usr/bin/env python
"""modelmorph against Keras 3 on the same jobs: ResNet50 ``.keras`` → ``.keras`` and → ``.weights.h5``.

    /work/venv/bin/python benchmarks/bench_keras.py [--repeat 3] [--keep DIR]

Builds ``keras.applications.ResNet50(weights=None)`` (random weights, seeded) and saves it as
``.keras`` in a temporary folder, then runs every job in a fresh subprocess — modelmorph's CLI,
and Keras doing the same job (``load_model`` + ``save`` / ``save_weights``) — measuring wall
time and the peak resident memory of that subprocess (``os.wait4``). Each job runs once unmeasured
(so that both tools start from compiled bytecode, as installed packages do: the children get a
``PYTHONPYCACHEPREFIX`` in the work folder even where ``PYTHONDONTWRITEBYTECODE`` is set), then
``--repeat`` times; the median time and the largest peak are reported, with the ratios.
Targets: modelmorph at least 20x faster, and at most 1/5 of Keras' peak memory.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KERAS_ENV = {"KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
BUILD = """
import keras
keras.utils.set_random_seed(50)
keras.applications.ResNet50(weights=None).save({src!r})
"""
KERAS_JOBS = {
    ".keras": "import keras; keras.saving.load_model({src!r}).save({dst!r})",
    ".weights.h5": "import keras; keras.saving.load_model({src!r}).save_weights({dst!r})",
}


def modelmorph_command() -> list[str]:
    """The installed ``modelmorph`` program, as users run it (``python -m modelmorph.cli`` would
    also import runpy and importlib.util: a few milliseconds of a job that takes a few hundred)."""
    script = Path(sys.executable).with_name("modelmorph")
    return [str(script)] if script.exists() else [sys.executable, "-m", "modelmorph"]


def measure(argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one subprocess run."""
    # Flush the page cache's dirty data first: otherwise the writeback of the previous runs'
    # 100 MB outputs lands on whichever run comes next, whichever tool it is.
    os.sync()
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    stderr = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(argv)}\n{stderr[-2000:]}")
    return elapsed, usage.ru_maxrss * 1024  # Linux reports kilobytes


def run(label: str, argv_for, folder: Path, repeat: int) -> tuple[float, int]:
    """Median wall time and largest peak of ``repeat`` runs, after one warm-up run.

    The output of every run but the first (``{label}-0``, which the checks read) is removed
    once measured, so that each run starts with the page cache and the disk as the one before
    it did. Kept, the outputs make every run write into memory the system has not used lately,
    which on a VM is several times slower to touch (``cp`` of a 100 MB file: 0.03 s into
    recycled page cache, 0.3 s into new; a 2-vCPU Firecracker VM), and the runs drift (the
    SavedModel job: 0.18 s in the first runs, 0.44 s after twelve)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(KERAS_ENV, PYTHONPYCACHEPREFIX=str(folder / "pycache"))
    runs = []
    for i in ["warm-up", *range(repeat)]:
        stem = _fresh(folder / f"{label}-{i}")
        timed = measure(argv_for(stem), env)
        if i != "warm-up":
            runs.append(timed)
        if i != 0:
            _fresh(stem)
    return statistics.median(t for t, _ in runs), max(p for _, p in runs)


def _fresh(stem: Path) -> Path:
    """``stem``, with what an earlier run (``--keep``) wrote there removed first: replacing a
    100 MB file makes ext4 flush the new one at the rename or truncation (its auto_da_alloc),
    a cost of that leftover, not of the job, which every tool would pay in turn."""
    for old in [stem, *stem.parent.glob(glob.escape(stem.name) + ".*")]:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        elif old.exists() or old.is_symlink():
            old.unlink()
    return stem


def resnet50(folder: Path, repeat: int) -> Path:
    """``folder/resnet50.keras`` (built once), after printing the setting of the runs."""
    folder.mkdir(parents=True, exist_ok=True)
    src = folder / "resnet50.keras"
    if not src.exists():
        subprocess.run([sys.executable, "-c", BUILD.format(src=str(src))], env={**os.environ, **KERAS_ENV},
                       check=True, stderr=subprocess.DEVNULL)
    print(f"ResNet50 .keras: {src.stat().st_size / 1e6:.1f} MB; {repeat} run(s) per job; "
          f"python {sys.version.split()[0]}; {os.cpu_count()} CPU(s)")
    return src


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="work in this folder and keep the files")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench-keras-"))
    src = resnet50(folder, args.repeat)
    print(f"{'job':<22}{'modelmorph':>18}{'keras':>18}{'speed-up':>10}{'memory':>9}")
    for ext, keras_job in KERAS_JOBS.items():
        ours = run(f"modelmorph{ext}", lambda dst: [*modelmorph_command(), "convert", "-q", "--force",
                                                     str(src), f"{dst}{ext}"], folder, args.repeat)
        theirs = run(f"keras{ext}", lambda dst: [sys.executable, "-c", keras_job.format(src=str(src), dst=f"{dst}{ext}")],
                     folder, args.repeat)
        print(f"{'.keras -> ' + ext:<22}{ours[0]:7.2f} s {ours[1] / 2**20:5.0f} MiB{theirs[0]:7.2f} s "
              f"{theirs[1] / 2**20:5.0f} MiB{theirs[0] / ours[0]:9.1f}x{ours[1] / theirs[1]:9.2f}")
    print("speed-up = Keras time / modelmorph time (target >= 20); memory = modelmorph peak / Keras peak (target <= 0.20)")


if __name__ == "__main__":
    main()
