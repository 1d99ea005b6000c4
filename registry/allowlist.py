"""The allow-list check of an architecture config, before Keras deserializes any of it.

Walks every serialized object in the config and sorts it into: a Keras built-in from a
modelling namespace, a custom object some plugin registered, or something refused (an
unknown class, a module outside Keras, a non-modelling Keras API, a Lambda's bytecode).
All problems are collected, so the error lists every unknown name at once.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from kerve.registry.errors import InvalidArgumentError
from kerve.registry.plugins import Plugins

# Keras namespaces whose objects describe a model. Everything else under keras (config,
# saving, utils, backend, export, datasets, ...) is refused even if Keras would allow it.
MODELLING_NAMESPACES = (
    "layers", "models", "initializers", "regularizers", "constraints", "activations",
    "losses", "metrics", "optimizers", "dtype_policies", "quantizers", "ops", "random",
)
_SRC_PREFIXES = tuple(f"keras.src.{ns}" for ns in MODELLING_NAMESPACES)
_API_PREFIXES = tuple(f"keras.{ns}" for ns in MODELLING_NAMESPACES)
# Serialization markers for plain data (tensors, arrays, bytes, slices): no code.
_DATA_MARKERS = {"__tensor__", "__numpy__", "__bytes__", "__ellipsis__", "__slice__",
                 "__keras_tensor__", "__typespec__"}
_FUNCTION_NAMESPACES = ("activations", "constraints", "initializers", "losses", "metrics",
                        "optimizers", "regularizers")


@dataclass
class ScanResult:
    """What an architecture uses: custom objects by registered name, and Keras built-ins."""

    custom_objects: set[str] = field(default_factory=set)
    builtins: set[str] = field(default_factory=set)
    unsafe_lambdas: list[str] = field(default_factory=list)


def _modelling_module(module: str) -> bool:
    if module == "keras":
        return True
    return any(module == p or module.startswith(p + ".") for p in _SRC_PREFIXES + _API_PREFIXES)


def _builtin_exists(module: str | None, name: str) -> bool:
    from keras.src.api_export import get_symbol_from_name
    from keras.src.saving.keras_saveable import KerasSaveable

    modules = [module] if module else ["keras", *(f"keras.{ns}" for ns in MODELLING_NAMESPACES)]
    for mod in modules:
        if get_symbol_from_name(f"{mod}.{name}") is not None:
            return True
        if mod.startswith("keras.src."):
            try:
                obj = vars(importlib.import_module(mod)).get(name)
            except ImportError:
                continue
            if isinstance(obj, type) and issubclass(obj, KerasSaveable):
                return True
    return False


def _builtin_function_exists(name: str) -> bool:
    from keras.src.api_export import get_symbol_from_name

    return any(get_symbol_from_name(f"keras.{ns}.{name}") is not None
               for ns in _FUNCTION_NAMESPACES)


def scan_architecture(config: Any, plugins: Plugins, allow_unsafe_lambda: bool) -> ScanResult:
    """Check every object of ``config``; raise InvalidArgumentError listing all problems."""
    result = ScanResult()
    unknown: set[str] = set()
    refused: list[str] = []
    registered = plugins.registered_names()

    def is_custom(name: str) -> bool:
        return name in registered

    def visit(obj: Any, path: str) -> None:
        if isinstance(obj, list):
            for i, item in enumerate(obj):
                visit(item, f"{path}[{i}]")
            return
        if not isinstance(obj, dict):
            return
        class_name = obj.get("class_name")
        if isinstance(class_name, str):
            check(obj, class_name, path)
        for key, value in obj.items():
            visit(value, f"{path}.{key}" if path else key)

    def check(obj: dict, class_name: str, path: str) -> None:
        module = obj.get("module")
        registered_name = obj.get("registered_name")
        if class_name == "__lambda__":
            if not allow_unsafe_lambda:
                refused.append(
                    f"a Lambda layer holds Python bytecode ({path}); the server refuses it "
                    "unless started with --allow-unsafe-lambda (register a named function "
                    "in a plugin instead)")
            result.unsafe_lambdas.append(path)
            return
        if class_name in _DATA_MARKERS:
            return
        if module is not None and not isinstance(module, str):
            refused.append(f"invalid module {module!r} at {path}")
            return
        if class_name == "function":
            name = obj.get("config")
            if not isinstance(name, str):
                refused.append(f"invalid function reference at {path}")
            elif is_custom(name):
                result.custom_objects.add(name)
            elif ">" not in name and module in (None, "builtins") and _builtin_function_exists(name):
                result.builtins.add(name)
            elif module and module != "builtins" and _modelling_module(module) \
                    and _builtin_exists(module, name):
                result.builtins.add(f"{module}.{name}")
            else:
                unknown.add(name)
            return
        name = registered_name if isinstance(registered_name, str) and registered_name \
            else class_name
        if is_custom(name):
            result.custom_objects.add(name)
            return
        if module is None or module == "keras" or module.startswith("keras."):
            if module is not None and not _modelling_module(module):
                refused.append(
                    f"{module}.{class_name} is not a modelling API ({path or 'top level'})")
            elif _builtin_exists(module, class_name):
                result.builtins.add(class_name)
            else:
                unknown.add(name)
            return
        # A module outside Keras: only a registered custom object may come from there.
        if ">" in name:
            unknown.add(name)  # a custom object whose plugin this server lacks
        else:
            refused.append(f"{module}.{class_name} comes from a module outside Keras and is "
                           f"not a registered custom object ({path or 'top level'})")

    visit(config, "")
    problems = list(refused)
    if unknown:
        loaded = ", ".join(plugins.modules) or "none"
        problems.append(
            f"unknown classes or functions: {', '.join(sorted(unknown))} (loaded plugins: "
            f"{loaded}; install the custom objects on the server as a plugin)")
    if problems:
        raise InvalidArgumentError("architecture refused: " + "; ".join(problems))
    return result
