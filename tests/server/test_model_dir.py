"""Single-model mode (KServe's /mnt/models), `kerve health`, and start-up failures that are
one line: what a container runtime and its probes see."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest

from tests.kerve_process import KerveProcess, server_env


@pytest.fixture(scope="module")
def keras_model():
    import keras

    inputs = keras.Input((5,), name="features")
    model = keras.Model(inputs, keras.layers.Dense(2, name="logits")(inputs))
    rng = np.random.default_rng(3)
    model.set_weights([rng.normal(size=w.shape).astype("float32") for w in model.get_weights()])
    return model


def _kerve(*args: str, env: dict | None = None, timeout: float = 120):
    return subprocess.run([sys.executable, "-m", "kerve.clients.cli", *args],
                          env=server_env() | (env or {}), capture_output=True, text=True,
                          timeout=timeout)


def _predict(target: str, name: str, x):
    from kerve.clients.client import Client

    with Client(target, timeout=30) as client:
        return client.predict(name, {"features": x})["logits"]


@pytest.mark.parametrize("layout", ["keras", "json+h5"])
def test_serves_the_folder_as_the_name_and_restarts_without_a_new_version(
        keras_model, tmp_path, layout):
    models = tmp_path / "mnt-models"
    models.mkdir()
    if layout == "keras":
        keras_model.save(models / "model.keras")  # KServe keeps the storageUri's file name
    else:
        (models / "config.json").write_text(keras_model.to_json())
        keras_model.save_weights(models / "model.weights.h5")
    x = np.random.default_rng(0).random((3, 5), dtype=np.float32)
    expected = keras_model.predict(x, verbose=0)
    for restart in range(2):
        proc = KerveProcess(tmp_path / "data", "--model-dir", str(models),
                            "--model-name", "my-isvc", plugins=())
        try:
            np.testing.assert_allclose(_predict(proc.target, "my-isvc", x), expected,
                                       rtol=1e-5, atol=1e-5)
            health = _kerve("health", "--server", proc.target)
            assert health.returncode == 0 and "SERVING" in health.stdout
            from kerve.clients.client import Client

            with Client(proc.target) as client:
                assert client.get_model("my-isvc")["versions"][-1]["version"] == 1
                # Read-only: Knative's queue-proxy forwards every call from 127.0.0.1, so
                # loopback is no proof of anything; single-model mode takes no writes.
                for write in (lambda: client.set_alias("my-isvc", "production", 1),
                              lambda: client.upload("my-isvc", model=keras_model),
                              lambda: client.delete_version("my-isvc", 1)):
                    with pytest.raises(grpc.RpcError) as refused:
                        write()
                    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
                    assert "read-only" in refused.value.details()
            assert "single-model mode, read-only" in proc.log()
        finally:
            proc.stop()


def test_a_folder_without_a_model_fails_in_one_line(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "README.txt").write_text("no model here")
    done = _kerve("serve", "--port", "0", "--metrics-port", "-1", "--data-dir",
                  str(tmp_path / "data"), "--model-dir", str(tmp_path / "models"),
                  "--model-name", "m")
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("kerve: error")]
    assert len(errors) == 1 and "must hold one .keras archive" in errors[0]
    assert "Traceback" not in done.stderr


def test_health_of_nothing_is_one_line_and_non_zero():
    done = _kerve("health", "--server", "127.0.0.1:1", "--timeout", "2")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "UNAVAILABLE" in done.stderr


@pytest.mark.parametrize("store", ["s3-wrong-key", "s3-unreachable", "postgres-wrong-password"])
def test_unusable_stores_fail_at_start_in_one_line(store, tmp_path, request):
    args = ["serve", "--port", "0", "--metrics-port", "-1", "--data-dir", str(tmp_path)]
    env = {}
    if store.startswith("s3"):
        s3 = request.getfixturevalue("s3_store")
        endpoint = s3.endpoint if store == "s3-wrong-key" else "http://127.0.0.1:1"
        args += ["--blob-url", s3.new_url(), "--s3-endpoint", endpoint]
        env = s3.env() | {"AWS_SECRET_ACCESS_KEY": "wrong"}
    else:
        cluster = request.getfixturevalue("postgres_cluster")
        args += ["--registry-url", cluster.url(password="wrong")]
    done = _kerve(*args, env=env)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("kerve: error")]
    assert len(errors) == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert ("S3 bucket" in errors[0]) if store.startswith("s3") else ("password" in errors[0])


def test_single_model_mode_writes_nothing_into_the_working_directory(tmp_path):
    from kerve.server.settings import Settings

    settings = Settings(model_dir=tmp_path, model_name="my-isvc")
    assert not settings.data_dir.resolve().is_relative_to(Path.cwd())
    assert settings.data_dir.name == "kerve-my-isvc"
    assert Settings(model_dir=tmp_path, model_name="m", data_dir=tmp_path / "d").data_dir == \
        tmp_path / "d"
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "model.keras").write_text("not a zip")  # refused after start-up
    work = tmp_path / "work"
    work.mkdir()
    done = subprocess.run([sys.executable, "-m", "kerve.clients.cli", "serve", "--port", "0",
                           "--metrics-port", "-1", "--model-dir", str(tmp_path / "models"),
                           "--model-name", "wd-test"], env=server_env(), cwd=work,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "kerve: error" in done.stderr
    assert list(work.iterdir()) == []

