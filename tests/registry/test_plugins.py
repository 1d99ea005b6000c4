"""Plugin discovery: --plugin, KERVE_PLUGINS and the kerve.plugins entry-point group."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from kerve.registry import plugins


def test_names_from_cli_env_and_entry_points(monkeypatch):
    def fake_entry_points(group):
        assert group == "kerve.plugins"
        return [EntryPoint(name="acme", value="acme_layers", group=group)]

    monkeypatch.setattr(plugins, "entry_points", fake_entry_points)
    monkeypatch.setenv("KERVE_PLUGINS", "c, a ,,d")
    from kerve.server.settings import Settings

    # The environment reaches plugins through Settings only; a flag beats it.
    assert plugins.plugin_names(Settings().plugins) == ["c", "a", "d", "acme_layers"]
    names = plugins.plugin_names(Settings(plugins=["a", "b", "a"]).plugins)
    assert names == ["a", "b", "acme_layers"]


def test_load_collects_custom_objects():
    loaded = plugins.load_plugins(["seedzoo_layers"])
    assert loaded.modules == ["seedzoo_layers"]
    assert "seedzoo>Linear" in loaded.custom_objects
    assert "seedzoo>Linear" in loaded.registered_names()


def test_missing_plugin_is_a_clear_error():
    with pytest.raises(plugins.PluginImportError, match="cannot import plugin 'no_such_mod'"):
        plugins.load_plugins(["no_such_mod"])
