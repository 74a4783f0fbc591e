"""Reading a SavedModel directory into the IR (see spec/formats/savedmodel.md).

With Keras metadata (tf_keras ``model.save(dir)`` of a Functional or Sequential model): the
architecture is the Keras 2 config in ``keras_metadata.pb``'s root object, translated to the
IR as a legacy ``.h5``'s is; the weights and optimizer state are joined from ``variables/``
exactly as ``--arch`` joins a tf_keras checkpoint (the SavedModel's variables are one:
``layer_with_weights-k/kernel``, ``optimizer/_variables/i``); a lookup layer's vocabulary
file in ``assets/`` is put back into its config. Without usable metadata (a ``tf.Module``, a
subclassed model, a Keras 3 ``model.export()``), the directory reads as weights only, like a
checkpoint, and ``--arch`` joins it with an architecture from any format.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelmorph import Asset, Diagnostics, Model, ReadError
from modelmorph.keras import dialects, kerasconfig
from modelmorph.storage.safety import parse_json, refuse_special

from ..join import join
from ..reader import _weights_only
from ..source import Checkpoint
from . import KERAS_METADATA, SAVED_MODEL, VARIABLES, savedmodel_dir
from .directory import MAX_VOCABULARY_BYTES, Directory, graph_summary

#: Root identifiers tf_keras gives a model object in keras_metadata.pb.
_MODEL_IDENTIFIERS = ("_tf_keras_model", "_tf_keras_network", "_tf_keras_sequential")
#: Modules a Keras 2 config may name: Keras' own (tf-keras 2.13+ writes "keras.initializers"...).
_KERAS_MODULES = ("keras", "tf_keras", "tensorflow.keras", "tensorflow.python.keras", "builtins")
#: Lookup layers whose vocabulary tf_keras keeps outside the config: a file in assets/.
_LOOKUPS = {"StringLookup": str, "IntegerLookup": int}
#: Placeholder for a vocabulary tf_keras kept out of the config (replaced, or dropped, below).
_MISSING = "modelmorph:vocabulary-in-assets"

#: Metadata keys describing the directory (plain values, so `info --json` shows them).
CONTENTS = "savedmodel_contents"
NO_ARCHITECTURE = "no_architecture_reason"


def read(path: Path, *, options: dict, diagnostics: Diagnostics, arch: Model | None = None) -> Model:
    root = savedmodel_dir(path)
    if root is None:
        refuse_special(path / SAVED_MODEL)  # there, but a named pipe or a device: say so
        raise ReadError(path, f"not a SavedModel directory: no {SAVED_MODEL} in it")
    directory = Directory(root)
    headers = graph_summary(directory)
    config, root_meta, reason, paths = _keras_config(directory, diagnostics)
    ckpt = _open_variables(directory)
    try:
        if config is not None:
            model = _read_keras(directory, ckpt, config, root_meta, paths, arch, diagnostics)
        elif arch is not None:
            if ckpt is None:
                raise ReadError(root, f"no {VARIABLES}/ to join with the architecture")
            model = join(ckpt, arch, diagnostics)
            model.assets = _assets(directory) or model.assets  # the directory's own, else the architecture's
        else:
            model = _read_weights_only(directory, ckpt, root_meta, reason, diagnostics)
    except BaseException:
        if ckpt is not None:
            ckpt.close()
        raise
    if ckpt is not None:
        model.on_close(ckpt.close)
        model.add_check(f"CRC-32C of every tensor in {VARIABLES}/", ckpt.verify_all, start=ckpt.start_checks)
    model.metadata["savedmodel_tags"] = "; ".join(",".join(h.tags) for h in headers)
    model.metadata["savedmodel_signatures"] = ", ".join(s for h in headers for s in h.signatures
                                                        if not s.startswith("__saved_model"))
    versions = {h.tensorflow_version for h in headers if h.tensorflow_version}
    if versions:
        model.metadata["tensorflow_version"] = ", ".join(sorted(versions))
    if root_meta is not None:
        for key in ("keras_version", "backend"):
            if isinstance(root_meta.get(key), str):
                model.metadata[key] = root_meta[key]
    if not model.has_architecture:
        model.metadata[NO_ARCHITECTURE] = reason
    return model


# -- keras_metadata.pb ------------------------------------------------------------------------
def _keras_config(directory: Directory, diags: Diagnostics) -> tuple[dict | None, dict | None, str, list[str]]:
    """(the Keras 2 model config, the root object's metadata, why there is no config, the
    object paths of the Keras objects below the root)."""
    proto = directory.keras_metadata()
    where = directory.path / KERAS_METADATA
    if proto is None:
        return None, None, (f"no {KERAS_METADATA}: the directory was not written by tf_keras model.save (a "
                            "tf.Module, a Keras 3 model.export() artifact or plain TensorFlow), so it holds "
                            "variables but no Keras architecture"), []
    roots = [node for node in proto.nodes if node.node_path == "root"]
    if len(roots) != 1:
        raise ReadError(where, f"expected one root object, found {len(roots)}")
    root = roots[0]
    meta = parse_json(root.metadata, where, "the root object's metadata")
    if not isinstance(meta, dict) or _encoded_sequence(meta):  # the latter is a list once decoded
        raise ReadError(where, "the root object's metadata is not a JSON object")
    lookups = _prepare(meta, where, ("model_config", "training_config"), check=True)
    class_name = meta.get("class_name")
    paths = [n.node_path for n in proto.nodes if n.node_path.startswith("root.") and n.identifier.startswith("_tf_keras")
             and ".keras_api." not in n.node_path]
    if root.identifier not in _MODEL_IDENTIFIERS:
        return None, meta, (f"its root object is a Keras {root.identifier or 'object'} "
                            f"({class_name or 'unknown class'}), not a model"), paths
    config = meta.get("model_config")
    fallback = not isinstance(config, dict) or "config" not in config
    if fallback:  # the root's own config stands in for a missing model_config
        _prepare(meta, where, ("config",), check=False)
        config = {"class_name": class_name, "config": meta.get("config")}
    inner = config.get("config")
    if config.get("class_name") not in ("Functional", "Sequential", "Model") or not isinstance(inner, dict) \
            or not isinstance(inner.get("layers"), list):
        return None, meta, (f"a subclassed Keras model (class {config.get('class_name') or class_name!r}): "
                            "tf_keras saved no config it can be rebuilt from, only its variables and traced "
                            "functions; join its variables with an equivalent architecture using --arch"), paths
    if fallback:  # the architecture after all: checked as a model_config is
        lookups = _prepare(meta, where, ("config",), check=True)
    for entry in lookups:
        _strip_lookup(entry)
    return config, meta, "", paths


def _prepare(meta: dict, where: Path, keys: tuple[str, ...], check: bool) -> list[dict]:
    """Make the values of the root object's metadata under ``keys`` what a ``.h5``'s
    model_config spells, and with ``check``, check them, in one walk of each: only the values
    read later are walked (``model_config`` and ``training_config``; ``config``, as large as
    ``model_config``, when it stands in for it), each once (a ResNet50's model_config holds
    ~4,000 dicts and lists: one walk instead of three saves milliseconds). On the way:

    - tf_keras' SavedModel encoder writes tuples as ``{"class_name": "__tuple__", "items": [...]}``
      and shapes as ``{"class_name": "TensorShape", "items": [...]}``, where
      ``model.save("x.h5")`` writes lists: they become lists;
    - a config must name no module outside Keras (loading it would import that module):
      refused, the first problem of the first of ``keys`` first;
    - the lookup layers of the first of ``keys`` (the model config) are returned when checked,
      for :func:`_strip_lookup` once every value was checked (what it drops is checked too).

    Iterative: the depth was bounded when parsing, but the walk need not recurse."""
    lookups: list[dict] = []
    problems = {}
    for key in keys:
        value = meta.get(key)
        if type(value) is dict and _encoded_sequence(value):
            value = meta[key] = _as_list(value)
        if type(value) is dict or type(value) is list:
            problems[key] = _walk(value, check, lookups if check and key == keys[0] else None)
    for key in keys:
        if problems.get(key):
            raise ReadError(where, f"{key}{problems[key]}")
    return lookups


#: How tf_keras' SavedModel JSON encoder writes tuples and shapes (``{"class_name", "items"}``).
_ENCODED_SEQUENCES = ("__tuple__", "TensorShape")
#: The top-level packages of :data:`_KERAS_MODULES`.
_KERAS_PACKAGES = frozenset(m.split(".")[0] for m in _KERAS_MODULES)


def _walk(root: dict | list, check_modules: bool, lookups: list[dict] | None) -> str | None:
    """:func:`_prepare` below one value: the first module problem found (in the order of a
    depth-first walk), if ``check_modules``; lookup layers appended to ``lookups``. Only
    containers are stacked, the other values are looked at in place."""
    problem = None
    stack = [root]
    while stack:
        container = stack.pop()
        is_dict = type(container) is dict
        for key, item in (container.items() if is_dict else enumerate(container)):
            if type(item) is dict:  # JSON gives plain dicts and lists; replacing a value keeps the size
                if item.get("class_name") in _ENCODED_SEQUENCES and _encoded_sequence(item):
                    item = container[key] = _as_list(item)
                    if item is None:
                        continue
                stack.append(item)
            elif type(item) is list:
                stack.append(item)
        if not is_dict:
            continue
        if check_modules and problem is None:
            problem = _module_problem(container)
        if lookups is not None and container.get("class_name") in _LOOKUPS and isinstance(container.get("config"), dict):
            lookups.append(container)
    return problem


def _encoded_sequence(item: dict) -> bool:
    return item.get("class_name") in _ENCODED_SEQUENCES and item.keys() <= {"class_name", "items"}


def _as_list(encoded: dict) -> list | None:
    """An encoded sequence's items (None if they are not a list)."""
    items = encoded.get("items")
    return list(items) if type(items) is list else None


def _module_problem(item: dict) -> str | None:
    """Why a config entry is refused (the text after the config's name), or None: a Keras
    config never names a module outside Keras."""
    # A bytecode Lambda records where it was defined ("__main__"): carried as data,
    # never imported (the core flags it contains-code).
    keys = () if item.get("function_type") == "lambda" else ("module",)
    keys += () if item.get("output_shape_type") == "lambda" else ("output_shape_module",)
    for key in keys:
        module = item.get(key)
        if isinstance(module, str) and module and module.split(".")[0] not in _KERAS_PACKAGES:
            return (f" names module {module!r}: a Keras config never needs a module outside Keras (loading it "
                    "would import that module); refused")
    if item.get("function_type") == "function" and isinstance(item.get("module"), str) \
            and not item["module"].startswith(_KERAS_MODULES):
        return f": a Lambda names function {item.get('function')!r} of module {item['module']!r}; refused"
    return None


def _check_objects(directory: Directory, ckpt: "_Variables", proto_paths: list[str]) -> None:
    """Every Keras object keras_metadata.pb lists must be in the variables' object graph."""
    graph = ckpt.graph
    if graph is None:
        raise ReadError(ckpt.source, "the variables have no object graph, which a Keras SavedModel always has")
    for node_path in proto_paths:
        parts = node_path.split(".")[1:]
        if graph.walk(0, tuple(parts)) is None:
            raise ReadError(directory.path / KERAS_METADATA,
                            f"object {node_path!r} is not in the object graph of {VARIABLES}/ (the variables "
                            "index and the Keras metadata disagree)")


# -- variables/ -------------------------------------------------------------------------------
class _Variables(Checkpoint):
    """The SavedModel's checkpoint; metric state (``keras_api/metrics/...``) is not model state."""

    def variable_keys(self) -> list[str]:
        return [key for key in super().variable_keys() if "keras_api" not in key.split("/")]


def _open_variables(directory: Directory) -> _Variables | None:
    if not directory.exists(VARIABLES):
        return None
    directory.inside(VARIABLES)
    directory.inside(f"{VARIABLES}/{VARIABLES}.index")
    return _Variables(directory.path / VARIABLES / VARIABLES)


def _read_keras(directory: Directory, ckpt: _Variables | None, config: dict, meta: dict, paths: list[str],
                arch: Model | None, diags: Diagnostics) -> Model:
    where = directory.path / KERAS_METADATA
    try:
        structure = kerasconfig.model_from_config(dialects.to_keras3(config, diags))
        training = meta.get("training_config")
        if isinstance(training, dict):
            structure.compile_config = dialects.compile_to_keras3(training, diags)
    except (kerasconfig.ConfigError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ReadError(where, f"invalid Keras architecture: {exc}") from None
    structure.metadata["dialect"] = "keras2"
    if arch is not None:
        diags.add("unsupported", "--arch is ignored: this SavedModel holds an architecture of its own")
    if ckpt is None:
        if any(True for _ in _expected_weights(structure)):
            raise ReadError(directory.path, f"no {VARIABLES}/ directory, but the model has variables")
        model = structure
    else:
        _check_objects(directory, ckpt, paths)
        model = join(ckpt, structure, diags)
        model.metadata.pop("checkpoint_naming", None)
    model.metadata["dialect"] = "keras2"
    model.assets = _assets(directory)
    _restore_vocabularies(directory, model, meta, diags)
    return model


def _strip_lookup(entry: dict) -> None:
    """A lookup layer's ``vocabulary_size`` (derived from the vocabulary) and the
    ``has_input_vocabulary`` flag tf_keras adds in SavedModels only: both tf_keras and
    Keras 3 derive them again, and Keras 3 refuses them as arguments."""
    config = entry["config"]
    config.pop("vocabulary_size", None)
    if config.pop("has_input_vocabulary", None) and config.get("vocabulary") is None:
        config["vocabulary"] = _MISSING


def _expected_weights(model: Model):
    from modelmorph.keras import catalogue

    for _, layer in model.iter_layers():
        if layer.submodel is None and catalogue.variables_of(layer.class_name, layer.config):
            yield layer


def _read_weights_only(directory: Directory, ckpt: _Variables | None, meta: dict | None, reason: str,
                       diags: Diagnostics) -> Model:
    model = _weights_only(ckpt, diags) if ckpt is not None else Model(name="", class_name="", has_architecture=False)
    model.name = directory.path.name
    if ckpt is not None and ckpt.graph is not None:
        _name_by_attributes(model, ckpt)
    if meta is not None and isinstance(meta.get("name"), str):
        model.name = meta["name"]
    model.assets = _assets(directory)
    what = "a subclassed Keras model" if meta is not None else "a non-Keras SavedModel"
    model.metadata[CONTENTS] = f"{what}: variables{' and assets' if model.assets else ''} only"
    diags.add("unsupported", f"no architecture: {reason}", str(directory.path))
    return model


#: Children that list variables a second time (tf_keras' ``variables`` lists, the optimizer's
#: ``_variables`` stays: it is the optimizer's own naming). Paths avoiding them read better.
_LISTS = frozenset({"variables", "trainable_variables", "non_trainable_variables", "keras_api",
                    "trainable_weights", "non_trainable_weights", "weights", "_trainable_variables"})


def _name_by_attributes(model: Model, ckpt: _Variables) -> None:
    """Weights-only layers named by the attribute path reaching each variable (``d1``,
    ``bn``), not by its checkpoint key's (which TensorFlow takes breadth-first and may run
    through a ``variables`` list: ``variables/0``). Keys and the object graph are kept."""
    from collections import deque

    from ..reader import CHECKPOINT_KEYS, ROOT_LAYER, SOURCE_KEY
    from ..bundle import escape_local_name

    graph = ckpt.graph
    paths: dict[int, tuple[str, ...]] = {0: ()}
    queue = deque([0])
    while queue:  # breadth-first, list children last, so attribute paths win
        node = queue.popleft()
        children = sorted(graph.children[node].items(), key=lambda item: item[0] in _LISTS)
        for name, child in children:
            if child not in paths:
                paths[child] = (*paths[node], name)
                queue.append(child)
    by_key = {graph.keys[n]: p for n, p in paths.items() if graph.keys[n] is not None and p}
    renamed: dict[str, object] = {}
    for layer in model.layers:
        for weight in layer.weights:
            key = layer.extra[CHECKPOINT_KEYS][weight.path]
            path = by_key.get(key)
            if path is None:
                return  # a key the graph does not name: keep the checkpoint's own names
            owner = "/".join(escape_local_name(p) for p in path[:-1]) or ROOT_LAYER
            target = renamed.get(owner)
            if target is None:
                target = renamed[owner] = type(layer)(name=owner, class_name="",
                                                      extra={SOURCE_KEY: owner, CHECKPOINT_KEYS: {}})
            name = escape_local_name(path[-1])
            if name in target.extra[CHECKPOINT_KEYS]:
                return
            weight.path = name
            target.weights.append(weight)
            target.extra[CHECKPOINT_KEYS][name] = key
    model.layers = list(renamed.values())


# -- assets/ ----------------------------------------------------------------------------------
def _assets(directory: Directory) -> list[Asset]:
    return [Asset(rel, size, loader=lambda rel=rel, size=size: directory.read_bytes(rel, size, rel))
            for rel, _, size in directory.assets()]


def _restore_vocabularies(directory: Directory, model: Model, meta: dict, diags: Diagnostics) -> None:
    """tf_keras saves a lookup layer built from a vocabulary file with ``vocabulary: null``
    and the file in ``assets/``; put the tokens back into the config, where Keras 3 and
    tf_keras both read them. The file is found by the name of the path the layer was built
    from (recorded in the root object's raw config; never opened), else as the only asset."""
    pending = [layer for _, layer in model.iter_layers()
               if layer.class_name in _LOOKUPS and isinstance(layer.config, dict)
               and layer.config.get("vocabulary") == _MISSING]
    if not pending:
        return
    files = {rel.rsplit("/", 1)[-1]: rel for rel in (a.path for a in model.assets)}
    originals = _original_vocabularies(meta.get("config"))
    for layer in pending:
        layer.config["vocabulary"] = None
        original = originals.get(layer.name)
        rel = files.get(original.replace("\\", "/").rsplit("/", 1)[-1]) if isinstance(original, str) else None
        if rel is None and len(files) == 1 and len(pending) == 1:
            rel = next(iter(files.values()))
        if rel is None:
            diags.add("lossy", f"the vocabulary of {layer.class_name} {layer.name!r} is not in assets/ (tf_keras "
                               "keeps a vocabulary given as a list in the graph, which is never read, and an adapted "
                               "one in lookup-table tensors, which are not read either); the layer is written "
                               "without it", layer.name)
            continue
        data = directory.read_bytes(rel, MAX_VOCABULARY_BYTES, f"vocabulary {rel}")
        try:
            text = data.decode(str(layer.config.get("encoding") or "utf-8"))
        except (UnicodeDecodeError, LookupError):
            raise ReadError(directory.path / rel, f"vocabulary of {layer.name!r} is not "
                                                  f"{layer.config.get('encoding') or 'utf-8'} text") from None
        tokens = text.split("\n")
        if tokens and tokens[-1] == "":
            tokens.pop()
        try:
            layer.config["vocabulary"] = [_LOOKUPS[layer.class_name](t) for t in tokens]
        except ValueError:
            raise ReadError(directory.path / rel, f"vocabulary of IntegerLookup {layer.name!r} holds a "
                                                  "token that is not an integer") from None


def _original_vocabularies(config: Any) -> dict[str, Any]:
    """Layer name → the ``vocabulary`` value of the raw config tf_keras recorded for the root."""
    out: dict[str, Any] = {}
    stack = [config]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("class_name") in _LOOKUPS and isinstance(item.get("config"), dict):
                inner = item["config"]
                if isinstance(inner.get("name"), str):
                    out.setdefault(inner["name"], inner.get("vocabulary"))
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return out
