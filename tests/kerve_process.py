"""A real ``kerve serve`` in a subprocess, on 127.0.0.1 and a free port, for tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO = Path(__file__).resolve().parents[1]
SEEDZOO = Path(os.environ.get("KERVE_SEEDZOO", REPO.parent / "shared" / "seedzoo")).resolve()


def server_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SEEDZOO), env.get("PYTHONPATH")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["CUDA_VISIBLE_DEVICES"] = env.get("KERVE_TEST_CUDA_VISIBLE_DEVICES", "")
    return env


class KerveProcess:
    def __init__(self, data_dir: Path, *args: str, plugins=("seedzoo_layers",),
                 credentials: grpc.ChannelCredentials | None = None,
                 env: dict[str, str] | None = None, wait: bool = True) -> None:
        self.credentials = credentials
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        port_file = self.data_dir / "ports.json"
        port_file.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "kerve.clients.cli", "serve", "--host", "127.0.0.1",
               "--port", "0", "--metrics-port", "0", "--port-file", str(port_file),
               "--data-dir", str(self.data_dir), "--poll-interval", "1", *args]
        for plugin in plugins:
            cmd += ["--plugin", plugin]
        self.log_path = self.data_dir / "server.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=server_env() | (env or {}), start_new_session=True)
        self._port_file = port_file
        if wait:
            self.wait_started()

    def wait_started(self) -> None:
        """Wait for the port file, then for SERVING (servers started together wait in turn)."""
        port_file = self._port_file
        deadline = time.monotonic() + 120
        while not port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"kerve serve did not start:\n{self.log()}")
            time.sleep(0.1)
        ports = json.loads(port_file.read_text())
        self.port = ports["port"]
        self.metrics_port = ports["metrics_port"]
        self.target = f"127.0.0.1:{self.port}"
        self.wait_serving()

    def wait_serving(self, timeout: float = 120) -> None:
        channel = (grpc.secure_channel(self.target, self.credentials) if self.credentials
                   else grpc.insecure_channel(self.target))
        with channel:
            stub = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    status = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2).status
                    if status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.1)
        raise RuntimeError(f"kerve serve never became SERVING:\n{self.log()}")

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()[-5000:]

    def rss_peak_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise RuntimeError("no VmHWM")

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def kill(self) -> None:
        """kill -9 the server and everything it started (its validation worker too)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._log.close()

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
        return self.proc.returncode
