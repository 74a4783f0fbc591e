"""Keras 3 → Keras 2 `.h5` (issue 15, items 9 and 11): mask computations Keras 3 records in a
Functional graph, and lookup vocabularies Keras 3 keeps in asset files. Each model is built here
with the real library, converted, and judged by tf_keras against the original's predictions
in this run, or by the diagnostic that names what tf_keras cannot hold."""

from __future__ import annotations

import json
import zipfile

import h5py
import numpy as np
import pytest

import modelmorph
from helpers import assert_close_to_recorded, require_format

pytestmark = pytest.mark.interop

IDS = np.array([[1, 2, 0, 0, 3], [4, 0, 0, 0, 0], [5, 6, 7, 8, 9]], dtype="int32")


def _sequences():
    x = np.random.RandomState(3).randn(3, 5, 3).astype("float32")
    x[0, 2:] = 0.0
    x[1, 1:] = 0.0
    return x


def _to_h5(tmp_path, model, name="k2.h5"):
    require_format("keras")
    require_format("h5")
    model.save(tmp_path / "k3.keras")
    return modelmorph.convert(tmp_path / "k3.keras", tmp_path / name, force=True)


def _quiet(diags):
    return [d for d in diags if d.kind in ("lossy", "unsupported")]


def _layers_in(path):
    with h5py.File(path) as f:
        return {e["config"]["name"]: e for e in json.loads(f.attrs["model_config"])["config"]["layers"]}


# -- 11. masks ------------------------------------------------------------------------------------
def test_mask_zero_and_masking_reach_tf_keras_as_its_own_mask_propagation(tmp_path, tf_keras, keras3):
    inp = keras3.Input((5,), dtype="int32")
    x = keras3.layers.Dropout(0.1)(keras3.layers.Embedding(10, 4, mask_zero=True)(inp))
    embedded = keras3.Model(inp, keras3.layers.LSTM(3)(x))

    inp = keras3.Input((5, 3))
    x = keras3.layers.LSTM(3, return_sequences=True)(keras3.layers.Masking(0.0)(inp))
    masked = keras3.Model(inp, keras3.layers.GRU(2)(x))

    for model, inputs in ((embedded, IDS), (masked, _sequences())):
        diags = _to_h5(tmp_path, model)
        with zipfile.ZipFile(tmp_path / "k3.keras") as z:  # what the case is about: Keras 3 records the ops
            ops = {e["name"] for e in json.loads(z.read("config.json"))["config"]["layers"]
                   if e["class_name"] in ("NotEqual", "Any")}
        assert ops, "Keras 3 recorded no mask operation"
        assert not _quiet(diags), diags.items
        assert not ops & set(_layers_in(tmp_path / "k2.h5"))
        reloaded = tf_keras.models.load_model(tmp_path / "k2.h5", compile=False)
        # Masked steps change an LSTM's result: equal outputs mean tf_keras masked the same steps.
        assert_close_to_recorded([reloaded.predict(inputs, verbose=0)], [model.predict(inputs, verbose=0)])


def test_merged_masks_tf_keras_combines_otherwise_are_diagnosed(tmp_path, tf_keras, keras3):
    a, b = keras3.Input((5,), dtype="int32"), keras3.Input((5,), dtype="int32")
    embed = keras3.layers.Embedding(10, 4, mask_zero=True)
    summed = keras3.layers.Add()([embed(a), embed(b)])  # Keras 3: logical_or of the masks; tf_keras: and
    model = keras3.Model([a, b], keras3.layers.LSTM(3, name="lstm")(summed))
    diags = _to_h5(tmp_path, model)
    assert [(d.kind, d.where) for d in _quiet(diags)] == [("lossy", "lstm")], diags.items
    assert "merges the masks" in _quiet(diags)[0].message
    tf_keras.models.load_model(tmp_path / "k2.h5", compile=False).predict([IDS, IDS[::-1]], verbose=0)


# -- 9. lookup vocabularies -----------------------------------------------------------------------
def test_adapted_lookups_carry_their_vocabulary_to_tf_keras(tmp_path, tf_keras, tf, keras3):
    strings = keras3.layers.StringLookup(name="strings")
    strings.adapt(np.array(["a", "b", "b", "c", "c", "c"]))
    integers = keras3.layers.IntegerLookup(mask_token=0, name="integers")
    integers.adapt(np.array([5, 7, 7, 9, 9, 9]))
    text = keras3.layers.TextVectorization(max_tokens=10, output_sequence_length=4, name="text")
    text.adapt(np.array(["x y z", "y z", "z", "Ünï cödé"]))
    s, i, t = (keras3.Input((1,), dtype="string"), keras3.Input((1,), dtype="int64"),
               keras3.Input((1,), dtype="string"))
    model = keras3.Model([s, i, t], [strings(s), integers(i), text(t)])
    diags = _to_h5(tmp_path, model)
    assert not _quiet(diags), diags.items

    written = _layers_in(tmp_path / "k2.h5")
    assert written["text"]["config"]["dtype"] == "string"
    assert written["strings"]["config"]["vocabulary"] == ["[UNK]", "c", "b", "a"]
    assert written["integers"]["config"]["vocabulary"][:2] == [0, -1]  # mask and OOV lead, as in the asset
    reloaded = tf_keras.models.load_model(tmp_path / "k2.h5", compile=False)
    inputs = [np.array([["a"], ["c"], ["zz"], ["b"]]), np.array([[5], [9], [1], [0]]),
              np.array([["x z"], ["q y"], ["z"], ["ünï CÖDÉ"]])]
    got = reloaded([tf.constant(v) for v in inputs])
    expected = model(inputs)
    for g, e in zip(got, expected):
        assert g.dtype.name == "int64"
        np.testing.assert_array_equal(g.numpy(), np.asarray(e))


def test_lookup_vocabulary_tf_keras_cannot_hold_is_diagnosed(tmp_path, keras3):
    text = keras3.layers.TextVectorization(output_mode="tf_idf", name="tfidf")
    text.adapt(np.array(["x y z", "y z", "z"]))
    inp = keras3.Input((1,), dtype="string")
    diags = _to_h5(tmp_path, keras3.Model(inp, text(inp)))
    assert any(d.kind == "unsupported" and d.where == "tfidf" and "idf" in d.message for d in diags), diags.items


def test_savedmodel_vocabulary_in_assets_reaches_tf_keras(tmp_path, tf_keras, tf, fixtures_dir):
    require_format("h5")
    source = fixtures_dir / "savedmodel" / "string_lookup"
    diags = modelmorph.convert(source, tmp_path / "k2.h5")
    assert not _quiet(diags), diags.items
    assert _layers_in(tmp_path / "k2.h5")["lookup"]["config"]["vocabulary"][:2] == ["apple", "banana"]
    recorded = np.load(fixtures_dir / "savedmodel" / "string_lookup.io.npz", allow_pickle=True)
    reloaded = tf_keras.models.load_model(tmp_path / "k2.h5", compile=False)
    assert_close_to_recorded([reloaded(tf.constant(recorded["in_0"])).numpy()], [recorded["out_0"]])


def test_savedmodel_adapted_vocabulary_is_diagnosed_not_dropped_silently(tmp_path, tf_keras):
    require_format("h5")
    lookup = tf_keras.layers.StringLookup(name="adapted")
    lookup.adapt(np.array(["a", "b", "b"]))  # tf_keras keeps it in the graph, not in assets/
    inp = tf_keras.Input((1,), dtype="string")
    tf_keras.Model(inp, lookup(inp)).save(tmp_path / "sm")
    diags = modelmorph.convert(tmp_path / "sm", tmp_path / "k2.h5")
    assert any(d.kind == "lossy" and d.where == "adapted" and "vocabulary" in d.message for d in diags), diags.items


def test_a_mask_passed_on_purpose_stays_a_call_argument(tmp_path, tf_keras, keras3):
    x, mask = keras3.Input((5, 3)), keras3.Input((5,), dtype="bool")
    model = keras3.Model([x, mask], keras3.layers.LSTM(2)(x, mask=mask))
    diags = _to_h5(tmp_path, model)
    assert not _quiet(diags), diags.items
    inputs = [_sequences(), np.array([[1, 1, 0, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=bool)]
    reloaded = tf_keras.models.load_model(tmp_path / "k2.h5", compile=False)
    assert_close_to_recorded([reloaded.predict(inputs, verbose=0)], [model.predict(inputs, verbose=0)])


def test_keras2_json_carries_the_vocabulary_too(tmp_path, tf_keras, keras3):
    lookup = keras3.layers.StringLookup(name="strings")
    lookup.adapt(np.array(["a", "b", "b"]))
    inp = keras3.Input((1,), dtype="string")
    model = keras3.Model(inp, lookup(inp))
    model.save(tmp_path / "k3.keras")
    diags = modelmorph.convert(tmp_path / "k3.keras", tmp_path / "k2.json", options={"dialect": "keras2"})
    assert not _quiet(diags), diags.items
    reloaded = tf_keras.models.model_from_json((tmp_path / "k2.json").read_text())
    inputs = np.array([["a"], ["b"], ["zz"]])
    np.testing.assert_array_equal(reloaded(inputs).numpy(), np.asarray(model(inputs)))
