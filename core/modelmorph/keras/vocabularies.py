"""Lookup vocabularies: an asset file in Keras 3, a list in the config in tf_keras.

Keras 3 saves an adapted ``StringLookup``/``IntegerLookup``/``TextVectorization`` with
``vocabulary: null`` in its config and the tokens, one per line with the mask and OOV tokens
first, in ``assets/<the layer's object path>/vocabulary.txt``. tf_keras cannot save an adapted
lookup to ``.h5`` at all; a lookup built from a list keeps that list as ``vocabulary`` in the
config, and both libraries strip the special tokens again when they lead the list. So a Keras 2
target gets the asset's lines as its ``vocabulary``.
"""

from __future__ import annotations

from ..diagnostics import Diagnostics
from ..ir import Model
from .keras3_layout import places

#: Lookup class → how a line of its vocabulary file reads.
LOOKUPS = {"StringLookup": str, "IntegerLookup": int, "TextVectorization": str}

#: A vocabulary read into memory to be put into a config.
MAX_VOCABULARY_BYTES = 64 * 1024 * 1024


def vocabularies(model: Model, diags: Diagnostics) -> dict[str, list]:
    """Layer path (``Model.iter_layers``) → the vocabulary its asset holds, for every lookup
    whose config has none. A lookup without a usable asset is diagnosed."""
    assets = {asset.path: asset for asset in model.assets}
    out: dict[str, list] = {}
    for place in places(model):
        layer = place.layer
        parse = LOOKUPS.get(layer.class_name)
        if parse is None or layer.config.get("vocabulary") is not None:
            continue
        asset = assets.get(f"assets/{place.h5_path}/vocabulary.txt")
        if layer.config.get("output_mode") == "tf_idf":
            # tf_keras needs the idf weights in the config beside the vocabulary; Keras 3 keeps them
            # as a variable (vars/idf_weights, carried between Keras 3 files), not moved to a config here.
            diags.add("unsupported", "a tf_idf lookup's vocabulary and idf weights are not carried to Keras 2; "
                      "written without them, which tf_keras cannot load", place.layer_path)
            continue
        if asset is None:
            diags.add("lossy", "its vocabulary is not in the source (no vocabulary asset); written without "
                      "one, so it maps every token to the out-of-vocabulary index", place.layer_path)
            continue
        if asset.size > MAX_VOCABULARY_BYTES:
            diags.add("unsupported", f"vocabulary asset {asset.path} is {asset.size} bytes, over the "
                      f"{MAX_VOCABULARY_BYTES} a config may hold; written without it", place.layer_path)
            continue
        try:
            lines = asset.read().decode("utf-8").split("\n")
            out[place.layer_path] = [parse(line) for line in lines]
        except (UnicodeDecodeError, ValueError):
            diags.add("unsupported", f"vocabulary asset {asset.path} is not a {layer.class_name} vocabulary "
                      "(one token per line, UTF-8); written without it", place.layer_path)
    return out


def inline(config: dict, found: dict[str, list], prefix: str = "") -> dict:
    """A Keras 3 model config (``kerasconfig.model_to_config``) whose lookups hold ``found``'s
    vocabularies; the entries it changes are copies, the IR's configs stay as they are."""
    if not found:
        return config
    inner = dict(config.get("config") or {})
    layers = []
    for entry in inner.get("layers") or []:
        name = entry.get("name") or (entry.get("config") or {}).get("name")
        path = f"{prefix}{name}"
        if path in found and isinstance(entry.get("config"), dict):
            entry = {**entry, "config": {**entry["config"], "vocabulary": found[path]}}
        elif isinstance((entry.get("config") or {}).get("layers"), list):
            entry = inline(entry, found, f"{path}/")
        layers.append(entry)
    if "layers" in inner:
        inner["layers"] = layers
    return {**config, "config": inner}
