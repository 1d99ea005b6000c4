"""A new user's first hour: an upload that returns ready, inputs as people hold them, a quick
and quiet `kerve predict`, one-line start-up failures, and the CLI's manners."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import warnings

import numpy as np
import pytest

from tests.clients.test_cli import kerve
from tests.kerve_process import REPO, server_env


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    import keras

    inputs = keras.Input((4,), name="features")
    model = keras.Model(inputs, keras.layers.Dense(3, name="scores")(inputs))
    rng = np.random.default_rng(11)
    model.set_weights([rng.normal(size=w.shape).astype("float32") for w in model.get_weights()])
    path = tmp_path_factory.mktemp("small") / "small.keras"
    model.save(path)
    return model, path


def test_upload_returns_ready_and_the_first_predict_is_answered(client, small):
    model, path = small
    stages = []
    version = client.upload("first-hour", keras_path=path, on_stage=stages.append)
    assert version["status"] == "READY"
    assert stages == ["uploading", "validating", "loading", "READY"]
    x = np.random.default_rng(0).random((2, 4), dtype=np.float32)
    out = client.predict("first-hour", {"features": x})["scores"]  # no retry needed
    np.testing.assert_allclose(out, model.predict(x, verbose=0), rtol=1e-5, atol=1e-5)
    # --no-wait: returned once committed; a non-default version is only stored
    stored = client.upload("first-hour", keras_path=path, wait=False)
    assert stored["status"] in ("LOADING", "READY")
    client.set_alias("first-hour", "production", 1)
    third = client.upload("first-hour", keras_path=path)
    assert third["status"] == "STORED"  # production stays on 1: nothing to load


def test_inputs_as_people_hold_them(client, small):
    model, path = small
    client.upload("held", keras_path=path)
    x64 = np.random.default_rng(1).random((2, 4))  # numpy's default float64
    expected = model.predict(x64.astype("float32"), verbose=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = client.predict("held", {"features": x64})["scores"]
        client.predict("held", {"features": x64.tolist()})  # a Python list
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    assert any("cast from float64 to float32" in str(w.message) for w in caught)
    ints = client.predict("held", {"features": [[1, 2, 3, 4]]})["scores"]  # int64 -> float32
    np.testing.assert_allclose(ints, model.predict(np.array([[1, 2, 3, 4]], "float32"),
                                                   verbose=0), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="input 'features': expected dtype float32, got"):
        client.predict("held", {"features": np.array([["a", "b", "c", "d"]])})


def test_a_version_loading_on_demand_is_retried(client, small):
    _, path = small
    client.upload("on-demand", keras_path=path, aliases=["production"])
    client.upload("on-demand", keras_path=path)  # v2: stored, not loaded
    x = np.zeros((1, 4), np.float32)
    assert client.predict("on-demand", {"features": x}, version=2)["scores"].shape == (1, 3)


def test_kerve_predict_is_quick_and_quiet(server, client, small, tmp_path):
    _, path = small
    client.upload("quick", keras_path=path)
    np.save(tmp_path / "x.npy", np.ones((2, 4)))  # float64, as numpy makes it
    (tmp_path / "x.json").write_text(json.dumps([[1, 2, 3, 4]]))
    np.savez(tmp_path / "x.npz", features=np.ones((1, 4), np.float32))
    # Quick: it imports no TensorFlow (checked below); its time is a benchmark's business,
    # not a test's.
    done = kerve("predict", "quick", "--input", f"features={tmp_path / 'x.npy'}", server=server)
    assert done.stdout.startswith("scores: float32[2, 3] [[")
    assert len(done.stdout.strip().splitlines()) == 1
    assert "tensorflow" not in done.stderr.lower() and "cuda" not in done.stderr.lower()
    for given in (f"features={tmp_path / 'x.json'}", str(tmp_path / "x.npz")):
        printed = json.loads(kerve("predict", "quick", "--input", given, "--json",
                                   server=server).stdout)
        assert np.array(printed["scores"]["data"]).shape == (1, 3)
    imported = subprocess.run(
        [sys.executable, "-c", "import sys, kerve.clients.cli, kerve.clients.client; "
         "sys.exit('tensorflow' in sys.modules)"], env=server_env(), timeout=60)
    assert imported.returncode == 0


def test_cli_names_versions_one_way(server, client, small, tmp_path):
    _, path = small
    for _ in range(2):
        kerve("upload", "named", str(path), server=server)
    shown = json.loads(kerve("models", "named", "--json", server=server).stdout)
    assert [v["version"] for v in shown["versions"]] == [1, 2]
    one = json.loads(kerve("models", "show", "named:1", "--json", server=server).stdout)
    assert [v["version"] for v in one["versions"]] == [1]
    assert "named@canary -> 1" in kerve("alias", "named:1", "canary", server=server).stdout
    assert "named@stable -> 1" in kerve("alias", "named@canary", "stable",
                                        server=server).stdout
    refused = kerve("delete", "named@canary", server=server, check=False)
    assert refused.returncode == 1 and "FAILED_PRECONDITION" in refused.stderr
    refused = kerve("delete", "named", server=server, check=False)
    assert refused.returncode == 1 and "use --force" in refused.stderr
    assert "deleted named:2" in kerve("delete", "named:2", server=server).stdout
    assert "deleted named (1 versions)" in kerve("delete", "named", "--force",
                                                 server=server).stdout


def test_every_flag_and_positional_has_help():
    import argparse

    from kerve.clients.cli import build_parser

    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for name, sub in commands.choices.items():
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
                continue
            assert action.help, f"kerve {name}: {action.dest} has no help"
            if isinstance(action, argparse._AppendAction):
                assert "epeatable" in action.help, f"kerve {name}: {action.dest}"


def test_top_level_help_says_where_the_server_is_found():
    out = subprocess.run([sys.executable, "-m", "kerve.clients.cli", "--help"],
                         capture_output=True, text=True, timeout=60, env=server_env()).stdout
    words = " ".join(out.split())
    assert "--server HOST:PORT" in words and "KERVE_SERVER" in words
    assert "localhost:8500" in words and "KERVE_TOKEN" in words


def test_download_failures_leave_nothing(server, tmp_path):
    afile = tmp_path / "a-file"
    afile.write_text("x")
    done = kerve("download", "quick", str(afile), server=server, check=False)
    assert done.returncode == 1 and "exists and is not a folder" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    missing = tmp_path / "new-folder"
    done = kerve("download", "no-such-model", str(missing), server=server, check=False)
    assert done.returncode == 1 and "NOT_FOUND" in done.stderr
    assert not missing.exists()


def test_piped_output_closed_early_is_quiet(server):
    done = subprocess.run(f"{sys.executable} -m kerve.clients.cli models --server "
                          f"{server.target} | head -c 1", shell=True, capture_output=True,
                          text=True, env=server_env(), timeout=60)
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr


def _serve_fails(tmp_path, *args) -> str:
    done = subprocess.run([sys.executable, "-m", "kerve.clients.cli", "serve", "--data-dir",
                           str(tmp_path / "data"), "--host", "127.0.0.1", *args],
                          capture_output=True, text=True, env=server_env(), timeout=120)
    errors = [line for line in done.stderr.splitlines() if line.startswith("kerve: error")]
    assert done.returncode != 0 and len(errors) == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    return errors[0]


def test_start_up_failures_are_one_line(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = _serve_fails(tmp_path, "--port", str(port), "--metrics-port", "-1")
        assert f"gRPC port 127.0.0.1:{port} cannot be bound" in line
        line = _serve_fails(tmp_path, "--port", "0", "--metrics-port", str(port))
        assert f"metrics port 127.0.0.1:{port} cannot be bound" in line
    (tmp_path / "file").write_text("x")
    line = _serve_fails(tmp_path, "--port", "0", "--data-dir", str(tmp_path / "file" / "sub"))
    assert "data dir" in line and "cannot be made" in line
    (tmp_path / "tokens.yaml").write_text("a: [unclosed")
    line = _serve_fails(tmp_path, "--port", "0", "--metrics-port", "-1",
                        "--tokens", str(tmp_path / "tokens.yaml"))
    assert "tokens file" in line and "cannot be used" in line


def test_tests_without_the_seed_zoo_stop_with_one_line():
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                           "tests/protos"], cwd=REPO, capture_output=True, text=True,
                          env=server_env() | {"KERVE_SEEDZOO": "/nonexistent/seedzoo"},
                          timeout=120)
    assert done.returncode != 0
    text = done.stdout + done.stderr
    assert "the seed zoo is missing at /nonexistent/seedzoo" in text
    assert "KERVE_SEEDZOO" in text and "Traceback" not in text


def test_v2_probes_answer_without_a_token(tmp_path):
    import tritonclient.grpc as grpcclient

    from tests.kerve_process import KerveProcess

    tokens = tmp_path / "tokens.yaml"
    tokens.write_text("secret: read\n")
    proc = KerveProcess(tmp_path / "data", "--tokens", str(tokens), plugins=())
    try:
        triton = grpcclient.InferenceServerClient(proc.target)
        assert triton.is_server_live() and triton.is_server_ready()
        with pytest.raises(Exception, match="not found"):
            triton.is_model_ready("nothing-here")  # answered (NOT_FOUND), not UNAUTHENTICATED
        with pytest.raises(grpcclient.InferenceServerException, match="UNAUTHENTICATED"):
            triton.get_model_repository_index()
    finally:
        proc.stop()


def test_client_raises_its_own_error_with_the_servers_status(client):
    """Not grpc's _InactiveRpcError with its debug string: kerve's ServerError, still a
    grpc.RpcError, the server's status and message on it and gRPC's error kept."""
    import grpc

    from kerve.clients import ServerError

    for call in (lambda: client.get_model("no-such-model"),
                 lambda: client.set_alias("no-such-model", "production", 1),
                 lambda: client.predict("no-such-model", {"x": np.ones((1, 2), np.float32)}),
                 lambda: client.download("no-such-model", "/nonexistent-kerve-dir")):
        with pytest.raises(ServerError) as e:
            call()
        error = e.value
        assert isinstance(error, grpc.RpcError)
        assert error.status == error.code() == grpc.StatusCode.NOT_FOUND
        assert "no-such-model" in error.message and error.details() == error.message
        assert str(error).startswith("NOT_FOUND: ") and "debug_error_string" not in str(error)
        assert isinstance(error.rpc_error, grpc.RpcError) and error.__cause__ is None
