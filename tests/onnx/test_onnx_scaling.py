"""ONNX import costs time in proportion to the graph, not to its square.

Each activation the importer considers folding into the layer before it asked two questions
of the whole graph (which names share this Keras tensor, which layer calls read it): a graph of
8,000 such nodes in 20 parallel chains took 34 s to import (`info`), 2,000 nodes 2 s. And each
weighted layer was compared with every earlier one of the same config, to find one layer called
twice: 4,000 Dense layers took 11 s. The judge is the number of Python function calls, which,
unlike time, is the same on every machine: 4 times the nodes must cost about 4 times the calls.
"""

from __future__ import annotations

import cProfile
import pstats

import numpy as np
import pytest

import modelmorph

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def _chains(path, width: int, depth: int):
    """``width`` chains of ``depth`` Relu/Sigmoid nodes from one input, summed at the end."""
    nodes = []
    for w in range(width):
        previous = "x"
        for d in range(depth):
            out = f"c{w}_{d}"
            nodes.append(helper.make_node("Relu" if d % 2 == 0 else "Sigmoid", [previous], [out], name=f"n{w}_{d}"))
            previous = out
    nodes.append(helper.make_node("Sum", [f"c{w}_{depth - 1}" for w in range(width)], ["y"], name="sum"))
    graph = helper.make_graph(nodes, "chains", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def _dense_chains(path, width: int, depth: int, shared: bool):
    """``width`` chains of ``depth`` Gemm nodes (Dense layers of one config), summed at the end;
    each with weights of its own, or (``shared``) all reading one kernel, each with its own bias."""
    rng = np.random.default_rng(0)
    nodes, weights = [], [numpy_helper.from_array(rng.normal(size=(4, 4)).astype("float32"), "w")]
    for w in range(width):
        previous = "x"
        for d in range(depth):
            i = w * depth + d
            kernel = "w" if shared else f"w{i}"
            if not shared:
                weights.append(numpy_helper.from_array(rng.normal(size=(4, 4)).astype("float32"), kernel))
            weights.append(numpy_helper.from_array(rng.normal(size=(4,)).astype("float32"), f"b{i}"))
            nodes.append(helper.make_node("Gemm", [previous, kernel, f"b{i}"], [f"h{i}"], name=f"g{i}", transB=1))
            previous = f"h{i}"
    nodes.append(helper.make_node("Sum", [f"h{w * depth + depth - 1}" for w in range(width)], ["y"], name="sum"))
    graph = helper.make_graph(nodes, "dense", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], initializer=weights)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def _calls(path) -> tuple[int, int]:
    """(Python function calls made reading ``path``, layers read)."""
    profile = cProfile.Profile()
    profile.enable()
    model = modelmorph.read(path)
    profile.disable()
    layers = len(model.layers)
    model.close()
    return pstats.Stats(profile).total_calls, layers


def test_importing_four_times_the_nodes_costs_about_four_times_the_work(tmp_path):
    _calls(_chains(tmp_path / "warm.onnx", 2, 10))  # first-use imports and caches out of the count
    small, small_layers = _calls(_chains(tmp_path / "small.onnx", 4, 100))
    large, large_layers = _calls(_chains(tmp_path / "large.onnx", 16, 100))
    assert large_layers > 3.9 * small_layers  # every node a layer: nothing was folded away
    # linear: ~4x; the per-node passes over the whole graph made it ~13x at these sizes
    assert large / small < 6, (small, large)


@pytest.mark.parametrize("shared", [False, True], ids=["own-weights", "one-kernel"])
def test_looking_for_layers_called_twice_costs_about_four_times_the_work_for_four_times_the_layers(tmp_path, shared):
    _calls(_dense_chains(tmp_path / "warm.onnx", 2, 10, shared))
    small, small_layers = _calls(_dense_chains(tmp_path / "small.onnx", 4, 100, shared))
    large, large_layers = _calls(_dense_chains(tmp_path / "large.onnx", 16, 100, shared))
    assert large_layers > 3.9 * small_layers  # none is one layer called twice: every bias differs
    assert large / small < 6, (small, large)
