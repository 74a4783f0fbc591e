#!/usr/bin/env python
"""modelmorph against Keras 3 on the migration job: a Keras 2 ResNet50 ``.h5`` → Keras 3 ``.keras``.

    /work/venv/bin/python benchmarks/bench_h5.py [--repeat 3] [--keep DIR]

Builds ``tf_keras.applications.ResNet50(weights=None)`` (random weights, seeded) and saves it
as a legacy ``.h5`` in a temporary folder, then runs the job in fresh subprocesses: modelmorph's
CLI, and Keras 3 doing it itself (``keras.models.load_model(h5)`` + ``save(.keras)``), measuring
wall time and the peak resident memory of each subprocess (``bench_keras.run``: one warm-up,
then the median time and the largest peak of ``--repeat`` runs), reported as ratios; at the
end, Keras 3 loads both outputs and compares their predictions. Targets: at least 20x faster, at most 1/5 of
Keras' peak memory.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_keras import KERAS_ENV, modelmorph_command, run  # the same measuring (warm-up, median, peak RSS) as the Keras benchmark

BUILD = """
import tf_keras
tf_keras.utils.set_random_seed(50)
tf_keras.applications.ResNet50(weights=None).save({src!r})
"""
KERAS_JOB = "import keras; keras.models.load_model({src!r}).save({dst!r})"
CHECK = """
import keras, numpy as np
x = np.random.default_rng(0).standard_normal((2, 224, 224, 3)).astype("float32")
ours, theirs = (keras.saving.load_model(p).predict(x, verbose=0) for p in ({ours!r}, {theirs!r}))
print(f"Keras 3 predictions from the two outputs differ by at most {{float(np.max(np.abs(ours - theirs))):.2e}}")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="work in this folder and keep the files")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench-h5-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        bench(folder, args.repeat)
    finally:
        if args.keep is None:
            shutil.rmtree(folder)  # some hundreds of MB


def bench(folder: Path, repeat: int) -> None:
    src = folder / "resnet50.h5"
    if not src.exists():
        subprocess.run([sys.executable, "-c", BUILD.format(src=str(src))], env={**os.environ, **KERAS_ENV}, check=True)
    print(f"ResNet50 Keras 2 .h5: {src.stat().st_size / 1e6:.1f} MB; {repeat} run(s) per job; "
          f"python {sys.version.split()[0]}")
    mm_time, mm_peak = run("modelmorph", lambda dst: [*modelmorph_command(), "convert", "-q",
                                                     "--force", str(src), f"{dst}.keras"], folder, repeat)
    k_time, k_peak = run("keras", lambda dst: [sys.executable, "-c", KERAS_JOB.format(src=str(src), dst=f"{dst}.keras")],
                         folder, repeat)
    print(f"{'job':<18}{'modelmorph':>18}{'keras':>18}{'speed-up':>10}{'memory':>9}")
    print(f"{'.h5 -> .keras':<18}{mm_time:7.2f} s {mm_peak / 2**20:5.0f} MiB{k_time:7.2f} s {k_peak / 2**20:5.0f} MiB"
          f"{k_time / mm_time:9.1f}x{mm_peak / k_peak:9.2f}")
    print("speed-up = Keras time / modelmorph time (target >= 20); memory = modelmorph peak / Keras peak (target <= 0.20)")
    check = CHECK.format(ours=str(folder / "modelmorph-0.keras"), theirs=str(folder / "keras-0.keras"))
    subprocess.run([sys.executable, "-c", check], env={**os.environ, **KERAS_ENV}, check=True)


if __name__ == "__main__":
    main()
