"""Large ONNX files are parsed without their weights: each initializer's raw data stays in the file
until the importer reads it (reader/wire.py), checked against its declared size first."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import modelmorph
from helpers import assert_close_to_recorded, require
from modelmorph.cli import main
from modelmorph.errors import EXIT_READ


def _mlp(tmp_path: Path, width: int = 600, layers: int = 2, name: str = "big.onnx") -> tuple[Path, list]:
    """Gemm layers of width x width float32 weights (1.4 MB each at 600): past the streaming size."""
    onnx = require("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits, x = [], [], "x"
    for i in range(layers):
        inits += [numpy_helper.from_array((rng.standard_normal((width, width)) / width).astype("float32"), f"w{i}"),
                  numpy_helper.from_array(rng.standard_normal(width).astype("float32"), f"b{i}")]
        nodes.append(helper.make_node("Gemm", [x, f"w{i}", f"b{i}"], [f"h{i}"], name=f"dense_{i}"))
        x = f"h{i}"
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["N", width])], inits)
    path = tmp_path / name
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path, inits


def test_large_initializers_are_left_in_the_file(tmp_path):
    from modelmorph_onnx.reader import load, wire

    onnx = require("onnx")
    path, inits = _mlp(tmp_path)
    assert path.stat().st_size >= load.STREAM_FROM
    stripped = wire.strip(path)
    assert sorted(stripped.raw) == [0, 2]  # the two weight matrices; the biases stay inline
    assert len(stripped.data) < 20_000
    src = load.Onnx(path)
    assert not src.graph.initializer[0].raw_data and src.graph.initializer[1].raw_data
    for tensor in inits:
        np.testing.assert_array_equal(src.tensors[tensor.name](), onnx.numpy_helper.to_array(tensor))


@pytest.mark.interop
def test_a_streamed_model_predicts_as_onnxruntime(keras3, tmp_path):
    ort = require("onnxruntime")
    path, _ = _mlp(tmp_path)
    out = tmp_path / "m.keras"
    modelmorph.convert(path, out)
    x = np.random.default_rng(1).standard_normal((3, 600)).astype("float32")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = session.run(None, {"x": x})
    assert_close_to_recorded([keras3.saving.load_model(out).predict(x, verbose=0)], want, rtol=1e-5)


def test_a_streamed_tensor_shorter_than_declared_is_refused(tmp_path, capsys):
    onnx = require("onnx")
    path, _ = _mlp(tmp_path)
    model = onnx.load(path)
    model.graph.initializer[0].dims[0] = 601  # declares one row more than its raw data holds
    onnx.save(model, path)
    out = tmp_path / "m.keras"
    assert main(["convert", str(path), str(out)]) == EXIT_READ
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "declares [601, 600] (1442400 bytes) but holds 1440000 bytes" in err, err
    assert not out.exists()


def test_truncated_large_files_are_malformed(tmp_path, capsys):
    path, _ = _mlp(tmp_path)
    path.write_bytes(path.read_bytes()[:-100_000])
    assert main(["convert", str(path), str(tmp_path / "m.keras")]) == EXIT_READ
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "malformed protobuf" in err, err


PARSE_MEMORY = """
import sys
from pathlib import Path
from modelmorph_onnx.reader import load
from modelmorph_onnx.reader.shapes import Shapes
import onnx  # its import is not the parse

def rss(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
    raise SystemExit("no " + key)

Shapes(load.Onnx(Path(sys.argv[2]))).infer()  # shape inference's first-use costs, on a small file
before = rss("VmRSS:")
src = load.Onnx(Path(sys.argv[1]))
Shapes(src).infer()
print(rss("VmHWM:") - before)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_parsing_holds_no_weights(tmp_path):
    """A 58 MB file is parsed and shape-inferred with a peak under a tenth of its size."""
    path, _ = _mlp(tmp_path, width=1200, layers=10)
    small, _ = _mlp(tmp_path, width=600, layers=1, name="small.onnx")
    size = path.stat().st_size
    assert size > 50e6
    grown = int(subprocess.run([sys.executable, "-c", PARSE_MEMORY, str(path), str(small)], capture_output=True,
                               text=True, check=True).stdout)
    assert grown < size / 10, (grown, size)
