"""Joining the weights of a weights-only source (``--arch``) onto an architecture.

Every reader that accepts ``arch`` starts from :func:`structure_of` (the architecture without
weights or optimizer state; the caller's model is never modified) and asks
:func:`expected_variables` what each layer holds: the architecture's own weights when it
carries them (their shapes are then checked), else the layer catalogue's list. How a format
finds each variable differs (a checkpoint walks its object graph, a ``.weights.h5`` its
groups); a format that names weights by their full IR path (``dense/kernel``,
``inner/dense/bias``) uses :func:`join_by_path` as a whole.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator, Mapping, NamedTuple

from ..diagnostics import Diagnostics
from ..errors import ReadError
from ..ir import Layer, Model, Weight
from . import catalogue


class Expected(NamedTuple):
    """A variable the architecture says a layer has; ``shape`` is None when only the layer
    catalogue (not a weight carried by the architecture) describes it."""

    path: str
    trainable: bool
    shape: tuple[int, ...] | None


def structure_of(arch: Model) -> Model:
    """A copy of an architecture without weights or optimizer state, to attach weights to
    (``arch`` is left untouched). Its assets stay: a lookup's vocabulary is part of the
    architecture (a weights file has none), and dropping it left lookups that load but fail at
    predict ("Table not initialized"). The assets read from the architecture's file, which lives
    as long as the joined model."""
    layers = [dataclasses.replace(layer, weights=[], submodel=structure_of(layer.submodel) if layer.submodel else None)
              for layer in arch.layers]
    metadata = {k: v for k, v in arch.metadata.items() if k != "source_format"}
    return dataclasses.replace(arch, layers=layers, optimizer=None, assets=list(arch.assets), metadata=metadata,
                               _closers=[], _checks=[])


def expected_variables(arch: Model) -> Iterator[tuple[str, Layer, list[Expected] | None]]:
    """Per layer that holds variables itself (not a nested model), in ``iter_layers`` order:
    its IR path, the layer, and the variables to find — None for a class the catalogue does
    not know, whose variables only the weights source can tell."""
    for path, layer in arch.iter_layers():
        if layer.submodel is not None:
            continue
        if layer.weights:
            yield path, layer, [Expected(w.path, w.trainable, tuple(w.shape)) for w in layer.weights]
        else:
            variables = catalogue.variables_of(layer.class_name, layer.config)
            yield path, layer, None if variables is None else [Expected(v.path, v.trainable, None) for v in variables]


def join_by_path(arch: Model, weights: Mapping[str, Weight], source: object, diagnostics: Diagnostics) -> Model:
    """``arch``'s structure with ``weights`` (keyed by full IR path) attached.

    A variable the architecture expects and the source lacks, or holds with another shape, is a
    :class:`~modelmorph.ReadError` naming ``source``; a layer of an unknown class takes the
    weights under its path, in the source's order; weights that belong to no layer are dropped
    with an ``unsupported`` diagnostic.
    """
    model = structure_of(arch)
    layers = {path: layer for path, layer in model.iter_layers()}
    used: set[str] = set()
    for path, original, expected in expected_variables(arch):
        layer = layers[path]
        if expected is None:
            for key in [k for k in weights if k.rpartition("/")[0] == path]:
                layer.weights.append(dataclasses.replace(weights[key], path=key[len(path) + 1:]))
                used.add(key)
            continue
        for var in expected:
            key = f"{path}/{var.path}"
            weight = weights.get(key)
            if weight is None:
                raise ReadError(source, f"no value for weight {key!r} of the architecture "
                                        f"({original.class_name} layer {path!r})")
            if var.shape is not None and tuple(weight.shape) != var.shape:
                raise ReadError(source, f"weight {key!r} has shape {tuple(weight.shape)}; the architecture "
                                        f"says {var.shape}")
            layer.weights.append(dataclasses.replace(weight, path=var.path, trainable=var.trainable))
            used.add(key)
    dropped = [key for key in weights if key not in used]
    if dropped:
        diagnostics.add("unsupported", f"{len(dropped)} weight(s) belong to no layer of the architecture and are "
                                       f"dropped: {', '.join(dropped[:5])}" + (", ..." if len(dropped) > 5 else ""))
    return model
