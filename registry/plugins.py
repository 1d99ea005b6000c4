"""Custom-layer plugins: Python modules an operator installs on the server.

A plugin is imported by name (the ``plugins`` setting: ``--plugin MODULE`` or
``KERVE_PLUGINS=a,b``; or the entry-point group ``kerve.plugins``). Importing it registers objects with
``keras.saving.register_keras_serializable``; it may also expose a ``CUSTOM_OBJECTS`` dict.
Together with Keras's built-ins these form the allow-list for uploads and loads.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "kerve.plugins"


@dataclass
class Plugins:
    """The loaded plugin modules and the custom objects they provide."""

    modules: list[str] = field(default_factory=list)
    custom_objects: dict[str, Any] = field(default_factory=dict)

    def registered_names(self) -> set[str]:
        """Every name an architecture may use for a custom object: registered names
        (``package>Name``) from Keras's global registry plus the CUSTOM_OBJECTS keys."""
        from keras.src.saving import object_registration

        return set(object_registration.GLOBAL_CUSTOM_OBJECTS) | set(self.custom_objects)

    def lookup(self, name: str) -> Any | None:
        from keras.src.saving import object_registration

        return self.custom_objects.get(name) or object_registration.GLOBAL_CUSTOM_OBJECTS.get(name)


def plugin_names(configured: list[str]) -> list[str]:
    """Plugin module names: the configured ones, then the installed entry points."""
    names = list(configured)
    names += [ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)]
    seen: dict[str, None] = {}
    for name in names:
        seen.setdefault(name, None)
    return list(seen)


class PluginImportError(Exception):
    """A plugin module could not be imported."""


def load_plugins(names: list[str]) -> Plugins:
    """Import each plugin module and collect its custom objects. A plugin that fails to
    import stops the start-up: serving without it would refuse its models later."""
    plugins = Plugins()
    for name in names:
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - any failure of a plugin's import
            raise PluginImportError(
                f"cannot import plugin {name!r}: {type(exc).__name__}: {exc} "
                "(is it installed, or on PYTHONPATH?)") from exc
        plugins.modules.append(name)
        custom = getattr(module, "CUSTOM_OBJECTS", None)
        if isinstance(custom, dict):
            plugins.custom_objects.update(custom)
        log.info("loaded plugin %s", name)
    return plugins
