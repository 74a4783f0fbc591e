#!/usr/bin/env python
"""modelmorph against tf_keras on the migration job: a Keras 2 ResNet50 SavedModel directory → Keras 3 ``.keras``.

    /work/venv/bin/python benchmarks/bench_savedmodel.py [--repeat 3] [--keep DIR]

Builds ``tf_keras.applications.ResNet50(weights=None)`` (random weights, seeded) and saves it
with ``model.save(dir, save_format="tf")`` in a temporary folder (tests/fixtures/
generate_savedmodel.py ``--resnet50``), then runs the job in fresh subprocesses: modelmorph's
CLI, and what a user must do without it, tf_keras loading the directory and saving a
``.keras`` archive (``tf_keras.models.load_model(dir)`` + ``save(x.keras)``; Keras 3 cannot
load the directory at all). Wall time and peak resident memory of each subprocess are
measured as ``bench_keras.run`` does (one warm-up, then the median time and the largest peak
of ``--repeat`` runs) and reported as ratios; at the end, Keras 3 loads modelmorph's output
and predicts what tf_keras predicts from the SavedModel. Targets: at least 50x faster, at most
1/10 of tf_keras' peak memory.
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

GENERATOR = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "generate_savedmodel.py"
TF_KERAS_JOB = "import tf_keras; tf_keras.models.load_model({src!r}).save({dst!r})"
CHECK_TF_KERAS = """
import numpy as np, tf_keras
x = np.random.default_rng(0).standard_normal((2, 224, 224, 3)).astype("float32")
np.save({out!r}, tf_keras.models.load_model({src!r}, compile=False).predict(x, verbose=0))
"""
CHECK_KERAS3 = """
import keras, numpy as np
x = np.random.default_rng(0).standard_normal((2, 224, 224, 3)).astype("float32")
ours, theirs = keras.saving.load_model({ours!r}).predict(x, verbose=0), np.load({theirs!r})
print(f"Keras 3 on modelmorph's .keras vs tf_keras on the SavedModel: predictions differ by at most "
      f"{{float(np.max(np.abs(ours - theirs))):.2e}}")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="work in this folder and keep the files")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench-savedmodel-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        bench(folder, args.repeat)
    finally:
        if args.keep is None:
            shutil.rmtree(folder)  # some hundreds of MB


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def bench(folder: Path, repeat: int) -> None:
    src = folder / "resnet50_savedmodel"
    env = {**os.environ, **KERAS_ENV}
    if not (src / "saved_model.pb").exists():
        subprocess.run([sys.executable, str(GENERATOR), "--resnet50", str(src)], env=env, check=True,
                       stderr=subprocess.DEVNULL)
    print(f"ResNet50 tf_keras SavedModel: {_size(src) / 1e6:.1f} MB (saved_model.pb "
          f"{(src / 'saved_model.pb').stat().st_size / 1e6:.1f} MB); {repeat} run(s) per job; "
          f"python {sys.version.split()[0]}; {os.cpu_count()} CPU(s)")
    mm_time, mm_peak = run("modelmorph", lambda dst: [*modelmorph_command(), "convert", "-q",
                                                     "--force", str(src), f"{dst}.keras"], folder, repeat)
    k_time, k_peak = run("tf_keras", lambda dst: [sys.executable, "-c",
                                                  TF_KERAS_JOB.format(src=str(src), dst=f"{dst}.keras")],
                         folder, repeat)
    print(f"{'job':<22}{'modelmorph':>18}{'tf_keras':>18}{'speed-up':>10}{'memory':>9}")
    print(f"{'SavedModel -> .keras':<22}{mm_time:7.2f} s {mm_peak / 2**20:5.0f} MiB{k_time:7.2f} s "
          f"{k_peak / 2**20:5.0f} MiB{k_time / mm_time:9.1f}x{mm_peak / k_peak:9.2f}")
    print("speed-up = tf_keras time / modelmorph time (target >= 50); "
          "memory = modelmorph peak / tf_keras peak (target <= 0.10)")
    expected = folder / "tf_keras-predictions.npy"
    subprocess.run([sys.executable, "-c", CHECK_TF_KERAS.format(src=str(src), out=str(expected))], env=env,
                   check=True, stderr=subprocess.DEVNULL)
    subprocess.run([sys.executable, "-c", CHECK_KERAS3.format(ours=str(folder / "modelmorph-0.keras"),
                                                              theirs=str(expected))], env=env, check=True,
                   stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
