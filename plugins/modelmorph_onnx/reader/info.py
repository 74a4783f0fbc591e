"""What ``modelmorph info model.onnx`` tells of the ONNX file itself, beside the Keras layers it
imports to: inputs and outputs as the graph declares them, opsets, producer, an op histogram and
the parameter count. Read from the parsed protobuf alone (no tensor data is loaded)."""

from __future__ import annotations

import math
from collections import Counter

from .load import DTYPES, Onnx


def _dims(value_info) -> list:
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return []
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim]


def _io(values, skip: set[str]) -> list[dict]:
    return [{"name": v.name, "shape": _dims(v), "dtype": DTYPES.get(v.type.tensor_type.elem_type, "other")}
            for v in values if v.name not in skip]


def describe(src: Onnx) -> dict:
    """A JSON-able description of the ONNX graph (``info --json`` shows it as ``format_summary``)."""
    model, graph = src.model, src.graph
    initializers = {t.name for t in graph.initializer}
    ops = Counter((f"{n.domain}." if n.domain not in ("", "ai.onnx") else "") + n.op_type for n in graph.node)
    params = sum(math.prod(int(d) for d in t.dims) for t in graph.initializer)
    return {
        "inputs": _io(graph.input, initializers),
        "outputs": _io(graph.output, set()),
        "ir_version": int(model.ir_version),
        "opsets": {(imp.domain or "ai.onnx"): int(imp.version) for imp in model.opset_import},
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "graph": graph.name,
        "nodes": len(graph.node),
        "ops": dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))),
        "initializers": len(initializers),
        "parameters": params,
    }


def render(info: dict) -> list[str]:
    """The lines ``modelmorph info`` prints above the Keras layer table."""
    def io(v: dict) -> str:
        return f"{v['name']} {v['dtype']}[{', '.join(str(d) for d in v['shape'])}]"

    opsets = ", ".join(f"{d} {v}" for d, v in info["opsets"].items())
    return [
        f"ONNX graph {info['graph']!r}: IR version {info['ir_version']}, opset {opsets}, "
        f"producer {info['producer'] or 'unknown'}",
        f"Inputs:  {'; '.join(io(v) for v in info['inputs']) or '-'}",
        f"Outputs: {'; '.join(io(v) for v in info['outputs']) or '-'}",
        f"Nodes: {info['nodes']} ({', '.join(f'{op} {n}' for op, n in info['ops'].items())})",
        f"Parameters: {info['parameters']:,} in {info['initializers']} initializer(s)",
    ]
