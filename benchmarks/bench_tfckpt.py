#!/usr/bin/env python
"""modelmorph against TensorFlow on the same job: read a ~1 GB checkpoint and write it again.

    /work/venv/bin/python benchmarks/bench_tfckpt.py [--size-mb 1024] [--repeat 3] [--keep DIR]

Builds, with TensorFlow in a subprocess, a ``tf.Module`` holding many float32 variables
(~``--size-mb`` MB in all, seeded values) and writes it with ``tf.train.Checkpoint(model=m).write``
into a temporary folder. Then each job runs in a fresh subprocess, measuring wall time and the
peak resident memory of that subprocess (``os.wait4``):

- modelmorph: ``modelmorph convert SRC DST --to tf-checkpoint`` (weights only, keys kept);
- TensorFlow: ``tf.train.load_checkpoint(SRC)``, every tensor into a ``tf.Variable`` of a
  ``tf.Module`` under the same attribute, then ``tf.train.Checkpoint(model=m).write(DST)``.

Each job runs ``--repeat`` times, the two interleaved, each after ``os.sync()`` (outputs deleted
in between); the median time and the largest peak are reported with the ratios TensorFlow /
modelmorph. Both outputs are checked to hold the same keys, dtypes and shapes. Targets: modelmorph at least 5x faster, at most 1/5 of TF's peak.
The temporary folder is deleted at the end unless ``--keep`` names a folder to use instead.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TF_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}

BUILD = """
import numpy as np, tensorflow as tf
rng = np.random.default_rng(0)
cycle = [(1024, 1024), (4096, 256), (512, 512), (3, 3, 256, 256), (8192,), (1000, 300)]
module, total, i = tf.Module(name="big"), 0, 0
while total < {size_bytes}:
    shape = cycle[i % len(cycle)]
    value = rng.standard_normal(shape, dtype=np.float32)
    setattr(module, f"var_{{i:04d}}", tf.Variable(value, name=f"var_{{i:04d}}"))
    total += value.nbytes
    i += 1
tf.train.Checkpoint(model=module).write({src!r})
print(i, total)
"""

TF_JOB = """
import tensorflow as tf
reader = tf.train.load_checkpoint({src!r})
module = tf.Module()
suffix = "/.ATTRIBUTES/VARIABLE_VALUE"
for key in reader.get_variable_to_shape_map():
    if key.startswith("model/"):
        setattr(module, key[len("model/"):-len(suffix)], tf.Variable(reader.get_tensor(key)))
tf.train.Checkpoint(model=module).write({dst!r})
"""


def measure(argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one subprocess run."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    stderr = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if code != 0:
        raise SystemExit(f"failed ({code}): {' '.join(argv)}\n{stderr[-2000:]}")
    return elapsed, usage.ru_maxrss * 1024  # Linux reports kilobytes


def tensors(prefix: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    from modelmorph_tfckpt.bundle import BundleReader

    with BundleReader(prefix) as r:
        return {k: (e.dtype, tuple(e.shape)) for k, e in r.entries().items() if k != "_CHECKPOINTABLE_OBJECT_GRAPH"}


def run(jobs: dict, folder: Path, repeat: int, src: Path) -> dict[str, tuple[float, int]]:
    """Each job ``repeat`` times, interleaved, each from flushed dirty pages (``os.sync``) so
    that no job pays for writing back another's output. Returns label → (median s, peak B)."""
    times: dict[str, list[float]] = {label: [] for label in jobs}
    peaks: dict[str, list[int]] = {label: [] for label in jobs}
    for i in range(repeat):
        for label, (argv_for, env) in jobs.items():
            out = folder / f"{label}-{i}"
            out.mkdir()
            os.sync()
            seconds, peak = measure(argv_for(out / "ckpt"), env)
            if tensors(out / "ckpt") != tensors(src):
                raise SystemExit(f"{label}: the output does not hold the source's tensors")
            shutil.rmtree(out)
            times[label].append(seconds)
            peaks[label].append(peak)
            print(f"  {label} run {i + 1}: {seconds:6.2f} s, peak {peak / 2**20:7.1f} MiB", flush=True)
    return {label: (statistics.median(times[label]), max(peaks[label])) for label in jobs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=float, default=1024, help="checkpoint size in MiB (default 1024)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per job (default 3)")
    parser.add_argument("--keep", type=Path, help="build in this folder and keep it (default: a temporary folder)")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench_tfckpt-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        src = folder / "source" / "ckpt"
        src.parent.mkdir(exist_ok=True)
        t = time.perf_counter()
        build = BUILD.format(size_bytes=int(args.size_mb * 2**20), src=str(src))
        done = subprocess.run([sys.executable, "-c", build], env={**os.environ, **TF_ENV}, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"building the checkpoint failed:\n{done.stderr[-2000:]}")
        size = sum(p.stat().st_size for p in src.parent.iterdir())
        print(f"checkpoint: {len(tensors(src))} float32 variables, {size / 2**20:.0f} MiB on disk "
              f"(built by TensorFlow in {time.perf_counter() - t:.0f} s); {os.cpu_count()} CPUs, warm page cache",
              flush=True)
        jobs = {
            "modelmorph": (lambda dst: [str(Path(sys.executable).with_name("modelmorph")), "convert", str(src), str(dst),
                                        "--to", "tf-checkpoint", "-q"], {}),
            "tensorflow": (lambda dst: [sys.executable, "-c", TF_JOB.format(src=str(src), dst=str(dst))], TF_ENV),
        }
        results = run(jobs, folder, args.repeat, src)
        ours, theirs = results["modelmorph"], results["tensorflow"]
        print(f"\n{'job':<12}{'median time':>14}{'peak RSS':>14}")
        for label, (seconds, peak) in (("modelmorph", ours), ("tensorflow", theirs)):
            print(f"{label:<12}{seconds:>12.2f} s{peak / 2**20:>10.0f} MiB")
        speed, memory = theirs[0] / ours[0], theirs[1] / ours[1]
        print(f"\nmodelmorph is {speed:.1f}x faster (target >= 5x) and uses 1/{memory:.1f} of TensorFlow's peak "
              f"memory (target <= 1/5): {'met' if speed >= 5 and memory >= 5 else 'NOT met'}")
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
