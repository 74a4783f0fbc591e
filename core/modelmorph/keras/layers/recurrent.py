"""Recurrent layers and their cells."""

from __future__ import annotations

from . import Child, LayerClass, Var, bias

FAMILY = "recurrent"

#: The cell each RNN layer keeps under ``cell``: (class, the ``.name`` Keras 3 gives it).
_CELLS = {"LSTM": ("LSTMCell", "lstm_cell"), "GRU": ("GRUCell", "gru_cell"),
          "SimpleRNN": ("SimpleRNNCell", "simple_rnn_cell")}
_CELLS.update({f"ConvLSTM{r}D": (f"ConvLSTM{r}DCell", "conv_lstm_cell") for r in (1, 2, 3)})
_STATES = {"LSTM": 2, "GRU": 1, "SimpleRNN": 1}


def _rnn(c: dict) -> list[Var]:
    # Keras 2 and 3 both keep the recurrent weights in the layer's `cell`.
    return [Var("cell/kernel"), Var("cell/recurrent_kernel")] + [Var("cell/" + v.path) for v in bias(c)]


def _cell(c: dict) -> list[Var]:
    return [Var("kernel"), Var("recurrent_kernel")] + bias(c)


def _cell_child(class_name: str):
    cell_class, name = _CELLS[class_name]
    return lambda config, attribute: Child(cell_class, {}, name) if attribute == "cell" else None


def _rnn_shape(states: int):
    def shape(config: dict, shapes: list):
        units = config.get("units")
        if not shapes or not shapes[0] or len(shapes[0]) != 3 or not isinstance(units, int):
            return None
        batch, steps, _ = shapes[0]
        output = (batch, steps, units) if config.get("return_sequences") else (batch, units)
        return [output] + [(batch, units)] * states if config.get("return_state") else output

    return shape


CLASSES = [
    *(LayerClass(name, _rnn, f"{name} over time steps", FAMILY, child=_cell_child(name),
                 keras2_inputs_keyword="initial_state", output_shape=_rnn_shape(_STATES[name]))
      for name in ("LSTM", "GRU", "SimpleRNN")),
    *(LayerClass(f"ConvLSTM{r}D", _rnn, f"{r}D convolutional LSTM", FAMILY, child=_cell_child(f"ConvLSTM{r}D"),
                 keras2_inputs_keyword="initial_state") for r in (1, 2, 3)),
    *(LayerClass(name, _cell, "one step of a recurrent layer", FAMILY) for name in ("LSTMCell", "GRUCell", "SimpleRNNCell")),
]
