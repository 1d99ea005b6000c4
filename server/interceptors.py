"""The one place exceptions become gRPC statuses, and where tokens are checked.

A KerveError aborts with its own status and message; anything else is logged with its
traceback and answers INTERNAL with a short generic message.
"""

from __future__ import annotations

import ipaddress
import logging
import urllib.parse
from typing import Awaitable, Callable

import grpc

from kerve.registry.audit import current_actor
from kerve.registry.errors import (
    InvalidArgumentError,
    KerveError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from kerve.server.tokens import SCOPES, Principal, load_tokens  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

# Methods that need more than read; health and reflection need nothing.
_WRITE = {"UploadModel", "SetAlias", "DeleteAlias", "RollbackAlias"}
_ADMIN = {"DeleteModelVersion", "RepositoryModelLoad", "RepositoryModelUnload"}
# Health, reflection and the v2 protocol's probes answer without a token: Kubernetes probes
# carry none.
_OPEN = ("/grpc.health.v1.Health/", "/grpc.reflection.",
         "/inference.GRPCInferenceService/ServerLive",
         "/inference.GRPCInferenceService/ServerReady",
         "/inference.GRPCInferenceService/ModelReady")


async def _abort_for(exc: BaseException, context, method: str) -> None:
    if isinstance(exc, KerveError):
        await context.abort(exc.code, exc.message)
    log.error("unexpected error in %s", method, exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL, "internal error; see the server log")


class _Undecodable:
    """Stands in for a request whose bytes are not a valid message."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def _tolerant(deserializer):
    """Undecodable bytes become an _Undecodable, answered INVALID_ARGUMENT below, instead of
    the INTERNAL that gRPC would answer for them."""
    if deserializer is None:
        return None

    def parse(data: bytes):
        try:
            return deserializer(data)
        except Exception as exc:  # noqa: BLE001 - any parse failure is the client's
            return _Undecodable(exc)
    return parse


def _malformed(method: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"request to {method} is not a valid protobuf message")


def _check(request, method: str):
    if isinstance(request, _Undecodable):
        raise _malformed(method)
    return request


async def _checked_stream(requests, method: str):
    async for request in requests:
        yield _check(request, method)


def _wrap_unary(behavior, method: str, streaming_requests: bool = False):
    async def wrapper(request_or_iterator, context):
        try:
            if streaming_requests:
                request_or_iterator = _checked_stream(request_or_iterator, method)
            else:
                _check(request_or_iterator, method)
            return await behavior(request_or_iterator, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # noqa: BLE001
            await _abort_for(exc, context, method)
    return wrapper


def _wrap_stream(behavior, method: str):
    async def wrapper(request, context):
        try:
            async for item in behavior(_check(request, method), context):
                yield item
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # noqa: BLE001
            await _abort_for(exc, context, method)
    return wrapper


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Wraps each method's handler once (cached by method name), not once per call."""

    def __init__(self) -> None:
        self._wrapped: dict[str, grpc.RpcMethodHandler | None] = {}

    async def intercept_service(self, continuation: Callable[..., Awaitable],
                                details: grpc.HandlerCallDetails):
        method = details.method
        if method in self._wrapped:
            return self._wrapped[method]
        handler = _wrap(await continuation(details), method)
        if handler is not None:
            self._wrapped[method] = handler
        return handler


def _wrap(handler, method: str):
    if handler is None:
        return None
    kwargs = dict(request_deserializer=_tolerant(handler.request_deserializer),
                  response_serializer=handler.response_serializer)
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(
            _wrap_unary(handler.unary_unary, method), **kwargs)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(
            _wrap_unary(handler.stream_unary, method, streaming_requests=True), **kwargs)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            _wrap_stream(handler.unary_stream, method), **kwargs)
    return handler  # bidirectional streams: none of ours


def required_scope(method: str) -> str | None:
    if method.startswith(_OPEN):
        return None
    name = method.rsplit("/", 1)[-1]
    if name in _ADMIN:
        return "admin"
    if name in _WRITE:
        return "write"
    return "read"


class AccessInterceptor(grpc.aio.ServerInterceptor):
    """Who may call what, and who made each write.

    With tokens: ``authorization: Bearer TOKEN`` against the token table (reloaded in
    place: kerve.server.tokens). Without: reads are open, and writes are taken only when
    the server listens on loopback alone (and then only from loopback peers), unless the
    operator said the server is open (--allow-open-writes). A server that listens beyond
    loopback cannot tell a neighbour from a proxy or sidecar that forwards from 127.0.0.1,
    so without tokens it takes no writes. ``read_only`` (single-model mode) refuses every
    write, tokens or not. A write that passes runs with ``current_actor`` set to the
    token's name (or ``anonymous@HOST``), which the registry records. Reads are let through
    unwrapped: the inference path pays one dict lookup.
    """

    def __init__(self, tokens=None, *, allow_open_writes: bool = False,
                 loopback_host: bool = True, read_only: str | None = None) -> None:
        if isinstance(tokens, dict):
            tokens = _StaticTokens(tokens)
        self._tokens = tokens
        self._allow_open_writes = allow_open_writes
        self._loopback_host = loopback_host
        self._read_only = PermissionDeniedError(read_only) if read_only else None

    async def intercept_service(self, continuation, details: grpc.HandlerCallDetails):
        needed = required_scope(details.method)
        handler = await continuation(details)
        if needed is None or handler is None:  # open, or no such method: UNIMPLEMENTED
            return handler
        if needed != "read" and self._read_only is not None:
            return _refusal(handler, self._read_only)
        if self._tokens is None:
            if needed == "read":
                return handler
            if self._allow_open_writes:
                return _as_actor(handler, None, loopback_only=False)
            if not self._loopback_host:
                return _refusal(handler, PermissionDeniedError(WRITES_BEYOND_LOOPBACK_REFUSED))
            return _as_actor(handler, None, loopback_only=True)
        header = dict(details.invocation_metadata or ()).get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        principal = self._tokens.lookup(token) if token else None
        scope = principal.scope if principal else None
        if scope is None or SCOPES.index(scope) < SCOPES.index(needed):
            error = (UnauthenticatedError("missing or unknown bearer token") if scope is None
                     else PermissionDeniedError(f"token scope {scope!r} cannot call this "
                                                f"method (needs {needed!r})"))
            return _refusal(handler, error)
        if needed == "read":
            return handler
        return _as_actor(handler, principal.name, loopback_only=False)


TokenInterceptor = AccessInterceptor  # the name it had before writes were open by default


class _StaticTokens:
    """A fixed token -> scope table (tests, embedding)."""

    def __init__(self, tokens: dict) -> None:
        self._tokens = {t: p if isinstance(p, Principal) else Principal(p, t[:8] + "...")
                        for t, p in tokens.items()}

    def lookup(self, token: str) -> Principal | None:
        return self._tokens.get(token)


def peer_host(peer: str) -> str:
    """The host of a grpc peer string, as an address: gRPC writes IPv6 peers URL-escaped
    (``ipv6:%5B::1%5D:5``), so the brackets are decoded before they are stripped."""
    kind, _, rest = peer.partition(":")
    if kind not in ("ipv4", "ipv6"):
        return ""
    return urllib.parse.unquote(rest).rsplit(":", 1)[0].strip("[]")


def is_loopback(peer: str) -> bool:
    """Whether a grpc peer string is this machine: ``unix:``, ``ipv4:127.x``, ``ipv6:[::1]``
    escaped or not, and IPv4-mapped IPv6 (``ipv6:[::ffff:127.0.0.1]``)."""
    kind = peer.partition(":")[0]
    if kind in ("unix", "unix-abstract"):
        return True
    try:
        address = ipaddress.ip_address(peer_host(peer).split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


WRITES_BEYOND_LOOPBACK_REFUSED = (
    "this server has no tokens and listens beyond loopback, where a proxy or sidecar makes "
    "every call look local, so it takes no writes: configure tokens (--tokens), listen on "
    "loopback only (--host localhost), or start it with --allow-open-writes")

OPEN_WRITES_REFUSED = (
    "this server has no tokens and takes writes only from this machine: configure tokens "
    "(--tokens) or start it with --allow-open-writes")


def _as_actor(handler, name: str | None, *, loopback_only: bool):
    """The handler, run with ``current_actor`` set; ``name`` None: anonymous@HOST, and
    refused from a non-loopback peer when ``loopback_only``."""

    async def enter(context):
        peer = context.peer() or ""
        if name is not None:
            return current_actor.set(name)
        if loopback_only and not is_loopback(peer):
            came_from = peer or "an unknown peer"
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                f"{OPEN_WRITES_REFUSED} (this call came from {came_from})")
        host = peer_host(peer) or peer
        return current_actor.set(f"anonymous@{host}")

    def wrap(behavior):
        async def run(request_or_iterator, context):
            token = await enter(context)
            try:
                return await behavior(request_or_iterator, context)
            finally:
                current_actor.reset(token)
        return run

    kwargs = dict(request_deserializer=handler.request_deserializer,
                  response_serializer=handler.response_serializer)
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(wrap(handler.unary_unary), **kwargs)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(wrap(handler.stream_unary), **kwargs)
    return handler  # writes are unary or client-streaming


def _refusal(handler, error: KerveError):
    async def refuse(request, context):
        await context.abort(error.code, error.message)

    async def refuse_stream(request, context):
        await context.abort(error.code, error.message)
        yield  # pragma: no cover - makes this an async generator

    kwargs = dict(request_deserializer=handler.request_deserializer,
                  response_serializer=handler.response_serializer)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(refuse_stream, **kwargs)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(refuse, **kwargs)
    return grpc.unary_unary_rpc_method_handler(refuse, **kwargs)
