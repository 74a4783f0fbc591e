#!/usr/bin/env python
"""Every conversion path against the I/O floor: `cp` of the same file, in the same rounds.

    python benchmarks/bench_ladder.py [--sizes 100MB,1GB,4GB] [--dtypes float32,bfloat16]
                                      [--rounds 3] [--work DIR] [--jobs a,b] [--frameworks] [--width N]

For each size and dtype, a stack of Dense layers is saved by Keras 3 (``src.keras``, and
``tf.train.Checkpoint(model=m).write`` for ``ckpt/ckpt``) and, for float32, by tf_keras
(``src.h5``); ``arch.json`` is the architecture modelmorph writes from ``src.keras``. Then, in
``--rounds`` interleaved rounds, every job runs as a fresh ``modelmorph`` subprocess next to
``cp`` of the file it reads (the checkpoint's data file), ``cp`` first in even rounds and the
job first in odd ones. Both run with a warm page cache (the source is read once with ``cat``
and the program's code loaded before each, after emptying the page cache where permitted),
``sync`` between runs so that one run's writeback does not land on the next. Reported per
job: median wall time, the ratio of that median to the median of its ``cp`` runs, the largest
peak resident memory (``wait4``'s ``ru_maxrss``), and the median CPU time (user + system, all
threads) of the job and of its ``cp``. Medians are compared, not the runs of one round: on a
VM, successive 1 GiB writes can take turns being fast and 3-6 times slower whichever program
makes them (a 2-vCPU Firecracker VM, 1 GiB string checkpoint: ``cp`` 0.29-0.35 s or
1.22-1.84 s, the job 0.57-0.86 s or 1.46-2.30 s, one of the two slow in each of 8 rounds; the
time goes to filling new page-cache pages), so that a round's ratio is 0.2 or 7 by turns.
``--jobs`` runs only the jobs named. ``--width 1024`` makes the same sizes of more, smaller tensors
(a model of 4 MiB kernels: real models have many tensors of a few MiB).
``--frameworks`` also times Keras 3 / tf_keras / TF doing the same jobs (load and save: slow and
memory-hungry at 1 GB and up).

The ``modelmorph`` run is the one installed beside this Python (``bin/modelmorph``); building the
sources needs keras, tensorflow and tf_keras in the same environment (``pip install modelmorph[test]``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

SIZES = {"100MB": 100 * 2**20, "1GB": 2**30, "4GB": 4 * 2**30}
WIDTH = {"100MB": 1024, "1GB": 4096, "4GB": 4096}  # Dense(width) on width inputs: width² elements
ITEMSIZE = {"float32": 4, "bfloat16": 2}
ENV = {"KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}

BUILD_KERAS = """
import keras, tensorflow as tf
keras.utils.set_random_seed(0)
init = keras.initializers.RandomUniform(-1.0, 1.0)
inputs = x = keras.Input(({width},))
for i in range({layers}):
    x = keras.layers.Dense({width}, dtype={dtype!r}, kernel_initializer=init, name=f"dense_{{i}}")(x)
model = keras.Model(inputs, x)
model.save({keras!r})
tf.train.Checkpoint(model=model).write({ckpt!r})
"""
BUILD_TF_KERAS = """
import tf_keras, tensorflow as tf
tf.random.set_seed(0)
init = tf_keras.initializers.RandomUniform(-1.0, 1.0)
inputs = x = tf_keras.Input(({width},))
for i in range({layers}):
    x = tf_keras.layers.Dense({width}, kernel_initializer=init, name=f"dense_{{i}}")(x)
tf_keras.Model(inputs, x).save({h5!r})
"""
BUILD_STRINGS = """
import tensorflow as tf
n = {count}
v = tf.Variable(tf.strings.as_string(tf.range(n, dtype=tf.int64), width=127, fill="0"))
tf.train.Checkpoint(v=v).write({ckpt!r})
"""
#: The same jobs done by the frameworks (``--frameworks``).
FRAMEWORK = {
    "h5-to-keras": "import keras; keras.saving.load_model({src!r}).save({dst!r})",
    "keras-to-keras": "import keras; keras.saving.load_model({src!r}).save({dst!r})",
    "keras-to-h5": "import keras; keras.saving.load_model({src!r}).save({dst!r})",
    "keras-to-ckpt": "import keras, tensorflow as tf; tf.train.Checkpoint(model=keras.saving.load_model({src!r}))"
                     ".write({dst!r})",
    "ckpt+arch-to-keras": "import keras, tensorflow as tf\n"
                          "m = keras.models.model_from_json(open({arch!r}).read())\n"
                          "tf.train.Checkpoint(model=m).read({src!r}).expect_partial()\nm.save({dst!r})",
    "info": "import keras; keras.saving.load_model({src!r}).summary()",
    "strings-ckpt-to-ckpt": "import tensorflow as tf\nv = tf.Variable(tf.zeros([0], tf.string), shape=tf.TensorShape(None))\n"
                            "c = tf.train.Checkpoint(v=v); c.read({src!r}).assert_consumed(); c.write({dst!r})",
}


@dataclass
class Job:
    name: str
    source: str  # which source file: keras, h5, ckpt
    output: str  # output name under the run folder ("" for none)
    args: tuple[str, ...] = ()


JOBS = [
    Job("h5-to-keras", "h5", "out.keras"),
    Job("keras-to-keras", "keras", "out.keras"),
    Job("keras-to-h5", "keras", "out.h5"),
    Job("keras-to-ckpt", "keras", "ckpt/ckpt", ("--to", "tf-checkpoint")),
    Job("ckpt+arch-to-keras", "ckpt", "out.keras", ("--arch", "{arch}")),
    Job("keras-to-sharded", "keras", "out.weights.json", ("-O", "max_shard_size=100MB")),
    Job("info", "keras", ""),
    Job("info --verify", "keras", "", ("--verify",)),
    Job("strings-ckpt-to-ckpt", "strings", "ckpt/ckpt", ("--to", "tf-checkpoint")),
]


def measure(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    """Wall seconds and peak resident memory (bytes) of one subprocess; its CPU seconds (user +
    system, all threads) are left in ``LAST_CPU`` (on a shared machine wall times are noisy)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    stderr = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(argv)}\n{stderr[-2000:]}")
    LAST_CPU[0] = usage.ru_utime + usage.ru_stime
    return elapsed, usage.ru_maxrss * 1024  # Linux reports kilobytes


LAST_CPU = [0.0]


DROP_CACHES = Path("/proc/sys/vm/drop_caches")


def can_drop_caches() -> bool:
    return os.access(DROP_CACHES, os.W_OK)


#: Imports every module of modelmorph and of its plugins (the installed ones, as the run finds
#: them): the files a job may load are then in the page cache.
WARM_MODELMORPH = """
import importlib, pkgutil
from importlib.metadata import entry_points
for name in {"modelmorph"} | {ep.module.split(".")[0] for ep in entry_points(group="modelmorph")}:
    package = importlib.import_module(name)
    for module in pkgutil.walk_packages(package.__path__, name + "."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
"""


def warm(path: Path, program: list[str]) -> None:
    """``cat`` the file(s) to /dev/null and run ``program``, so that the run finds its source and
    its own code in the page cache. Where it may (root on Linux), the page cache is emptied first:
    a cache filled by earlier runs' outputs makes each new page written cost a reclaim, which
    varied ``cp`` of 1 GB from 0.5 to 4 s of CPU on one machine; emptied, every run starts from
    the same state (its source and code cached, free memory). Without ``program`` modelmorph's
    code was cold after the emptying: 25-40 ms more per run than with it warm."""
    os.sync()
    if can_drop_caches():
        DROP_CACHES.write_text("1")
    files = [path] if path.is_file() else sorted(p for p in path.parent.iterdir() if p.is_file())
    subprocess.run(["cat", *map(str, files)], stdout=subprocess.DEVNULL, check=True)
    subprocess.run(program, stdout=subprocess.DEVNULL, check=True)


def warm_modelmorph() -> list[str]:
    return [sys.executable, "-c", WARM_MODELMORPH]  # the Python beside bin/modelmorph


def build_strings(folder: Path, size: str, python: str) -> dict[str, Path]:
    """A checkpoint holding one string tensor of about ``size`` (128-byte strings)."""
    prefix = folder / "ckpt" / "ckpt"
    if not prefix.with_name("ckpt.index").exists():
        code = BUILD_STRINGS.format(count=SIZES[size] // 128, ckpt=str(prefix))
        subprocess.run([python, "-c", code], env={**os.environ, **ENV}, check=True, stderr=subprocess.DEVNULL)
    return {"strings": prefix}


def build(folder: Path, size: str, dtype: str, python: str, width: int | None = None) -> dict[str, Path]:
    """The sources of one rung (built once; kept in ``folder``): Dense layers ``width`` wide
    (default ``WIDTH[size]``)."""
    folder.mkdir(parents=True, exist_ok=True)
    width = width or WIDTH[size]
    layers = max(1, round(SIZES[size] / (width * width * ITEMSIZE[dtype])))
    paths = {"keras": folder / "src.keras", "ckpt": folder / "ckpt" / "ckpt", "arch": folder / "arch.json"}
    env = {**os.environ, **ENV}
    if not paths["keras"].exists():
        subprocess.run([python, "-c", BUILD_KERAS.format(width=width, layers=layers, dtype=dtype,
                                                         keras=str(paths["keras"]), ckpt=str(paths["ckpt"]))],
                       env=env, check=True, stderr=subprocess.DEVNULL)
    if not paths["arch"].exists():
        subprocess.run([modelmorph(), "convert", "-q", str(paths["keras"]), str(paths["arch"])], check=True)
    if dtype == "float32":
        paths["h5"] = folder / "src.h5"
        if not paths["h5"].exists():
            subprocess.run([python, "-c", BUILD_TF_KERAS.format(width=width, layers=layers, h5=str(paths["h5"]))],
                           env=env, check=True, stderr=subprocess.DEVNULL)
    return paths


def modelmorph() -> str:
    return str(Path(sys.executable).with_name("modelmorph"))


def data_file(source: Path) -> Path:
    """The file ``cp`` copies for a source: itself, or a checkpoint's data file."""
    if source.is_file():
        return source
    return next(source.parent.glob(source.name + ".data-*"))


def run_rung(paths: dict[str, Path], rounds: int, work: Path, frameworks: bool, python: str,
             only: set[str] | None = None) -> list[dict]:
    results: dict[str, dict] = {}
    for rnd in range(rounds):
        for job in JOBS:
            if job.source not in paths or (only is not None and job.name not in only):
                continue
            src = paths[job.source]
            run = work / "run"
            shutil.rmtree(run, ignore_errors=True)
            (run / "ckpt").mkdir(parents=True)
            copied = data_file(src)
            argv = [modelmorph(), "info" if job.name.startswith("info") else "convert", "-q" if not
                    job.name.startswith("info") else "--no-weights", str(src)]
            if job.output:
                argv.append(str(run / job.output))
            argv += [a.format(arch=paths["arch"]) if "{arch}" in a else a for a in job.args]
            for step in ("cp", "job") if rnd % 2 == 0 else ("job", "cp"):
                os.sync()
                if step == "cp":
                    warm(copied, ["cp", "--version"])
                    cp_time, _ = measure(["cp", str(copied), str(run / "copy")])
                    cp_cpu = LAST_CPU[0]
                    (run / "copy").unlink()
                else:
                    warm(src, warm_modelmorph())
                    t, peak = measure(argv)
                    cpu = LAST_CPU[0]
                    shutil.rmtree(run)  # its output, deleted as cp's is
                    (run / "ckpt").mkdir(parents=True)
            entry = results.setdefault(job.name, {"job": job.name, "times": [], "peak": 0,
                                                  "cp": [], "fw_times": [], "fw_peak": 0, "cpu": [], "cp_cpu": []})
            entry["cpu"].append(cpu)
            entry["cp_cpu"].append(cp_cpu)
            entry["times"].append(t)
            entry["cp"].append(cp_time)
            entry["peak"] = max(entry["peak"], peak)
            if frameworks and job.name in FRAMEWORK:
                shutil.rmtree(run, ignore_errors=True)
                (run / "ckpt").mkdir(parents=True)
                os.sync()
                warm(src, [python, "-c", "import keras, tf_keras, tensorflow"])
                code = FRAMEWORK[job.name].format(src=str(src), dst=str(run / job.output) if job.output else "",
                                                  arch=str(paths.get("arch", "")))
                ft, fpeak = measure([python, "-c", code], env={**os.environ, **ENV})
                entry["fw_times"].append(ft)
                entry["fw_peak"] = max(entry["fw_peak"], fpeak)
        shutil.rmtree(work / "run", ignore_errors=True)
    return list(results.values())


def table(rows: list[dict], title: str) -> str:
    lines = [title, f"{'job':<20} {'time s':>8} {'cp s':>7} {'x cp':>6} {'peak MB':>8} {'cpu s':>6} {'cp cpu':>6}   "
                    f"{'framework s':>11} {'fw peak MB':>10}"]
    for r in rows:
        fw = (f"{statistics.median(r['fw_times']):>11.2f} {r['fw_peak'] / 2**20:>10.0f}" if r["fw_times"]
              else f"{'-':>11} {'-':>10}")
        lines.append(f"{r['job']:<20} {statistics.median(r['times']):>8.2f} {statistics.median(r['cp']):>7.2f} "
                     f"{statistics.median(r['times']) / statistics.median(r['cp']):>6.2f} {r['peak'] / 2**20:>8.0f} "
                     f"{statistics.median(r['cpu']):>6.2f} {statistics.median(r['cp_cpu']):>6.2f}   {fw}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100MB", help="comma-separated: 100MB, 1GB, 4GB (default 100MB)")
    parser.add_argument("--dtypes", default="float32,bfloat16",
                        help="comma-separated: float32, bfloat16 (empty: none, e.g. for --strings alone)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("/tmp/modelmorph-ladder"),
                        help="folder for the sources (kept, reused) and the outputs")
    parser.add_argument("--frameworks", action="store_true", help="also time Keras 3 / tf_keras / TF")
    parser.add_argument("--python", default=sys.executable, help="Python with keras, tensorflow, tf_keras")
    parser.add_argument("--jobs", help=f"comma-separated job names to run (default all: {', '.join(j.name for j in JOBS)})")
    parser.add_argument("--width", type=int,
                        help="Dense layers this wide instead of the size's default (1024 at 100MB, else 4096): "
                             "more, smaller tensors (1024 at 1GB: 256 float32 kernels of 4 MiB)")
    parser.add_argument("--strings", action="store_true",
                        help="also a checkpoint of string tensors (one rung per size, 128-byte strings)")
    args = parser.parse_args()
    sizes, dtypes = args.sizes.split(","), [d for d in args.dtypes.split(",") if d]
    for value in sizes:
        if value not in SIZES:
            parser.error(f"unknown size {value!r}")
    for value in dtypes:
        if value not in ITEMSIZE:
            parser.error(f"unknown dtype {value!r}")
    only = set(args.jobs.split(",")) if args.jobs else None
    for value in only or ():
        if value not in {j.name for j in JOBS}:
            parser.error(f"unknown job {value!r}")
    print(f"modelmorph: {modelmorph()}; python {sys.version.split()[0]}; {os.cpu_count()} CPU(s); "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {args.rounds} interleaved round(s); "
          "warm page cache (cat of the source and a run loading the program's code before each run"
          + (", page cache emptied before that" if can_drop_caches() else ", page cache NOT emptied (not root)")
          + "), sync between runs")
    for size in sizes:
        for dtype in dtypes:
            folder = args.work / (f"{size}-{dtype}" + (f"-w{args.width}" if args.width else ""))
            paths = build(folder, size, dtype, args.python, args.width)
            actual = paths["keras"].stat().st_size
            rows = run_rung(paths, args.rounds, folder, args.frameworks, args.python, only)
            print()
            width = f" width {args.width}" if args.width else ""
            print(table(rows, f"{size} {dtype}{width} (src.keras {actual / 2**20:.0f} MiB; load average now "
                              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())})"))
        if args.strings:
            folder = args.work / f"{size}-strings"
            paths = build_strings(folder, size, args.python)
            rows = run_rung(paths, args.rounds, folder, args.frameworks, args.python, only)
            print()
            print(table(rows, f"{size} string tensor checkpoint (data {data_file(paths['strings']).stat().st_size / 2**20:.0f} "
                              f"MiB; load average now {' '.join(f'{x:.2f}' for x in os.getloadavg())})"))


if __name__ == "__main__":
    main()
