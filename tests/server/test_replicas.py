"""Several kerve servers sharing one PostgreSQL database and one S3 bucket (SeaweedFS), as a
Kubernetes deployment runs them: a registry-role server, an all-role server and two
inference replicas. Uploads through one are served by the others; concurrent uploads get
distinct versions; an alias moves under load with no failed request; requests spread over
replicas; a replica killed with SIGKILL leaves the others serving."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest

from tests.kerve_process import KerveProcess

pytestmark = pytest.mark.slow

PROPAGATION_S = 10.0  # what the test allows; the registry polls every 30 s, so NOTIFY it is


@pytest.fixture(scope="module")
def replicas(postgres_cluster, s3_store, tmp_path_factory):
    url, blobs = postgres_cluster.new_database(), s3_store.new_url()
    common = ["--registry-url", url, "--blob-url", blobs, "--s3-endpoint", s3_store.endpoint,
              "--poll-interval", "30"]
    roles = {"registry": ["--role", "registry"], "all": ["--role", "all"],
             "inference1": ["--role", "inference", "--max-connection-age", "1"],
             "inference2": ["--role", "inference"]}
    procs = {}
    try:
        for name, args in roles.items():
            procs[name] = KerveProcess(tmp_path_factory.mktemp(name), *args, *common,
                                       env=s3_store.env(), wait=False)
        for proc in procs.values():
            proc.wait_started()
        yield procs
    finally:
        for proc in procs.values():
            proc.stop()


@pytest.fixture(scope="module")
def model():
    import keras

    inputs = keras.Input((6,), name="x")
    outputs = keras.layers.Dense(3, name="y")(keras.layers.Dense(8, activation="relu")(inputs))
    return keras.Model(inputs, outputs)


def _weights(model, seed: int) -> None:
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(size=w.shape).astype(w.dtype) for w in model.get_weights()])


def _upload(proc, model, name: str, seed: int, **kw) -> dict:
    from kerve.clients.client import Client

    _weights(model, seed)
    with Client(proc.target, timeout=120) as client:
        return client.upload(name, model=model, **kw)


def _predict(target: str, name: str, x, *, timeout: float = 30):
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(x))
    with grpc.insecure_channel(target) as channel:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
            request, timeout=timeout)
    return response.model_spec.version.value, tf.make_ndarray(response.outputs["y"])


def _until_served(target: str, name: str, x, version: int, deadline: float):
    while True:
        try:
            got, out = _predict(target, name, x)
            if got == version:
                return out
        except grpc.RpcError as exc:
            if exc.code() not in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE):
                raise
        assert time.monotonic() < deadline, f"{target} never served {name}:{version}"
        time.sleep(0.05)


X = np.random.default_rng(7).random((4, 6), dtype=np.float32)


def test_roles_refuse_what_they_do_not_do(replicas, model):
    from kerve.clients.client import Client

    with pytest.raises(grpc.RpcError) as e:
        _upload(replicas["inference1"], model, "refused", seed=1)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "registry role" in e.value.details()
    with Client(replicas["inference2"].target) as client:
        assert client.list_models() is not None  # reads are served
    with pytest.raises(grpc.RpcError) as e:
        _predict(replicas["registry"].target, "refused", X)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_upload_through_one_is_served_by_the_others(replicas, model):
    version = _upload(replicas["registry"], model, "shared", seed=2)["version"]
    expected = model.predict(X, verbose=0)
    started = time.monotonic()
    deadline = started + PROPAGATION_S
    for name in ("all", "inference1", "inference2"):
        out = _until_served(replicas[name].target, "shared", X, version, deadline)
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_concurrent_uploads_through_two_get_distinct_versions(replicas, model):
    model.predict(X, verbose=0)

    def upload(i: int) -> int:
        proc = replicas["registry"] if i % 2 else replicas["all"]
        return _upload(proc, model, "race", seed=100 + i)["version"]

    with ThreadPoolExecutor(6) as pool:
        versions = list(pool.map(upload, range(6)))
    assert sorted(versions) == [1, 2, 3, 4, 5, 6]


def test_alias_move_under_load_fails_no_request(replicas, model):
    _upload(replicas["registry"], model, "moving", seed=3, aliases=["production"])
    expected = {1: model.predict(X, verbose=0)}
    _upload(replicas["all"], model, "moving", seed=4)
    expected[2] = model.predict(X, verbose=0)
    targets = [replicas["inference1"].target, replicas["inference2"].target]
    deadline = time.monotonic() + PROPAGATION_S
    for target in targets:
        _until_served(target, "moving", X, 1, deadline)
    errors, seen, stop = [], [], threading.Event()

    def stream(target):
        while not stop.is_set():
            try:
                version, out = _predict(target, "moving", X)
                np.testing.assert_allclose(out, expected[version], rtol=1e-5, atol=1e-5)
                seen.append((target, version))
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

    threads = [threading.Thread(target=stream, args=(t,)) for t in targets * 2]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        from kerve.clients.client import Client

        with Client(replicas["registry"].target) as client:
            client.set_alias("moving", "production", 2)
        deadline = time.monotonic() + PROPAGATION_S
        while not all((t, 2) in seen for t in targets):
            assert time.monotonic() < deadline, "the alias move never reached every replica"
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors[:1] == []
    assert {v for _, v in seen} == {1, 2}


def _requests_served(proc, model: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{proc.metrics_port}/metrics",
                                  timeout=10).read().decode()
    pattern = re.compile(r'^kerve_requests_total\{([^}]*)\} (\S+)$', re.M)
    return sum(float(value) for labels, value in pattern.findall(text)
               if f'model="{model}"' in labels and 'code="OK"' in labels)


def test_one_client_spreads_over_replicas(replicas, model):
    """Round robin over the addresses of one target (what a headless Service's DNS name
    gives): 60 requests from one client, each of three replicas serves 20 +- 5."""
    from kerve.clients.client import Client

    version = _upload(replicas["registry"], model, "spread", seed=5)["version"]
    serving = [replicas[n] for n in ("all", "inference1", "inference2")]
    deadline = time.monotonic() + PROPAGATION_S
    for proc in serving:
        _until_served(proc.target, "spread", X, version, deadline)
    before = [_requests_served(p, "spread") for p in serving]
    target = "ipv4:" + ",".join(f"127.0.0.1:{p.port}" for p in serving)
    with Client(target, timeout=30) as client:
        for _ in range(60):
            client.predict("spread", {"x": X})
    counts = [_requests_served(p, "spread") - b for p, b in zip(serving, before)]
    assert sum(counts) == 60
    assert all(15 <= c <= 25 for c in counts), counts


def test_connection_age_recycles_connections_without_failures(replicas, model):
    """inference1 closes connections after 1 s: a client streaming for 3 s reconnects
    (gracefully) and no request fails."""
    version = _upload(replicas["registry"], model, "aged", seed=6)["version"]
    target = replicas["inference1"].target
    _until_served(target, "aged", X, version, time.monotonic() + PROPAGATION_S)
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "aged"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(X))
    states = []
    with grpc.insecure_channel(target) as channel:
        channel.subscribe(states.append)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        end = time.monotonic() + 3
        count = 0
        while time.monotonic() < end:
            stub.Predict(request, timeout=10)
            count += 1
    assert count > 10
    assert states.count(grpc.ChannelConnectivity.READY) >= 2  # it reconnected


def test_a_replica_killed_mid_request_leaves_the_others_serving(replicas, model):
    version = _upload(replicas["registry"], model, "survivor", seed=8)["version"]
    expected = model.predict(X, verbose=0)
    survivor, victim = replicas["inference1"], replicas["inference2"]
    deadline = time.monotonic() + PROPAGATION_S
    for proc in (survivor, victim):
        _until_served(proc.target, "survivor", X, version, deadline)
    errors, served, stop = [], [], threading.Event()

    def stream():
        while not stop.is_set():
            try:
                _, out = _predict(survivor.target, "survivor", X)
                np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
                served.append(time.monotonic())
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

    def victim_stream():
        while not stop.is_set():
            try:
                _predict(victim.target, "survivor", X, timeout=5)
            except grpc.RpcError:
                return

    threads = [threading.Thread(target=stream) for _ in range(2)]
    threads.append(threading.Thread(target=victim_stream))
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        os.killpg(victim.proc.pid, signal.SIGKILL)
        killed = time.monotonic()
        time.sleep(1.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors[:1] == []
    assert sum(1 for t in served if t > killed) > 5
    # and the registry still takes writes that the survivor then serves
    version = _upload(replicas["registry"], model, "survivor", seed=9)["version"]
    _until_served(survivor.target, "survivor", X, version, time.monotonic() + PROPAGATION_S)
