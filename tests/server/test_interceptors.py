"""The interceptors and the handler shim on a real grpc.aio server of their own, without
TensorFlow: statuses from exceptions, undecodable requests, tokens and scopes, unknown
methods, and services registered as generic handlers."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from kerve.registry.errors import NotFoundError
from kerve.server.interceptors import ErrorInterceptor, TokenInterceptor

HealthRequest = health_pb2.HealthCheckRequest


async def _behaviour(request, context):
    if request.service == "missing":
        raise NotFoundError("model 'missing' not found")
    if request.service == "bug":
        raise ZeroDivisionError("a bug's details stay in the log")
    return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


def _handlers(service: str, methods: list[str]):
    handler = grpc.unary_unary_rpc_method_handler(
        _behaviour, request_deserializer=HealthRequest.FromString,
        response_serializer=health_pb2.HealthCheckResponse.SerializeToString)
    return grpc.method_handlers_generic_handler(service, {m: handler for m in methods})


async def _serve(tokens: dict[str, str] | None, call):
    from kerve.server.app import GenericHandlersOnly

    interceptors = [ErrorInterceptor()]
    if tokens is not None:
        interceptors.insert(0, TokenInterceptor(tokens))
    server = grpc.aio.server(interceptors=interceptors)
    server.add_generic_rpc_handlers([
        _handlers("kerve.registry.v1.RegistryService", ["GetModel", "UploadModel"]),
        _handlers("inference.GRPCInferenceService", ["ServerReady", "RepositoryModelLoad"])])
    shim = GenericHandlersOnly(server)
    health_pb2_grpc.add_HealthServicer_to_server(health_aio.HealthServicer(), shim)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            return shim.names, await call(channel)
    finally:
        await server.stop(None)


def _status(method: str, body: bytes = b"", token: str | None = None, tokens=None):
    async def call(channel):
        metadata = (("authorization", f"Bearer {token}"),) if token else None
        rpc = channel.unary_unary(method)
        try:
            await rpc(body, metadata=metadata, timeout=10)
            return grpc.StatusCode.OK, ""
        except grpc.aio.AioRpcError as exc:
            return exc.code(), exc.details()
    return asyncio.run(_serve(tokens, call))[1]


GET = "/kerve.registry.v1.RegistryService/GetModel"
UPLOAD = "/kerve.registry.v1.RegistryService/UploadModel"


def test_errors_carry_their_status_and_bugs_answer_internal():
    assert _status(GET) == (grpc.StatusCode.OK, "")
    body = HealthRequest(service="missing").SerializeToString()
    assert _status(GET, body) == (grpc.StatusCode.NOT_FOUND, "model 'missing' not found")
    code, details = _status(GET, HealthRequest(service="bug").SerializeToString())
    assert code is grpc.StatusCode.INTERNAL and "bug" not in details


def test_undecodable_request_is_invalid_argument():
    code, details = _status(GET, b"\xff\xff\xff")
    assert code is grpc.StatusCode.INVALID_ARGUMENT and "not a valid protobuf" in details


@pytest.mark.parametrize("method, token, expected", [
    (GET, None, grpc.StatusCode.UNAUTHENTICATED),
    (GET, "wrong", grpc.StatusCode.UNAUTHENTICATED),
    (GET, "r", grpc.StatusCode.OK),
    (UPLOAD, "r", grpc.StatusCode.PERMISSION_DENIED),
    (UPLOAD, "w", grpc.StatusCode.OK),
    ("/inference.GRPCInferenceService/RepositoryModelLoad", "w",
     grpc.StatusCode.PERMISSION_DENIED),
    ("/inference.GRPCInferenceService/RepositoryModelLoad", "a", grpc.StatusCode.OK),
    # probes and health need no token
    ("/inference.GRPCInferenceService/ServerReady", None, grpc.StatusCode.OK),
    ("/grpc.health.v1.Health/Check", None, grpc.StatusCode.OK),
    # a method no service has: UNIMPLEMENTED, with or without a token
    ("/no.such.Service/Call", None, grpc.StatusCode.UNIMPLEMENTED),
    ("/kerve.registry.v1.RegistryService/NoSuchMethod", "r", grpc.StatusCode.UNIMPLEMENTED),
])
def test_token_scopes(method, token, expected):
    tokens = {"r": "read", "w": "write", "a": "admin"}
    assert _status(method, token=token, tokens=tokens)[0] is expected


def test_services_registered_through_the_shim_answer_and_are_named():
    async def call(channel):
        stub = health_pb2_grpc.HealthStub(channel)
        return (await stub.Check(HealthRequest(service=""), timeout=10)).status

    names, status = asyncio.run(_serve(None, call))
    assert status == health_pb2.HealthCheckResponse.SERVING
    assert names == ["grpc.health.v1.Health"]
