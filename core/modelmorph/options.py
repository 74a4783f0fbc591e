"""Typed ``-O`` options: what a format declares, and the one parser every format shares.

A format lists its options as :class:`Option` schemas. The core parses what the user gave
(``-O key=value`` strings, or already-typed values from Python) before a reader or writer
runs, so readers and writers receive typed values and never parse strings themselves, and
``max_shard_size=2`` or ``zipped=no`` mean the same in every format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from .errors import UsageError

#: The value types an option may have.
TYPES = ("bool", "int", "size", "choice", "str")
#: When an option applies: while reading, while writing, or both (options declared the
#: old way, as ``{key: help}``, apply to both sides).
SIDES = ("read", "write", "both")

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")
#: Size units. Binary, as Keras and TensorFlow count them: Keras' ``max_shard_size=2``
#: is 2 * 1024**3 bytes, i.e. ``2GB`` here. ``KiB``... are accepted as synonyms.
SIZE_UNITS = {"b": 1, "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30, "tb": 1 << 40,
              "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}
# Compiled on first use (``re`` caches it): compiling it case-insensitively costs ~0.5 ms,
# which every start-up would pay for an option few conversions are given.
_SIZE = r"^(\d+(?:\.\d*)?(?:e[-+]?\d+)?|\.\d+(?:e[-+]?\d+)?)\s*([a-z]*)$"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def parse_bool(text: str) -> bool:
    """``true``/``false``, ``yes``/``no``, ``on``/``off``, ``1``/``0`` (any case)."""
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError("must be true or false (or yes/no, on/off, 1/0)")


def parse_size(text: str) -> int:
    """A positive number of bytes: a bare number is bytes; ``B``, ``KB``, ``MB``, ``GB``, ``TB``
    (binary: 1 KB = 1024 bytes) or ``KiB``... multiply it. Fractions are rounded down to a byte."""
    match = re.match(_SIZE, text.strip(), re.IGNORECASE)
    unit = (match.group(2) or "b").lower() if match else ""
    if match is None or unit not in SIZE_UNITS or int(float(match.group(1)) * SIZE_UNITS[unit]) <= 0:
        raise ValueError("must be a positive size such as 1048576 (bytes), 500MB or 2GB (binary units)")
    return int(float(match.group(1)) * SIZE_UNITS[unit])


@dataclass(frozen=True)
class Option:
    """One ``-O name=value`` a format accepts.

    ``type`` is one of :data:`TYPES` (``choice`` takes one of ``choices``); ``default`` is the
    typed value a reader or writer gets when the option is not given (``None``: the key is
    absent); ``side`` says whether it applies when reading, writing or both.
    """

    name: str
    type: str = "str"
    default: Any = None
    side: str = "write"
    help: str = ""
    choices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"option name {self.name!r} must be lower-case letters, digits or '_'")
        if self.type not in TYPES:
            raise ValueError(f"option {self.name!r}: unknown type {self.type!r} (known: {', '.join(TYPES)})")
        if self.side not in SIDES:
            raise ValueError(f"option {self.name!r}: side must be one of {', '.join(SIDES)}, not {self.side!r}")
        object.__setattr__(self, "choices", tuple(self.choices))
        if (self.type == "choice") != bool(self.choices):
            raise ValueError(f"option {self.name!r}: choices go with type 'choice', and only with it")
        if self.default is not None:
            try:
                ok = self.parse(self.default) == self.default
            except ValueError:
                ok = False
            if not ok:
                raise ValueError(f"option {self.name!r}: default {self.default!r} is not a valid {self.type_name}")

    @property
    def type_name(self) -> str:
        return f"choice of {'|'.join(self.choices)}" if self.type == "choice" else self.type

    def applies_to(self, side: str) -> bool:
        return self.side in (side, "both")

    def parse(self, value: Any) -> Any:
        """The typed value of ``value`` (a string from the command line, or already typed
        from Python). Raises ValueError saying what is wrong."""
        if self.type == "bool":
            return value if isinstance(value, bool) else parse_bool(_text(value, "text or a bool"))
        if self.type == "int":
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            try:
                return int(_text(value, "a whole number").strip())
            except ValueError:
                raise ValueError("must be a whole number") from None
        if self.type == "size":
            if isinstance(value, int) and not isinstance(value, bool):
                if value <= 0:
                    raise ValueError("must be a positive size")
                return value
            return parse_size(_text(value, "text or a number of bytes"))
        text = _text(value, "text")
        text = text.strip() if self.type == "choice" else text
        if self.type == "choice" and text not in self.choices:
            raise ValueError(f"must be one of {', '.join(self.choices)}")
        return text

    def describe(self) -> dict[str, Any]:
        """What ``modelmorph formats --json`` shows."""
        return {"type": self.type, "choices": list(self.choices), "default": self.default, "side": self.side,
                "help": self.help}


def _text(value: Any, expected: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be {expected}")
    return value


def schema(options: Mapping[str, Any] | Iterable[Option], owner: str) -> dict[str, Option]:
    """A format's options by name, from :class:`Option` items or the old ``{key: help}`` dict
    (each such key is a ``str`` option of both sides)."""
    out: dict[str, Option] = {}
    if isinstance(options, Mapping):
        items = [value if isinstance(value, Option) else Option(key, "str", None, "both", str(value))
                 for key, value in options.items()]
        for key, value in options.items():
            if isinstance(value, Option) and value.name != key:
                raise ValueError(f"format {owner!r}: option {value.name!r} is listed under the key {key!r}")
    else:
        items = list(options)
    for item in items:
        if not isinstance(item, Option):
            raise ValueError(f"format {owner!r}: options must be modelmorph.Option items, not {type(item).__name__}")
        if item.name in out:
            raise ValueError(f"format {owner!r}: option {item.name!r} is declared twice")
        out[item.name] = item
    return out


def resolve(format_name: str, declared: Mapping[str, Option], given: Mapping[str, Any], side: str) -> dict[str, Any]:
    """The typed options a ``side`` ("read"/"write") of format ``format_name`` receives: every
    given one parsed, plus the defaults of those not given. Unknown, wrong-side or ill-typed
    options are usage errors naming the format and the option."""
    out: dict[str, Any] = {}
    for key, value in given.items():
        option = declared.get(key)
        if option is None:
            accepted = ", ".join(sorted(k for k, o in declared.items() if o.applies_to(side))) or "none"
            raise UsageError(f"format {format_name}: unknown option -O {key} (accepted when {_ing(side)}: {accepted})")
        if not option.applies_to(side):
            raise UsageError(f"format {format_name}: -O {key} applies when {_ing(option.side)}, not when {_ing(side)}")
        out[key] = parse_value(format_name, option, value)
    for key, option in declared.items():
        if key not in out and option.applies_to(side) and option.default is not None:
            out[key] = option.default
    return out


def parse_value(format_name: str, option: Option, value: Any) -> Any:
    try:
        return option.parse(value)
    except ValueError as exc:
        raise UsageError(f"format {format_name}: -O {option.name} {exc}, not {value!r}") from None


def route(source: tuple[str, Mapping[str, Option]], target: tuple[str, Mapping[str, Option]],
          given: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a conversion's options between the source's reader and the target's writer by
    what each format declares; returns the two typed option dicts."""
    (src_name, src), (dst_name, dst) = source, target
    to_read, to_write = {}, {}
    for key, value in given.items():
        reads = key in src and src[key].applies_to("read")
        writes = key in dst and dst[key].applies_to("write")
        if reads:
            to_read[key] = value
        if writes:
            to_write[key] = value
        if reads or writes:
            continue
        if key in src:
            raise UsageError(f"format {src_name}: -O {key} applies when writing, and {src_name} is the source here")
        if key in dst:
            raise UsageError(f"format {dst_name}: -O {key} applies when reading, and {dst_name} is the target here")
        accepted = sorted({k for k, o in src.items() if o.applies_to("read")}
                          | {k for k, o in dst.items() if o.applies_to("write")})
        raise UsageError(f"unknown option -O {key} for reading {src_name} and writing {dst_name} "
                         f"(accepted: {', '.join(accepted) or 'none'})")
    return resolve(src_name, src, to_read, "read"), resolve(dst_name, dst, to_write, "write")


def _ing(side: str) -> str:
    return {"read": "reading", "write": "writing", "both": "reading and writing"}[side]
