"""Who makes each write: the actor of the current call.

The access interceptor (kerve.server.interceptors) sets ``current_actor`` for the call it
lets through (a token's name, or ``anonymous@HOST`` on a server without tokens); the
registry and the manager read it when they record a write. A context variable keeps the
registry transport-free: it never sees gRPC metadata.
"""

from __future__ import annotations

from contextvars import ContextVar

current_actor: ContextVar[str] = ContextVar("kerve_actor", default="")

WRITE_ACTIONS = ("upload", "set_alias", "delete_alias", "delete_version", "load", "unload")


def actor() -> str:
    return current_actor.get()
