"""Multi-head attention written as its MatMuls and Softmax → one Keras MultiHeadAttention layer.

The pattern is exactly what modelmorph's export of the layer writes (converters/attention.py),
without masks:

    q = Transpose(Reshape(x_q @ Wq [+ bq], [0, 0, heads, key_dim]), [0, 2, 1, 3]) * 1/sqrt(key_dim)
    k = Transpose(Reshape(x_k @ Wk [+ bk], [0, 0, heads, key_dim]), [0, 2, 3, 1])
    v = Transpose(Reshape(x_v @ Wv [+ bv], [0, 0, heads, value_dim]), [0, 2, 1, 3])
    y = Reshape(Transpose(Softmax(q @ k, axis=-1) @ v, [0, 2, 1, 3]), [0, 0, heads·value_dim]) @ Wo [+ bo]

which is Keras 3's computation step by step (its einsums are these products, its scale that
float32 constant). The match starts at whichever projection MatMul the walk reaches first; every
tensor inside is read once and is no graph output, the three inputs are already Keras tensors,
all four projections have a bias or none has. Anything else is left to the op converters.
"""

from __future__ import annotations

import numpy as np

from ..graph import Graph
from ..load import attributes


def _producers(g: Graph) -> dict:
    found = g.__dict__.get("_attention_producers")
    if found is None:
        found = g.__dict__["_attention_producers"] = {o: n for n in g.src.graph.node for o in n.output}
    return found


def _const(g: Graph, name: str) -> np.ndarray | None:
    if name not in g.values:
        return None
    value = g.load(name)
    return value if isinstance(value, np.ndarray) and value.dtype != object else None


def _only_reader(g: Graph, name: str, node) -> bool:
    users = g.consumers.get(name, [])
    return len(users) == 1 and users[0] is node and name not in g.outputs and name not in g.tensors


def _made_by(g: Graph, name: str, op: str, reader):
    """The ``op`` node computing ``name``, which only ``reader`` reads, or None."""
    node = _producers(g).get(name)
    if node is None or node.op_type != op or node.domain not in ("", "ai.onnx") or not _only_reader(g, name, reader):
        return None
    return node


def _perm(node) -> list[int]:
    return [int(p) for p in attributes(node).get("perm", [])]


def _projection(g: Graph, name: str, reader, perm: list[int]) -> dict | None:
    """Transpose(Reshape(x @ W [+ b], [0, 0, heads, width]), perm) computing ``name``."""
    transpose = _made_by(g, name, "Transpose", reader)
    if transpose is None or _perm(transpose) != perm:
        return None
    reshape = _made_by(g, transpose.input[0], "Reshape", transpose)
    if reshape is None or attributes(reshape).get("allowzero"):
        return None
    target = _const(g, reshape.input[1])
    if target is None or target.shape != (4,) or list(target[:2]) != [0, 0] or min(target[2:]) < 1:
        return None
    heads, width = int(target[2]), int(target[3])
    nodes, bias = [transpose, reshape], None
    source = _producers(g).get(reshape.input[0])
    if source is not None and source.op_type == "Add":
        add = _made_by(g, reshape.input[0], "Add", reshape)
        if add is None:
            return None
        for i in (0, 1):
            b = _const(g, add.input[1 - i])
            if b is not None and b.shape == (heads * width,):
                bias, product = b, add.input[i]
                break
        else:
            return None
        nodes.append(add)
        reader_of_product = add
    else:
        product, reader_of_product = reshape.input[0], reshape
    matmul = _made_by(g, product, "MatMul", reader_of_product)
    if matmul is None:
        return None
    w = _const(g, matmul.input[1])
    x = g.tensors.get(matmul.input[0])
    if w is None or w.ndim != 2 or w.shape[1] != heads * width or x is None or x.rank != 3 \
            or x.dtype != "float32" or w.dtype != np.float32 or x.rows is not None or x.shape[-1] != w.shape[0]:
        return None
    nodes.append(matmul)
    return {"x": matmul.input[0], "kernel": w.reshape(w.shape[0], heads, width), "heads": heads, "width": width,
            "bias": None if bias is None else bias.reshape(heads, width), "nodes": nodes}


def _center(g: Graph, start) -> tuple | None:
    """(scores MatMul, Softmax, attended MatMul) reached from a projection MatMul ``start``."""
    name, node = start.output[0], start
    for _ in range(6):  # [Add] Reshape Transpose [Mul] then a MatMul of two computed tensors
        users = g.consumers.get(name, [])
        if len(users) != 1 or name in g.outputs:
            return None
        node = users[0]
        if node.op_type == "MatMul":
            break
        name = node.output[0]
    else:
        return None
    if node.input[0] == name:  # q @ k: the scores
        scores = node
        users = g.consumers.get(scores.output[0], [])
        if len(users) != 1 or users[0].op_type != "Softmax":
            return None
        softmax = users[0]
        users = g.consumers.get(softmax.output[0], [])
        if len(users) != 1 or users[0].op_type != "MatMul" or users[0].input[0] != softmax.output[0]:
            return None
        return scores, softmax, users[0]
    attended = node  # softmax @ v
    softmax = _producers(g).get(attended.input[0])
    if softmax is None or softmax.op_type != "Softmax":
        return None
    scores = _producers(g).get(softmax.input[0])
    if scores is None or scores.op_type != "MatMul":
        return None
    return scores, softmax, attended


def try_attention(g: Graph, start) -> bool:
    """Map the attention pattern (see the module) around projection MatMul ``start`` as one
    MultiHeadAttention layer; False (nothing done) where anything differs."""
    if start.op_type != "MatMul" or _const(g, start.input[1]) is None:
        return False
    center = _center(g, start)
    if center is None:
        return False
    scores, softmax, attended = center
    if not _only_reader(g, scores.output[0], softmax) or not _only_reader(g, softmax.output[0], attended):
        return False
    axis = int(attributes(softmax).get("axis", -1 if g.opset >= 13 else 1))
    if axis not in (-1, 3):
        return False
    mul = _made_by(g, scores.input[0], "Mul", scores)
    if mul is None:
        return False
    for i in (0, 1):
        scale = _const(g, mul.input[1 - i])
        if scale is not None and scale.size == 1:
            q_name = mul.input[i]
            break
    else:
        return False
    q = _projection(g, q_name, mul, [0, 2, 1, 3])
    k = _projection(g, scores.input[1], scores, [0, 2, 3, 1])
    v = _projection(g, attended.input[1], attended, [0, 2, 1, 3])
    if q is None or k is None or v is None:
        return False
    heads, key_dim, value_dim = q["heads"], q["width"], v["width"]
    if (k["heads"], k["width"], v["heads"]) != (heads, key_dim, heads) \
            or scale.dtype != np.float32 or scale.reshape(()) != np.float32(1.0 / np.sqrt(key_dim)):
        return False
    out = _output(g, attended, heads * value_dim)
    if out is None:
        return False
    out["kernel"] = out["kernel"].reshape(heads, value_dim, -1)  # Keras' (heads, value_dim, units)
    projections = [q, k, v, out]
    use_bias = out["bias"] is not None
    if any((p["bias"] is not None) != use_bias for p in projections):
        return False
    if start not in (q["nodes"][-1], k["nodes"][-1], v["nodes"][-1]):
        return False
    xq, xk, xv = (g.tensor(p["x"]) for p in (q, k, v))
    steps_k, steps_v = g.to_onnx_order(xk, None).shape[1], g.to_onnx_order(xv, None).shape[1]
    if steps_k is not None and steps_v is not None and steps_k != steps_v:
        return False
    xq, xk, xv = (g.to_onnx_order(t, None) for t in (xq, xk, xv))
    weights = []
    for p in projections:
        weights += [p["kernel"]] + ([p["bias"]] if use_bias else [])
    units = int(out["kernel"].shape[-1])
    config = {"num_heads": heads, "key_dim": key_dim, "value_dim": value_dim, "dropout": 0.0,
              "use_bias": use_bias, "output_shape": None if units == xq.shape[-1] else units,
              "attention_axes": None}
    shapes = {"query_shape": list(xq.shape), "value_shape": list(xv.shape)}
    args = [xq, xv]
    if k["x"] != v["x"]:  # call(query, value, key), the key positional as modelmorph's shape checks read it
        args.append(xk)
        shapes["key_shape"] = list(xk.shape)
    for p in projections:
        g.skip.update(id(n) for n in p["nodes"])
    g.skip.update(id(n) for n in (mul, scores, softmax, attended))
    t = g.layer(start, "MultiHeadAttention", config, args, out["y"], (*xq.shape[:2], units), weights=weights)
    g.entry(t)["build_config"] = {"shapes_dict": {k_: [d for d in v_] for k_, v_ in shapes.items()}}
    return True


def _output(g: Graph, attended, merged_width: int) -> dict | None:
    """Reshape(Transpose(attended, [0, 2, 1, 3]), [0, 0, heads·value_dim]) @ Wo [+ bo]."""
    users = g.consumers.get(attended.output[0], [])
    if len(users) != 1 or users[0].op_type != "Transpose" or _perm(users[0]) != [0, 2, 1, 3] \
            or attended.output[0] in g.outputs:
        return None
    transpose = users[0]
    users = g.consumers.get(transpose.output[0], [])
    if len(users) != 1 or users[0].op_type != "Reshape" or transpose.output[0] in g.outputs \
            or attributes(users[0]).get("allowzero") or users[0].input[0] != transpose.output[0]:
        return None
    reshape = users[0]
    target = _const(g, reshape.input[1])
    if target is None or target.shape != (3,) or list(target) != [0, 0, merged_width]:
        return None
    users = g.consumers.get(reshape.output[0], [])
    if len(users) != 1 or users[0].op_type != "MatMul" or users[0].input[0] != reshape.output[0] \
            or reshape.output[0] in g.outputs:
        return None
    matmul = users[0]
    w = _const(g, matmul.input[1])
    if w is None or w.ndim != 2 or w.shape[0] != merged_width or w.dtype != np.float32:
        return None
    nodes, y, bias = [transpose, reshape, matmul], matmul.output[0], None
    users = g.consumers.get(y, [])
    if len(users) == 1 and users[0].op_type == "Add" and y not in g.outputs:
        add = users[0]
        other = add.input[1] if add.input[0] == y else add.input[0]
        b = _const(g, other)
        if b is not None and b.shape == (w.shape[1],) and other != y:
            nodes.append(add)
            y, bias = add.output[0], b
    return {"kernel": w, "bias": bias, "nodes": nodes, "y": y}


def attention_first(convert):
    """The MatMul converter ``convert``, after the attention pattern is tried."""
    def convert_matmul(g: Graph, node, a: dict) -> None:
        if try_attention(g, node):
            return
        convert(g, node, a)
    return convert_matmul
