"""The ``checkpoint`` state file parser against protobuf's own text format: every text protobuf
writes (or accepts) for a CheckpointState is read to the same values, and what it refuses is
refused. TensorFlow-written state files are read in tests/tfckpt_lowlevel/test_tfckpt_interop.py."""

from __future__ import annotations

import math

import pytest
from google.protobuf import text_format

from modelmorph_tfckpt.bundle.protos import checkpoint_state_pb2
from modelmorph_tfckpt.bundle.statefile import parse_state

PATHS = ["ckpt-1", "run/ckpt-12", "/abs/ckpt", "caf\u00e9 \u65e5\u672c/ckpt", 'quote"d', "back\\slash", "tab\there",
         "new\nline", "nul\0byte", "'single'", ""]


def _proto(text: str):
    return text_format.Parse(text, checkpoint_state_pb2.CheckpointState())


def _same(ours, theirs) -> None:
    assert ours.model_checkpoint_path == theirs.model_checkpoint_path
    assert ours.all_model_checkpoint_paths == list(theirs.all_model_checkpoint_paths)
    assert len(ours.all_model_checkpoint_timestamps) == len(theirs.all_model_checkpoint_timestamps)
    for a, b in zip(ours.all_model_checkpoint_timestamps, theirs.all_model_checkpoint_timestamps):
        assert a == b or (math.isnan(a) and math.isnan(b))
    assert ours.last_preserved_timestamp == theirs.last_preserved_timestamp


@pytest.mark.parametrize("as_utf8", [False, True])
@pytest.mark.parametrize("path", PATHS)
def test_what_protobuf_writes_reads_the_same(path, as_utf8):
    state = checkpoint_state_pb2.CheckpointState(model_checkpoint_path=path)
    state.all_model_checkpoint_paths.extend([path, "other", path + "-2"])
    state.all_model_checkpoint_timestamps.extend([1764681234.123456, 0.0, -1.5e-300, float("inf")])
    state.last_preserved_timestamp = 1764681000.5
    text = text_format.MessageToString(state, as_utf8=as_utf8)
    _same(parse_state(text), _proto(text))


@pytest.mark.parametrize("text", [
    'model_checkpoint_path: "a"',
    "model_checkpoint_path: 'a' \"b\" 'c'\n",  # adjacent literals join
    '# comment\nmodel_checkpoint_path:"a"; all_model_checkpoint_paths: "a", all_model_checkpoint_paths: "b"',
    'all_model_checkpoint_paths: ["a", "b"] all_model_checkpoint_paths: []',
    'all_model_checkpoint_timestamps: [1, 2.5, -3e2, .5, 7f, inf, -inf, nan, -Infinity]',
    'last_preserved_timestamp: 1e10',
    'model_checkpoint_path: "\\101\\x42\\u00e9\\U0001F600\\a\\?\\\'"',
    'model_checkpoint_path: "\\q\\8"',  # unknown escapes stay as written
    "",
])
def test_accepted_text_reads_as_protobuf_reads_it(text):
    _same(parse_state(text), _proto(text))


@pytest.mark.parametrize("text", [
    "this is { not text format",
    'unknown_field: "a"',
    'model_checkpoint_path: "a" model_checkpoint_path: "b"',  # a singular field twice
    "model_checkpoint_path: 3",
    'last_preserved_timestamp: "3"',
    'model_checkpoint_path "a"',
    'model_checkpoint_path: "unterminated',
    'all_model_checkpoint_paths: ["a", "b"',
    'model_checkpoint_path: "\\377"',  # not UTF-8
])
def test_refused_text_is_refused(text):
    with pytest.raises(text_format.ParseError):
        _proto(text)
    with pytest.raises(ValueError):
        parse_state(text)
