"""At load (kerve.registry.provenance.check_at_load, called by the loader): a server whose
plugin module differs from the one a version was validated with says so, in its log and in
the version's load_warnings, and serves it; a version produced by a newer Keras major is
FAILED with FAILED_PRECONDITION naming the boundary, while the others keep serving."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
import uuid

import grpc
import numpy as np

from tests.kerve_process import SEEDZOO, KerveProcess, server_env

PLUGIN = '''
import keras

__version__ = "{version}"


@keras.saving.register_keras_serializable(package="provzoo")
class Scale(keras.layers.Layer):
    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return super().get_config() | {{"factor": self.factor}}
'''


def _settled(client, name: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        [v] = client.get_model(name)["versions"]
        if v["status"] in ("READY", "FAILED") or time.monotonic() > deadline:
            return v
        time.sleep(0.2)


def test_plugin_version_and_keras_major_at_load(tmp_path):
    import keras

    from kerve.clients.client import Client

    module = f"provzoo_{uuid.uuid4().hex[:8]}"
    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir()
    (plugin_dir / f"{module}.py").write_text(PLUGIN.format(version="1.0"))
    env = {"PYTHONPATH": os.pathsep.join([str(plugin_dir), str(SEEDZOO)])}
    sys.path.insert(0, str(plugin_dir))
    try:
        plugin = __import__(module)
    finally:
        sys.path.remove(str(plugin_dir))
    scaled = keras.Sequential([keras.Input((4,)), plugin.Scale(3.0), keras.layers.Dense(2)])
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    x = np.ones((1, 4), "float32")

    data = tmp_path / "data"
    first = KerveProcess(data, plugins=(module,), env=env)
    try:
        with Client(first.target, timeout=120) as client:
            v = client.upload("prov-scaled", model=scaled)
            client.upload("prov-major", model=plain)
    finally:
        first.stop()
    assert v["plugin_modules"] == [{
        "module": module, "version": "1.0", "version_source": "__version__",
        "sha256": v["plugin_modules"][0]["sha256"], "custom_objects": ["provzoo>Scale"]}]
    assert v["load_warnings"] == []  # the same plugin loaded it

    # The operator upgrades the plugin; a version is found to come from Keras 4.
    (plugin_dir / f"{module}.py").write_text(PLUGIN.format(version="2.0"))
    with sqlite3.connect(data / "kerve.db") as db:
        (provenance,), = db.execute(
            "SELECT v.provenance FROM versions v JOIN models m ON m.id = v.model_id "
            "WHERE m.name = 'prov-major'")
        recorded = json.loads(provenance)
        recorded["producer"]["keras_version"] = "4.0.0"
        db.execute("UPDATE versions SET provenance = ? WHERE model_id = "
                   "(SELECT id FROM models WHERE name = 'prov-major')", (json.dumps(recorded),))

    # Partial service: prov-major's only version FAILS, which strict readiness (the
    # default) would report as not ready.
    second = KerveProcess(data, "--no-strict-readiness", plugins=(module,), env=env)
    try:
        with Client(second.target, timeout=120) as client:
            scaled_v = _settled(client, "prov-scaled")
            major_v = _settled(client, "prov-major")
            expected = (f"plugin module {module} differs: the version was validated with "
                        f"{module} 1.0 (__version__), this server runs 2.0 (__version__)")
            assert scaled_v["status"] == "READY"
            assert scaled_v["load_warnings"] == [expected]
            assert f"WARNING kerve.registry.provenance: version prov-scaled:1: {expected}" \
                in second.log_path.read_text()
            np.testing.assert_allclose(client.predict("prov-scaled", {"x": x})[
                scaled_v["signature"]["outputs"][0]["name"]], scaled.predict(x, verbose=0),
                rtol=1e-6)

            assert major_v["status"] == "FAILED"
            assert major_v["status_message"].startswith(
                "newer Keras major: the artifact was saved by Keras 4.0.0 (per the uploading "
                "client) and this server runs Keras")
            try:
                client.predict("prov-major", {"x": x})
                raise AssertionError("a version from a newer Keras major was served")
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION
                assert "newer Keras major" in exc.details()

        shown = subprocess.run(
            [sys.executable, "-m", "kerve.clients.cli", "models", "show", "prov-scaled",
             "--server", second.target], capture_output=True, text=True, env=server_env(),
            timeout=120)
        assert shown.returncode == 0, shown.stderr
        assert f"    plugin {module} 1.0 (__version__): provzoo>Scale\n" in shown.stdout
        assert f"    load warning: {expected}\n" in shown.stdout
    finally:
        second.stop()
