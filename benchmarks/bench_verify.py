#!/usr/bin/env python
"""``modelmorph verify`` on ResNet50: a Keras 2 ``.h5`` (tf_keras, random weights) against its
``.keras`` conversion, with each engine.

    python benchmarks/bench_verify.py [--repeat 3] [--keep DIR]

Each run is a fresh ``modelmorph verify A B --engine E`` subprocess (4 samples of 224x224x3), timed
with its peak memory as in ``bench_keras.py``. The reference evaluator needs only the onnx
package; onnxruntime is used when installed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_keras import KERAS_ENV, modelmorph_command, run

BUILD = """
import tf_keras
tf_keras.utils.set_random_seed(50)
tf_keras.applications.ResNet50(weights=None).save({src!r})
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="work in this folder and keep the files")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench-verify-"))
    folder.mkdir(parents=True, exist_ok=True)
    h5, keras = folder / "resnet50.h5", folder / "resnet50.keras"
    if not h5.exists():
        subprocess.run([sys.executable, "-c", BUILD.format(src=str(h5))], env={**os.environ, **KERAS_ENV},
                       check=True, stderr=subprocess.DEVNULL)
    subprocess.run([*modelmorph_command(), "convert", "-q", "--force", str(h5), str(keras)], check=True)
    print(f"ResNet50 .h5: {h5.stat().st_size / 1e6:.1f} MB; {args.repeat} run(s) per engine; {os.cpu_count()} CPU(s)")
    for engine in ("onnxruntime", "reference"):
        seconds, peak = run(f"verify-{engine}", lambda _: [*modelmorph_command(), "verify", str(h5),
                                                           str(keras), "--engine", engine], folder, args.repeat)
        print(f"verify .h5 vs .keras, engine {engine:<12} {seconds:7.2f} s {peak / 2**20:6.0f} MiB")


if __name__ == "__main__":
    main()
