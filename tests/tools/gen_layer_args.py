"""Write core/modelmorph/keras/data/layer_args.json: the constructor arguments each built-in layer
class accepts in Keras 3 and in tf_keras (Keras 2), read off the real libraries.

The dialect translation drops what the target rejects (Keras 3 fails on unknown keyword
arguments); this table is how it knows, without importing either library at run time.
Run with the test extras installed:  python tests/tools/gen_layer_args.py
"""

import inspect
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

OUT = Path(__file__).resolve().parents[2] / "core" / "modelmorph" / "keras" / "data" / "layer_args.json"


def accepted(cls, base, base_kwargs):
    """The keyword arguments ``cls(...)`` takes: each ``__init__``'s own names down the MRO, for as
    long as ``**kwargs`` passes the rest on (Keras 3 SpatialDropout1D has none: no ``trainable``)."""
    names = set()
    for klass in cls.__mro__:
        if klass is object or (base is not object and not issubclass(klass, base)):
            continue
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = list(inspect.signature(init).parameters.values())
        names.update(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self")
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            return sorted(names)
        if klass is base:
            break
    return sorted(names | set(base_kwargs))


def table(layers_module, base, base_kwargs):
    out = {}
    for name in dir(layers_module):
        obj = getattr(layers_module, name)
        if inspect.isclass(obj) and issubclass(obj, base) and obj.__name__ == name:
            out[name] = accepted(obj, base, base_kwargs)
    return out


def objects(lib):
    """Arguments of the initializer, regularizer and constraint classes."""
    out = {}
    for kind in ("initializers", "regularizers", "constraints"):
        module = getattr(lib, kind)
        for name in dir(module):
            obj = getattr(module, name)
            if inspect.isclass(obj) and obj.__name__ == name:
                out[f"{kind}.{name}"] = accepted(obj, object, [])
    return out


def main():
    import keras
    import tf_keras

    keras3 = table(keras.layers, keras.layers.Layer,
                   ["name", "trainable", "dtype", "autocast", "activity_regularizer", "input_dim", "input_shape"])
    keras2 = table(tf_keras.layers, tf_keras.layers.Layer,
                   ["name", "trainable", "dtype", "dynamic", "input_dim", "input_shape", "batch_input_shape",
                    "batch_size", "weights", "activity_regularizer", "autocast", "implementation"])
    data = {
        "generated_by": "tests/tools/gen_layer_args.py",
        "keras3_version": keras.__version__,
        "tf_keras_version": tf_keras.__version__,
        "keras3": keras3,
        "keras2": keras2,
        "keras3_objects": objects(keras),
        "keras2_objects": objects(tf_keras),
    }
    OUT.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT} ({len(keras3)} Keras 3 classes, {len(keras2)} tf_keras classes)", file=sys.stderr)


if __name__ == "__main__":
    main()
