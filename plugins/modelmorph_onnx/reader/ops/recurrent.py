"""LSTM, GRU, RNN → Keras LSTM, GRU, SimpleRNN (Bidirectional for both directions), and the
axis shuffles around them.

ONNX recurrent ops are time-major: X is (seq, batch, input) and Y (seq, directions, batch,
hidden) unless ``layout=1``; Keras' are batch-first. A tensor whose batch axis is not first is
kept as a *view*: batch-first Keras tensors (``parts``, one per direction) stacked at ``axis``
and transposed by ``perm`` give the ONNX value. Transpose, Squeeze, Gather and Reshape of a
view are resolved here (PyTorch's Transpose(1,0,2) before and after, the Squeeze of the
direction axis, Transpose(0,2,1,3)+Reshape merging directions, ``h_n[-1]``), so a batch-first
model needs no layer for them. Any other reader gets the view computed with ``keras.ops``
(stack, expand_dims, transpose), exact but with its batch axis where ONNX has it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..graph import Graph, T, Unsupported, _name
from ..load import DTYPES, attribute_tensor, attributes

_OPS = "keras.src.ops.numpy"
#: ONNX op types whose reading of a view is resolved here (others see it computed).
VIEW_OPS = ("Transpose", "Squeeze", "Gather", "Reshape", "Concat")
_STATE_INPUTS = {"LSTM": (5, 6), "GRU": (5,), "RNN": (5,)}

#: ONNX activation → the Keras activation computing the same function (no parameters).
_ACTIVATIONS = {"sigmoid": "sigmoid", "tanh": "tanh", "relu": "relu", "softsign": "softsign",
                "softplus": "softplus", "elu": "elu"}
_DEFAULT_ACTIVATIONS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"], "RNN": ["Tanh"]}
_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
_KERAS = {"LSTM": "LSTM", "GRU": "GRU", "RNN": "SimpleRNN"}


@dataclass
class View:
    """ONNX value = transpose(stack(parts, axis) if axis is not None else parts[0], perm)."""

    parts: list[T]  # batch-first Keras tensors in ONNX order, one shape
    axis: int | None
    perm: list[int]
    shape: tuple  # the ONNX shape
    dtype: str = "float32"

    @property
    def real(self) -> bool:
        return self.axis is None and self.perm == list(range(len(self.perm)))

    def part_axis(self, k: int) -> int:
        """Stacked axis k as an axis of a part."""
        return k if self.axis is None or k < self.axis else k - 1


class _Zeros:
    """A ConstantOfShape of zeros sized from the dynamic batch: read only as an initial state."""


ZEROS = _Zeros()


def views(g: Graph) -> dict:
    return g.__dict__.setdefault("_recurrent_views", {})


def as_view(g: Graph, name: str) -> View:
    v = views(g).get(name)
    if isinstance(v, View):
        return v
    t = g.to_onnx_order(g.tensor(name), None)
    return View([t], None, list(range(t.rank)), t.shape, t.dtype)


def _without(perm: list[int], axis: int, k: int) -> list[int]:
    """perm with ONNX axis ``axis`` (stacked axis ``k``) removed, renumbered."""
    return [p - (p > k) for i, p in enumerate(perm) if i != axis]


def materialize(g: Graph, node, v: View, out: str) -> T:
    """The view computed with keras.ops (its batch axis where ONNX has it); the operations are
    named after themselves, the node's name staying for its own layer."""
    x = v.parts[0]
    if v.axis is not None:  # stacked straight where the transpose would move the new axis, if it can be
        at = v.perm.index(v.axis)
        if [p - (p > v.axis) for p in v.perm if p != v.axis] == list(range(len(v.perm) - 1)):
            v = View(v.parts, at, list(range(len(v.perm))), v.shape, v.dtype)
    stacked_shape = list(x.shape)
    if v.axis is not None:
        stacked_shape.insert(v.axis, len(v.parts))
        if len(v.parts) == 1:
            x = g.layer(None, "ExpandDims", {"axis": v.axis}, [x], f"{out}:stacked", tuple(stacked_shape),
                        module=_OPS, dtype=v.dtype)
        else:
            x = g.layer(None, "Stack", {"axis": v.axis}, [list(v.parts)], f"{out}:stacked", tuple(stacked_shape),
                        module=_OPS, dtype=v.dtype)
    if v.perm != list(range(len(v.perm))):
        x = g.layer(None, "Transpose", {"axes": list(v.perm)}, [x], out, tuple(stacked_shape[p] for p in v.perm),
                    module=_OPS, dtype=v.dtype)
    else:
        g.alias(out, x)
    return x


def put(g: Graph, node, name: str, v: View) -> None:
    """Record ONNX tensor ``name`` as ``v``: a plain tensor when it is one, else a view, computed
    now too when a reader other than the view ops (or the graph's output) needs it."""
    if v.real:
        g.alias(name, v.parts[0])
        return
    views(g)[name] = v
    users = g.consumers.get(name, [])
    if name in g.outputs or any(u.op_type not in (*VIEW_OPS, *_KERAS) for u in users):
        materialize(g, node, v, name)


def select(g: Graph, node, v: View, axis: int, index: int, out: str) -> View:
    """``Gather(v, index, axis)`` with a scalar index: a direction picked, or a step taken."""
    axis %= len(v.shape)
    k = v.perm[axis]
    size = v.shape[axis]
    if index < 0:
        if not isinstance(size, int):
            raise Unsupported("a negative index on a dimension of unknown size")
        index += size
    shape = tuple(d for i, d in enumerate(v.shape) if i != axis)
    if v.axis is not None and k == v.axis:
        return View([v.parts[index]], None, _without(v.perm, axis, k), shape, v.dtype)
    p = v.part_axis(k)
    parts = [g.layer(None, "Take", {"axis": p}, [t, index], f"{out}:{i}",
                     tuple(d for j, d in enumerate(t.shape) if j != p), module=_OPS, dtype=t.dtype)
             for i, t in enumerate(v.parts)]
    axis_after = None if v.axis is None else v.axis - (p < v.axis)
    return View(parts, axis_after, _without(v.perm, axis, k), shape, v.dtype)


# -- the view ops ----------------------------------------------------------------------------

def _view_op(g: Graph, node, a: dict, v: View) -> View | None:
    op = node.op_type
    rank = len(v.shape)
    if op == "Transpose":
        perm = [int(p) for p in a.get("perm", list(range(rank))[::-1])]
        return View(v.parts, v.axis, [v.perm[p] for p in perm], tuple(v.shape[p] for p in perm), v.dtype)
    if op == "Gather":
        index = g.const(node.input[1])
        if index is None or index.ndim != 0:
            return None
        return select(g, node, v, int(a.get("axis", 0)), int(index), node.output[0])
    if op == "Squeeze":
        axes = g.const(node.input[1]) if len(node.input) > 1 and node.input[1] else a.get("axes")
        axes = [int(x) % rank for x in np.asarray(axes).reshape(-1)] if axes is not None else \
            [i for i, d in enumerate(v.shape) if d == 1]
        if len(axes) != 1 or v.axis is None or v.perm[axes[0]] != v.axis or len(v.parts) != 1:
            return None
        return View(v.parts, None, _without(v.perm, axes[0], v.axis), tuple(d for i, d in enumerate(v.shape)
                                                                            if i != axes[0]), v.dtype)
    if op == "Reshape":
        return _merge_directions(g, node, a, v)
    if op == "Concat":  # PyTorch's h_n: the layers' Y_h one after the other on the direction axis
        others = [views(g).get(x) for x in node.input if x]
        axis = int(a.get("axis", 0)) % rank
        if v.axis is None or v.perm[axis] != v.axis or any(
                not isinstance(o, View) or (o.axis, o.perm, o.shape[1:]) != (v.axis, v.perm, v.shape[1:])
                for o in others) or axis != 0:
            return None
        parts = [t for o in others for t in o.parts]
        return View(parts, v.axis, v.perm, (len(parts), *v.shape[1:]), v.dtype)
    return None


def _merge_directions(g: Graph, node, a: dict, v: View) -> View | None:
    """A Reshape merging the direction axis with the next one (PyTorch's bidirectional
    (seq, batch, 2, hidden) → (seq, batch, 2·hidden)): the parts concatenated."""
    target = g.values.get(node.input[1])
    if target is None or v.axis is None or a.get("allowzero"):
        return None
    target = list(target)
    s = list(v.shape)
    if len(target) != len(s) - 1 or sum(1 for t in target if isinstance(t, (int, np.integer)) and t == -1) > 1:
        return None
    for i in range(len(s) - 1):
        if v.perm[i] != v.axis or v.part_axis(v.perm[i + 1]) == 0:
            continue
        want = [*s[:i], s[i] * s[i + 1] if isinstance(s[i], int) and isinstance(s[i + 1], int) else None, *s[i + 2:]]
        ok = True
        for j, t in enumerate(target):
            if isinstance(t, str):  # a symbol: the dimension it came from
                ok &= j != i and t == (g.shapes.get(node.input[0]) or [None] * len(s))[j if j < i else j + 1]
            elif int(t) == 0:
                ok &= j < i  # copies the input's dimension j, the same one here
            elif int(t) != -1:
                ok &= want[j] is not None and int(t) == want[j]
        if not ok:
            continue
        p = v.part_axis(v.perm[i + 1])
        first = v.parts[0]
        shape = list(first.shape)
        shape[p] = shape[p] * len(v.parts) if isinstance(shape[p], int) else None
        cat = g.layer(node, "Concatenate", {"axis": p}, [list(v.parts)], f"{node.output[0]}:concat", tuple(shape),
                      dtype=v.dtype) if len(v.parts) > 1 else first
        perm = [v.part_axis(k) for j, k in enumerate(v.perm) if j != i]
        return View([cat], None, perm, tuple(want), v.dtype)
    return None


def around(op: str, inner):
    """``inner`` (the converter of ``op``), with views read here first."""
    def convert(g: Graph, node, a: dict) -> None:
        found = views(g)
        if op == "ConstantOfShape" and _zero_states(g, node, a):
            return
        v = found.get(node.input[0]) if node.input else None
        if v is None and op == "Transpose" and node.input[0] in g.tensors and _feeds_views(g, node.output[0]):
            v = as_view(g, node.input[0])  # PyTorch's batch_first → time-major before a recurrent op
        if v is None and op == "Gather" and inner is None and node.input[0] in g.tensors:
            v = as_view(g, node.input[0])  # until a general Gather converter exists: a scalar index here
        if isinstance(v, View):
            out = _view_op(g, node, a, v)
            if out is not None:
                put(g, node, node.output[0], out)
                return
        for x in node.input:  # the converter reads what the views compute
            other = found.get(x)
            if isinstance(other, View) and x not in g.tensors:
                materialize(g, node, other, x)
        if inner is None:
            raise Unsupported("no Keras mapping yet (see spec/formats/onnx.md)")
        inner(g, node, a)
    return convert


def _concat_follows(g: Graph, node, hidden: int) -> tuple | None:
    """(Transpose, Reshape) when Y's one reader is Transpose(0,2,1,3) and its one reader a Reshape
    to (seq, batch, 2·hidden): PyTorch's bidirectional output, Keras' ``merge_mode="concat"``."""
    users = g.consumers.get(node.output[0], [])
    if len(users) != 1 or users[0].op_type != "Transpose" or node.output[0] in g.outputs:
        return None
    transpose = users[0]
    if [int(p) for p in attributes(transpose).get("perm", [])] != [0, 2, 1, 3] or transpose.output[0] in g.outputs:
        return None
    after = g.consumers.get(transpose.output[0], [])
    if len(after) != 1 or after[0].op_type != "Reshape" or attributes(after[0]).get("allowzero"):
        return None
    target = g.values.get(after[0].input[1])
    target = target() if callable(target) else target
    if target is None or len(target) != 3 or not all(isinstance(t, (int, np.integer)) for t in target[2:]):
        return None
    if int(target[2]) not in (-1, 2 * hidden) or any(not isinstance(t, str) and int(t) != 0 for t in target[:2]):
        return None
    return transpose, after[0]


def _concat_batch_first(g: Graph, node, hidden: int, used: list[bool]) -> tuple | None:
    """(Transpose, Reshape, whether Y) when the op's one read output is concatenated batch-first
    as Keras' ``merge_mode="concat"`` does it, as modelmorph's export writes it: Y (seq, 2,
    batch, hidden) → Transpose(2,0,1,3) → Reshape (batch, seq, 2·hidden), or Y_h (2, batch,
    hidden) → Transpose(1,0,2) → Reshape (batch, 2·hidden); each tensor read once."""
    if used[2] or used[0] == used[1]:
        return None
    slot = 0 if used[0] else 1
    perm, rank = ([2, 0, 1, 3], 4) if slot == 0 else ([1, 0, 2], 3)
    users = g.consumers.get(node.output[slot], [])
    if len(users) != 1 or users[0].op_type != "Transpose" or node.output[slot] in g.outputs:
        return None
    transpose = users[0]
    if [int(p) for p in attributes(transpose).get("perm", [])] != perm or transpose.output[0] in g.outputs:
        return None
    after = g.consumers.get(transpose.output[0], [])
    if len(after) != 1 or after[0].op_type != "Reshape" or attributes(after[0]).get("allowzero") \
            or after[0].input[0] != transpose.output[0]:
        return None
    target = g.values.get(after[0].input[1])
    target = target() if callable(target) else target
    if target is None or len(target) != rank - 1 or not all(isinstance(t, (int, np.integer)) for t in target):
        return None
    if int(target[-1]) not in (-1, 2 * hidden) or any(int(t) != 0 for t in target[:-1]):
        return None
    return transpose, after[0], slot == 0


def _feeds_views(g: Graph, name: str, depth: int = 0) -> bool:
    """Only recurrent ops read ``name``, directly or through view ops (so no view is computed)."""
    users = g.consumers.get(name, [])
    if not users or name in g.outputs or depth > 8:
        return False
    return all(u.op_type in _KERAS or (u.op_type in VIEW_OPS and u.input[0] == name
                                       and _feeds_views(g, u.output[0], depth + 1)) for u in users)


def _zero_states(g: Graph, node, a: dict) -> bool:
    """PyTorch's zero h0/c0 (ConstantOfShape of a shape holding the dynamic batch; Sliced per layer
    when the module has several): nothing, when only recurrent ops read it, as their initial state
    (Keras starts from zeros)."""
    value = a.get("value")
    if value is not None:
        if value.data_type not in DTYPES or np.any(attribute_tensor(g.path, value)):
            return False
    flow: list = []
    if not _zeros_reach_states_only(g, node.output[0], flow):
        return False
    views(g)[node.output[0]] = ZEROS
    for user in flow:  # the Slices between: zeros too, mapped here
        g.skip.add(id(user))
        views(g)[user.output[0]] = ZEROS
    return True


#: Ops that keep zeros zeros (on their first input), between PyTorch's h0 and the recurrent ops.
_ZERO_KEEPING = ("Slice", "Gather", "Squeeze", "Unsqueeze", "Reshape", "Identity")


def _zeros_reach_states_only(g: Graph, name: str, flow: list, depth: int = 0) -> bool:
    users = g.consumers.get(name, [])
    if not users or name in g.outputs or depth > 4:
        return False
    for user in users:
        slots = _STATE_INPUTS.get(user.op_type)
        if slots is not None:
            if any(x == name and i not in slots for i, x in enumerate(user.input)):
                return False
        elif user.op_type in _ZERO_KEEPING and user.input[0] == name and name not in user.input[1:]:
            flow.append(user)
            if not _zeros_reach_states_only(g, user.output[0], flow, depth + 1):
                return False
        else:
            return False
    return True


# -- the recurrent ops ---------------------------------------------------------------------------

def _activations(kind: str, a: dict, directions: int) -> list[list[str]]:
    if a.get("activation_alpha") or a.get("activation_beta"):
        raise Unsupported("activation_alpha/activation_beta (Keras activations take no parameters)")
    names = a.get("activations") or _DEFAULT_ACTIVATIONS[kind] * directions
    n = len(_DEFAULT_ACTIVATIONS[kind])
    if len(names) != n * directions:
        raise Unsupported(f"{len(names)} activations for {directions} direction(s)")
    out = []
    for d in range(directions):
        mine = []
        for name in names[d * n:(d + 1) * n]:
            keras = _ACTIVATIONS.get(name.lower())
            if keras is None:
                raise Unsupported(f"activation {name!r} (no Keras activation computes it)")
            mine.append(keras)
        if kind == "LSTM" and mine[1] != mine[2]:
            raise Unsupported(f"cell activation {mine[1]} differs from the output activation {mine[2]} "
                              "(Keras' LSTM uses one for both)")
        out.append(mine)
    return out


def _keras_weights(kind: str, w: np.ndarray, r: np.ndarray, b: np.ndarray, hidden: int, lbr: bool) -> list:
    """One direction's ONNX W (G·H, I), R (G·H, H), B (2·G·H) as Keras kernel, recurrent_kernel, bias."""
    gates = _GATES[kind]
    order = [0, 2, 3, 1] if kind == "LSTM" else list(range(gates))  # ONNX i,o,f,c → Keras i,f,c,o

    def reorder(m: np.ndarray) -> np.ndarray:
        return np.concatenate([m[g * hidden:(g + 1) * hidden] for g in order], axis=0)

    kernel = np.ascontiguousarray(reorder(w).T)
    recurrent = np.ascontiguousarray(reorder(r).T)
    wb, rb = reorder(b[:gates * hidden]), reorder(b[gates * hidden:])
    bias = np.stack([wb, rb]) if kind == "GRU" and lbr else wb + rb
    return [kernel, recurrent, bias.astype(w.dtype)]


def _sequence(g: Graph, node, name: str, layout: int) -> T:
    """X as a batch-first Keras tensor (batch, seq, input)."""
    v = as_view(g, name)
    rank = len(v.shape)
    if rank != 3:
        raise Unsupported(f"X of rank {rank}")
    if layout == 0:
        v = View(v.parts, v.axis, [v.perm[p] for p in (1, 0, 2)], (v.shape[1], v.shape[0], v.shape[2]), v.dtype)
    return v.parts[0] if v.real else materialize(g, node, v, f"{name}:batch_first")


def _initial_states(g: Graph, node, kind: str, directions: int, layout: int) -> list[list[T]] | None:
    """Per direction, the Keras initial states ([h] or [h, c]) or None (zeros)."""
    found: list[list[T]] = [[] for _ in range(directions)]
    given = False
    for slot in _STATE_INPUTS[kind]:
        name = node.input[slot] if len(node.input) > slot else ""
        if name and views(g).get(name) is not ZEROS and name in g.values:
            if np.any(g.const(name)):
                raise Unsupported("a non-zero constant initial state (Keras takes initial states as tensors)")
            name = ""  # zeros: Keras' own start
        if not name or views(g).get(name) is ZEROS:
            for d in range(directions):
                found[d].append(None)
            continue
        given = True
        v = as_view(g, name)
        for d in range(directions):
            part = select(g, node, v, 0 if layout == 0 else 1, d, f"{name}:{d}")
            found[d].append(part.parts[0] if part.real else materialize(g, node, part, f"{name}:{d}:state"))
    if not given:
        return None
    if any(s is None for states in found for s in states):
        raise Unsupported("an initial hidden state without the cell state or the other way round "
                          "(Keras takes both)")
    return found


def _mask(g: Graph, node, seq_len) -> T | None:
    """sequence_lens as Keras' mask (batch, seq): step t < length. Lengths equal to the sequence's
    are no mask; constant shorter ones (a fixed batch) are refused."""
    name = node.input[4]
    if name in g.values:
        lens = g.const(name)
        if isinstance(seq_len, int) and np.all(lens == seq_len):
            return None
        raise Unsupported("constant sequence_lens shorter than the sequence (Keras takes the mask as a tensor)")
    if not isinstance(seq_len, int):
        raise Unsupported("sequence_lens with a sequence of unknown length")
    lens = g.tensor(name)
    if lens.rank != 1:
        raise Unsupported(f"sequence_lens of rank {lens.rank}")
    column = g.layer(None, "ExpandDims", {"axis": -1}, [lens], f"{name}:column", (lens.shape[0], 1), module=_OPS,
                     dtype=lens.dtype)
    steps = {"class_name": "__numpy__", "config": {"value": [list(range(seq_len))], "dtype": lens.dtype}}
    return g.layer(None, "Less", {}, [steps, column], f"{name}:mask", (lens.shape[0], seq_len), module=_OPS,
                   dtype="bool")


def recurrent(kind: str):
    def convert(g: Graph, node, a: dict) -> None:
        direction = a.get("direction", "forward")
        if direction not in ("forward", "reverse", "bidirectional"):
            raise Unsupported(f"direction {direction!r}")
        directions = 2 if direction == "bidirectional" else 1
        layout = int(a.get("layout", 0))
        if "clip" in a:
            raise Unsupported("clip (Keras' recurrent layers do not clip the cell input)")
        if kind == "LSTM" and a.get("input_forget", 0):
            raise Unsupported("input_forget=1 (coupled input and forget gates)")
        acts = _activations(kind, a, directions)
        w, r = g.const(node.input[1]), g.const(node.input[2])
        if w is None or r is None:
            raise Unsupported("computed weights (W and R must be constants)")
        gates = _GATES[kind]
        hidden = int(a.get("hidden_size", r.shape[-1]))
        b = g.const(node.input[3]) if len(node.input) > 3 and node.input[3] else None
        if b is None and len(node.input) > 3 and node.input[3]:
            raise Unsupported("a computed bias")
        b = np.zeros((directions, 2 * gates * hidden), w.dtype) if b is None else b
        if (w.ndim != 3 or w.shape[:2] != (directions, gates * hidden)
                or r.shape != (directions, gates * hidden, hidden)
                or b.shape != (directions, 2 * gates * hidden)):
            raise Unsupported(f"weights of shapes W {list(w.shape)}, R {list(r.shape)}, B {list(b.shape)} for "
                              f"{directions} direction(s) of {hidden} units")
        if kind == "LSTM" and len(node.input) > 7 and node.input[7]:
            p = g.const(node.input[7])
            if p is None or np.any(p):
                raise Unsupported("peephole connections (Keras' LSTM has none)")
        x = _sequence(g, node, node.input[0], layout)
        seq_len = x.shape[1]
        mask = _mask(g, node, seq_len) if len(node.input) > 4 and node.input[4] else None
        states = _initial_states(g, node, kind, directions, layout)
        used = [bool(o) and (bool(g.consumers.get(o)) or o in g.outputs) for o in node.output]
        used += [False] * (3 - len(used))
        return_sequences = used[0]
        return_state = used[2] or (used[0] and used[1])
        lbr = bool(a.get("linear_before_reset", 0))

        def config(d: int, name: str) -> dict:
            c = {"name": name, "units": hidden, "activation": acts[d][-1] if kind != "RNN" else acts[d][0],
                 "use_bias": True, "return_sequences": return_sequences, "return_state": return_state,
                 "go_backwards": direction == "reverse" or d == 1, "stateful": False, "unroll": False}
            if mask is not None:  # ONNX's Y is 0 past a sequence's length
                c["zero_output_for_mask"] = True
            if kind != "RNN":
                c["recurrent_activation"] = acts[d][0]
            if kind == "GRU":
                c["reset_after"] = lbr
            return c

        weights = []
        for d in range(directions):
            weights += _keras_weights(kind, w[d], r[d], b[d], hidden, lbr)
        kwargs = {"initial_state": [s.record for d in states for s in d]} if states else {}
        if mask is not None:
            kwargs["mask"] = mask.record
        kwargs = kwargs or None
        base = g.unique(_name(node.name) if node.name else kind.lower())
        g.names.discard(base)  # g.layer takes the same name again
        seq_shape = (x.shape[0], seq_len, hidden)
        last_shape = (x.shape[0], hidden)
        first_shape = seq_shape if return_sequences else last_shape
        if directions == 1:
            layer = g.layer(node, _KERAS[kind], {k: v for k, v in config(0, base).items() if k != "name"}, [x],
                            f"{base}:keras", first_shape, weights=weights, kwargs=kwargs)
            n_outputs = 1
        else:
            sub = {d: {"module": "keras.layers", "class_name": _KERAS[kind], "registered_name": None,
                       "config": config(d, f"{'forward' if d == 0 else 'backward'}_{base}")} for d in (0, 1)}
            merged = _concat_follows(g, node, hidden) if layout == 0 and used[0] else None
            keras_merged = _concat_batch_first(g, node, hidden, used) if layout == 0 and not merged else None
            both = (*first_shape[:-1], 2 * hidden)
            layer = g.layer(node, "Bidirectional", {"merge_mode": "concat" if merged or keras_merged else None,
                                                    "layer": sub[0], "backward_layer": sub[1]},
                            [x], f"{base}:keras", (*seq_shape[:2], 2 * hidden) if merged else both if keras_merged
                            else first_shape, weights=weights, kwargs=kwargs)
            if merged:  # PyTorch's Transpose + Reshape after the op: the concatenated sequence, time-major
                g.skip.update(id(n) for n in merged)
                put(g, merged[1], merged[1].output[0],
                    View([layer], None, [1, 0, 2], (seq_len, x.shape[0], 2 * hidden)))
                used[0] = False
            elif keras_merged:  # modelmorph's export of merge_mode="concat": the layer's own output
                g.skip.update(id(n) for n in keras_merged[:2])
                g.alias(keras_merged[1].output[0], layer)
                return
            n_outputs = 1 if merged else 2  # then the states: h (and c) forward, h (and c) backward
        name = layer.record["config"]["keras_history"][0]
        n_states = (2 if kind == "LSTM" else 1) if return_state else 0

        def output(i: int, shape: tuple) -> T:
            record = {"class_name": "__keras_tensor__",
                      "config": {"shape": list(shape), "dtype": "float32", "keras_history": [name, 0, i]}}
            return T(record, shape, "float32")

        ys = [output(i, first_shape) for i in range(n_outputs)]
        hs = [output(n_outputs + d * n_states, last_shape) for d in range(directions)] if return_state else ys
        cs = [output(n_outputs + d * n_states + 1, last_shape) for d in range(directions)] if kind == "LSTM" and \
            return_state else None
        if used[0]:
            if direction == "reverse":  # Keras returns a backward layer's steps in the order it ran them
                ys = [g.layer(node, "Flip", {"axis": 1}, [ys[0]], f"{node.output[0]}:flip", seq_shape, module=_OPS)]
            if layout == 0:  # (seq, directions, batch, hidden) from (batch, directions, seq, hidden)
                put(g, node, node.output[0], View(ys, 1, [2, 1, 0, 3], (seq_len, directions, x.shape[0], hidden)))
            else:
                put(g, node, node.output[0], View(ys, 2, [0, 1, 2, 3], (x.shape[0], seq_len, directions, hidden)))
        for slot, found in ((1, hs), (2, cs)):
            if used[slot] and found is not None:
                if layout == 0:
                    put(g, node, node.output[slot], View(found, 0, [0, 1, 2], (directions, x.shape[0], hidden)))
                else:
                    put(g, node, node.output[slot], View(found, 1, [0, 1, 2], (x.shape[0], directions, hidden)))
    return convert


RECURRENT = {"LSTM": recurrent("LSTM"), "GRU": recurrent("GRU"), "RNN": recurrent("RNN")}
