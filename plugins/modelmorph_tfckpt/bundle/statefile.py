"""The ``checkpoint`` state file of a checkpoint folder: a ``CheckpointState`` message in
protobuf's text format, parsed here without protobuf (importing its text format costs ~30 ms,
a fifth of a small conversion, to read four fields).

The subset parsed is what TensorFlow writes and what protobuf's text parser accepts for this
message: ``name: value`` pairs (optionally separated by ``,`` or ``;``), ``#`` comments, string
literals in either quote with C escapes (adjacent literals join; an unknown escape stays as
written, as protobuf's Python parser keeps it), numbers (``inf``, ``nan``),
and ``[a, b]`` lists for the repeated fields. Anything else, an unknown field or a singular
field given twice is a ``ValueError``, as protobuf's parser would refuse it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_TOKEN = re.compile(r"""
    (?P<skip>\s+|\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<number>[-+]?(?:(?i:inf(?:inity)?|nan)\b|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?[fF]?))
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[:\[\],;])
""", re.X)
_ESCAPE = re.compile(r"\\(?:([0-7]{1,3})|x([0-9A-Fa-f]{1,2})|u([0-9A-Fa-f]{4})|U([0-9A-Fa-f]{8})|(.))", re.S)
_SIMPLE = {"a": b"\a", "b": b"\b", "f": b"\f", "n": b"\n", "r": b"\r", "t": b"\t", "v": b"\v",
           "\\": b"\\", "'": b"'", '"': b'"'}


@dataclass
class CheckpointState:
    """TensorFlow's ``CheckpointState`` (tensorflow/python/checkpoint/checkpoint_state.proto)."""

    model_checkpoint_path: str = ""
    all_model_checkpoint_paths: list[str] = field(default_factory=list)
    all_model_checkpoint_timestamps: list[float] = field(default_factory=list)
    last_preserved_timestamp: float = 0.0


_FIELDS = {"model_checkpoint_path": (str, False), "all_model_checkpoint_paths": (str, True),
           "all_model_checkpoint_timestamps": (float, True), "last_preserved_timestamp": (float, False)}


def parse_state(text: str) -> CheckpointState:
    """The state ``text`` holds; ValueError (saying where) if it is not such a message."""
    tokens = _tokens(text)
    state, seen = CheckpointState(), set()
    i = 0
    while i < len(tokens):
        kind, value = tokens[i]
        if kind == "punct" and value in ",;":
            i += 1
            continue
        if kind != "name" or value not in _FIELDS:
            raise ValueError(f"unexpected {value!r} where a CheckpointState field name belongs")
        kind_of, repeated = _FIELDS[value]
        if not repeated and value in seen:
            raise ValueError(f"field {value!r} given twice")
        seen.add(value)
        if i + 1 >= len(tokens) or tokens[i + 1] != ("punct", ":"):
            raise ValueError(f"expected ':' after {value!r}")
        i += 2
        if repeated and i < len(tokens) and tokens[i] == ("punct", "["):
            values, i = _list(tokens, i + 1, kind_of, value)
        else:
            item, i = _scalar(tokens, i, kind_of, value)
            values = [item]
        if repeated:
            getattr(state, value).extend(values)
        else:
            setattr(state, value, values[0])
    return state


def _tokens(text: str) -> list[tuple[str, str]]:
    out, at = [], 0
    while at < len(text):
        match = _TOKEN.match(text, at)
        if match is None:
            raise ValueError(f"unexpected {text[at:at + 20]!r} at character {at}")
        if match.lastgroup != "skip":
            out.append((match.lastgroup, match.group()))
        at = match.end()
    return out


def _scalar(tokens, i: int, kind, name: str):
    if i >= len(tokens):
        raise ValueError(f"{name!r} has no value")
    token_kind, text = tokens[i]
    if kind is str:
        if token_kind != "string":
            raise ValueError(f"{name!r} takes a string, not {text!r}")
        data = b""
        while i < len(tokens) and tokens[i][0] == "string":  # adjacent literals join
            data += _unescape(tokens[i][1][1:-1])
            i += 1
        return data.decode("utf-8"), i  # UnicodeDecodeError is a ValueError
    if token_kind != "number":
        raise ValueError(f"{name!r} takes a number, not {text!r}")
    if text[-1] in "fF" and not text.lower().lstrip("+-").startswith("inf"):
        text = text[:-1]  # a float suffix, as in 7f
    return float(text), i + 1


def _list(tokens, i: int, kind, name: str):
    values = []
    while True:
        if i < len(tokens) and tokens[i] == ("punct", "]") and not values:
            return values, i + 1
        item, i = _scalar(tokens, i, kind, name)
        values.append(item)
        if i < len(tokens) and tokens[i] == ("punct", ","):
            i += 1
        elif i < len(tokens) and tokens[i] == ("punct", "]"):
            return values, i + 1
        else:
            raise ValueError(f"unterminated list for {name!r}")


def _unescape(body: str) -> bytes:
    def one(match: re.Match) -> str:
        octal, hex_, u4, u8, simple = match.groups()
        if octal is not None:
            data = bytes([int(octal, 8) & 0xFF])
        elif hex_ is not None:
            data = bytes([int(hex_, 16)])
        elif u4 is not None or u8 is not None:
            data = chr(int(u4 or u8, 16)).encode("utf-8", "surrogatepass")
        else:  # any other escaped character stays as written, backslash and all, as protobuf's parser keeps it
            data = _SIMPLE.get(simple) or ("\\" + simple).encode("utf-8")
        return data.decode("latin-1")  # bytes carried through str, one char per byte

    # Characters outside escapes are text: their UTF-8 bytes, carried the same way.
    parts, at = [], 0
    for match in _ESCAPE.finditer(body):
        parts.append(body[at:match.start()].encode("utf-8").decode("latin-1"))
        parts.append(one(match))
        at = match.end()
    parts.append(body[at:].encode("utf-8").decode("latin-1"))
    return "".join(parts).encode("latin-1")
