"""Every upload bounded, against a real server with tight limits: refusals by the settings,
archives Keras never writes, and the serving process's peak memory (VmHWM) around a zip bomb
and an accepted model."""

from __future__ import annotations

import json
import zipfile

import grpc
import numpy as np
import pytest

from tests.kerve_process import KerveProcess
from tests.server.helpers import wait_ready

MEMORY_BOUND_MIB = 96
"""What one upload may add to the serving process's peak memory beyond the accepted
model's own weights (receive buffers, the archive split, tracing) and beyond three copies
of its largest variable: while one variable is initialised or loaded, Keras holds it, the
array read from HDF5 and the tensor made of that array, all at once. A refused upload adds
no more than this bound."""


@pytest.fixture(scope="module")
def bounded(tmp_path_factory):
    proc = KerveProcess(tmp_path_factory.mktemp("bounded"), "--max-architecture-kb", "64",
                        "--max-layers", "40", "--max-config-depth", "40",
                        "--max-weight-datasets", "100")
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def bclient(bounded):
    from kerve.clients.client import Client

    with Client(bounded.target, timeout=300) as c:
        yield c


def _refused(call) -> str:
    with pytest.raises(grpc.RpcError) as e:
        call()
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
    return e.value.details()


def _mlp(width: int, depth: int = 1, name: str = "m"):
    import keras

    inputs = keras.Input((width,), name="x")
    h = inputs
    for i in range(depth):
        h = keras.layers.Dense(width, name=f"d{i}")(h)
    model = keras.Model(inputs, h, name=name)
    model(np.zeros((1, width), "float32"))
    return model


def test_settings_reach_the_server_and_worker(bclient, tmp_path):
    deep = _mlp(4, depth=45)  # 46 layers > --max-layers 40
    arch, weights = tmp_path / "a.json", tmp_path / "w.weights.h5"
    arch.write_text(deep.to_json())
    deep.save_weights(weights)
    assert "more than the limit of 40 layers" in _refused(
        lambda: bclient.upload("too-many-layers", architecture=arch, weights=weights))
    big = tmp_path / "big.json"
    config = json.loads(_mlp(4).to_json())
    config["config"]["padding"] = "x" * (65 << 10)  # over --max-architecture-kb 64
    big.write_text(json.dumps(config))
    assert "over the limit of 65536" in _refused(
        lambda: bclient.upload("too-big", architecture=big, weights=weights))


def test_archive_with_foreign_members_refused(bclient, tmp_path):
    path = tmp_path / "m.keras"
    _mlp(4).save(path)
    for name in ("../x", "../../x", "/abs/x"):
        evil = tmp_path / "evil.keras"
        with zipfile.ZipFile(path) as src, zipfile.ZipFile(evil, "w") as dst:
            for info in src.infolist():
                dst.writestr(info, src.read(info))
            dst.writestr(name, b"payload")
        assert "not one Keras writes" in _refused(
            lambda path=evil: bclient.upload("foreign", keras_path=path))


def _bomb(path, inflated: int = 1100 << 20):
    """A .keras of about 1 MB whose config.json inflates to ``inflated`` bytes."""
    block = b" " * (1 << 20)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        with z.open("config.json", "w", force_zip64=True) as f:
            f.write(b'{"class_name": "Sequential", "config": {"layers": [], "pad": "')
            for _ in range(inflated >> 20):
                f.write(block)
            f.write(b'"}}')
        z.writestr("metadata.json", b"{}")
        z.writestr("model.weights.h5", b"")
    return path


@pytest.mark.slow
def test_peak_memory_bounded(bounded, bclient, tmp_path):
    small = _mlp(8, name="warm")  # the first load pays TensorFlow's one-time costs
    small.save(tmp_path / "warm.keras")
    bclient.upload("warm", keras_path=tmp_path / "warm.keras")
    wait_ready(bclient, "warm")
    before = bounded.rss_peak_kib()

    bomb = _bomb(tmp_path / "bomb.keras")
    assert bomb.stat().st_size < 2 << 20
    assert "expands to" in _refused(lambda: bclient.upload("bomb", keras_path=bomb))
    after_bomb = bounded.rss_peak_kib()
    print(f"refused 1.1 GB bomb: VmHWM +{(after_bomb - before) / 1024:.1f} MiB")
    assert after_bomb - before <= MEMORY_BOUND_MIB << 10

    model = _mlp(2048, depth=4, name="big")  # 16.8M float32 parameters: 64 MiB of weights
    model.save(tmp_path / "big.keras")
    sizes = [int(np.prod(v.shape)) * 4 / (1 << 20) for v in model.weights]
    weights_mib, largest_mib = sum(sizes), max(sizes)
    bclient.upload("big", keras_path=tmp_path / "big.keras")
    wait_ready(bclient, "big")
    grown = (bounded.rss_peak_kib() - after_bomb) / 1024
    print(f"accepted {weights_mib:.0f} MiB model (largest variable {largest_mib:.0f} MiB): "
          f"VmHWM +{grown:.1f} MiB")
    assert grown <= weights_mib + 3 * largest_mib + MEMORY_BOUND_MIB
