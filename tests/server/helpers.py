"""Helpers for serving tests: upload and wait until a version is READY."""

from __future__ import annotations

import time

import grpc


def wait_ready(client, name: str, version: int | None = None, timeout: float = 120) -> None:
    """Poll GetModel until the version (default: the model's default) is READY."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        model = client.get_model(name)
        want = version or model["default_version"]
        status = {v["version"]: v for v in model["versions"]}.get(want, {})
        if status.get("status") == "READY":
            return
        if status.get("status") == "FAILED":
            raise AssertionError(f"{name}:{want} failed: {status.get('status_message')}")
        time.sleep(0.05)
    raise AssertionError(f"{name}:{version} never became READY")


def retry_unavailable(call, timeout: float = 60):
    """Call until it stops answering UNAVAILABLE (a version loading on demand)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
