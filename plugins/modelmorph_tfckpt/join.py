"""Joining a checkpoint's variables onto an architecture, as the library that wrote it restores them.

Restoring walks the object graph by child names from the model's object; so does this
module. For every naming scheme (:mod:`.naming`) and every plausible model object (the root,
as ``save_weights`` writes it, or one of the root's children, as ``tf.train.Checkpoint(model=m)``
does), each layer is found by its child path and each expected variable by its attribute
path below it. The first scheme that finds every variable wins. Aliases and shortcuts
(``layer-3`` and ``layer_with_weights-1``; Keras 3 variables whose key goes through
``optimizer/_trainable_variables``) resolve to the same node, hence the same key.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from modelmorph import Diagnostics, Model, ReadError
from modelmorph.keras.join import Expected, expected_variables, structure_of

from . import naming
from .optimizer import read_state
from .source import Checkpoint, ObjectGraph

#: Root objects tried as the model (a hostile graph with a huge root cannot make reading slow).
_MAX_BASES = 32


@dataclass
class Match:
    """The outcome of one scheme anchored at one node: keys found, and problems."""

    scheme: str
    base: int  # the model's node
    keys: dict[int, list[tuple[Expected, str]]] = field(default_factory=dict)  # id(layer) -> (variable, key)
    nodes: dict[int, str] = field(default_factory=dict)  # variable node -> its full IR path
    found: int = 0
    problems: list[str] = field(default_factory=list)


def join(ckpt: Checkpoint, arch: Model, diagnostics: Diagnostics) -> Model:
    """``arch``'s structure with the checkpoint's weights (and optimizer state) attached."""
    if ckpt.graph is None:
        raise ReadError(ckpt.source, "the checkpoint has no object graph (a TF1 name-based checkpoint), so it "
                                     "cannot be joined to an architecture; read it without --arch")
    model = structure_of(arch)
    match = _best_match(ckpt.graph, ckpt, model, {path: expected for path, _, expected in expected_variables(arch)})
    consumed = set()
    for _, layer in model.iter_layers():
        for variable, key in match.keys.get(id(layer), []):
            layer.weights.append(ckpt.weight(key, variable.path, variable.trainable))
            consumed.add(key)
    model.metadata["checkpoint_naming"] = match.scheme
    optimizer = read_state(ckpt, model, match.base, match.nodes, match.scheme, diagnostics)
    if optimizer is not None:
        model.optimizer, optimizer_keys = optimizer
        consumed |= optimizer_keys
    dropped = [key for key in ckpt.variable_keys() if key not in consumed]
    if dropped:
        diagnostics.add("unsupported", f"{len(dropped)} checkpoint variable(s) belong to nothing in the architecture "
                                       f"and are dropped: {', '.join(dropped[:5])}" + (", ..." if len(dropped) > 5 else ""))
    return model


def _best_match(graph: ObjectGraph, ckpt: Checkpoint, model: Model, expected: dict) -> Match:
    bases = _Bases(graph)
    best: Match | None = None
    for scheme in naming.SCHEMES:
        for base in bases:
            match = Match(scheme, base)
            _match_level(graph, ckpt, model, base, "", expected, match)
            if not match.problems:
                return match
            if best is None or match.found > best.found:
                best = match
    total = sum(len(v) for v in expected.values() if v)
    raise ReadError(ckpt.source, f"{best.problems[0]} (closest naming: {best.scheme}, {best.found} of {total} "
                                 "variables found)")


class _Bases:
    """The nodes that may be the model: the root (save_weights) or one of the root's objects
    with children (Checkpoint(model=m)), at most ``_MAX_BASES``. Found as they are tried (each
    candidate's node is read to see whether it has children) and remembered for the next scheme:
    the root matches at once in the usual case, and a SavedModel's root has hundreds of objects."""

    def __init__(self, graph: ObjectGraph):
        self._found = [0]
        self._candidates = (c for c in graph.children[0].values() if c != 0 and graph.children[c])

    def __iter__(self):
        i = 0
        while True:
            if i == len(self._found):
                if len(self._found) >= _MAX_BASES or not self._next():
                    return
            yield self._found[i]
            i += 1

    def _next(self) -> bool:
        for node in self._candidates:
            if node not in self._found:
                self._found.append(node)
                return True
        return False


def _match_level(graph: ObjectGraph, ckpt: Checkpoint, model: Model, base: int, prefix: str,
                 expected: dict, match: Match) -> None:
    for obj in naming.layer_objects(model, match.scheme, prefix):
        # Keras 2's positional `layer-i` never depends on which layers have weights: try it first.
        node = next((n for n in (graph.walk(base, p) for p in (*obj.aliases, obj.path)) if n is not None), None)
        if obj.layer.submodel is not None:
            if node is not None:
                _match_level(graph, ckpt, obj.layer.submodel, node, obj.layer_path + "/", expected, match)
            elif naming.has_variables(obj.layer):
                match.problems.append(f"nested model {obj.layer_path!r}: not found in the checkpoint")
            continue
        wanted = expected[obj.layer_path]
        if match.scheme != "module" and naming.is_positional(obj.layer):
            _match_positional(graph, ckpt, obj, node, wanted, match)
        elif wanted:
            _match_named(graph, ckpt, obj, node, wanted, match)


def _match_named(graph: ObjectGraph, ckpt: Checkpoint, obj: naming.LayerObject, node: int | None,
                 wanted: list[Expected], match: Match) -> None:
    found = []
    relatives = naming.variable_paths(obj.layer, [variable.path for variable in wanted], match.scheme)
    for variable, relative in zip(wanted, relatives):
        vnode = graph.walk(node, relative) if node is not None else None
        key = graph.keys[vnode] if vnode is not None else None
        problem = _check(ckpt, obj, variable, key, (*obj.path, *relative))
        if problem:
            match.problems.append(problem)
            continue
        found.append((variable, key))
        match.nodes[vnode] = f"{obj.layer_path}/{variable.path}"
    match.keys[id(obj.layer)] = found
    match.found += len(found)


def _match_positional(graph: ObjectGraph, ckpt: Checkpoint, obj: naming.LayerObject, node: int | None,
                      wanted: list[Expected] | None, match: Match) -> None:
    """A class the catalogue does not know: its variables are its object's variable children,
    in the order the object lists them (creation order), checked against the architecture's
    weights when it carries some."""
    children = [] if node is None else list(dict.fromkeys(
        c for c in graph.children[node].values() if graph.keys[c] is not None))
    if wanted is not None and len(wanted) != len(children):
        match.problems.append(f"layer {obj.layer_path!r} ({obj.layer.class_name}): the checkpoint holds "
                              f"{len(children)} variable(s) for it, the architecture has {len(wanted)}")
        return
    found = []
    for index, child in enumerate(children):
        variable = wanted[index] if wanted is not None else Expected(str(index), True, None)
        problem = _check(ckpt, obj, variable, graph.keys[child], obj.path)
        if problem:
            match.problems.append(problem)
            return
        found.append((variable, graph.keys[child]))
        match.nodes[child] = f"{obj.layer_path}/{variable.path}"
    match.keys[id(obj.layer)] = found
    match.found += len(found)


def _check(ckpt: Checkpoint, obj: naming.LayerObject, variable: Expected, key: str | None,
           where: tuple[str, ...]) -> str | None:
    """The problem with the variable found under ``key`` (None: not found) at object path
    ``where``; None if there is none."""
    entry = ckpt.entries.get(key) if key is not None else None
    if entry is not None and (variable.shape is None or tuple(entry.shape) == variable.shape):
        return None  # the usual case, once per variable: no message is made
    what = f"layer {obj.layer_path!r} ({obj.layer.class_name}): variable {variable.path!r}"
    if key is None:
        return f"{what} not found in the checkpoint (no object at {'/'.join(where)})"
    if entry is None:
        return f"{what}: the object graph names key {key!r}, which the checkpoint does not hold"
    if variable.shape is not None and tuple(entry.shape) != variable.shape:
        return f"{what} has shape {list(entry.shape)} in the checkpoint, the architecture expects {list(variable.shape)}"
    return None
