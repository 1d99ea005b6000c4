"""Start and stop as a container runtime sees them: SIGTERM at any moment of start-up (even
as PID 1), the drain a setting, and no validation worker until the first upload."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from tests.kerve_process import KerveProcess, server_env


def _unshare_pid_works() -> bool:
    import shutil

    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "--pid", "--fork", "true"],
                          capture_output=True).returncode == 0


@pytest.mark.parametrize("after", [0.5, 4.0])
def test_sigterm_during_start_up_stops_it_even_as_pid_1(tmp_path, after):
    """In a container the server is PID 1, where a signal without a handler is dropped:
    a SIGTERM while it imports TensorFlow (0.5 s) or builds the server (4 s) must still
    stop it, not leave the pod to be killed at the end of its grace period."""
    import os
    import signal
    import time

    if not _unshare_pid_works():
        pytest.skip("no PID namespace here (unshare --pid needs root)")
    proc = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--kill-child", sys.executable, "-m",
         "kerve.clients.cli", "serve", "--port", "0", "--metrics-port", "-1", "--data-dir",
         str(tmp_path), "--host", "127.0.0.1"],
        env=server_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True)
    try:
        children = f"/proc/{proc.pid}/task/{proc.pid}/children"
        deadline = time.monotonic() + 10
        while not Path(children).read_text().split():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        server = int(Path(children).read_text().split()[0])  # PID 1 in its namespace
        time.sleep(after)
        os.kill(server, signal.SIGTERM)
        started = time.monotonic()
        out, _ = proc.communicate(timeout=60)
        assert time.monotonic() - started < 30, out.decode()[-2000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            pytest.fail("kerve serve ignored SIGTERM during start-up")


def test_the_drain_is_a_setting(tmp_path):
    """SIGTERM gives the calls in flight --drain-seconds, then cancels them: an upload that
    stalls holds a server with a 1 s drain for about a second, not for the default 10."""
    import threading
    import time

    from kerve.protos.kerve.registry.v1 import registry_pb2 as pb
    from kerve.protos.kerve.registry.v1 import registry_pb2_grpc

    proc = KerveProcess(tmp_path / "d", "--role", "registry", "--drain-seconds", "1",
                        plugins=())
    assert proc.stop() == 0 and "draining (up to 1 s" in proc.log()  # nothing in flight
    proc = KerveProcess(tmp_path / "d", "--role", "registry", "--drain-seconds", "1",
                        plugins=())
    sent = threading.Event()

    def stalled():
        yield pb.UploadModelRequest(header=pb.UploadHeader(
            name="stalled", parts=[pb.PartInfo(kind=pb.KERAS_ARCHIVE, size=10 ** 6,
                                               sha256="0" * 64)]))
        sent.set()
        time.sleep(30)

    outcome = {}

    def upload():
        with grpc.insecure_channel(proc.target) as channel:
            try:
                registry_pb2_grpc.RegistryServiceStub(channel).UploadModel(stalled(), timeout=60)
            except grpc.RpcError as exc:
                outcome["code"] = exc.code()

    caller = threading.Thread(target=upload, daemon=True)
    caller.start()
    assert sent.wait(30)
    time.sleep(0.5)  # the header is in
    started = time.monotonic()
    assert proc.stop() == 0
    assert time.monotonic() - started < 8, proc.log()
    caller.join(10)
    assert outcome.get("code") in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _workers(pid: int) -> list[int]:
    """Validation worker processes (multiprocessing's small resource tracker aside)."""
    return [c for c in _children(pid)
            if "spawn_main" in Path(f"/proc/{c}/cmdline").read_text(errors="replace")]


def test_the_validation_worker_starts_with_the_first_upload(tmp_path):
    """About 600 MB that a server never sent an upload (a KServe predictor) never needs."""
    import keras

    from kerve.clients.client import Client

    proc = KerveProcess(tmp_path / "d", plugins=())
    try:
        assert _children(proc.proc.pid) == []
        inputs = keras.Input((2,), name="x")
        keras.Model(inputs, keras.layers.Dense(1, name="y")(inputs)).save(tmp_path / "m.keras")
        with Client(proc.target, timeout=120) as client:
            client.upload("first", keras_path=tmp_path / "m.keras")
        assert _workers(proc.proc.pid) != []
    finally:
        proc.stop()


def test_single_model_mode_stops_the_validation_worker_after_its_model(tmp_path):
    import keras

    models = tmp_path / "models"
    models.mkdir()
    inputs = keras.Input((2,), name="x")
    keras.Model(inputs, keras.layers.Dense(1, name="y")(inputs)).save(models / "m.keras")
    proc = KerveProcess(tmp_path / "d", "--model-dir", str(models), "--model-name", "one",
                        plugins=())
    try:
        import time

        deadline = time.monotonic() + 10  # the pool's processes are reaped asynchronously
        while _workers(proc.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _workers(proc.proc.pid) == []
    finally:
        proc.stop()
