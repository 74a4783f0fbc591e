"""Attention layers."""

from __future__ import annotations

from . import Child, LayerClass, Var, int_or_none, last_dim

FAMILY = "attention"

#: MultiHeadAttention's projections: IR sub-object → the ``.name`` Keras 3 gives it.
_PROJECTIONS = {"query_dense": "query", "key_dense": "key", "value_dense": "value", "output_dense": "attention_output"}


def _mha_variables(c: dict) -> list[Var]:
    out: list[Var] = []
    for part in _PROJECTIONS:
        out.append(Var(f"{part}/kernel"))
        if c.get("use_bias", True):
            out.append(Var(f"{part}/bias"))
    return out


def _mha_child(config: dict, attribute: str) -> Child | None:
    return Child("EinsumDense", {}, _PROJECTIONS[attribute]) if attribute in _PROJECTIONS else None


def _mha_to_keras3(entry: dict) -> None:
    # tf_keras keeps the build shapes in the config; Keras 3 in the build config.
    config = entry["config"]
    shapes = {k: config.pop(k, None) for k in ("query_shape", "value_shape", "key_shape")}
    if shapes["query_shape"] is not None and shapes["value_shape"] is not None:
        entry["build_config"] = {"shapes_dict": {k: v for k, v in shapes.items() if v is not None}}


def _mha_to_keras2(entry: dict, out: dict) -> None:
    # tf_keras rebuilds MultiHeadAttention from these three keys (None: build on first call).
    shapes = ((entry.get("build_config") or {}).get("shapes_dict") or {})
    value = shapes.get("value_shape")
    out["config"]["query_shape"] = shapes.get("query_shape")
    out["config"]["value_shape"] = value
    out["config"]["key_shape"] = shapes.get("key_shape", value)


def _mha_shape(config: dict, shapes: list):
    query = shapes[0] if shapes else None
    if not query:
        return None
    out = config.get("output_shape")
    if out is None:
        return query
    out = [out] if isinstance(out, int) else out
    return (*query[:-1], *out) if isinstance(out, list) else None


def _mha_weights(config: dict, shapes: list) -> dict:
    heads, key_dim = int_or_none(config.get("num_heads")), int_or_none(config.get("key_dim"))
    value_dim = int_or_none(config.get("value_dim")) if config.get("value_dim") is not None else key_dim
    if heads is None or key_dim is None:
        return {}
    query, value = last_dim(shapes[:1]), last_dim(shapes[1:2])
    key = last_dim(shapes[2:3]) if len(shapes) > 2 else value
    out = config.get("output_shape")
    out = (query,) if out is None else (out,) if isinstance(out, int) else tuple(out) if isinstance(out, list) else None
    shapes_of = {"query_dense": ((query, heads, key_dim), (heads, key_dim)),
                 "key_dense": ((key, heads, key_dim), (heads, key_dim)),
                 "value_dense": ((value, heads, value_dim), (heads, value_dim))}
    if out is not None:
        shapes_of["output_dense"] = ((heads, value_dim, *out), out)
    weights = {}
    for part, (kernel, bias) in shapes_of.items():
        weights[f"{part}/kernel"], weights[f"{part}/bias"] = kernel, bias
    return weights


def _attention_variables(c: dict) -> list[Var]:
    out = [Var("scale")] if c.get("use_scale") else []
    return out + ([Var("concat_score_weight")] if c.get("score_mode") == "concat" else [])


def _attention_weights(config: dict, shapes: list) -> dict:
    return {"scale": (), "concat_score_weight": ()}  # scalars, whatever the inputs


def _additive_attention_weights(config: dict, shapes: list) -> dict:
    # Keras 3 sizes the scale by the query's features, tf_keras by the value's: either loads.
    options = list(dict.fromkeys((last_dim(shapes[:1]), last_dim(shapes[1:2]))))
    if None in options:
        return {"scale": (None,)}
    return {"scale": [(d,) for d in options] if len(options) > 1 else (options[0],)}


def _attention_shape(config: dict, shapes: list):
    # called on [query, value(, key)]: the query's steps, the value's features
    if len(shapes) < 2 or not shapes[0] or not shapes[1]:
        return None
    return (*shapes[0][:-1], shapes[1][-1])


CLASSES = [
    LayerClass("MultiHeadAttention", _mha_variables, "scaled dot-product attention over several heads", FAMILY,
               child=_mha_child, private={part: f"_{part}" for part in _PROJECTIONS},
               to_keras3=_mha_to_keras3, to_keras2=_mha_to_keras2, call_args=("query", "value", "key"),
               output_shape=_mha_shape, weight_shapes=_mha_weights),
    LayerClass("Attention", _attention_variables, "dot-product attention", FAMILY, output_shape=_attention_shape,
               weight_shapes=_attention_weights),
    LayerClass("AdditiveAttention", lambda c: [Var("scale")] if c.get("use_scale", True) else [],
               "additive (Bahdanau) attention", FAMILY, output_shape=_attention_shape,
               weight_shapes=_additive_attention_weights),
]
