from __future__ import annotations

import pytest

from tests.conftest import SAFE_ZOO
from tests.server.helpers import wait_ready


@pytest.fixture(scope="session")
def served_zoo(client, built, tmp_path_factory):
    """Every safe seed-zoo model uploaded (after the server started) as srv-NAME; returns
    name -> (Built, version info), each READY."""
    out = {}
    tmp = tmp_path_factory.mktemp("served")
    for name in SAFE_ZOO:
        b = built(name, seed=5)
        arch, weights = b.save(tmp / name)
        out[name] = (b, client.upload(f"srv-{name}", architecture=arch, weights=weights))
    for name in SAFE_ZOO:
        wait_ready(client, f"srv-{name}")
    return out


@pytest.fixture(scope="session")
def tf_stub(server):
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    channel = grpc.insecure_channel(server.target)
    yield prediction_service_pb2_grpc.PredictionServiceStub(channel)
    channel.close()


@pytest.fixture(scope="session")
def triton(server):
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url=server.target)
    yield client
    client.close()
