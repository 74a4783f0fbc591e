#!/usr/bin/env python
"""modelmorph against Keras 3's own ONNX export on the same job: ResNet50 ``.keras`` → ``.onnx``.

    python benchmarks/bench_onnx.py [--repeat 3] [--keep DIR]
    python benchmarks/bench_onnx.py --large 2.5 [--keep DIR]

Keras' side is ``keras.saving.load_model(src)``, one call (Keras refuses to export a model never
called), then ``.export(dst, format="onnx")`` on TensorFlow, which
needs ``tf2onnx`` (``pip install tf2onnx``; it is not a test extra). Both run in fresh
subprocesses, measured as in ``bench_keras.py`` (median wall time, largest peak resident memory,
after one unmeasured run). Afterwards both outputs run in onnxruntime on the same input and the
largest difference between them is printed. Targets: at least 20x faster, at most 1/20 of Keras'
peak memory. Run it from a regular (non-editable) install.

``--large GB`` instead exports a synthetic model of about that many gigabytes of float32
weights, built directly as modelmorph IR (no Keras: a Sequential stack of 4096-wide Dense layers
whose weights are lazy loaders that make each array only when the writer reads it), as ``.onnx``
with its weights in external data (chosen automatically over the threshold), in one subprocess;
it reports wall time and peak resident memory, which must stay far below the model's size.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_keras import KERAS_ENV, modelmorph_command, measure, resnet50, run

# Keras refuses to export a model never called ("The model provided has never called"): one call first.
KERAS_EXPORT = ("import keras, numpy as np; m = keras.saving.load_model({src!r}); m(np.zeros((1, 224, 224, 3), 'float32')); "
                "m.export({dst!r}, format='onnx')")
COMPARE = """
import numpy as np, onnxruntime as ort
x = np.random.default_rng(0).uniform(0, 255, (2, 224, 224, 3)).astype("float32")
outs = []
for path in {paths!r}:
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    outs.append(s.run(None, {{s.get_inputs()[0].name: x}})[0])
print(f"{{float(np.max(np.abs(outs[0] - outs[1]))):.2e}}")
"""


# The synthetic model: Keras 3's Sequential of Dense layers as modelmorph IR, each weight made
# only when read (np.full: no time spent on random numbers; the same bytes cost to write).
LARGE = """
import sys, numpy as np, modelmorph
from modelmorph import Layer, Model, Weight

gigabytes, width, dst = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
per_layer = (width * width + width) * 4
count = max(1, round(gigabytes * 1e9 / per_layer))
policy = {{"module": "keras", "class_name": "DTypePolicy", "config": {{"name": "float32"}}, "registered_name": None}}


def dense(i):
    name = f"dense_{{i}}"
    config = {{"name": name, "trainable": True, "dtype": policy, "units": width,
              "activation": "relu" if i < count - 1 else "linear", "use_bias": True,
              "kernel_initializer": {{"module": "keras.initializers", "class_name": "GlorotUniform",
                                     "config": {{"seed": None}}, "registered_name": None}},
              "bias_initializer": {{"module": "keras.initializers", "class_name": "Zeros", "config": {{}},
                                   "registered_name": None}},
              "kernel_regularizer": None, "bias_regularizer": None, "kernel_constraint": None,
              "bias_constraint": None, "quantization_config": None}}
    weights = [Weight("kernel", (width, width), "float32", loader=lambda i=i: np.full((width, width), 1 / width + i * 1e-6, np.float32)),
               Weight("bias", (width,), "float32", loader=lambda i=i: np.full(width, 0.01 * i, np.float32))]
    return Layer(name, "Dense", config, module="keras.layers", build_config={{"input_shape": [None, width]}},
                 weights=weights)


inputs = Layer("input_layer", "InputLayer", {{"batch_shape": [None, width], "dtype": "float32", "sparse": False,
                                              "ragged": False, "name": "input_layer", "optional": False}},
               module="keras.layers")
model = Model("large_mlp", "Sequential", {{"name": "large_mlp", "trainable": True, "dtype": policy,
                                          "build_input_shape": [None, width]}}, module="keras",
              build_config={{"input_shape": [None, width]}}, layers=[inputs, *(dense(i) for i in range(count))],
              metadata={{"dialect": "keras3", "source_format": "synthetic"}})
modelmorph.write(model, dst, force=True)
print(count, count * per_layer)
"""


def large(folder: Path, gigabytes: float, keep: bool, width: int = 4096) -> None:
    """Export the synthetic model once, measured; then look at what was written."""
    folder.mkdir(parents=True, exist_ok=True)
    dst = folder / "large.onnx"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(KERAS_ENV, PYTHONPYCACHEPREFIX=str(folder / "pycache"))
    argv = [sys.executable, "-c", LARGE.format(), str(gigabytes), str(width), str(dst)]
    elapsed, peak = measure(argv, env)  # one run, no warm-up: the disk write dominates
    data = dst.with_name(dst.name + ".data")
    per_layer = (width * width + width) * 4
    count = max(1, round(gigabytes * 1e9 / per_layer))
    model_bytes = count * per_layer
    where = f"in external data ({data.stat().st_size / 1e9:.2f} GB {data.name})" if data.exists() else "inline"
    print(f"synthetic Dense stack, {count} layers of width {width}: {model_bytes / 1e9:.2f} GB of weights {where}, "
          f".onnx {dst.stat().st_size / 1e6:.1f} MB; python {sys.version.split()[0]}; {os.cpu_count()} CPU(s)")
    print(f"IR -> .onnx: {elapsed:.2f} s, peak RSS {peak / 2**20:.0f} MiB "
          f"({peak / max(model_bytes, 1):.3f} of the weights' size), "
          f"{model_bytes / max(elapsed, 1e-9) / 1e9:.2f} GB/s")
    if not keep:
        dst.unlink(missing_ok=True)
        data.unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="work in this folder and keep the files")
    parser.add_argument("--large", type=float, metavar="GB",
                        help="export a synthetic model of this many GB (external data) instead; time and peak memory")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench-onnx-"))
    if args.large:
        large(folder, args.large, keep=args.keep is not None)
        return
    src = resnet50(folder, args.repeat)
    ours = run("modelmorph", lambda dst: [*modelmorph_command(), "convert", "-q", "--force",
                                          str(src), f"{dst}.onnx"], folder, args.repeat)
    theirs = run("keras", lambda dst: [sys.executable, "-c", KERAS_EXPORT.format(src=str(src), dst=f"{dst}.onnx")],
                 folder, args.repeat)
    print(f"{'job':<22}{'modelmorph':>18}{'keras':>18}{'speed-up':>10}{'memory':>9}")
    print(f"{'.keras -> .onnx':<22}{ours[0]:7.2f} s {ours[1] / 2**20:5.0f} MiB{theirs[0]:7.2f} s "
          f"{theirs[1] / 2**20:5.0f} MiB{theirs[0] / ours[0]:9.1f}x{ours[1] / theirs[1]:9.3f}")
    difference = subprocess.run([sys.executable, "-c", COMPARE.format(
        paths=[str(folder / "modelmorph-0.onnx"), str(folder / "keras-0.onnx")])], capture_output=True, text=True)
    print(f"onnxruntime, the two exports on the same input: max |difference| {difference.stdout.strip() or '?'}")
    print("speed-up = Keras time / modelmorph time (target >= 20); memory = modelmorph peak / Keras peak (target <= 0.05)")


if __name__ == "__main__":
    main()
