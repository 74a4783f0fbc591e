"""The conformance run behind test_onnx_conformance.py: onnx's own backend test data through the
importer, each case judged by Keras 3 predicting from the `.keras` file modelmorph writes.

Cases: the model directories shipped in the onnx wheel (``onnx/backend/test/data/{pytorch-converted,
pytorch-operator,simple}``: model.onnx with test_data_set_N/input_*.pb, output_*.pb) and onnx's
node tests, generated from the installed package's own case definitions
(``onnx.backend.test.case.node``), for every op the importer maps. A node test passes weights and
shape parameters as graph inputs (``Reshape(data, shape)``, ``Conv(x, W, B)``); a model file holds
them as initializers, which is what the importer maps, so those inputs (``PARAMS``) are baked into
initializers with the test's own values before the import. Everything else is fed to Keras as-is.

``python tests/onnx/conformance.py [filter]`` prints every case's outcome (for maintaining the
expectations in the test).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

SUITES = ("pytorch-converted", "pytorch-operator", "simple")

#: op → the input positions a node test feeds that a model file holds as initializers.
PARAMS = {
    "Conv": (1, 2), "ConvTranspose": (1, 2), "Gemm": (1, 2), "BatchNormalization": (1, 2, 3, 4),
    "InstanceNormalization": (1, 2), "LayerNormalization": (1, 2), "PRelu": (1,),
    "Reshape": (1,), "Expand": (1,), "Tile": (1,), "Slice": (1, 2, 3, 4), "Split": (1,), "Squeeze": (1,),
    "Unsqueeze": (1,), "Pad": (1, 2, 3), "Resize": (1, 2, 3), "Upsample": (1,), "Clip": (1, 2),
    "ReduceMean": (1,), "ReduceMax": (1,), "ReduceMin": (1,), "ReduceSum": (1,), "ReduceProd": (1,),
    "ReduceL1": (1,), "ReduceL2": (1,), "ReduceLogSumExp": (1,), "ReduceSumSquare": (1,), "ReduceLogSum": (1,),
    "Gather": (1,), "CumSum": (1,), "LSTM": (1, 2, 3, 4), "GRU": (1, 2, 3, 4), "RNN": (1, 2, 3, 4),
}

#: (rtol, atol) by output dtype; integers and booleans compare exactly.
TOLERANCE = {"float32": (1e-4, 1e-5), "float16": (1e-3, 1e-3), "float64": (1e-6, 1e-7)}


@dataclass
class Case:
    name: str
    op: str  # the node's op for node tests, the suite for model directories
    model: object  # onnx.ModelProto
    data_sets: list  # [(inputs, outputs)] as numpy arrays
    via_conv: bool = False  # node tests: the first input reaches the op through an identity 1×1 Conv


def data_dir() -> Path:
    import onnx

    return Path(onnx.__file__).parent / "backend" / "test" / "data"


def _read_pb(path: Path) -> np.ndarray:
    import onnx
    from onnx import numpy_helper

    tensor = onnx.TensorProto()
    tensor.ParseFromString(path.read_bytes())
    if not tensor.dims and not tensor.raw_data and not tensor.float_data and not tensor.int64_data \
            and not tensor.int32_data and not tensor.double_data and tensor.data_type == 0:
        raise ValueError("not a tensor (a sequence or map)")
    return numpy_helper.to_array(tensor)


def model_dir_cases() -> Iterator[Case]:
    import onnx

    root = data_dir()
    for suite in SUITES:
        for folder in sorted((root / suite).iterdir()):
            model = onnx.load(str(folder / "model.onnx"))
            sets = []
            for d in sorted(folder.glob("test_data_set_*")):
                try:
                    sets.append(([_read_pb(p) for p in sorted(d.glob("input_*.pb"))],
                                 [_read_pb(p) for p in sorted(d.glob("output_*.pb"))]))
                except ValueError:
                    sets.append(None)  # a sequence or map: nothing Keras takes
            yield Case(f"{suite}/{folder.name}", suite, model, sets)


def node_cases(ops: set[str]) -> Iterator[Case]:
    import warnings

    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        cases = collect_testcases(None)
    for case in cases:
        graph = case.model.graph
        if len(graph.node) != 1 or graph.node[0].op_type not in ops or graph.node[0].domain not in ("", "ai.onnx"):
            continue  # the function-expanded variants hold other ops: judged through those ops' own tests
        yield Case(f"node/{case.name}", graph.node[0].op_type, case.model, list(case.data_sets))
        if _conv_first(case):
            yield Case(f"node/{case.name}@conv", graph.node[0].op_type, case.model, list(case.data_sets), True)


def _conv_first(case) -> bool:
    """Whether the case also runs with its first input passed through an identity 1×1 Conv
    first: a float32 feature map (rank 3 to 5) of finite values. The Conv's output is the input
    bit for bit, but in the Keras model it is channels-last: so the op meets the layout change
    (its axes, constants and outputs must be mapped across it)."""
    import onnx

    inputs = case.data_sets[0][0]
    if not inputs:
        return False
    x = inputs[0]
    x = onnx.numpy_helper.to_array(x) if isinstance(x, onnx.TensorProto) else np.asarray(x)
    node = case.model.graph.node[0]
    return (x.dtype == np.float32 and 3 <= x.ndim <= 5 and x.size > 0 and bool(np.isfinite(x).all())
            and node.input and node.input[0] == case.model.graph.input[0].name)


def bake_params(case: Case):
    """The node test's parameter inputs as initializers (see PARAMS); the rest stay inputs."""
    import onnx
    from onnx import numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(case.model)
    graph = model.graph
    node = graph.node[0]
    positions = PARAMS.get(node.op_type, ())
    inputs, outputs = case.data_sets[0]
    inputs = [numpy_helper.to_array(x) if isinstance(x, onnx.TensorProto) else np.asarray(x) for x in inputs]
    outputs = [numpy_helper.to_array(y) if isinstance(y, onnx.TensorProto) else np.asarray(y) for y in outputs]
    present = [name for name in node.input if name]
    baked = {node.input[i] for i in positions if i < len(node.input) and node.input[i]}
    keep_vi, keep_x = [], []
    for vi, name, x in zip(list(graph.input), present, inputs):
        if name in baked:
            graph.initializer.append(numpy_helper.from_array(np.asarray(x), name))
        else:
            keep_vi.append(vi)
            keep_x.append(x)
    del graph.input[:]
    graph.input.extend(keep_vi)
    if case.via_conv:
        x = inputs[0]
        channels = x.shape[1]
        kernel = np.eye(channels, dtype=np.float32).reshape(channels, channels, *[1] * (x.ndim - 2))
        graph.initializer.append(numpy_helper.from_array(kernel, "identity_kernel"))
        conv = onnx.helper.make_node("Conv", [node.input[0], "identity_kernel"], ["through_conv"], name="identity_conv")
        node.input[0] = "through_conv"
        graph.node.insert(0, conv)
    return model, keep_x, outputs


def within_importer_opsets(model):
    """The model at an opset the importer reads (7 to 21). Below 7 (the PyTorch-converted
    models are opset 6) onnx's own version converter upgrades it to 7. Above 21 (a node test
    is generated at its op's newest since-version: 22 added bfloat16 to most ops, 25 new small
    types, not new semantics) it is declared 21 where the op's opset-21 schema accepts it, as
    onnx's full checker (types and shapes) judges; otherwise it is out of the importer's range."""
    import onnx
    from onnx import version_converter

    from modelmorph_onnx.reader.load import MAX_OPSET, MIN_OPSET

    version = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if version is None or MIN_OPSET <= version <= MAX_OPSET:
        return model
    if version < MIN_OPSET:
        try:
            return version_converter.convert_version(model, MIN_OPSET)
        except Exception as exc:
            raise ValueError(f"onnx's version converter cannot take opset {version} to {MIN_OPSET}: "
                             f"{str(exc).splitlines()[0][:100]}") from None
    down = onnx.ModelProto()
    down.CopyFrom(model)
    for o in down.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = MAX_OPSET
    try:
        onnx.checker.check_model(down, full_check=True)
    except Exception:
        raise ValueError(f"needs opset {version}: its opset-{MAX_OPSET} form does not type-check") from None
    return down


def compare(got: list, want: list) -> str | None:
    """None when they agree, else what differs."""
    if len(got) != len(want):
        return f"{len(got)} outputs for {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        g, w = np.asarray(g), np.asarray(w)
        if g.shape != w.shape:
            return f"output {i}: shape {g.shape} for {w.shape}"
        if w.dtype.kind in "biu" or w.dtype == bool:
            if g.dtype.kind not in "biu" and g.dtype != bool:
                return f"output {i}: dtype {g.dtype} for {w.dtype}"
            if not np.array_equal(g.astype(w.dtype), w):
                return f"output {i}: values differ"
            continue
        rtol, atol = TOLERANCE.get(w.dtype.name, (1e-4, 1e-5))
        g64, w64 = g.astype(np.float64), w.astype(np.float64)
        if not np.allclose(g64, w64, rtol=rtol, atol=atol, equal_nan=True):
            with np.errstate(all="ignore"):
                err = np.nanmax(np.abs(g64 - w64)) if g64.size else 0
            return f"output {i}: max diff {err:.3g}"
    return None


def run_case(case: Case, keras, work: Path) -> str:
    """'pass', 'refused: <the importer's one line>', 'differs: ...' or 'error: ...'."""
    import onnx

    import modelmorph
    from modelmorph.errors import ModelmorphError

    if case.op in SUITES:
        model, sets = case.model, case.data_sets
        if any(s is None for s in sets):
            return "refused: inputs are sequences or maps"
    else:
        model, x, y = bake_params(case)
        sets = [(x, y)]
    try:
        model = within_importer_opsets(model)
    except ValueError as exc:
        return f"outside: {exc}"
    src = work / "case.onnx"
    dst = work / "case.keras"
    for p in (src, dst):
        if p.exists():
            p.unlink()
    onnx.save(model, str(src))
    try:
        modelmorph.convert(src, dst)
    except ModelmorphError as exc:
        return f"refused: {str(exc).split(': ', 1)[-1]}"
    try:
        loaded = keras.saving.load_model(dst, safe_mode=True)
        for inputs, outputs in sets:
            got = loaded(inputs if len(inputs) != 1 else inputs[0], training=False)
            got = [np.asarray(v) for v in (got if isinstance(got, (list, tuple)) else [got])]
            problem = compare(got, outputs)
            if problem:
                return f"differs: {problem}"
    except Exception as exc:  # Keras' own complaint: the case fails, the message says why
        return f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
    return "pass"


def run_all(keras, cases: list[Case]) -> dict[str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        return {case.name: run_case(case, keras, Path(tmp)) for case in cases}


def all_cases() -> list[Case]:
    from modelmorph_onnx.reader.ops import CONVERTERS

    return [*model_dir_cases(), *node_cases(set(CONVERTERS))]


if __name__ == "__main__":
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    want = sys.argv[1] if len(sys.argv) > 1 else ""
    cases = [c for c in all_cases() if want in c.name]
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            t = time.time()
            outcome = run_case(case, keras, Path(tmp))
            print(f"{case.op}\t{case.name}\t{outcome}\t{time.time() - t:.2f}s", flush=True)
    print(f"{len(cases)} cases in {time.time() - start:.1f}s")
