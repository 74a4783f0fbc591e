"""Diagnostics a conversion collects instead of printing: the caller decides how loud to be.

Readers and writers call :meth:`Diagnostics.add`; the CLI prints them on stderr and,
with ``--strict``, exits non-zero when there are any.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Literal

#: ``lossy`` the target cannot hold something exactly; ``unsupported`` something was
#: dropped or carried without being understood; ``contains-code`` the model carries code
#: (Lambda bytecode, custom classes) that modelmorph copies as data and never runs.
Kind = Literal["lossy", "unsupported", "contains-code"]
KINDS: tuple[str, ...] = ("lossy", "unsupported", "contains-code")


@dataclass(frozen=True)
class Diagnostic:
    """One fact about a conversion: its :data:`Kind`, what happened, and where if about one place."""

    kind: Kind
    message: str
    where: str | None = None  # a layer or weight path, when it is about one

    def __str__(self) -> str:
        where = f" [{self.where}]" if self.where else ""
        return f"{self.kind}{where}: {self.message}"


@dataclass
class Diagnostics:
    """The diagnostics of one read, write or conversion, in the order they were added, each once."""

    items: list[Diagnostic] = field(default_factory=list)

    def add(self, kind: Kind, message: str, where: str | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown diagnostic kind {kind!r}")
        item = Diagnostic(kind, message, where)
        if item not in self.items:  # the same fact reported twice is one diagnostic
            self.items.append(item)

    def __iter__(self) -> Iterator[Diagnostic]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)
