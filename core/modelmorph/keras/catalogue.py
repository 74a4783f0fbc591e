"""The layer catalogue: the layer-class descriptors (:mod:`modelmorph.keras.layers`) one
registry knows, built-in and described by plugins.

Each :class:`~modelmorph.Registry` owns a :class:`Catalogue`; the API activates it around
every read and write, so the module-level functions here (what readers and writers call)
answer from the registry doing the work, and a plugin's classes never leak into another
registry. Outside an activation they answer from the built-in descriptors.

A class the catalogue does not know has ``None`` variables here: its variables are carried
by position, never guessed.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from typing import Any, Iterator, NamedTuple

from .layers import Child, LayerClass, LayerSpec, Var, builtin_classes

__all__ = ["Catalogue", "LayerClass", "LayerSpec", "Var", "Child", "MODEL_CLASSES", "activate", "active", "get",
           "is_known", "variables_of", "known_classes"]

#: Classes that are models: their variables live in their sublayers.
MODEL_CLASSES = frozenset({"Functional", "Sequential", "Model"})


class Catalogue:
    """Layer-class descriptors by class name: the built-ins plus what plugins registered."""

    def __init__(self, classes: "list[LayerClass] | None" = None):
        self._builtin: dict[str, LayerClass] = {}
        for cls in builtin_classes() if classes is None else classes:
            self._builtin[cls.class_name] = cls
        self._registered: dict[str, LayerClass] = {}

    def register(self, cls: LayerClass) -> None:
        """Add a plugin's layer class (refused for a built-in class or one another plugin described).

        A descriptor that carries nothing but ``converters`` adds them to the class's descriptor,
        built-in or not: that is how a format plugin puts its converters in the converter slot
        (the ONNX export's, or a third party's override of one; the later registration wins)."""
        if not isinstance(cls, LayerClass):
            raise ValueError(f"expected a modelmorph.LayerClass, got {type(cls).__name__}")
        if cls.converters and cls == LayerClass(cls.class_name, converters=cls.converters):
            existing = self.get(cls.class_name)
            if existing is None:
                raise ValueError(f"converters for layer class {cls.class_name!r}, which no descriptor describes")
            merged = dataclasses.replace(existing, converters={**existing.converters, **cls.converters})
            (self._builtin if cls.class_name in self._builtin else self._registered)[cls.class_name] = merged
            return
        if cls.class_name in self._builtin or cls.class_name in MODEL_CLASSES:
            raise ValueError(f"layer class {cls.class_name!r} is built into the catalogue and cannot be redefined")
        if self._registered.get(cls.class_name, cls) != cls:
            raise ValueError(f"layer class {cls.class_name!r} is already described by another plugin")
        self._registered[cls.class_name] = cls

    def get(self, class_name: str) -> LayerClass | None:
        return self._builtin.get(class_name) or self._registered.get(class_name)

    def is_known(self, class_name: str) -> bool:
        return self.get(class_name) is not None or class_name in MODEL_CLASSES

    def variables_of(self, class_name: str, config: dict[str, Any]) -> list[Var] | None:
        """The variables of a layer of ``class_name`` with ``config``, in saving order.

        ``None`` when the class is unknown (carry its variables by position) or is a model
        (its variables belong to its sublayers).
        """
        cls = self.get(class_name)
        return None if cls is None else cls.variables(config or {})

    def known_classes(self) -> list[str]:
        return sorted({*self._builtin, *self._registered})


_BUILTIN: Catalogue | None = None
_ACTIVE: contextvars.ContextVar["Catalogue | None"] = contextvars.ContextVar("modelmorph_catalogue", default=None)


def builtin() -> Catalogue:
    """The catalogue of the built-in classes alone (built once)."""
    global _BUILTIN
    if _BUILTIN is None:
        _BUILTIN = Catalogue()
    return _BUILTIN


def active() -> Catalogue:
    """The catalogue of the registry at work (the built-in one outside any)."""
    return _ACTIVE.get() or builtin()


@contextlib.contextmanager
def activate(catalogue: Catalogue) -> Iterator[Catalogue]:
    """Answer from ``catalogue`` inside the ``with`` block (this thread or task only)."""
    token = _ACTIVE.set(catalogue)
    try:
        yield catalogue
    finally:
        _ACTIVE.reset(token)


def get(class_name: str) -> LayerClass | None:
    return active().get(class_name)


def is_known(class_name: str) -> bool:
    return active().is_known(class_name)


def variables_of(class_name: str, config: dict[str, Any]) -> list[Var] | None:
    return active().variables_of(class_name, config)


def known_classes() -> list[str]:
    return active().known_classes()


def operation(class_name: str) -> LayerClass | None:
    """The descriptor of a ``keras.ops`` call (``Multiply`` here is ``keras.ops.multiply``,
    not the layer)."""
    return _operations().get(class_name)


_OPERATIONS: dict[str, LayerClass] | None = None


def _operations() -> dict[str, LayerClass]:
    global _OPERATIONS
    if _OPERATIONS is None:
        from .layers.operations import CLASSES

        _OPERATIONS = {cls.class_name: cls for cls in CLASSES}
    return _OPERATIONS


def sub_object(class_name: str, config: dict, attribute: str) -> Child | None:
    """The sub-object a layer of ``class_name`` keeps under ``attribute``, if the catalogue knows."""
    cls = get(class_name)
    return None if cls is None else cls.sub_object(config, attribute)


class Followed(NamedTuple):
    """Where a sub-object path leads (see :func:`follow`)."""

    checkpoint_path: tuple[str, ...]  # the attribute names a TF checkpoint follows
    child: Child | None  # the sub-object reached; None when the catalogue cannot tell
    through_list: bool  # whether a list member was on the way (StackedRNNCells' cells)


def follow(class_name: str, config: dict, parts: "list[str] | tuple[str, ...]") -> Followed:
    """Follow the sub-object path ``parts`` (``cell``, ``cell/cells/gru_cell``) from a layer of
    ``class_name``: the attribute names a TF checkpoint follows (private ones, list members by
    index: ``cell/cells/0``) and the sub-object reached. Parts it cannot resolve are kept as
    they are."""
    if not parts:  # a layer's own variable (the usual case, asked once per variable of a model)
        return Followed((), None, False)
    from .keras3_layout import snake_case, unique_name

    out: list[str] = []
    child: Child | None = None
    known, through_list = True, False
    config = config or {}
    index = 0
    while index < len(parts):
        attr = parts[index]
        described = get(class_name)
        out.append(described.private.get(attr, attr) if described is not None else attr)
        members = described.elements(config, attr) if described is not None else None
        if members is not None and index + 1 < len(parts):
            used: dict[str, int] = {}
            keys = [unique_name(snake_case(m.class_name), used) for m in members]
            key = parts[index + 1]
            index += 1
            through_list = True
            if key in keys:
                out.append(str(keys.index(key)))
                child = members[keys.index(key)]
            else:
                out.append(key)
                child = None
        else:
            child = described.sub_object(config, attr) if described is not None else None
        known = known and child is not None
        class_name, config = (child.class_name, child.config) if child is not None else ("", {})
        index += 1
    return Followed(tuple(out), child if known else None, through_list)
