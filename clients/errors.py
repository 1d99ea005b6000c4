"""What the Python client raises when a call fails: kerve's own error, not grpc's internals."""

from __future__ import annotations

import functools

import grpc


class ServerError(grpc.RpcError):
    """A call the server refused or could not answer, with its gRPC ``status`` and the
    server's ``message``. It is still a ``grpc.RpcError`` (``code()``, ``details()``), and
    the error gRPC raised is kept as ``rpc_error``."""

    def __init__(self, status: grpc.StatusCode, message: str,
                 rpc_error: grpc.RpcError | None = None) -> None:
        super().__init__(f"{status.name}: {message}")
        self.status = status
        self.message = message
        self.rpc_error = rpc_error

    @classmethod
    def from_rpc(cls, exc: grpc.RpcError) -> "ServerError":
        status = exc.code() if callable(getattr(exc, "code", None)) else grpc.StatusCode.UNKNOWN
        message = exc.details() if callable(getattr(exc, "details", None)) else str(exc)
        return cls(status or grpc.StatusCode.UNKNOWN, message or "", exc)

    def code(self) -> grpc.StatusCode:
        return self.status

    def details(self) -> str:
        return self.message

    def trailing_metadata(self):
        return self.rpc_error.trailing_metadata() if self.rpc_error is not None else ()


def raises_server_errors(method):
    """Wrap a client method: a grpc.RpcError leaves it as a ServerError, without gRPC's
    internal frames and debug string in the traceback."""

    @functools.wraps(method)
    def call(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except ServerError:
            raise
        except grpc.RpcError as exc:
            raise ServerError.from_rpc(exc) from None

    return call
