"""Lambda layers' callables in both dialects: the bytecode is copied, never unmarshalled."""

from __future__ import annotations


#: A Lambda's callables, each with the keys Keras 2 keeps its encoding and module in.
_LAMBDA_CALLABLES = (("function", "function_type", "module"),
                     ("output_shape", "output_shape_type", "output_shape_module"),
                     ("mask", "mask_type", "mask_module"))

def _lambda_to_keras3(config: dict) -> None:
    """Re-encode a Lambda's callables: Keras 2 ``[code, defaults, closure]`` + ``*_type`` keys
    become Keras 3 ``__lambda__`` objects (the bytecode is copied, never unmarshalled)."""
    for key, type_key, module_key in _LAMBDA_CALLABLES:
        kind, module = config.pop(type_key, None), config.pop(module_key, None)
        value = config.get(key)
        if kind == "lambda":
            code, defaults, closure = (list(value) + [None, None])[:3] if isinstance(value, list) else (value, None, None)
            config[key] = {"class_name": "__lambda__", "config": {"code": code, "defaults": defaults, "closure": closure}}
        elif kind == "function":  # a named function: Keras 3 imports it by module and name
            config[key] = {"module": module, "class_name": "function", "config": value, "registered_name": value}
        elif value is None and key != "function":
            config.pop(key, None)  # Keras 3 leaves an unset output_shape or mask out

def _lambda_to_keras2(config: dict) -> None:
    for key, type_key, module_key in _LAMBDA_CALLABLES:
        value = config.get(key)
        if isinstance(value, dict) and value.get("class_name") == "__lambda__":
            inner = value.get("config") or {}
            config[key] = [inner.get("code"), inner.get("defaults"), inner.get("closure")]
            config[type_key], config[module_key] = "lambda", None
        elif isinstance(value, dict) and value.get("class_name") == "function":
            config[key], config[type_key], config[module_key] = value.get("config"), "function", value.get("module")
        elif key in config or key != "mask":  # tf_keras requires the function and output_shape keys
            config.setdefault(key, None)
            config[type_key], config[module_key] = "raw", None