"""``modelmorph verify``: numeric proof that two models compute the same function, without Keras.

Both sides become ONNX graphs (an ``.onnx`` file is taken as it is; anything else is read and
written with the installed ``onnx`` format), both run on the same inputs, and every output is
compared. The engine is onnxruntime when installed, else the numpy reference evaluator that ships
inside the ``onnx`` package. Inputs are the user's arrays, or random ones made from the first
model's input signature: free dimensions (the batch) are set small and reported.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..diagnostics import Diagnostics
from ..errors import ReadError, UsageError, WriteError
from ..registry import Registry, default_registry

ENGINES = ("auto", "reference", "onnxruntime")
#: Free dimensions other than the batch (a sequence's length) get this size.
FREE_DIMENSION = 8


@dataclass
class OutputFigures:
    """How one output of B compares with the same output of A."""

    name: str
    shape: tuple
    max_abs: float
    max_rel: float  # relative to the largest magnitude of A's output
    argmax_agreement: float | None  # for classifier-shaped outputs (batch, classes)
    ok: bool


@dataclass
class OutputStats:
    """One output of a model run alone."""

    name: str
    shape: tuple
    dtype: str
    min: float
    max: float
    mean: float
    std: float
    nan: int


@dataclass
class VerifyResult:
    """What ``verify`` found: per output figures (two models) or statistics (one)."""

    a: str
    b: str | None
    engine: str
    inputs: dict[str, tuple] = field(default_factory=dict)
    free_dimensions: dict[str, int] = field(default_factory=dict)
    outputs: list[OutputFigures] = field(default_factory=list)
    stats: list[OutputStats] = field(default_factory=list)
    diagnostics: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outputs)


def verify(a: str | Path, b: str | Path | None = None, *, arch: str | Path | None = None,
           samples: int = 4, seed: int = 0, inputs: Mapping[str, Any] | None = None, atol: float = 1e-4,
           rtol: float = 1e-4, engine: str = "auto", registry: Registry | None = None) -> VerifyResult:
    """Run ``a`` (and ``b``) on the same inputs and compare every output: ``|b - a| <= atol +
    rtol * max|a|`` element-wise. ``arch`` joins a weights-only side with an architecture."""
    import numpy as np

    if engine not in ENGINES:
        raise UsageError(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if samples < 1:
        raise UsageError("--samples must be 1 or more")
    reg = registry or default_registry()
    run, engine_name = _engine(engine)
    with tempfile.TemporaryDirectory(prefix="modelmorph-verify-") as tmp:
        graph_a = _as_onnx(a, arch, Path(tmp) / "a.onnx", reg)
        graph_b = _as_onnx(b, arch, Path(tmp) / "b.onnx", reg) if b is not None else None
        signature = _signature(graph_a)
        result = VerifyResult(str(a), None if b is None else str(b), engine_name)
        feeds = _inputs(signature, samples, seed, dict(inputs or {}), result)
        outputs_a = run(graph_a, feeds, a)
        if graph_b is None:
            result.stats = [_stats(name, value) for name, value in outputs_a]
            return result
        outputs_b = run(graph_b, _feeds_for(graph_b, feeds, b, result), b)
    if len(outputs_a) != len(outputs_b):
        raise UsageError(f"{b}: {len(outputs_b)} output(s), where {a} has {len(outputs_a)}: not the same model")
    for (name, x), (_, y) in zip(outputs_a, outputs_b):
        if x.shape != y.shape:
            result.outputs.append(OutputFigures(name, tuple(y.shape), float("inf"), float("inf"), None, False))
            continue
        x64, y64 = x.astype(np.float64), y.astype(np.float64)
        diff = np.abs(x64 - y64)
        scale = float(np.max(np.abs(x64))) if x.size else 0.0
        max_abs = float(np.max(diff)) if x.size else 0.0
        argmax = None
        if x.ndim == 2 and x.shape[1] > 1:
            argmax = float(np.mean(np.argmax(x, axis=1) == np.argmax(y, axis=1)))
        ok = bool(np.all(diff <= atol + rtol * scale)) and not (np.isnan(x64).any() or np.isnan(y64).any())
        result.outputs.append(OutputFigures(name, tuple(x.shape), max_abs, max_abs / scale if scale else max_abs,
                                            argmax, ok))
    return result


def run_model(path: str | Path, inputs: Mapping[str, Any], *, arch: str | Path | None = None, engine: str = "auto",
              registry: Registry | None = None) -> list[tuple[str, Any]]:
    """Run one model (any format with an architecture, or an ``.onnx`` file) on ``inputs``:
    its outputs as (name, array), in order."""
    run, _ = _engine(engine)
    with tempfile.TemporaryDirectory(prefix="modelmorph-verify-") as tmp:
        graph = _as_onnx(path, arch, Path(tmp) / "model.onnx", registry or default_registry())
        return run(graph, dict(inputs), path)


def _feeds_for(graph: Path, feeds: dict, source, result: VerifyResult) -> dict:
    """A's inputs for B: by name, or by position when B names them otherwise (said in the result)."""
    names = [name for name, _, _ in _signature(graph)]
    if set(names) == set(feeds):
        return feeds
    if len(names) != len(feeds):
        raise UsageError(f"{source}: {len(names)} input(s), where {result.a} has {len(feeds)}: not the same model")
    result.diagnostics.append("inputs matched by position: " + ", ".join(f"{a} -> {b}" for a, b in zip(feeds, names)))
    return dict(zip(names, feeds.values()))


def _as_onnx(path: str | Path, arch: str | Path | None, out: Path, registry: Registry) -> Path:
    """``path`` itself when it is an ONNX file, else its model written as one."""
    from ..api import read, write

    path = Path(path)
    if path.suffix.lower() == ".onnx" and path.is_file():
        return path
    if "onnx" not in registry.formats:
        raise UsageError("verify needs the onnx format (plugin modelmorph_onnx), which is not installed")
    diagnostics = Diagnostics()
    with read(path, arch=arch, diagnostics=diagnostics, registry=registry) as model:
        if not model.has_architecture:
            raise UsageError(f"{path}: holds weights only; give its architecture with --arch")
        try:
            write(model, out, "onnx", diagnostics=diagnostics, registry=registry)
        except WriteError as exc:  # e.g. a layer with no ONNX mapping: this model cannot be run
            raise ReadError(path, f"cannot be run: {exc.problem}") from None
    return out


def _signature(path: Path) -> list[tuple[str, list, str]]:
    """(name, dims (int, str or None), numpy dtype) of each graph input."""
    import onnx
    from onnx import helper

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {t.name for t in graph.initializer}
    out = []
    for value in graph.input:
        if value.name in initializers:
            continue
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim]
        out.append((value.name, dims, helper.tensor_dtype_to_np_dtype(tensor.elem_type).name))
    return out


def _inputs(signature, samples: int, seed: int, given: dict, result: VerifyResult) -> dict:
    """The arrays to feed: the user's where given, else random within a sensible range per dtype."""
    import numpy as np

    rng = np.random.default_rng(seed)
    unknown = sorted(set(given) - {name for name, _, _ in signature})
    if unknown:
        names = ", ".join(name for name, _, _ in signature)
        raise UsageError(f"--input {unknown[0]}: the model has no such input (its inputs: {names})")
    feeds = {}
    for name, dims, dtype in signature:
        if name in given:
            feeds[name] = np.asarray(given[name]).astype(dtype, copy=False)
        else:
            shape = []
            for i, d in enumerate(dims):
                if isinstance(d, int) and d > 0:
                    shape.append(d)
                else:
                    size = samples if i == 0 else FREE_DIMENSION
                    result.free_dimensions[f"{name}[{i}]"] = size
                    shape.append(size)
            if np.dtype(dtype).kind == "f":
                feeds[name] = rng.standard_normal(shape).astype(dtype)
            elif np.dtype(dtype).kind in "iu":
                feeds[name] = rng.integers(0, 2, shape).astype(dtype)  # valid indices for any Embedding
            elif np.dtype(dtype).kind == "b":
                feeds[name] = rng.integers(0, 2, shape).astype(bool)
            else:
                raise UsageError(f"input {name!r} has dtype {dtype}: give its values with --input {name}=FILE.npy")
        result.inputs[name] = tuple(feeds[name].shape)
    return feeds


def _engine(choice: str):
    """(run(onnx path, feeds, source) -> [(output name, array)], its name)."""
    if choice in ("auto", "onnxruntime"):
        try:
            import onnxruntime
        except ImportError:
            if choice == "onnxruntime":
                raise UsageError("--engine onnxruntime: onnxruntime is not installed "
                                 "(pip install onnxruntime, or use --engine reference)") from None
        else:
            def run_ort(path, feeds, source):
                try:
                    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
                    names = [o.name for o in session.get_outputs()]
                    return list(zip(names, session.run(None, feeds)))
                except Exception as exc:  # the runtime's own message, on one line
                    raise ReadError(source, f"onnxruntime cannot run it: {str(exc).splitlines()[0]}") from None

            return run_ort, "onnxruntime"

    def run_reference(path, feeds, source):
        import onnx
        from onnx.reference import ReferenceEvaluator

        try:
            evaluator = ReferenceEvaluator(onnx.load(str(path)))
            names = [o.name for o in evaluator.proto_.graph.output]
            return list(zip(names, evaluator.run(None, feeds)))
        except Exception as exc:
            raise ReadError(source, f"the reference evaluator cannot run it: {str(exc).splitlines()[0]}") from None

    return run_reference, "reference"


def _stats(name: str, value) -> OutputStats:
    import numpy as np

    x = np.asarray(value, dtype=np.float64)
    finite = x[np.isfinite(x)] if x.size else x
    pick = finite if finite.size else np.zeros(1)
    return OutputStats(name, tuple(value.shape), str(value.dtype), float(pick.min()), float(pick.max()),
                       float(pick.mean()), float(pick.std()), int(np.isnan(x).sum()))


def render(result: VerifyResult) -> str:
    lines = [f"engine {result.engine}; inputs " + ", ".join(f"{k} {list(v)}" for k, v in result.inputs.items())]
    if result.free_dimensions:
        lines[0] += " (free dimensions set: " + ", ".join(f"{k}={v}" for k, v in result.free_dimensions.items()) + ")"
    if result.b is None:
        lines.append(f"{'output':<24}{'shape':<18}{'dtype':<9}{'min':>11}{'max':>11}{'mean':>11}{'std':>11}{'NaN':>6}")
        for s in result.stats:
            lines.append(f"{s.name:<24}{str(list(s.shape)):<18}{s.dtype:<9}{s.min:11.4g}{s.max:11.4g}"
                         f"{s.mean:11.4g}{s.std:11.4g}{s.nan:6d}")
        return "\n".join(lines)
    lines += result.diagnostics
    lines.append(f"{'output':<24}{'shape':<18}{'max |a-b|':>11}{'relative':>11}{'argmax':>8}  verdict")
    for o in result.outputs:
        argmax = "-" if o.argmax_agreement is None else f"{o.argmax_agreement:.0%}"
        lines.append(f"{o.name:<24}{str(list(o.shape)):<18}{o.max_abs:11.3g}{o.max_rel:11.3g}{argmax:>8}  "
                     f"{'same' if o.ok else 'DIFFERENT'}")
    lines.append(f"{result.a} and {result.b} compute the same function" if result.ok
                 else f"{result.a} and {result.b} differ")
    return "\n".join(lines)
