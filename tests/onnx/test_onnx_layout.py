"""ONNX import layouts: the graph's own interface (default) and ``-O layout=channels_last``, and
``-O input_shape``. Judged by onnxruntime on the original file against Keras 3 predicting from
modelmorph's `.keras` in this process (channels-last inputs and outputs moved for the comparison)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import modelmorph
from helpers import FIXTURES, assert_close_to_recorded, require
from modelmorph.cli import main
from modelmorph.errors import EXIT_READ, EXIT_USAGE

RTOL = 1e-4
ONNX = FIXTURES / "onnx"
ALL_FIXTURES = sorted(p.name for p in ONNX.glob("*.onnx"))
CNNS = ["small_cnn", "skip_net", "mobile_block", "up_reshape"]


def _case(name: str) -> str:
    return name.rsplit("_op", 1)[0]


def _to_cl(x: np.ndarray) -> np.ndarray:
    return np.moveaxis(x, 1, -1) if x.ndim >= 3 and x.dtype.kind == "f" else x


def _from_cl(x: np.ndarray) -> np.ndarray:
    return np.moveaxis(x, -1, 1) if x.ndim >= 3 and x.dtype.kind == "f" else x


def _ort(path: Path, feeds: list[np.ndarray]) -> list[np.ndarray]:
    ort = require("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {i.name: x for i, x in zip(session.get_inputs(), feeds)})


def _predict(keras3, path: Path, feeds: list[np.ndarray], channels_last: bool) -> tuple[object, list[np.ndarray]]:
    model = keras3.saving.load_model(path, safe_mode=True)
    given = [_to_cl(x) for x in feeds] if channels_last else feeds
    got = model.predict(given if len(given) > 1 else given[0], verbose=0)
    got = [np.asarray(g) for g in (got if isinstance(got, (list, tuple)) else [got])]
    return model, [_from_cl(g) for g in got] if channels_last else got


def _classes(path: Path) -> list[str]:
    with modelmorph.read(path) as model:
        return [layer.class_name for layer in model.layers]


@pytest.mark.interop
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("fixture", ALL_FIXTURES)
def test_every_fixture_in_both_layouts(fixture, layout, keras3, tmp_path):
    io = np.load(ONNX / f"{_case(fixture)}.io.npz")
    feeds = [io[k] for k in sorted(io.files) if k.startswith("in_")]
    out = tmp_path / "m.keras"
    modelmorph.convert(ONNX / fixture, out, options={"layout": layout})
    want = _ort(ONNX / fixture, feeds)
    cl = layout == "channels_last"
    model, got = _predict(keras3, out, feeds, cl)
    assert [tuple(t.shape[1:]) for t in model.inputs] == [(_to_cl(x) if cl else x).shape[1:] for x in feeds]
    assert [tuple(o.shape[1:]) for o in model.outputs] == [(_to_cl(w) if cl else w).shape[1:] for w in want]
    assert_close_to_recorded(got, want, rtol=RTOL)


@pytest.mark.parametrize("case", CNNS)
def test_channels_last_cnns_hold_no_permute(case, tmp_path):
    """Channels-last from input to output: no Permute anywhere (none before the Flatten: the
    Dense after it takes its kernel rows in the channels-last order)."""
    cl, default = tmp_path / "cl.keras", tmp_path / "cf.keras"
    modelmorph.convert(ONNX / f"{case}_op17.onnx", cl, options={"layout": "channels_last"})
    modelmorph.convert(ONNX / f"{case}_op17.onnx", default)
    assert _classes(cl).count("Permute") == 0, _classes(cl)
    # The graph's own interface: one Permute after the NCHW input and one before each
    # rank >= 3 output, none inside.
    outputs = json.loads((ONNX / "MANIFEST.json").read_text())["cases"][case]["output"]
    assert _classes(default).count("Permute") == 1 + (len(outputs) >= 3), _classes(default)


def test_channels_last_flatten_reads_keras_order(tmp_path):
    out = tmp_path / "cnn.keras"
    modelmorph.convert(ONNX / "small_cnn_op17.onnx", out, options={"layout": "nhwc"})  # the synonym
    classes = _classes(out)
    assert "Flatten" in classes and "Permute" not in classes[:classes.index("Flatten")]
    with modelmorph.read(out) as model:
        assert model.layers[0].config["batch_shape"] == [None, 14, 14, 3]


# -- hand-built graphs for the ops that read axes ------------------------------------------------

def _graph(tmp_path: Path, build, opset: int = 17, in_shape=(2, 4, 5, 6)) -> Path:
    """A model Conv(4→4, 1x1) → whatever ``build(helper, x)`` adds; returns its path."""
    onnx = require("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)
    inits = [numpy_helper.from_array(rng.standard_normal((4, in_shape[1], 1, 1)).astype("float32"), "w")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv")]
    more_nodes, more_inits, outputs = build(helper, numpy_helper, rng)
    graph = helper.make_graph(nodes + more_nodes, "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *in_shape[1:]])],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
                              inits + more_inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    path = tmp_path / "g.onnx"
    onnx.save(model, path)
    return path


def _const(numpy_helper, name, value):
    return numpy_helper.from_array(np.asarray(value), name)


def _softmax_channels(helper, nh, rng):
    return [helper.make_node("Softmax", ["c"], ["y"], axis=1)], [], ["y"]


def _reduce_channels(helper, nh, rng):
    return [helper.make_node("ReduceMean", ["c"], ["y"], axes=[1], keepdims=1),
            helper.make_node("ReduceSum", ["c", "ax"], ["z"], keepdims=0)], [_const(nh, "ax", np.array([1, 3]))], \
        ["y", "z"]


def _concat_and_transpose(helper, nh, rng):
    return [helper.make_node("Relu", ["x"], ["r"]),
            helper.make_node("Concat", ["c", "r"], ["y"], axis=1),
            helper.make_node("Transpose", ["y"], ["t"], perm=[0, 2, 3, 1]),
            helper.make_node("Reshape", ["t", "shape"], ["z"])], [_const(nh, "shape", np.array([0, 30, 8]))], ["z"]


def _flatten_shared(helper, nh, rng):
    """A Flatten read by a Gemm and also a graph output: its features must be in ONNX order."""
    w = rng.standard_normal((120, 3)).astype("float32")
    return [helper.make_node("Flatten", ["c"], ["f"]),
            helper.make_node("Gemm", ["f", "fw"], ["y"])], [_const(nh, "fw", w)], ["y", "f"]


def _flatten_to_matmul_add(helper, nh, rng):
    w = rng.standard_normal((120, 3)).astype("float32")
    return [helper.make_node("Reshape", ["c", "shape"], ["f"]),
            helper.make_node("MatMul", ["f", "fw"], ["m"]),
            helper.make_node("Add", ["m", "b"], ["y"]),
            helper.make_node("Softmax", ["y"], ["p"], axis=-1)], \
        [_const(nh, "fw", w), _const(nh, "b", np.ones(3, "float32")), _const(nh, "shape", np.array([-1, 120]))], ["p"]


def _gather_last(helper, nh, rng):
    """Gather over the width axis (ONNX axis 3) of a channels-last tensor."""
    return [helper.make_node("Gather", ["c", "idx"], ["y"], axis=3)], [_const(nh, "idx", np.array([5, 0, 2]))], ["y"]


#: name → (graph, Permutes expected channels-last): where the semantics demand one (a Flatten
#: the graph also outputs is in ONNX order; a rank-3 output comes back channels-last).
GRAPHS = {"softmax_channels": (_softmax_channels, 0), "reduce_channels": (_reduce_channels, 0),
          "concat_and_transpose": (_concat_and_transpose, 1), "flatten_shared": (_flatten_shared, 1),
          "flatten_to_matmul_add": (_flatten_to_matmul_add, 0), "gather_last": (_gather_last, 0)}


@pytest.mark.interop
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_axis_ops_after_the_layout_change(name, layout, keras3, tmp_path):
    build, permutes = GRAPHS[name]
    src = _graph(tmp_path, build)
    x = np.random.default_rng(3).standard_normal((2, 4, 5, 6)).astype("float32")
    out = tmp_path / "m.keras"
    modelmorph.convert(src, out, options={"layout": layout})
    _, got = _predict(keras3, out, [x], layout == "channels_last")
    assert_close_to_recorded(got, _ort(src, [x]), rtol=RTOL)
    if layout == "channels_last":
        assert _classes(out).count("Permute") == permutes, _classes(out)


def test_layout_is_a_usage_error_when_unknown(tmp_path, capsys):
    code = main(["convert", str(ONNX / "mlp_op17.onnx"), str(tmp_path / "m.keras"), "-O", "layout=hwcn"])
    assert code == EXIT_USAGE and "layout" in capsys.readouterr().err


# -- -O input_shape ------------------------------------------------------------------------------

def _symbolic_cnn(tmp_path: Path) -> Path:
    """small_cnn with its height and width made symbolic (as a dynamic-axes export declares them)."""
    onnx = require("onnx")
    model = onnx.load(ONNX / "small_cnn_op17.onnx")
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[0].dim_param, dims[2].dim_param, dims[3].dim_param = "batch", "height", "width"
    del model.graph.value_info[:]
    path = tmp_path / "symbolic.onnx"
    onnx.save(model, path)
    return path


@pytest.mark.interop
def test_input_shape_fixes_symbolic_dims(keras3, tmp_path, capsys):
    src = _symbolic_cnn(tmp_path)
    out = tmp_path / "m.keras"
    code = main(["convert", str(src), str(out)])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_READ and len(err.splitlines()) == 1 and "-O input_shape=input:" in err, err
    assert not out.exists()
    assert main(["convert", str(src), str(out), "-O", "input_shape=input:1x3x14x14"]) == 0
    x = np.load(ONNX / "small_cnn.io.npz")["in_0"]  # batch 2: the batch stays dynamic
    model, got = _predict(keras3, out, [x], False)
    assert tuple(model.inputs[0].shape) == (None, 3, 14, 14)
    assert_close_to_recorded(got, _ort(src, [x]), rtol=RTOL)
    both = tmp_path / "cl.keras"
    modelmorph.convert(src, both, options={"input_shape": "input:Nx3x14x14", "layout": "channels_last"})
    model, got = _predict(keras3, both, [x], True)
    assert tuple(model.inputs[0].shape) == (None, 14, 14, 3)
    assert_close_to_recorded(got, _ort(src, [x]), rtol=RTOL)


@pytest.mark.parametrize("value, problem", [
    ("input", "not NAME:DIMS"), ("input:1x3x14", "rank 4, not 3"), ("nope:1x3x14x14", "no graph input 'nope'"),
    ("input:1x4x14x14", "dim 1 is 3 in the graph"), ("input:1x3xax14", "'a' is not a dimension"),
])
def test_input_shape_mistakes_are_usage_errors(value, problem, tmp_path, capsys):
    out = tmp_path / "m.keras"
    code = main(["convert", str(_symbolic_cnn(tmp_path)), str(out), "-O", f"input_shape={value}"])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_USAGE and problem in err and len(err.splitlines()) == 1, err
    assert not out.exists()
