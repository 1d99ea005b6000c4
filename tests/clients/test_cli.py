"""The kerve command line against a real server: models, alias, delete, predict, and user
errors as one clear line with a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.kerve_process import server_env
from tests.server.helpers import wait_ready


def kerve(*args: str, server=None, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "kerve.clients.cli", *args]
    if server is not None:
        cmd += ["--server", server.target]
    result = subprocess.run(cmd, capture_output=True, text=True, env=server_env(), timeout=300)
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def cli_model(server, client, built, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    b = built("custom_layers", seed=41)
    arch, weights = b.save(tmp)
    out = kerve("upload", "cli-model", "--architecture", str(arch), "--weights", str(weights),
                "--alias", "production", "--description", "from the CLI", "--json",
                server=server)
    version = json.loads(out.stdout)
    wait_ready(client, "cli-model")
    return b, version, tmp


def test_models_json_shapes(server, cli_model):
    models = json.loads(kerve("models", "--json", server=server).stdout)
    entry = next(m for m in models if m["name"] == "cli-model")
    assert entry == {"name": "cli-model", "versions": [1], "aliases": {"production": 1},
                     "default_version": 1, "serving_version": 1, "states": {"1": "READY"}}
    show = json.loads(kerve("models", "show", "cli-model", "--json", server=server).stdout)
    assert show["name"] == "cli-model" and show["aliases"] == {"production": 1}
    (v,) = show["versions"]
    for key in ("version", "status", "created", "architecture_sha256", "weights_sha256",
                "signature"):
        assert key in v
    assert v["status"] == "READY" and v["description"] == "from the CLI"
    text = kerve("models", "show", "cli-model", server=server).stdout
    assert "inputs  a:float32[-1, 5], b:float32[-1, 3]" in text
    assert "description from the CLI" in text
    assert "default version 1\n" in text and "alias production -> 1\n" in text


def test_predict_prints_and_saves(server, cli_model, tmp_path):
    b, _, _ = cli_model
    np.save(tmp_path / "a.npy", b.inputs["a"])
    np.save(tmp_path / "b.npy", b.inputs["b"])
    out = kerve("predict", "cli-model@production", "--input", f"a={tmp_path / 'a.npy'}",
                "--input", f"b={tmp_path / 'b.npy'}", "--output-dir", str(tmp_path / "out"),
                server=server)
    first, second = b.output_names
    assert f"{first}: float32[3, 3]" in out.stdout
    np.testing.assert_allclose(np.load(tmp_path / "out" / f"{first}.npy"), b.outputs[0],
                               atol=1e-5)
    printed = json.loads(kerve("predict", "cli-model:1", "--input", f"a={tmp_path / 'a.npy'}",
                               "--input", f"b={tmp_path / 'b.npy'}", "--json",
                               server=server).stdout)
    np.testing.assert_allclose(np.array(printed[second]["data"]), b.outputs[1],
                               atol=1e-5)


def test_alias_and_delete(server, cli_model):
    _, _, tmp = cli_model
    kerve("upload", "cli-model", "--weights", str(tmp / "model.weights.h5"), server=server)
    assert "cli-model@staging -> 2" in kerve("alias", "cli-model", "staging", "2",
                                             server=server).stdout
    refused = kerve("delete", "cli-model", "2", server=server, check=False)
    assert refused.returncode == 1
    assert refused.stderr.startswith("kerve: error: FAILED_PRECONDITION:")
    kerve("alias", "cli-model", "staging", "--delete", server=server)
    assert "deleted cli-model:2" in kerve("delete", "cli-model", "2", server=server).stdout


def test_weights_alone_for_a_new_model_say_to_send_the_architecture(server, cli_model):
    _, _, tmp = cli_model
    refused = kerve("upload", "brand-new-model", "--weights", str(tmp / "model.weights.h5"),
                    server=server, check=False)
    assert refused.returncode == 1 and "NOT_FOUND" in refused.stderr
    assert "--architecture" in refused.stderr and ".keras archive" in refused.stderr


@pytest.mark.parametrize("args,message", [
    (["models", "show", "no-such-model"], "NOT_FOUND"),
    (["upload", "x", "/no/such/file.keras"], "no such file"),
    (["upload", "x"], "give MODEL.keras"),
    (["download", "bad@Alias!", "/tmp/x"], "invalid alias"),
    (["predict", "x", "--input", "oops"], "--input expects NAME=FILE"),
    (["alias", "x", "production"], "kerve alias NAME ALIAS VERSION"),
])
def test_user_errors_are_one_line(args, message, server):
    result = kerve(*args, server=server, check=False)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unreachable_server_is_one_line():
    result = subprocess.run([sys.executable, "-m", "kerve.clients.cli", "models", "--server",
                             "127.0.0.1:1"], capture_output=True, text=True, env=server_env(),
                            timeout=60)
    assert result.returncode == 1
    assert "cannot reach a kerve server at 127.0.0.1:1" in result.stderr
    assert "Traceback" not in result.stderr


def test_help_everywhere():
    for command in ([], ["serve"], ["health"], ["upload"], ["models"], ["alias"], ["delete"],
                    ["download"], ["predict"]):
        result = subprocess.run([sys.executable, "-m", "kerve.clients.cli", *command, "--help"],
                                capture_output=True, text=True, env=server_env(), timeout=60)
        assert result.returncode == 0 and "usage: kerve" in result.stdout


def test_serve_with_missing_plugin_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "kerve.clients.cli", "serve", "--data-dir",
                             str(tmp_path), "--port", "0", "--metrics-port", "-1", "--plugin",
                             "no_such_plugin_module"], capture_output=True, text=True,
                            env=server_env(), timeout=120)
    assert result.returncode == 1
    assert "cannot import plugin 'no_such_plugin_module'" in result.stderr
    assert "Traceback" not in result.stderr
