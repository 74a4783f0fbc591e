"""Wrappers: a layer applied to each time step, or in both directions."""

from __future__ import annotations

from . import Child, LayerClass, Var, inner_layer, prefixed_variables as _prefixed

FAMILY = "wrappers"


def _inner_name(inner: tuple[str, dict]) -> str:
    from ..keras3_layout import snake_case

    return str(inner[1].get("name", snake_case(inner[0])))


def _inner_shape(inner: tuple[str, dict] | None, shapes: list):
    from ..catalogue import get

    described = None if inner is None else get(inner[0])
    if described is None or described.output_shape is None:
        return None
    return described.output_shape(inner[1], shapes)


def _inner_weights(prefix: str, inner: tuple[str, dict] | None, shapes: list) -> dict:
    from ..catalogue import get

    described = None if inner is None else get(inner[0])
    if described is None or described.weight_shapes is None:
        return {}
    return {f"{prefix}/{k}": v for k, v in described.weight_shapes(inner[1], shapes).items()}


# -- Bidirectional -------------------------------------------------------------------------------

def _backward(config: dict) -> tuple[str, dict] | None:
    return inner_layer(config, "backward_layer") or inner_layer(config, "layer")


def _bidirectional_variables(config: dict) -> list[Var] | None:
    forward = _prefixed("forward_layer", inner_layer(config, "layer"))
    backward = _prefixed("backward_layer", _backward(config))
    return None if forward is None or backward is None else forward + backward


def _bidirectional_child(config: dict, attribute: str) -> Child | None:
    inner = inner_layer(config, "layer")
    if inner is None:
        return None
    if attribute == "forward_layer":
        return Child(inner[0], inner[1], "forward_" + _inner_name(inner).removeprefix("forward_"))
    if attribute == "backward_layer":
        given = inner_layer(config, "backward_layer")
        if given is not None:
            return Child(given[0], given[1], _inner_name(given))
        return Child(inner[0], inner[1], "backward_" + _inner_name(inner).removeprefix("backward_"))
    return None


def _bidirectional_weights(config: dict, shapes: list) -> dict:
    return {**_inner_weights("forward_layer", inner_layer(config, "layer"), shapes[:1]),
            **_inner_weights("backward_layer", _backward(config), shapes[:1])}


def _bidirectional_shape(config: dict, shapes: list):
    out = _inner_shape(inner_layer(config, "layer"), shapes)
    if out is None:
        return None
    states = out[1:] if isinstance(out, list) else []
    output = out[0] if isinstance(out, list) else out
    mode = config.get("merge_mode", "concat")
    if mode is None:
        outputs = [output, output]
    elif mode == "concat":
        outputs = [(*output[:-1], None if output[-1] is None else 2 * output[-1])]
    else:
        outputs = [output]
    outputs += states + states  # forward states, then backward ones
    return outputs[0] if len(outputs) == 1 else outputs


# -- TimeDistributed -------------------------------------------------------------------------------

def _time_distributed_child(config: dict, attribute: str) -> Child | None:
    inner = inner_layer(config, "layer")
    return Child(inner[0], inner[1], _inner_name(inner)) if inner is not None and attribute == "layer" else None


def _time_distributed_shape(config: dict, shapes: list):
    if not shapes or not shapes[0] or len(shapes[0]) < 3:
        return None
    batch, steps, *rest = shapes[0]
    out = _inner_shape(inner_layer(config, "layer"), [(batch, *rest)])
    return None if out is None or isinstance(out, list) else (batch, steps, *out[1:])


def _time_distributed_weights(config: dict, shapes: list) -> dict:
    shape = shapes[0] if shapes else None
    step = [(shape[0], *shape[2:])] if shape and len(shape) >= 3 else []
    return _inner_weights("layer", inner_layer(config, "layer"), step)


CLASSES = [
    LayerClass("Bidirectional", _bidirectional_variables, "a recurrent layer run forwards and backwards", FAMILY,
               child=_bidirectional_child, keras2_inputs_keyword="initial_state", output_shape=_bidirectional_shape,
               weight_shapes=_bidirectional_weights),
    LayerClass("TimeDistributed", lambda c: _prefixed("layer", inner_layer(c, "layer")),
               "a layer applied to every time step", FAMILY, child=_time_distributed_child,
               output_shape=_time_distributed_shape, weight_shapes=_time_distributed_weights),
]
