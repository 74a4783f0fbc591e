"""Recurrent layers and their cells."""

from __future__ import annotations

from . import Child, LayerClass, Var, bias, inner_layer, int_or_none, ints, last_dim, prefixed_variables

FAMILY = "recurrent"

#: The cell each RNN layer keeps under ``cell``: (class, the ``.name`` Keras 3 gives it).
_CELLS = {"LSTM": ("LSTMCell", "lstm_cell"), "GRU": ("GRUCell", "gru_cell"),
          "SimpleRNN": ("SimpleRNNCell", "simple_rnn_cell")}
_CELLS.update({f"ConvLSTM{r}D": (f"ConvLSTM{r}DCell", "conv_lstm_cell") for r in (1, 2, 3)})
_STATES = {"LSTM": 2, "GRU": 1, "SimpleRNN": 1}
#: States per step of each built-in cell (what ``return_state`` adds).
_CELL_STATES = {"LSTMCell": 2, "GRUCell": 1, "SimpleRNNCell": 1}


def _rnn(c: dict) -> list[Var]:
    # Keras 2 and 3 both keep the recurrent weights in the layer's `cell`.
    return [Var("cell/kernel"), Var("cell/recurrent_kernel")] + [Var("cell/" + v.path) for v in bias(c)]


def _cell(c: dict) -> list[Var]:
    return [Var("kernel"), Var("recurrent_kernel")] + bias(c)


def _cell_child(class_name: str):
    cell_class, name = _CELLS[class_name]
    return lambda config, attribute: Child(cell_class, {}, name) if attribute == "cell" else None


#: How many blocks of ``units`` columns each cell's kernels have (one per gate).
_GATES = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}


def _cell_weights(gates: int, input_rank: int | None):
    def weights(config: dict, shapes: list) -> dict:
        units = int_or_none(config.get("units"))
        width = None if units is None else gates * units
        out = {"kernel": (last_dim(shapes, input_rank), width), "recurrent_kernel": (units, width), "bias": (width,)}
        if gates == 3:  # GRU: reset_after (the default since Keras 2.3) keeps two bias rows
            after = config.get("reset_after")
            out["bias"] = (2, width) if after is True else (width,) if after is False else [(2, width), (width,)]
        return out

    return weights


def _rnn_weights(gates: int):
    cell = _cell_weights(gates, 3)
    return lambda config, shapes: {f"cell/{k}": v for k, v in cell(config, shapes).items()}


def _conv_lstm_weights(rank: int):
    def weights(config: dict, shapes: list) -> dict:
        filters = int_or_none(config.get("filters"))
        width = None if filters is None else 4 * filters
        kernel = ints(config.get("kernel_size"), rank) or (None,) * rank
        shape = shapes[0] if shapes else None
        channels = None
        if shape and len(shape) == rank + 3:
            channels = int_or_none(shape[2] if config.get("data_format") == "channels_first" else shape[-1])
        return {"cell/kernel": (*kernel, channels, width), "cell/recurrent_kernel": (*kernel, filters, width),
                "cell/bias": (width,)}

    return weights


def _rnn_shape(states: int):
    def shape(config: dict, shapes: list):
        units = config.get("units")
        if not shapes or not shapes[0] or len(shapes[0]) != 3 or not isinstance(units, int):
            return None
        batch, steps, _ = shapes[0]
        output = (batch, steps, units) if config.get("return_sequences") else (batch, units)
        return [output] + [(batch, units)] * states if config.get("return_state") else output

    return shape


# -- the generic RNN(cell) and StackedRNNCells ----------------------------------------------------

def _child_of(entry: tuple[str, dict]) -> Child:
    from ..keras3_layout import snake_case

    return Child(entry[0], entry[1], str(entry[1].get("name", snake_case(entry[0]))))


def _generic_cell_child(config: dict, attribute: str) -> Child | None:
    inner = inner_layer(config, "cell") if attribute == "cell" else None
    return None if inner is None else _child_of(inner)


def _stacked_cells(config: dict) -> list[tuple[str, Child]] | None:
    """(Keras 3 key, cell) of each stacked cell: Keras 3 saves a list's members under their
    snake-cased class made unique in the list (``gru_cell``, ``gru_cell_1``)."""
    from ..keras3_layout import snake_case, unique_name

    cells = config.get("cells")
    if not isinstance(cells, list):
        return None
    out, used = [], {}
    for entry in cells:
        inner = inner_layer({"cell": entry}, "cell")
        if inner is None:
            return None
        out.append((unique_name(snake_case(inner[0]), used), _child_of(inner)))
    return out


def _stacked_variables(config: dict) -> list[Var] | None:
    cells = _stacked_cells(config)
    if cells is None:
        return None
    out = []
    for key, cell in cells:
        found = prefixed_variables(f"cells/{key}", (cell.class_name, cell.config))
        if found is None:
            return None
        out += found
    return out


def _cell_weight_shapes(cell: tuple[str, dict] | None, step: list) -> dict | None:
    """What the descriptor of serialized cell ``(class, config)`` expects for a step input of
    shape ``step``; None when its class has no rule."""
    from ..catalogue import get

    described = None if cell is None else get(cell[0])
    if described is None or described.weight_shapes is None:
        return None
    return described.weight_shapes(cell[1], step)


def _generic_rnn_weights(config: dict, shapes: list) -> dict:
    # Keras builds the cell on one step: the input without its time axis.
    shape = shapes[0] if shapes else None
    step = [(shape[0], *shape[2:])] if shape and len(shape) >= 3 else []
    found = _cell_weight_shapes(inner_layer(config, "cell"), step)
    return {} if found is None else {f"cell/{k}": v for k, v in found.items()}


def _stacked_weights(config: dict, shapes: list) -> dict:
    """Each cell built on the output of the one before (its ``units``, for the built-in cells)."""
    out: dict = {}
    step = list(shapes[:1])
    for key, cell in _stacked_cells(config) or []:
        found = _cell_weight_shapes((cell.class_name, cell.config), step)
        if found is not None:
            out.update({f"cells/{key}/{k}": v for k, v in found.items()})
        units = int_or_none(cell.config.get("units")) if cell.class_name in _CELL_STATES else None
        batch = step[0][0] if step and step[0] else None
        step = [(batch, units)] if units is not None else []
    return out


def _generic_rnn_shape(config: dict, shapes: list):
    cell = inner_layer(config, "cell")
    if cell is None:
        return None
    if cell[0] == "StackedRNNCells":
        if config.get("return_state"):
            return None  # its states nest per cell: no flat list of shapes to give
        stacked = _stacked_cells(cell[1]) or []
        cell = (stacked[-1][1].class_name, stacked[-1][1].config) if stacked else None
    if cell is None or cell[0] not in _CELL_STATES:
        return None
    return _rnn_shape(_CELL_STATES[cell[0]])({**config, "units": cell[1].get("units")}, shapes)


CLASSES = [
    LayerClass("RNN", lambda c: prefixed_variables("cell", inner_layer(c, "cell")), "a recurrent layer over any cell",
               FAMILY, child=_generic_cell_child, keras2_inputs_keyword="initial_state",
               output_shape=_generic_rnn_shape, weight_shapes=_generic_rnn_weights),
    LayerClass("StackedRNNCells", _stacked_variables, "cells run one after another in each step", FAMILY,
               sequences={"cells": lambda c: [cell for _, cell in _stacked_cells(c) or []]},
               weight_shapes=_stacked_weights),
    *(LayerClass(name, _rnn, f"{name} over time steps", FAMILY, child=_cell_child(name),
                 keras2_inputs_keyword="initial_state", output_shape=_rnn_shape(_STATES[name]),
                 weight_shapes=_rnn_weights(_GATES[name]))
      for name in ("LSTM", "GRU", "SimpleRNN")),
    *(LayerClass(f"ConvLSTM{r}D", _rnn, f"{r}D convolutional LSTM", FAMILY, child=_cell_child(f"ConvLSTM{r}D"),
                 keras2_inputs_keyword="initial_state", weight_shapes=_conv_lstm_weights(r)) for r in (1, 2, 3)),
    *(LayerClass(name, _cell, "one step of a recurrent layer", FAMILY,
                 weight_shapes=_cell_weights(_GATES[name[:-len("Cell")]], None))
      for name in ("LSTMCell", "GRUCell", "SimpleRNNCell")),
]
