#!/usr/bin/env python
"""ONNX import: a ResNet50-sized ``.onnx`` (about 100 MB) → ``.keras`` with modelmorph, beside
onnxruntime creating an ``InferenceSession`` on the same file.

    python benchmarks/bench_onnx_import.py [--repeat 3] [--keep DIR]

The ``.onnx`` is ResNet50 (keras.applications, random weights) exported by modelmorph itself
from the ``.keras`` that ``bench_keras.py`` builds. Each job runs in a fresh subprocess (interpreter
start and imports included), measured as in ``bench_keras.py``: median wall time and largest
peak resident memory of ``--repeat`` runs after one unmeasured run. Afterwards Keras 3 predicts
from the imported ``.keras`` and onnxruntime from the ``.onnx`` on the same input, and the
largest difference is printed. Aims: under 1 s, peak memory not much above the weights.
Run it from a regular (non-editable) install.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_keras import KERAS_ENV, modelmorph_command, resnet50, run

ORT_SESSION = ("import onnxruntime as ort; "
               "ort.InferenceSession({src!r}, providers=['CPUExecutionProvider'])")
COMPARE = """
import numpy as np, keras, onnxruntime as ort
x = np.random.default_rng(0).uniform(0, 255, (2, 224, 224, 3)).astype("float32")
s = ort.InferenceSession({onnx!r}, providers=["CPUExecutionProvider"])
want = s.run(None, {{s.get_inputs()[0].name: x}})[0]
got = keras.saving.load_model({keras!r}).predict(x, verbose=0)
print(f"{{float(np.max(np.abs(got - want))):.2e}} (outputs up to {{float(np.max(np.abs(want))):.2f}})")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="work in this folder and keep the files")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench-onnx-import-"))
    keras_file = resnet50(folder, args.repeat)
    onnx_file = folder / "resnet50.onnx"
    if not onnx_file.exists():
        subprocess.run([*modelmorph_command(), "convert", "-q", str(keras_file), str(onnx_file)],
                       check=True)
    weights = onnx_file.stat().st_size
    print(f"ResNet50 .onnx: {weights / 1e6:.1f} MB ({weights / 2**20:.0f} MiB)")
    ours = run("import", lambda dst: [*modelmorph_command(), "convert", "-q", "--force",
                                      str(onnx_file), f"{dst}.keras"], folder, args.repeat)
    theirs = run("ort", lambda dst: [sys.executable, "-c", ORT_SESSION.format(src=str(onnx_file))], folder,
                 args.repeat)
    print(f"{'job':<40}{'time':>8}{'peak memory':>14}")
    print(f"{'modelmorph .onnx -> .keras':<40}{ours[0]:7.2f}s{ours[1] / 2**20:10.0f} MiB")
    print(f"{'onnxruntime InferenceSession(.onnx)':<40}{theirs[0]:7.2f}s{theirs[1] / 2**20:10.0f} MiB")
    result = subprocess.run([sys.executable, "-c", COMPARE.format(onnx=str(onnx_file), keras=str(folder / "import-0.keras"))],
                            env={**__import__("os").environ, **KERAS_ENV}, capture_output=True, text=True, check=True)
    print(f"largest difference, Keras 3 on the import vs onnxruntime on the .onnx: {result.stdout.strip()}")


if __name__ == "__main__":
    main()
