"""Version, alias and default resolution while serving; an upload is served without a
restart; an alias moved under a steady stream of requests loses none of them."""

from __future__ import annotations

import threading
import time
import urllib.request

import grpc
import numpy as np
import pytest

from tests.server.helpers import retry_unavailable, wait_ready


def _predict(stub, name, x, *, version=None, label=None):
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(x))
    response = stub.Predict(request, timeout=30)
    (out,) = response.outputs.values()
    return response.model_spec.version.value, tf.make_ndarray(out)


@pytest.fixture(scope="module")
def two_versions(client, built, tmp_path_factory):
    """'versions' with v1 (alias production) and v2 (newer, different weights)."""
    tmp = tmp_path_factory.mktemp("two")
    b1, b2 = built("mnist_mlp", seed=11), built("mnist_mlp", seed=12)
    arch, w1 = b1.save(tmp / "1")
    _, w2 = b2.save(tmp / "2")
    client.upload("versions", architecture=arch, weights=w1, aliases=["production"])
    client.upload("versions", architecture=arch, weights=w2, aliases=["canary"])
    wait_ready(client, "versions", 1)
    return b1, b2


def test_default_is_production_not_newest(two_versions, tf_stub):
    b1, _ = two_versions
    version, out = _predict(tf_stub, "versions", b1.inputs)
    assert version == 1
    np.testing.assert_allclose(out, b1.outputs[0], atol=1e-5)


def test_explicit_version_and_alias_load_on_demand(two_versions, tf_stub, triton):
    _, b2 = two_versions
    version, out = retry_unavailable(lambda: _predict(tf_stub, "versions", b2.inputs, version=2))
    assert version == 2
    np.testing.assert_allclose(out, b2.outputs[0], atol=1e-5)
    version, out = _predict(tf_stub, "versions", b2.inputs, label="canary")
    assert version == 2
    # KServe v2: digits are a version, anything else an alias
    assert triton.is_model_ready("versions", "2") and triton.is_model_ready("versions", "canary")
    meta = triton.get_model_metadata("versions", "canary")
    assert meta.versions == ["2"]


def test_upload_served_without_restart_and_swap_under_load(client, built, tf_stub, tmp_path):
    b1, b2 = built("mnist_mlp", seed=21), built("mnist_mlp", seed=22)
    arch, w1 = b1.save(tmp_path / "1")
    _, w2 = b2.save(tmp_path / "2")
    client.upload("swap", architecture=arch, weights=w1, aliases=["production"])
    wait_ready(client, "swap")
    x = b1.inputs
    expected = {1: b1.outputs[0], 2: b2.model.predict(x, verbose=0)}
    errors: list[BaseException] = []
    seen: list[tuple[float, float, int]] = []  # (sent, answered, version)
    stop = threading.Event()

    def stream():
        while not stop.is_set():
            try:
                sent = time.monotonic()
                version, out = _predict(tf_stub, "swap", x)
                np.testing.assert_allclose(out, expected[version], atol=1e-5)
                seen.append((sent, time.monotonic(), version))
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

    threads = [threading.Thread(target=stream) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        client.upload("swap", architecture=arch, weights=w2)  # v2: not production yet
        time.sleep(0.3)
        client.set_alias("swap", "production", 2)  # moved under the stream
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not seen or seen[-1][2] != 2):
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors[:1] == []
    versions = [v for _, _, v in sorted(seen)]
    assert versions[0] == 1 and versions[-1] == 2
    assert versions.count(1) > 10 and versions.count(2) > 10
    # What an alias move promises: the old version answers until the new one is loaded,
    # then the new one answers every request sent after that.
    swapped = min(answered for _, answered, v in seen if v == 2)
    assert all(v == 2 for sent, _, v in seen if sent > swapped)
    # the old default is unloaded once its requests finished
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        statuses = {v["version"]: v["status"] for v in client.get_model("swap")["versions"]}
        if statuses[1] == "STORED":
            break
        time.sleep(0.1)
    assert statuses == {1: "STORED", 2: "READY"}


def test_failed_version_reports_why_and_others_keep_serving(server, client, built, tf_stub,
                                                            triton, tmp_path):
    """A version whose blob vanished fails to load: FAILED_PRECONDITION with the reason,
    while the current default keeps serving, also when an alias moves to the failed version.
    RepositoryModelLoad retries it once the blob is back."""
    b = built("linear_sequential", seed=31)
    arch, weights = b.save(tmp_path)
    client.upload("failing", architecture=arch, weights=weights, aliases=["production"])
    wait_ready(client, "failing")
    other = built("linear_sequential", seed=32)
    _, w2 = other.save(tmp_path / "2")
    v2 = client.upload("failing", architecture=arch, weights=w2)
    blob = server.data_dir / "blobs" / v2["weights_sha256"][:2] / v2["weights_sha256"]
    aside = blob.with_name("aside")
    blob.rename(aside)
    with pytest.raises(grpc.RpcError):
        _predict(tf_stub, "failing", other.inputs, version=2)  # starts the load
    deadline = time.monotonic() + 30
    while True:
        try:
            _predict(tf_stub, "failing", other.inputs, version=2)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
                assert "missing from the store" in exc.details()
                break
            assert exc.code() == grpc.StatusCode.UNAVAILABLE
        assert time.monotonic() < deadline
        time.sleep(0.05)
    client.set_alias("failing", "production", 2)
    time.sleep(0.5)
    version, out = _predict(tf_stub, "failing", b.inputs)
    assert version == 1  # the failed version is not swapped in
    np.testing.assert_allclose(out, b.outputs[0], atol=1e-5)
    statuses = {v["version"]: v for v in client.get_model("failing")["versions"]}
    assert statuses[2]["status"] == "FAILED"
    assert "missing from the store" in statuses[2]["status_message"]

    aside.rename(blob)
    triton.load_model("failing")  # retries the FAILED default
    version, out = _predict(tf_stub, "failing", other.inputs)
    assert version == 2
    np.testing.assert_allclose(out, other.outputs[0], atol=1e-5)


def test_health_and_metrics(server, served_zoo, tf_stub):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    b, _ = served_zoo["mnist_mlp"]
    _predict(tf_stub, "srv-mnist_mlp", b.inputs)
    with grpc.insecure_channel(server.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "inference.GRPCInferenceService",
                        "tensorflow.serving.PredictionService"):
            status = health.Check(health_pb2.HealthCheckRequest(service=service)).status
            assert status == health_pb2.HealthCheckResponse.SERVING
    body = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics",
                                  timeout=10).read().decode()
    assert 'kerve_requests_total{api="tfserving",code="OK",model="srv-mnist_mlp"' in body
    assert "kerve_request_duration_seconds_bucket" in body
    assert 'kerve_batch_size_count{model="srv-mnist_mlp"}' in body
    assert "kerve_models_loaded " in body
    assert 'kerve_model_load_seconds_count{model="srv-mnist_mlp"}' in body
    assert 'kerve_uploads_total{code="OK"}' in body
