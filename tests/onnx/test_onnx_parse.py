"""ONNX import without the ``onnx`` package where it is not needed: the file is parsed by the
plugin's own reader (:mod:`modelmorph_onnx.reader.messages`), tensors are decoded by the reader itself (judged here against
onnx's numpy_helper), and ONNX shape inference runs only when a shape is looked up that neither
the file nor the walk knows."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from helpers import FIXTURES, require
from modelmorph.storage import protowire
from modelmorph_onnx.reader import load, messages
from modelmorph_onnx.reader.shapes import Shapes


#: PyTorch exports whose shapes the importer knows without ONNX shape inference (the op11 ones
#: take the Shape of a Constant); test_onnx_import.py judges their imports.
STATIC = ["small_cnn_op17", "skip_net_op17", "mobile_block_op11", "up_reshape_op11"]


def test_importing_cnns_does_not_import_onnx(tmp_path):
    """Half a second of `import onnx` (ml_dtypes mostly) is not paid by a graph whose shapes are static."""
    code = ("import sys, modelmorph\n"
            + "".join(f"modelmorph.convert({str(FIXTURES / 'onnx' / f'{n}.onnx')!r}, {str(tmp_path / f'{n}.keras')!r})\n"
                      for n in STATIC)
            + "print(sorted({'onnx', 'ml_dtypes'} & set(sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"
    assert all((tmp_path / f"{n}.keras").stat().st_size > 0 for n in STATIC)


# (ONNX data type, values): every type the reader reads, with extremes where the type has them.
VALUES = [
    (1, np.array([[1.5, -2.25e-30], [np.inf, 3.4e38]], np.float32)),
    (2, np.array([0, 1, 255], np.uint8)), (3, np.array([-128, 0, 127], np.int8)),
    (4, np.array([0, 65535], np.uint16)), (5, np.array([-32768, 32767], np.int16)),
    (6, np.array([-2**31, 2**31 - 1], np.int32)), (7, np.array([-2**63, 2**63 - 1], np.int64)),
    (9, np.array([True, False, True])), (10, np.array([1.0, -65504.0, 6e-8], np.float16)),
    (11, np.array([1e-300, -1e300], np.float64)), (12, np.array([0, 2**32 - 1], np.uint32)),
    (13, np.array([0, 2**64 - 1], np.uint64)), (1, np.zeros((2, 0, 3), np.float32)),
]


@pytest.mark.parametrize("raw", [False, True], ids=["typed", "raw"])
@pytest.mark.parametrize("data_type,value", VALUES, ids=[f"{v.dtype}{list(v.shape)}" for _, v in VALUES])
def test_tensors_decode_as_onnx_decodes_them(data_type, value, raw):
    onnx = require("onnx")
    from onnx import helper, numpy_helper

    proto = helper.make_tensor("t", data_type, value.shape,
                               value.tobytes() if raw else value.reshape(-1).tolist(), raw=raw)
    ours = messages.Tensor(protowire.parse(proto.SerializeToString()))
    got = load.tensor_loader(FIXTURES, ours)()
    want = numpy_helper.to_array(onnx.TensorProto.FromString(proto.SerializeToString()))
    assert got.dtype == want.dtype == value.dtype and got.shape == want.shape == value.shape
    assert got.tobytes() == want.tobytes()
    assert got.flags.writeable


def _model(tmp_path):
    onnx = require("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    c = helper.make_tensor("c", TensorProto.FLOAT, [4], [1, 2, 3, 4])
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Add", ["r", "c"], ["y"])]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], [c]), opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(tmp_path / "m.onnx"))
    return load.Onnx(tmp_path / "m.onnx")


def test_shapes_run_inference_only_for_a_shape_nobody_knows(tmp_path):
    shapes = Shapes(_model(tmp_path))
    assert shapes.known("x") == ("N", 4) and shapes.known("c") == (4,) and shapes.get("y") == ("N", 4)
    assert shapes.known("r") is None and not shapes.inferred
    shapes["r"] = ("N", None)  # what the walk computed, with a dim it could not tell
    assert shapes.known("r") == ("N", None) and not shapes.inferred
    assert shapes.get("r") == ("N", 4) and shapes.inferred  # inference's complete shape wins
    assert "nothing" not in shapes and shapes.get("nothing", ()) == ()


def test_a_computed_shape_stays_where_inference_knows_less(tmp_path):
    shapes = Shapes(_model(tmp_path))
    shapes["r"] = ("N", 4)
    shapes["z"] = ("N", 7)  # a name inference does not know
    shapes.infer()
    assert shapes["r"] == ("N", 4) and shapes["z"] == ("N", 7) and shapes["x"] == ("N", 4)


def _dense_stack(tmp_path, name: str, width: int, layers: int):
    """Gemm layers, every other one with its weight stored transposed (transB, as PyTorch exports):
    the Keras kernels are then the initializers as they are, or transposed views of them."""
    onnx = require("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits, kernels, x = [], [], [], "x"
    for i in range(layers):
        kernel = (rng.standard_normal((width, width)) / width).astype("float32")
        kernels += [kernel, rng.standard_normal(width).astype("float32")]
        stored = kernel.T.copy() if i % 2 else kernel
        inits += [numpy_helper.from_array(stored, f"w{i}"), numpy_helper.from_array(kernels[-1], f"b{i}")]
        nodes.append(helper.make_node("Gemm", [x, f"w{i}", f"b{i}"], [f"h{i}"], name=f"dense_{i}", transB=i % 2))
        x = f"h{i}"
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["N", width])], inits)
    path = tmp_path / name
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path, kernels


IMPORT_MEMORY = """
import sys
import modelmorph

def rss(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
    raise SystemExit("no " + key)

modelmorph.convert(sys.argv[3], sys.argv[4])  # the modules' first-use costs, on a small file
before = rss("VmRSS:")
modelmorph.convert(sys.argv[1], sys.argv[2])
print(rss("VmHWM:") - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux)")
def test_an_import_holds_about_one_weight_at_a_time(tmp_path):
    """Weights that are views of initializers are read again when written (reader/reload.py):
    a 32 MB import grows the process by a fraction of that (a weight read, its transposed copy,
    what the allocator keeps), and writes every weight bit for bit."""
    import modelmorph

    path, kernels = _dense_stack(tmp_path, "big.onnx", width=1000, layers=8)
    small, _ = _dense_stack(tmp_path, "small.onnx", width=300, layers=2)
    size = path.stat().st_size
    assert size > 30e6
    out = tmp_path / "big.keras"
    grown = int(subprocess.run([sys.executable, "-c", IMPORT_MEMORY, str(path), str(out), str(small),
                                str(tmp_path / "small.keras")], capture_output=True, text=True, check=True).stdout)
    assert grown < size / 2, (grown, size)  # holding every weight: more than size; here 2 or 3 of the 8
    with modelmorph.read(out) as model:
        got = [w.read() for _, _, w in model.iter_weights()]
    assert len(got) == len(kernels)
    for have, want in zip(got, kernels):
        assert have.dtype == want.dtype and have.shape == want.shape and have.tobytes() == want.tobytes()


def test_views_are_taken_again_from_a_fresh_load():
    from modelmorph_onnx.reader.reload import root, view_of

    calls = []

    def loader():
        calls.append(1)
        return np.arange(60, dtype=np.float32).reshape(3, 4, 5)

    base = loader()
    for view in (base.transpose(2, 0, 1), base[:, ::-1, 1:4], base.reshape(-1)[7:19], base[1]):
        again = view_of(view, root(base), loader)
        assert again is not None and again.whole is None  # a plain callable says nothing of the file
        value = again()
        assert value.shape == view.shape and np.array_equal(value, view) and not value.flags.writeable
    other = np.zeros(4, np.float32)
    assert view_of(other, root(base), loader) is None  # not inside base's memory
    assert len(calls) == 5
