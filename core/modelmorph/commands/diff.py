"""``modelmorph diff``: compare two models in any formats, architecture and weights."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..keras import kerasconfig
from ..ir import Model


@dataclass
class DiffReport:
    """What :func:`diff_models` found; ``equal`` when nothing differs beyond ``atol``."""

    architecture: list[str] = field(default_factory=list)  # differences, one line each
    weights: list[tuple[str, float | None, str]] = field(default_factory=list)  # (path, max abs diff, note)
    atol: float = 0.0

    @property
    def equal(self) -> bool:
        return not self.architecture and all(d is not None and d <= self.atol and not note for _, d, note in self.weights)


# Recomputed by Keras on load, or ids of the saving process: not part of what a model is.
_VOLATILE = {"build_config", "shared_object_id"}


def diff_models(a: Model, b: Model, atol: float = 0.0) -> DiffReport:
    report = DiffReport(atol=atol)
    if a.has_architecture and b.has_architecture:
        _diff_architecture(a, b, report)
    wa = {p: w for p, _, w in a.iter_weights()}
    wb = {p: w for p, _, w in b.iter_weights()}
    for path in sorted(set(wa) | set(wb)):
        if path not in wb:
            report.weights.append((path, None, "only in the first model"))
        elif path not in wa:
            report.weights.append((path, None, "only in the second model"))
        else:
            report.weights.append(_diff_weight(path, wa[path], wb[path]))
    return report


def _diff_weight(path, x, y):
    if tuple(x.shape) != tuple(y.shape):
        return (path, None, f"shape {tuple(x.shape)} vs {tuple(y.shape)}")
    if x.dtype != y.dtype:
        return (path, None, f"dtype {x.dtype} vs {y.dtype}")
    ax, ay = x.read(), y.read()
    if x.dtype == "string":
        return (path, 0.0 if np.array_equal(ax, ay) else None, "" if np.array_equal(ax, ay) else "strings differ")
    if ax.size == 0:
        return (path, 0.0, "")
    wide = np.complex128 if np.iscomplexobj(ax) else np.float64  # keep imaginary parts
    ax, ay = ax.astype(wide), ay.astype(wide)
    d = np.abs(ax - ay)
    nan_a, nan_b = np.isnan(ax), np.isnan(ay)
    if (nan_a != nan_b).any():
        return (path, None, "NaN in one model only")
    return (path, float(np.nanmax(d)) if d.size else 0.0, "")


def _diff_architecture(a: Model, b: Model, report: DiffReport) -> None:
    ca, cb = _strip(kerasconfig.model_to_config(a)), _strip(kerasconfig.model_to_config(b))
    _walk(ca, cb, "", report.architecture)


def _strip(value):
    if isinstance(value, dict) and value.get("class_name") == kerasconfig.KERAS_TENSOR:
        return {"keras_history": (value.get("config") or {}).get("keras_history")}  # shape/dtype are informative
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _walk(x, y, where: str, out: list[str], limit: int = 50) -> None:
    if len(out) >= limit:
        return
    if isinstance(x, dict) and isinstance(y, dict):
        for key in sorted(set(x) | set(y), key=str):
            if key not in y:
                out.append(f"{where}.{key}: only in the first model")
            elif key not in x:
                out.append(f"{where}.{key}: only in the second model")
            else:
                _walk(x[key], y[key], f"{where}.{key}", out, limit)
    elif isinstance(x, list) and isinstance(y, list):
        if len(x) != len(y):
            out.append(f"{where}: {len(x)} items vs {len(y)}")
        for i, (p, q) in enumerate(zip(x, y)):
            _walk(p, q, f"{where}[{i}]", out, limit)
    elif x != y:
        out.append(f"{where}: {x!r:.60} vs {y!r:.60}")
