"""Triton's ModelConfig extension: tritonclient's get_model_config and perf_analyzer (the C++
load generator in the tritonclient wheel) work against kerve unchanged."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.server.helpers import wait_ready


@pytest.fixture(scope="module")
def configured(client, tmp_path_factory):
    import keras

    inputs = keras.Input((6,), name="x")
    model = keras.Model(inputs, keras.layers.Dense(2, name="y")(inputs))
    path = tmp_path_factory.mktemp("config") / "m.keras"
    model.save(path)
    client.upload("configured", keras_path=path,
                  tags={"kerve.max_batch_size": "64", "kerve.batch_timeout_ms": "1.5"})
    wait_ready(client, "configured")
    return model


def test_get_model_config(configured, triton):
    config = triton.get_model_config("configured", as_json=True)["config"]
    assert config["name"] == "configured" and config["platform"] == "tensorflow_keras"
    assert config["max_batch_size"] == 64
    assert config["input"] == [{"name": "x", "data_type": "TYPE_FP32", "dims": ["6"]}]
    assert config["output"] == [{"name": "y", "data_type": "TYPE_FP32", "dims": ["2"]}]
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == "1500"
    assert config["instance_group"][0]["kind"] == "KIND_CPU"
    assert "model_configuration" in triton.get_server_metadata().extensions
    with pytest.raises(Exception, match="not found"):
        triton.get_model_config("no-such-model")


@pytest.mark.slow
def test_perf_analyzer_drives_kerve(configured, server):
    from bench import perf_analyzer

    binary, env, why = perf_analyzer.find()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail(f"perf_analyzer cannot run: {why}")
        pytest.skip(f"perf_analyzer cannot run here: {why}")
    done = subprocess.run(
        [str(binary), "-m", "configured", "-u", server.target, "-i", "grpc", "-b", "1",
         "--concurrency-range", "2", "--measurement-interval", "500", "-p", "500",
         "--max-trials", "4", "--stability-percentage", "100"],
        capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Throughput:" in done.stdout
