"""Exceptions that carry their gRPC status. One interceptor (kerve.server.interceptors) maps
them onto the wire; everything else becomes INTERNAL with a generic message.

Each takes one message argument so that it pickles across the validation process boundary.
"""

from __future__ import annotations

import grpc


class KerveError(Exception):
    """Base of every error a client may see, with its gRPC status code."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.__class__.__name__


class InvalidArgumentError(KerveError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFoundError(KerveError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExistsError(KerveError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPreconditionError(KerveError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class UnavailableError(KerveError):
    code = grpc.StatusCode.UNAVAILABLE


class ResourceExhaustedError(KerveError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class DataLossError(KerveError):
    code = grpc.StatusCode.DATA_LOSS


class DeadlineExceededError(KerveError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class UnimplementedError(KerveError):
    code = grpc.StatusCode.UNIMPLEMENTED


class UnauthenticatedError(KerveError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDeniedError(KerveError):
    code = grpc.StatusCode.PERMISSION_DENIED
