"""Versions are numbered by the registry and never reused; aliases move; deletes are
refused while an alias points at the version."""

from __future__ import annotations

import grpc
import pytest


def test_numbers_aliases_and_deletes(client, built, tmp_path):
    arch, weights = built("linear_sequential").save(tmp_path)
    v1 = client.upload("numbers", architecture=arch, weights=weights, aliases=["production"])
    v2 = client.upload("numbers", architecture=arch, weights=weights)
    assert (v1["version"], v2["version"]) == (1, 2)
    model = client.get_model("numbers")
    assert model["default_version"] == 1  # production wins over newest
    assert [v["version"] for v in model["versions"]] == [1, 2]
    assert model["versions"][0]["aliases"] == ["production"]

    with pytest.raises(grpc.RpcError) as e:
        client.delete_version("numbers", 1)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "production" in e.value.details()

    assert client.set_alias("numbers", "production", 2)["aliases"] == {"production": 2}
    client.delete_version("numbers", 1)
    client.delete_alias("numbers", "production")
    client.delete_version("numbers", 2)
    with pytest.raises(grpc.RpcError) as e:
        client.get_model("numbers")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    v3 = client.upload("numbers", architecture=arch, weights=weights)
    assert v3["version"] == 3  # never reused


@pytest.mark.parametrize("call,code", [
    (lambda c: c.get_model("no-such-model"), grpc.StatusCode.NOT_FOUND),
    (lambda c: c.set_alias("no-such-model", "production", 1), grpc.StatusCode.NOT_FOUND),
    (lambda c: c.delete_version("no-such-model", 1), grpc.StatusCode.NOT_FOUND),
    (lambda c: c.set_alias("demo-x", "Bad Alias", 1), grpc.StatusCode.INVALID_ARGUMENT),
    (lambda c: c.get_model("bad/name"), grpc.StatusCode.INVALID_ARGUMENT),
    (lambda c: c.download("no-such-model", "/tmp/kerve-never"), grpc.StatusCode.NOT_FOUND),
])
def test_registry_errors(call, code, client):
    with pytest.raises(grpc.RpcError) as e:
        call(client)
    assert e.value.code() == code


def test_alias_to_missing_version(client, built, tmp_path):
    arch, weights = built("linear_sequential").save(tmp_path)
    client.upload("alias-missing", architecture=arch, weights=weights)
    with pytest.raises(grpc.RpcError) as e:
        client.set_alias("alias-missing", "production", 99)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as e:
        client.delete_alias("alias-missing", "production")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
