"""Rough throughput of the pure-Python TensorBundle reader/writer vs TensorFlow.

Not collected by pytest.  Run:

    cd /work/main && PYTHONPATH=plugins /work/venv/bin/python tests/tfckpt_lowlevel/bench_throughput.py [MB]

Builds ~MB megabytes (default 200) of float32 tensors of mixed sizes in a temporary
folder (deleted afterwards), then times: our writer, our reader (every tensor, CRC
checked), TensorFlow's ``tf.train.load_checkpoint`` reading every tensor, and TF's own
writer.  Numbers are warm page-cache numbers on whatever machine runs it.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import tracemalloc

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "plugins"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from modelmorph_tfckpt.bundle import BundleReader, BundleWriter  # noqa: E402


def _timed(label: str, mb: float, fn, repeat: int = 3) -> None:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    best = min(times)
    print(f"{label:<48} best {best:6.3f} s  {mb / best:7.0f} MB/s   (first run {mb / times[0]:7.0f} MB/s)")


def main() -> None:
    target_mb = float(sys.argv[1]) if len(sys.argv) > 1 else 200.0
    rng = np.random.default_rng(0)
    cycle = [(1024, 1024)] + [(256, 256), (64, 64, 3, 3), (3072,), (128,), (512, 128), (300, 100)] * 5
    shapes = []
    total = 0
    while total < target_mb * 1e6:
        shape = cycle[len(shapes) % len(cycle)]
        shapes.append(shape)
        total += int(np.prod(shape)) * 4
    arrays = {f"model/layer_{j:04d}/w/.ATTRIBUTES/VARIABLE_VALUE": rng.standard_normal(s, dtype=np.float32)
              for j, s in enumerate(shapes)}
    mb = total / 1e6
    print(f"{len(arrays)} float32 tensors, {mb:.1f} MB (warm page cache, {os.cpu_count()} CPUs)")
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, "ours", "ckpt")

        def write_ours():
            with BundleWriter(prefix) as w:
                for k, v in arrays.items():
                    w.add(k, v)

        def read_ours(p=prefix, verify=True):
            n = 0
            with BundleReader(p, verify_checksums=verify) as r:
                for key in r:
                    a = r.read(key)
                    n += a.nbytes if a.dtype != object else 0  # TF adds its object graph
            assert n == total

        def read_tf(p=prefix):
            ref = tf.train.load_checkpoint(p)
            for key in ref.get_variable_to_shape_map():
                ref.get_tensor(key)

        _timed("ours: BundleWriter (add every tensor, finish)", mb, write_ours)
        _timed("ours: BundleReader read all, CRC checked", mb, read_ours)
        _timed("ours: BundleReader read all, no CRC check", mb, lambda: read_ours(verify=False))
        _timed("tf.train.load_checkpoint read all (our file)", mb, read_tf)

        m = tf.Module()
        m.vs = [tf.Variable(v) for v in arrays.values()]
        tf_prefix = os.path.join(tmp, "tf", "ckpt")
        _timed("tf.train.Checkpoint.write", mb, lambda: tf.train.Checkpoint(model=m).write(tf_prefix))
        _timed("ours: BundleReader read all (TF's file)", mb, lambda: read_ours(tf_prefix))
        _timed("tf.train.load_checkpoint read all (TF's file)", mb, lambda: read_tf(tf_prefix))

        tracemalloc.start()
        read_ours()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        largest = max(v.nbytes for v in arrays.values())
        print(f"ours: peak traced memory while reading all: {peak / 1e6:.1f} MB (largest tensor {largest / 1e6:.1f} MB)")
        tracemalloc.start()
        write_ours()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(f"ours: peak traced memory while writing all (inputs preallocated): {peak / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
