"""TrackableObjectGraph helpers: build a graph, name its variables exactly as
TensorFlow does, and map checkpoint keys back to the object paths that reach them.

Naming rules (TensorFlow's object-based checkpoints):

* node 0 is the root; node ids follow a breadth-first traversal that visits each
  node's children in their listed order, so every node's *first* path is a shortest path;
* a path is the ``/``-joined local names along that shortest path, each escaped
  (``.`` -> ``..``, ``/`` -> ``.S``);
* a variable's key is ``<path>/.ATTRIBUTES/VARIABLE_VALUE``;
* a slot variable (optimizer state, e.g. Adam ``m``) has no path of its own: its key is
  ``<variable path>/.OPTIMIZER_SLOT/<optimizer path>/<slot name>/.ATTRIBUTES/VARIABLE_VALUE``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, NamedTuple, Sequence

from .table import BundleError, short_repr
from .wirewrite import message_field, string_field, varint_field

__all__ = [
    "VARIABLE_VALUE",
    "TrackableNode",
    "BuiltGraph",
    "KeyOrigin",
    "SlotOrigin",
    "escape_local_name",
    "unescape_local_name",
    "object_path_to_string",
    "variable_key",
    "slot_variable_key",
    "build_object_graph",
    "tree_to_nodes",
    "node_paths",
    "compute_checkpoint_keys",
    "checkpoint_key_origins",
]

VARIABLE_VALUE = "VARIABLE_VALUE"
OBJECT_ATTRIBUTES = ".ATTRIBUTES"
OPTIMIZER_SLOT = ".OPTIMIZER_SLOT"



def __getattr__(name: str) -> Any:
    # The protobuf message class loads on first use: reading a checkpoint parses its graph from
    # the wire format (modelmorph_tfckpt.source), without protobuf.
    if name == "TrackableObjectGraph":
        from .protos.trackable_object_graph_pb2 import TrackableObjectGraph

        return TrackableObjectGraph
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------- names


def escape_local_name(name: str) -> str:
    """Escape one local name for use in a checkpoint key (``.``->``..``, ``/``->``.S``)."""
    return name.replace(".", "..").replace("/", ".S")


def unescape_local_name(escaped: str) -> str:
    """Inverse of :func:`escape_local_name`; ``ValueError`` on a dangling escape."""
    out = []
    i = 0
    while i < len(escaped):
        c = escaped[i]
        if c == ".":
            nxt = escaped[i + 1 : i + 2]
            if nxt == ".":
                out.append(".")
            elif nxt == "S":
                out.append("/")
            else:
                raise ValueError(f"invalid escape in {escaped!r}")
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def object_path_to_string(path: Sequence[str]) -> str:
    return "/".join(escape_local_name(n) for n in path)


def variable_key(path: Sequence[str], attribute: str = VARIABLE_VALUE) -> str:
    """Checkpoint key of ``attribute`` of the object at ``path`` (child names)."""
    return f"{object_path_to_string(path)}/{OBJECT_ATTRIBUTES}/{escape_local_name(attribute)}"


def _slot_object_name(variable_path: Sequence[str], optimizer_path: Sequence[str], slot_name: str) -> str:
    return (
        f"{object_path_to_string(variable_path)}/{OPTIMIZER_SLOT}/"
        f"{object_path_to_string(optimizer_path)}/{escape_local_name(slot_name)}"
    )


def slot_variable_key(
    variable_path: Sequence[str], optimizer_path: Sequence[str], slot_name: str, attribute: str = VARIABLE_VALUE
) -> str:
    """Checkpoint key of slot ``slot_name`` that the optimizer at ``optimizer_path``
    keeps for the variable at ``variable_path``."""
    return f"{_slot_object_name(variable_path, optimizer_path, slot_name)}/{OBJECT_ATTRIBUTES}/{escape_local_name(attribute)}"


# --------------------------------------------------------------------------- building


class TrackableNode:
    """One object of a tree (or DAG) to serialize as a TrackableObjectGraph.

    Objects hold named children; variables are nodes with ``is_variable`` set (they
    get a ``VARIABLE_VALUE`` attribute) and may carry the ``value`` to store.  The same
    node may be attached under several names/parents (as Keras 2 does with
    ``layer-3`` and ``layer_with_weights-1``); it is serialized once.  An optimizer node
    lists its slot variables with :meth:`add_slot_variable`.
    """

    __slots__ = ("children", "is_variable", "full_name", "value", "slot_variables")

    def __init__(self, *, variable: bool = False, value: Any = None, full_name: str = ""):
        self.children: dict[str, TrackableNode] = {}
        self.is_variable = variable
        self.value = value
        self.full_name = full_name
        self.slot_variables: list[tuple[TrackableNode, str, TrackableNode]] = []

    def __repr__(self) -> str:
        kind = "variable" if self.is_variable else "object"
        return f"TrackableNode({kind}, children={list(self.children)})"

    def child(self, name: str) -> "TrackableNode":
        """The child object called ``name``, created if missing."""
        node = self.children.get(name)
        if node is None:
            node = self.children[name] = TrackableNode()
        return node

    def add_child(self, name: str, node: "TrackableNode") -> "TrackableNode":
        """Attach an existing node (possibly already attached elsewhere) as ``name``."""
        if name in self.children and self.children[name] is not node:
            raise ValueError(f"child {name!r} already exists")
        self.children[name] = node
        return node

    def add_variable(self, name: str, value: Any = None, full_name: str = "") -> "TrackableNode":
        """A new variable child ``name`` (``full_name`` is the variable's own TF name,
        informational only)."""
        if name in self.children:
            raise ValueError(f"child {name!r} already exists")
        node = self.children[name] = TrackableNode(variable=True, value=value, full_name=full_name)
        return node

    def add_slot_variable(
        self, original: "TrackableNode", slot_name: str, value: Any = None, full_name: str = ""
    ) -> "TrackableNode":
        """On an optimizer node: a slot variable ``slot_name`` kept for ``original``."""
        node = TrackableNode(variable=True, value=value, full_name=full_name)
        self.slot_variables.append((original, slot_name, node))
        return node


def tree_to_nodes(tree: Mapping[str, Any] | TrackableNode) -> TrackableNode:
    """Convert nested mappings ``{name: subtree | value}`` to :class:`TrackableNode` s.

    A mapping becomes an object, a :class:`TrackableNode` is used as is, anything
    else (an array, a number) becomes a variable holding that value.  The same mapping
    object reached twice becomes one shared node.
    """
    if isinstance(tree, TrackableNode):
        return tree
    memo: dict[int, TrackableNode] = {}

    def convert(obj: Any) -> TrackableNode:
        if isinstance(obj, TrackableNode):
            return obj
        if isinstance(obj, Mapping):
            got = memo.get(id(obj))
            if got is not None:
                return got
            node = memo[id(obj)] = TrackableNode()
            for name, sub in obj.items():
                node.add_child(str(name), convert(sub))
            return node
        return TrackableNode(variable=True, value=obj)

    if not isinstance(tree, Mapping):
        raise TypeError("the root of a tree must be a mapping or a TrackableNode")
    return convert(tree)


@dataclass
class BuiltGraph:
    """Result of :func:`build_object_graph`.

    ``graph`` is the serialized ``TrackableObjectGraph`` (bytes), ``nodes`` the serialized
    :class:`TrackableNode` s in node-id order, ``keys`` maps each checkpoint key to its
    variable node (slot variables included).
    """

    graph: bytes
    nodes: list[TrackableNode]
    keys: dict[str, TrackableNode]

    def values(self) -> Iterator[tuple[str, Any]]:
        """``(checkpoint key, value)`` for every variable that carries a value."""
        for key, node in self.keys.items():
            if node.value is not None:
                yield key, node.value


def build_object_graph(root: TrackableNode | Mapping[str, Any], *, mark_has_checkpoint_values: bool = True) -> BuiltGraph:
    """Serialize a tree/DAG of :class:`TrackableNode` s (or nested mappings, see
    :func:`tree_to_nodes`) as TensorFlow would, computing every checkpoint key."""
    root = tree_to_nodes(root)
    nodes: list[TrackableNode] = [root]
    ids = {id(root): 0}
    paths: list[tuple[str, ...]] = [()]
    queue = deque([root])
    while queue:
        parent = queue.popleft()
        for name, child in parent.children.items():
            if id(child) not in ids:
                ids[id(child)] = len(nodes)
                nodes.append(child)
                paths.append(paths[ids[id(parent)]] + (name,))
                queue.append(child)
    if root.is_variable:
        raise ValueError("the root cannot be a variable")

    object_names: dict[int, str] = {i: object_path_to_string(p) for i, p in enumerate(paths)}
    slot_refs: list[tuple[int, int, str, int]] = []  # optimizer id, original id, slot name, slot id
    for opt_id in range(len(nodes)):
        for original, slot_name, slot_node in nodes[opt_id].slot_variables:
            orig_id = ids.get(id(original))
            if orig_id is None or not original.is_variable:
                raise ValueError(f"slot {slot_name!r}: its original variable is not part of the graph")
            if id(slot_node) in ids:
                raise ValueError(f"slot {slot_name!r}: a slot variable cannot also be a child")
            slot_id = len(nodes)
            ids[id(slot_node)] = slot_id
            nodes.append(slot_node)
            object_names[slot_id] = _slot_object_name(paths[orig_id], paths[opt_id], slot_name)
            slot_refs.append((opt_id, orig_id, slot_name, slot_id))

    # The TrackableObjectGraph, encoded here (.wirewrite: no protobuf import). Each node:
    # children = 1 (node_id = 1, local_name = 2), attributes = 2 (name = 1, full_name = 2,
    # checkpoint_key = 3), slot_variables = 3 (original_variable_node_id = 1, slot_name = 2,
    # slot_variable_node_id = 3), has_checkpoint_values = 5 (a BoolValue: value = 1).
    slots: dict[int, list[bytes]] = {}
    for opt_id, orig_id, slot_name, slot_id in slot_refs:
        slots.setdefault(opt_id, []).append(message_field(3, varint_field(1, orig_id) + string_field(2, slot_name) +
                                                          varint_field(3, slot_id)))
    marked = _with_checkpoint_values(nodes, ids, slots) if mark_has_checkpoint_values else None
    keys: dict[str, TrackableNode] = {}
    encoded = []
    for node_id, node in enumerate(nodes):
        fields = [message_field(1, varint_field(1, ids[id(child)]) + string_field(2, name))
                  for name, child in node.children.items()]
        if node.is_variable:
            key = f"{object_names[node_id]}/{OBJECT_ATTRIBUTES}/{VARIABLE_VALUE}"
            if key in keys:
                raise ValueError(f"two variables would share the checkpoint key {key!r}")
            keys[key] = node
            fields.append(message_field(2, string_field(1, VARIABLE_VALUE) + string_field(2, node.full_name) +
                                        string_field(3, key)))
        fields += slots.get(node_id, [])
        if marked is not None:  # set on every node, false ones too (an empty BoolValue)
            fields.append(message_field(5, varint_field(1, node_id in marked)))
        encoded.append(message_field(1, b"".join(fields)))
    return BuiltGraph(graph=b"".join(encoded), nodes=nodes, keys=keys)


def _with_checkpoint_values(nodes: list[TrackableNode], ids: dict[int, int], slots: dict[int, list]) -> set[int]:
    """The ids of the nodes that have checkpoint values: those that store something (a variable's
    value, slot variables), and every node above one of them."""
    parents: dict[int, set[int]] = {}
    marked = set()
    for i, node in enumerate(nodes):
        if node.is_variable or i in slots:
            marked.add(i)
        for child in node.children.values():
            parents.setdefault(ids[id(child)], set()).add(i)
    todo = list(marked)
    while todo:
        for p in parents.pop(todo.pop(), ()):
            if p not in marked:
                marked.add(p)
                todo.append(p)
    return marked


# --------------------------------------------------------------------------- reading


def _check_graph(graph) -> None:
    n = len(graph.nodes)
    if n == 0:
        raise BundleError("object graph has no nodes")
    for i, node in enumerate(graph.nodes):
        for ref in node.children:
            if not 0 <= ref.node_id < n:
                raise BundleError(f"object graph node {i}: child {short_repr(ref.local_name)} points to missing node {ref.node_id}")
        for s in node.slot_variables:
            if not (0 <= s.original_variable_node_id < n and 0 <= s.slot_variable_node_id < n):
                raise BundleError(f"object graph node {i}: slot variable {short_repr(s.slot_name)} points to a missing node")


def node_paths(graph, max_paths: int = 32) -> list[tuple[tuple[str, ...], ...]]:
    """For every node id, the child-name chains from the root that reach it, shortest
    first; element 0 is the path TensorFlow uses for naming.  Paths never revisit a
    node; at most ``max_paths`` are kept per node (a hostile DAG cannot blow up)."""
    _check_graph(graph)
    nodes = graph.nodes
    found: list[list[tuple[str, ...]]] = [[] for _ in nodes]
    found[0].append(())
    queue = deque([(0, (), frozenset((0,)))])
    while queue:
        node_id, path, on_path = queue.popleft()
        for ref in nodes[node_id].children:
            c = ref.node_id
            if c in on_path or len(found[c]) >= max_paths:
                continue
            p = path + (ref.local_name,)
            found[c].append(p)
            queue.append((c, p, on_path | {c}))
    return [tuple(f) for f in found]


def compute_checkpoint_keys(graph, paths: list | None = None) -> dict[tuple[int, str], str]:
    """The key TensorFlow would give each ``(node id, attribute name)`` of ``graph``,
    recomputed from the graph's shape (useful to validate a graph or to fill in keys)."""
    if paths is None:
        paths = node_paths(graph, max_paths=1)
    names: dict[int, str] = {i: object_path_to_string(p[0]) for i, p in enumerate(paths) if p}
    for opt_id, node in enumerate(graph.nodes):
        for s in node.slot_variables:
            if paths[s.original_variable_node_id] and paths[opt_id]:
                names[s.slot_variable_node_id] = _slot_object_name(
                    paths[s.original_variable_node_id][0], paths[opt_id][0], s.slot_name
                )
    out = {}
    for i, node in enumerate(graph.nodes):
        for attr in node.attributes:
            if i in names:
                out[(i, attr.name)] = f"{names[i]}/{OBJECT_ATTRIBUTES}/{escape_local_name(attr.name)}"
    return out


class SlotOrigin(NamedTuple):
    """Where a slot variable comes from: the optimizer keeping it, the variable it
    shadows, and the slot's name ("m", "v", "momentum", ...)."""

    slot_name: str
    optimizer_node_id: int
    original_variable_node_id: int
    optimizer_paths: tuple[tuple[str, ...], ...]
    original_variable_paths: tuple[tuple[str, ...], ...]
    original_variable_key: str | None


class KeyOrigin(NamedTuple):
    """What a checkpoint key belongs to: its node, attribute and every object path that
    reaches the node (shortest first; empty for slot variables, see ``slot``)."""

    key: str
    node_id: int
    attribute: str
    full_name: str
    paths: tuple[tuple[str, ...], ...]
    slot: SlotOrigin | None = None


def checkpoint_key_origins(graph, max_paths: int = 32) -> dict[str, KeyOrigin]:
    """Map every checkpoint key recorded in ``graph`` to its :class:`KeyOrigin`.

    This is how a caller interprets a checkpoint without guessing strings: e.g. a
    Keras 2 kernel reached as both ``("layer_with_weights-0", "kernel")`` and
    ``("layer-1", "kernel")``, a Keras 3 one as ``("model", "_operations", "1",
    "_kernel")`` and ``("optimizer", "_trainable_variables", "0")``.
    """
    paths = node_paths(graph, max_paths=max_paths)
    var_key = {}
    for i, node in enumerate(graph.nodes):
        for attr in node.attributes:
            if attr.name == VARIABLE_VALUE:
                var_key[i] = attr.checkpoint_key
    slots: dict[int, SlotOrigin] = {}
    for opt_id, node in enumerate(graph.nodes):
        for s in node.slot_variables:
            slots[s.slot_variable_node_id] = SlotOrigin(
                slot_name=s.slot_name,
                optimizer_node_id=opt_id,
                original_variable_node_id=s.original_variable_node_id,
                optimizer_paths=paths[opt_id],
                original_variable_paths=paths[s.original_variable_node_id],
                original_variable_key=var_key.get(s.original_variable_node_id),
            )
    out: dict[str, KeyOrigin] = {}
    for i, node in enumerate(graph.nodes):
        for attr in node.attributes:
            if attr.checkpoint_key in out:
                continue  # a key claimed by two nodes: keep the first
            out[attr.checkpoint_key] = KeyOrigin(
                key=attr.checkpoint_key,
                node_id=i,
                attribute=attr.name,
                full_name=attr.full_name,
                paths=paths[i],
                slot=slots.get(i),
            )
    return out
