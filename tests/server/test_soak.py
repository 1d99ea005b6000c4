"""Soak: 10 minutes of mixed uploads, alias moves and predictions at concurrency 32 through
both inference protocols, on a server of its own; zero errors, and the server's RSS grows
by less than a stated bound. Self-stopping: every worker ends at the deadline."""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter

import numpy as np
import pytest

from tests.kerve_process import KerveProcess
from tests.server.helpers import wait_ready

DURATION_S = float(os.environ.get("KERVE_SOAK_SECONDS", "600"))
TFS_WORKERS, V2_WORKERS, UPLOADERS, MOVERS = 15, 15, 1, 1  # 32 clients at once
RSS_GROWTH_BOUND_MIB = 400
"""What ten minutes may add to the server's RSS after its first minute: each of the ~100
versions uploaded is loaded and swapped in, and TensorFlow keeps a little of every model it
traced (about 1-2 MiB for these); a leak of the weights themselves would be far more."""


def _model(seed: int):
    import keras

    rng = np.random.default_rng(seed)
    x = keras.Input((16,), name="x")
    model = keras.Model(x, keras.layers.Dense(4, name="y")(
        keras.layers.Dense(32, activation="relu")(x)), name="soak")
    model.set_weights([rng.standard_normal(w.shape).astype("float32")
                       for w in model.get_weights()])
    return model


@pytest.fixture(scope="module")
def soaked(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("soak")
    proc = KerveProcess(tmp / "data", "--idle-unload", "30", plugins=())
    yield proc, tmp
    proc.stop()


class Soak:
    def __init__(self, proc, tmp) -> None:
        self.proc, self.tmp = proc, tmp
        self.deadline = time.monotonic() + DURATION_S
        self.counts: Counter = Counter()
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.rss: list[tuple[float, int]] = []

    def running(self) -> bool:
        return time.monotonic() < self.deadline and len(self.errors) < 20

    def count(self, what: str) -> None:
        with self.lock:
            self.counts[what] += 1

    def error(self, what: str, exc: BaseException) -> None:
        with self.lock:
            self.errors.append(f"{what}: {type(exc).__name__}: {exc}"[:400])

    def tfs(self, seed: int) -> None:
        import grpc
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

        rng = np.random.default_rng(seed)
        with grpc.insecure_channel(self.proc.target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            while self.running():
                request = predict_pb2.PredictRequest()
                request.model_spec.name = rng.choice(["soak-stable", "soak-moving"])
                request.inputs["x"].CopyFrom(tf.make_tensor_proto(
                    rng.standard_normal((int(rng.integers(1, 8)), 16)).astype("float32")))
                try:
                    out = stub.Predict(request, timeout=30)
                    assert out.outputs["y"].tensor_shape.dim[1].size == 4
                    self.count("tfs")
                except Exception as exc:  # noqa: BLE001 - every failure is reported
                    self.error("tfs predict", exc)

    def v2(self, seed: int) -> None:
        import tritonclient.grpc as grpcclient

        rng = np.random.default_rng(seed)
        client = grpcclient.InferenceServerClient(self.proc.target)
        try:
            while self.running():
                x = rng.standard_normal((int(rng.integers(1, 8)), 16)).astype("float32")
                inp = grpcclient.InferInput("x", list(x.shape), "FP32")
                inp.set_data_from_numpy(x)
                try:
                    result = client.infer(rng.choice(["soak-stable", "soak-moving"]), [inp],
                                          client_timeout=30)
                    assert result.as_numpy("y").shape == (x.shape[0], 4)
                    self.count("v2")
                except Exception as exc:  # noqa: BLE001
                    self.error("v2 infer", exc)
        finally:
            client.close()

    def uploader(self) -> None:
        from kerve.clients.client import Client

        seed = 100
        with Client(self.proc.target, timeout=120) as client:
            while self.running():
                seed += 1
                path = self.tmp / f"m{seed % 4}.keras"
                _model(seed % 4).save(path)
                try:
                    client.upload("soak-moving", keras_path=path, aliases=["candidate"])
                    self.count("upload")
                    self._prune(client)
                except Exception as exc:  # noqa: BLE001
                    self.error("upload", exc)
                time.sleep(2.0)

    def _prune(self, client) -> None:
        """Keep the registry small: delete old versions no alias holds."""
        model = client.get_model("soak-moving")
        held = set(model["aliases"].values())
        versions = [v["version"] for v in model["versions"]]
        for version in versions[:-4]:
            if version not in held:
                try:
                    client.delete_version("soak-moving", version)
                    self.count("delete")
                except Exception as exc:  # noqa: BLE001
                    # The mover pointed an alias at it after the read: the server is right.
                    if "is the target of alias" not in str(exc):
                        raise

    def mover(self) -> None:
        from kerve.clients.client import Client

        rng = random.Random(7)
        with Client(self.proc.target, timeout=120) as client:
            while self.running():
                try:
                    model = client.get_model("soak-moving")
                    status = {v["version"]: v["status"] for v in model["versions"]}
                    target = model["aliases"].get("candidate") or max(status)
                    if rng.random() < 0.5:  # swapped in once loaded; requests carry on
                        client.set_alias("soak-moving", "production", target)
                    else:
                        client.set_alias("soak-moving", "canary", rng.choice(sorted(status)))
                    self.count("alias")
                except Exception as exc:  # noqa: BLE001
                    # A version pruned between reading and moving is the race, not an error.
                    if "has no version" not in str(exc):
                        self.error("alias", exc)
                time.sleep(1.0)

    def sample_rss(self) -> None:
        start = time.monotonic()
        while self.running():
            self.rss.append((time.monotonic() - start, self.proc.rss_kib()))
            time.sleep(5)


@pytest.mark.slow
@pytest.mark.timeout(int(DURATION_S) + 300)
def test_soak(soaked):
    from kerve.clients.client import Client

    proc, tmp = soaked
    with Client(proc.target, timeout=120) as client:
        for name, seed in (("soak-stable", 0), ("soak-moving", 1)):
            _model(seed).save(tmp / f"{name}.keras")
            client.upload(name, keras_path=tmp / f"{name}.keras", aliases=["production"])
            wait_ready(client, name)
    soak = Soak(proc, tmp)
    workers = ([threading.Thread(target=soak.tfs, args=(i,)) for i in range(TFS_WORKERS)]
               + [threading.Thread(target=soak.v2, args=(100 + i,)) for i in range(V2_WORKERS)]
               + [threading.Thread(target=soak.uploader) for _ in range(UPLOADERS)]
               + [threading.Thread(target=soak.mover) for _ in range(MOVERS)]
               + [threading.Thread(target=soak.sample_rss)])
    for w in workers:
        w.start()
    for w in workers:
        w.join(DURATION_S + 120)
    assert not any(w.is_alive() for w in workers), "a soak worker did not stop"
    after_minute = next((kib for t, kib in soak.rss if t >= 60), soak.rss[0][1])
    final = proc.rss_kib()
    growth = (final - after_minute) / 1024
    print(f"soak {DURATION_S:.0f} s: {dict(soak.counts)}, errors {len(soak.errors)}; RSS at "
          f"1 min {after_minute / 1024:.0f} MiB, at the end {final / 1024:.0f} MiB "
          f"(+{growth:.0f} MiB), peak {proc.rss_peak_kib() / 1024:.0f} MiB")
    assert soak.errors == [], soak.errors[:5]
    assert soak.counts["upload"] >= 10 and soak.counts["alias"] >= 10
    assert soak.counts["tfs"] > 1000 and soak.counts["v2"] > 1000
    assert growth < RSS_GROWTH_BOUND_MIB
    proc.wait_serving(timeout=10)
