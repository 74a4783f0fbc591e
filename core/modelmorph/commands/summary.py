"""What ``modelmorph info`` shows: a summary in the spirit of Keras' ``model.summary()``."""

from __future__ import annotations

from typing import Any

from ..ir import Model
from ..keras.kerasconfig import iter_refs


def summarize(model: Model, format_name: str | None = None) -> dict[str, Any]:
    """A JSON-able summary of a model; reads no weight data."""
    layers = []
    for path, layer in model.iter_layers():
        layers.append({
            "path": path,
            "class_name": layer.class_name or None,
            "params": sum(w.size for w in layer.weights),
            "inputs": sorted({r.layer for node in layer.nodes for r in iter_refs(node.args)}),
            "weights": [{"path": w.path, "shape": list(w.shape), "dtype": w.dtype, "trainable": w.trainable}
                        for w in layer.weights],
        })
    trainable = sum(w.size for _, _, w in model.iter_weights() if w.trainable)
    total = model.weight_count()
    out: dict[str, Any] = {
        "name": model.name,
        "class_name": model.class_name if model.has_architecture else None,
        "format": format_name or model.metadata.get("source_format"),
        "has_architecture": model.has_architecture,
        "metadata": {k: v for k, v in model.metadata.items() if isinstance(v, (str, int, float, bool))},
        "has_weights": any(True for _ in model.iter_weights()),
        "params": {"total": total, "trainable": trainable, "non_trainable": total - trainable},
        "layers": layers,
        "compiled": bool(model.compile_config),
        "optimizer": None,
        "assets": [{"path": a.path, "size": a.size} for a in model.assets],
    }
    # A reader may describe the file in its own terms (the ONNX graph's inputs, ops...):
    # metadata["format_summary"] = {"data": JSON-able, "lines": [text lines for the table's head]}.
    extra = model.metadata.get("format_summary")
    if isinstance(extra, dict):
        out["format_summary"] = extra.get("data")
        out["format_lines"] = [str(line) for line in extra.get("lines", [])]
    if model.optimizer is not None:
        opt = model.optimizer
        out["optimizer"] = {
            "class_name": (opt.config or {}).get("class_name"),
            "variables": [{"path": w.path, "shape": list(w.shape), "dtype": w.dtype} for w in opt.variables],
            "slots": len(opt.slots),
            "unmapped": [{"path": w.path, "shape": list(w.shape), "dtype": w.dtype} for w in opt.unmapped],
        }
    return out


def render(summary: dict[str, Any], show_weights: bool = True) -> str:
    """The human-readable table ``modelmorph info`` prints."""
    lines = []
    kind = summary["class_name"] or "weights only"
    lines.append(f'Model "{summary["name"]}" ({kind}), format {summary["format"]}')
    meta = summary["metadata"]
    extra = ", ".join(f"{k} {meta[k]}" for k in ("keras_version", "backend", "date_saved") if k in meta)
    if extra:
        lines.append(extra)
    lines.extend(summary.get("format_lines", []))
    rows = [("Layer (path)", "Class", "Params", "Connected to")]
    for layer in summary["layers"]:
        params = f'{layer["params"]:,}' if summary["has_weights"] else "-"
        rows.append((layer["path"], layer["class_name"] or "-", params, ", ".join(layer["inputs"])))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    rule = "-" * (sum(widths) + 6 + max(len(r[3]) for r in rows))
    lines.append(rule)
    for i, r in enumerate(rows):
        lines.append(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]}".rstrip())
        if i == 0:
            lines.append(rule)
        if show_weights and i > 0:
            for w in summary["layers"][i - 1]["weights"]:
                shape = str(tuple(w["shape"]))
                flag = "" if w["trainable"] else "  non-trainable"
                lines.append(f"    {w['path']}  {shape}  {w['dtype']}{flag}")
    lines.append(rule)
    p = summary["params"]
    if summary["has_weights"]:
        lines.append(f"Total params: {p['total']:,}  (trainable {p['trainable']:,}, non-trainable {p['non_trainable']:,})")
    else:
        lines.append("No weights in this file (architecture only).")
    opt = summary["optimizer"]
    if opt:
        lines.append(f"Optimizer: {opt['class_name'] or '?'} with {len(opt['variables'])} own variable(s), "
                     f"{opt['slots']} slot variable(s)" + (f", {len(opt['unmapped'])} unmapped" if opt["unmapped"] else ""))
    elif summary["compiled"]:
        lines.append("Compiled, no optimizer state saved")
    if summary["assets"]:
        lines.append(f"Assets: {len(summary['assets'])} file(s)")
    if "verified" in summary:  # info --verify
        checked = summary["verified"]
        lines.append(f"Checksums: {', '.join(checked)} verified" if checked
                     else "Checksums: none in this format, nothing to verify")
    return "\n".join(lines)
