"""Triton's ModelConfig extension: tritonclient's get_model_config and perf_analyzer (the C++
load generator in the tritonclient wheel) work against kerve unchanged."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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


def _perf_analyzer() -> tuple[Path, dict] | None:
    """perf_analyzer from the tritonclient wheel, with the CUDA runtime it links against
    (nvidia-cuda-runtime-cu12 on PyPI; it runs on the CPU) and libb64 (Debian)."""
    binary = Path(sys.executable).with_name("perf_analyzer")
    try:
        import nvidia.cuda_runtime as cuda_runtime
    except ImportError:
        return None
    lib = Path(list(cuda_runtime.__path__)[0]) / "lib"
    env = dict(os.environ, LD_LIBRARY_PATH=os.pathsep.join(
        filter(None, [str(lib), os.environ.get("LD_LIBRARY_PATH")])))
    if not binary.exists() or subprocess.run(["ldd", str(binary)], capture_output=True,
                                             text=True, env=env).stdout.count("not found"):
        return None
    return binary, env


@pytest.mark.slow
def test_perf_analyzer_drives_kerve(configured, server):
    found = _perf_analyzer()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("perf_analyzer cannot run: .ci/tools installs libb64-0d, the test "
                        "extra nvidia-cuda-runtime-cu12")
        pytest.skip("perf_analyzer cannot run here (libb64-0d, nvidia-cuda-runtime-cu12)")
    binary, env = found
    done = subprocess.run(
        [str(binary), "-m", "configured", "-u", server.target, "-i", "grpc", "-b", "1",
         "--concurrency-range", "2", "--measurement-interval", "500", "-p", "500",
         "--max-trials", "4", "--stability-percentage", "100"],
        capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Throughput:" in done.stdout
