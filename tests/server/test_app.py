"""The composition root: a server built in-process stops everything it started."""

from __future__ import annotations

# Run in a process of its own: the server's v2 protos and tritonclient's (imported by other
# tests here) cannot share one descriptor pool.
STOP_SCRIPT = """
import asyncio, json, socket, sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kerve.server.app import build_server
from kerve.server.settings import Settings


def connectable(port):
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


async def main():
    settings = Settings(data_dir=sys.argv[1], host="127.0.0.1", port=0, metrics_port=0,
                        validate_in_process=True)
    server = await build_server(settings)
    before = connectable(server.metrics_port)
    checked = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ["", *server.services]:
            await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            checked.append(service)
    pools = [c.func.__self__ for c in server.closers if getattr(c, "func", None) is not None]
    await server.stop(grace=1)
    print(json.dumps({"metrics_before": before, "metrics_after": connectable(server.metrics_port),
                      "services": server.services, "health_checked": checked,
                      "pools_shut": [p._shutdown for p in pools]}))


asyncio.run(main())
"""


def test_stop_shuts_down_every_part(tmp_path):
    import json
    import subprocess
    import sys

    from tests.kerve_process import server_env

    done = subprocess.run([sys.executable, "-c", STOP_SCRIPT, str(tmp_path)], env=server_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["metrics_before"] and not result["metrics_after"]
    assert result["pools_shut"] == [True, True]  # the prediction pool, the upload threads
    assert {"kerve.registry.v1.RegistryService", "inference.GRPCInferenceService",
            "tensorflow.serving.PredictionService", "tensorflow.serving.ModelService",
            "grpc.health.v1.Health"} <= set(result["services"])
    assert result["health_checked"] == ["", *result["services"]]


def test_a_late_validation_failure_does_not_restart_the_new_pool():
    from kerve.registry.plugins import Plugins
    from kerve.registry.validation_worker import ValidationWorker

    worker = ValidationWorker(Plugins(), allow_unsafe_lambda=False, isolated=False,
                              timeout_s=10, memory_limit_bytes=None)
    worker.start()
    first = worker._pool
    worker._restart(first, "crashed")  # the first failure replaces the pool
    second = worker._pool
    assert second is not first
    worker._restart(first, "crashed")  # a late failure from the same dead pool
    assert worker._pool is second and not second._shutdown
    worker.close()
