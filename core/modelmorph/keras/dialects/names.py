"""Layer names Keras 3 refuses: a ``/`` (tf_keras layers built under name scopes, every stock
DenseNet and MobileNetV3). They are renamed deterministically (``/`` → ``_``, then ``_1``,
``_2``... on a clash with any name of the model), every reference follows, and each rename is
reported. Readers that find weights by layer name look the old names up in
``model.metadata["renamed"]`` (old name → new name)."""

from __future__ import annotations

from typing import Any

from ...diagnostics import Diagnostics


def rename_slashes(cfg: dict, diags: Diagnostics) -> dict[str, str]:
    """Rename, in place, the layers of a Keras 2 model config (nested models included) whose
    names hold a ``/``; returns old name → new name."""
    entries = list(_layer_entries(cfg))
    taken = {name for entry in entries if isinstance(name := _name(entry), str)}
    renamed: dict[str, str] = {}
    for entry in entries:
        old = _name(entry)
        if not isinstance(old, str) or "/" not in old:
            continue
        if old not in renamed:
            base = new = old.replace("/", "_")
            n = 0
            while new in taken:
                n += 1
                new = f"{base}_{n}"
            taken.add(new)
            renamed[old] = new
        if "name" in entry:
            entry["name"] = renamed[old]
        if isinstance(entry.get("config"), dict) and "name" in entry["config"]:
            entry["config"]["name"] = renamed[old]
    if renamed:
        _rename_refs(cfg, renamed)
        # One line for the model: the rule, then every rename the rule alone does not explain.
        odd = [f"{old!r} → {new!r}" for old, new in renamed.items() if new != old.replace("/", "_")]
        example = next(iter(renamed.items()))
        diags.add("lossy", f"Keras 3 refuses '/' in layer names: {len(renamed)} layer(s) renamed, each '/' becoming "
                  f"'_' (e.g. {example[0]!r} → {example[1]!r})" + ("; on a clash " + ", ".join(odd) if odd else ""))
    return renamed


def _name(entry: dict) -> Any:
    return entry.get("name", (entry.get("config") or {}).get("name"))


def _layer_entries(cfg: Any):
    """Every layer entry of a model config, nested models' included."""
    config = cfg.get("config") if isinstance(cfg, dict) else None
    layers = config.get("layers") if isinstance(config, dict) else config if isinstance(config, list) else None
    for entry in layers if isinstance(layers, list) else []:
        if isinstance(entry, dict):
            yield entry
            yield from _layer_entries(entry)


def _rename_refs(value: Any, renamed: dict[str, str]) -> None:
    """Node records and input/output references ``[layer, node, tensor(, kwargs)]``, anywhere."""
    if isinstance(value, list):
        if 3 <= len(value) <= 4 and isinstance(value[0], str) and value[0] in renamed \
                and isinstance(value[1], int) and isinstance(value[2], int):
            value[0] = renamed[value[0]]
        for item in value:
            _rename_refs(item, renamed)
    elif isinstance(value, dict):
        for item in value.values():
            _rename_refs(item, renamed)
