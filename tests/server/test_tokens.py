"""Access control: bearer tokens with read / write / admin scopes; health stays open."""

from __future__ import annotations

import grpc
import pytest

from tests.kerve_process import KerveProcess


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tokens")
    tokens = tmp / "tokens.yaml"
    tokens.write_text("reader-token: read\nwriter-token: write\nadmin-token: admin\n")
    proc = KerveProcess(tmp / "data", "--tokens", str(tokens))
    yield proc
    proc.stop()


def _client(proc, token):
    from kerve.clients.client import Client

    return Client(proc.target, token=token, timeout=60)


def _code(call):
    with pytest.raises(grpc.RpcError) as e:
        call()
    return e.value.code()


def test_scopes(secured, built, tmp_path):
    arch, weights = built("linear_sequential").save(tmp_path)
    with _client(secured, None) as anonymous, _client(secured, "wrong") as wrong, \
            _client(secured, "reader-token") as reader, \
            _client(secured, "writer-token") as writer, \
            _client(secured, "admin-token") as admin:
        assert _code(anonymous.list_models) == grpc.StatusCode.UNAUTHENTICATED
        assert _code(wrong.list_models) == grpc.StatusCode.UNAUTHENTICATED
        assert reader.list_models() == []
        assert _code(lambda: reader.upload("t", architecture=arch, weights=weights)) == \
            grpc.StatusCode.PERMISSION_DENIED
        writer.upload("t", architecture=arch, weights=weights)
        writer.set_alias("t", "staging", 1)
        writer.delete_alias("t", "staging")
        assert _code(lambda: writer.delete_version("t", 1)) == grpc.StatusCode.PERMISSION_DENIED
        assert [m["name"] for m in reader.list_models()] == ["t"]
        admin.delete_version("t", 1)


def test_health_stays_open(secured):
    secured.wait_serving(timeout=10)  # an unauthenticated health check answers SERVING
