"""The servers the bench runs: kerve, the two hand-written baselines and the peers (each in its
own venv under bench/.venvs/, installed here on first use). Every server binds 127.0.0.1
(kserve's gRPC port binds [::], it has no address option) and is stopped with SIGTERM to its
own process group, then SIGKILL after a grace period.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
SERVERS = HERE / "servers"
VENVS = Path(os.environ.get("KERVE_BENCH_VENVS", HERE / ".venvs"))
KERVE_BIN = Path(sys.executable).parent / "kerve"

# name -> (venv folder, pip requirements tried in order: TF 2.21 first, then the newest)
PEER_SPECS = {
    "mlserver": ("mlserver", [
        ["mlserver==1.7.1", "uvloop==0.21.0", "tensorflow==2.21.*"],
        ["mlserver==1.7.1", "uvloop==0.21.0", "tensorflow"]]),
    "kserve": ("kserve", [
        ["kserve==0.21.*", "tensorflow==2.21.*"],
        ["kserve==0.21.*", "tensorflow"]]),
    "triton": ("pytriton", [
        ["nvidia-pytriton==0.7.0", "numpy<2", "tensorflow==2.21.*"],
        ["nvidia-pytriton==0.7.0", "numpy<2", "tensorflow"]]),
}
PEER_LABELS = {"mlserver": "MLServer 1.7.1", "kserve": "KServe 0.21 (Python)",
               "triton": "Triton (PyTriton 0.7.0)"}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- peer venvs -------------------------------------------------------------------------

def _base_python() -> str:
    base = getattr(sys, "_base_executable", None) or sys.executable
    return base if Path(base).exists() else shutil.which("python3") or sys.executable


def ensure_venv(peer: str, install_timeout_s: float = 1800) -> dict:
    """Create and fill the peer's venv once; returns {"python": ..., "versions": {...}} or
    raises RuntimeError with the pip error."""
    folder, attempts = PEER_SPECS[peer]
    venv = VENVS / folder
    marker = venv / ".bench-ok.json"
    if marker.exists():
        return json.loads(marker.read_text())
    VENVS.mkdir(parents=True, exist_ok=True)
    py = venv / "bin" / "python"
    if not py.exists():
        log(f"{peer}: creating venv {venv}")
        subprocess.run([_base_python(), "-m", "venv", str(venv)], check=True)
    errors = []
    for reqs in attempts:
        log(f"{peer}: pip install {' '.join(reqs)} (first run only; minutes)")
        logf = VENVS / f"{folder}.install.log"
        with open(logf, "w") as out:
            try:
                rc = subprocess.run([str(py), "-m", "pip", "install", "-q", *reqs], stdout=out,
                                    stderr=subprocess.STDOUT, timeout=install_timeout_s).returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
        if rc == 0:
            break
        tail = [ln for ln in logf.read_text().splitlines() if "is ignored" not in ln][-3:]
        errors.append(f"pip install {' '.join(reqs)} -> {rc}: {' | '.join(tail)}")
    else:
        raise RuntimeError("; ".join(errors))
    out = subprocess.run([str(py), "-m", "pip", "list", "--format", "json"],
                         capture_output=True, text=True, check=True).stdout
    wanted = {"mlserver", "kserve", "nvidia-pytriton", "tensorflow", "keras", "numpy",
              "protobuf", "grpcio", "uvloop", "tritonclient"}
    versions = {p["name"].lower(): p["version"] for p in json.loads(out)
                if p["name"].lower() in wanted}
    info = {"python": str(py), "versions": versions, "fallback": bool(errors),
            "install_errors": errors}
    marker.write_text(json.dumps(info, indent=1))
    return info


# --- processes --------------------------------------------------------------------------

@dataclass
class Server:
    """A running server: target host:port, the model name and input name it serves."""

    key: str
    label: str
    target: str
    model: str
    input_name: str
    proc: subprocess.Popen
    protocols: tuple[str, ...] = ("kserve",)
    logfile: Path | None = None
    info: dict = field(default_factory=dict)
    headers: dict = field(default_factory=dict)  # gRPC metadata a client must send

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, grace_s: float = 20.0) -> None:
        stop_proc(self.proc, grace_s)


def spawn(cmd: list[str], logfile: Path, env: dict | None = None,
          cwd: Path | None = None) -> subprocess.Popen:
    logfile.parent.mkdir(parents=True, exist_ok=True)
    out = open(logfile, "ab")
    return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                            start_new_session=True)  # its own process group, stopped whole


def stop_proc(proc: subprocess.Popen, grace_s: float = 20.0) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)
    else:
        try:  # children that outlived the leader (tritonserver, worker processes)
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _wait_port_file(path: Path, proc: subprocess.Popen, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with code {proc.returncode} before listening")
        if path.exists():
            return json.loads(path.read_text())
        time.sleep(0.1)
    raise TimeoutError(f"no port file after {timeout_s:.0f}s")


def _tail(logfile: Path, n: int = 6) -> str:
    try:
        lines = [ln for ln in logfile.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-n:])


# --- kerve ------------------------------------------------------------------------------

def start_kerve(label: str, model_name: str, keras_path: str, workdir: Path,
                flags: list[str], logdir: Path, timeout_s: float = 600,
                python: str | None = None) -> Server:
    """Start ``kerve serve`` (this venv's ``kerve``, or ``python -m kerve.clients.cli`` for
    another interpreter, e.g. an older checkout's venv) and upload the model once."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from kerve.clients.client import Client

    data_dir = workdir / f"kerve-data-{model_name}"  # shared by every kerve of this model
    port_file = workdir / f"kerve-{label}-{model_name}.port.json"
    port_file.unlink(missing_ok=True)
    logfile = logdir / f"kerve-{label}-{model_name}.log"
    kerve = [python, "-m", "kerve.clients.cli"] if python else [str(KERVE_BIN)]
    cmd = [*kerve, "serve", "--host", "127.0.0.1", "--port", "0", "--metrics-port",
           "-1", "--port-file", str(port_file), "--data-dir", str(data_dir), *flags]
    proc = spawn(cmd, logfile, cwd=workdir)  # not the checkout: -m puts the cwd on sys.path
    try:
        port = _wait_port_file(port_file, proc, timeout_s)["port"]
        target = f"127.0.0.1:{port}"
        deadline = time.monotonic() + timeout_s
        with grpc.insecure_channel(target) as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            while True:
                try:
                    if stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status \
                            == health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.RpcError:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("never SERVING")
                time.sleep(0.2)
        with Client(target, timeout=300) as client:
            if not any(m["name"] == model_name for m in client.list_models()):
                client.upload(model_name, keras_path=keras_path, aliases=["production"])
            while True:
                version = client.get_model(model_name)["versions"][-1]
                if version["status"] == "READY":
                    break
                if version["status"] in ("FAILED", "REJECTED") or time.monotonic() > deadline:
                    raise RuntimeError(f"model {model_name} is {version['status']}: {version}")
                time.sleep(0.3)
        input_name = version["signature"]["inputs"][0]["name"]
    except Exception as exc:
        stop_proc(proc, 5)
        raise RuntimeError(f"kerve {label}: {exc}; log: {_tail(logfile)}") from exc
    return Server("kerve", label, target, model_name, input_name, proc,
                  ("kserve", "tfserving"), logfile, {"flags": flags})


# --- hand-written baselines ---------------------------------------------------------------

def start_handwritten(mode: str, model_name: str, keras_path: str, input_name: str,
                      workdir: Path, logdir: Path, timeout_s: float = 300) -> Server:
    port_file = workdir / f"{mode}-{model_name}.port.json"
    port_file.unlink(missing_ok=True)
    logfile = logdir / f"{mode}-{model_name}.log"
    proc = spawn([sys.executable, "-m", "bench.servers.handwritten", "--mode", mode, "--model",
                  keras_path, "--name", model_name, "--input-name", input_name,
                  "--port-file", str(port_file)], logfile,
                 cwd=HERE.parent)
    try:
        port = _wait_port_file(port_file, proc, timeout_s)["port"]
    except Exception as exc:
        stop_proc(proc, 5)
        raise RuntimeError(f"{mode}: {exc}; log: {_tail(logfile)}") from exc
    return Server(mode, mode, f"127.0.0.1:{port}", model_name, input_name, proc,
                  ("kserve",), logfile)


def start_cpp_echo(model_name: str, minfo: dict, workdir: Path, logdir: Path,
                   timeout_s: float = 60) -> Server:
    """The echo server in C++ (bench/cpp_echo.py builds it; RuntimeError says what is missing
    when it cannot be built)."""
    from bench import cpp_echo

    binary = cpp_echo.build()
    port_file = workdir / f"echo-cpp-{model_name}.port.json"
    port_file.unlink(missing_ok=True)
    logfile = logdir / f"echo-cpp-{model_name}.log"

    def dims(shape) -> str:
        return ",".join(str(int(d)) for d in shape)

    proc = spawn([str(binary), str(port_file), model_name, minfo["input_name"],
                  dims(minfo["feature_shape"]), minfo["output_name"],
                  dims(minfo["output_shape"])], logfile)
    try:
        port = _wait_port_file(port_file, proc, timeout_s)["port"]
    except Exception as exc:
        stop_proc(proc, 5)
        raise RuntimeError(f"echo-c++: {exc}; log: {_tail(logfile)}") from exc
    return Server("echo-c++", "echo-c++", f"127.0.0.1:{port}", model_name,
                  minfo["input_name"], proc, ("kserve",), logfile)


# --- peers ------------------------------------------------------------------------------

def start_peer(peer: str, model_name: str, keras_path: str, input_name: str, workdir: Path,
               logdir: Path, max_batch_size: int = 32) -> Server:
    """Start a peer (installing its venv on first use). Raises RuntimeError with the reason
    when it cannot be installed or started."""
    info = ensure_venv(peer)
    py = info["python"]
    logfile = logdir / f"{peer}-{model_name}.log"
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    grpc_port, http_port, metrics_port = free_port(), free_port(), free_port()
    headers: dict[str, str] = {}
    if peer == "mlserver":
        folder = workdir / f"mlserver-{model_name}"
        (folder / model_name).mkdir(parents=True, exist_ok=True)
        shutil.copy(SERVERS / "mlserver_runtime.py", folder / "mlserver_runtime.py")
        (folder / "settings.json").write_text(json.dumps({
            "host": "127.0.0.1", "http_port": http_port, "grpc_port": grpc_port,
            "metrics_port": metrics_port, "debug": False, "parallel_workers": 1,
            "grpc_max_message_length": 256 << 20}))
        (folder / model_name / "model-settings.json").write_text(json.dumps({
            "name": model_name, "implementation": "mlserver_runtime.KerasRuntime",
            "parameters": {"uri": keras_path},
            "max_batch_size": max_batch_size, "max_batch_time": 0.002}))
        cmd = [str(Path(py).parent / "mlserver"), "start", str(folder)]
        proc = spawn(cmd, logfile, env=env, cwd=folder)
    elif peer == "kserve":
        cmd = [py, str(SERVERS / "kserve_server.py"), "--model", keras_path, "--name",
               model_name, "--grpc_port", str(grpc_port), "--http_port", str(http_port)]
        proc = spawn(cmd, logfile, env=env)
    elif peer == "triton":
        libdir = subprocess.run([py, "-c", "import sysconfig;print(sysconfig.get_config_var"
                                 "('LIBDIR'))"], capture_output=True, text=True).stdout.strip()
        env["LD_LIBRARY_PATH"] = ":".join(
            p for p in (libdir, os.environ.get("LD_LIBRARY_PATH", "")) if p)
        cmd = [py, str(SERVERS / "pytriton_server.py"), "--model", keras_path, "--name",
               model_name, "--input-name", input_name, "--grpc-port", str(grpc_port),
               "--http-port", str(http_port), "--metrics-port", str(metrics_port),
               "--max-batch-size", str(max(max_batch_size, 128))]
        # PyTriton's restricted endpoints (statistics, model-repository, ...) stay restricted;
        # the token is known here so that perf_analyzer can send it
        token = secrets.token_urlsafe(16)
        headers["triton-grpc-protocol-triton-access-token"] = token
        proc = spawn(cmd + ["--access-token", token], logfile, env=env)
    else:
        raise KeyError(peer)
    return Server(peer, PEER_LABELS[peer], f"127.0.0.1:{grpc_port}", model_name, input_name,
                  proc, ("kserve",), logfile, {"versions": info["versions"],
                                               "fallback": info.get("fallback", False)},
                  headers)


def tail(server: Server) -> str:
    return _tail(server.logfile) if server.logfile else ""


def process_tree_cpu(pid: int) -> float:
    """CPU seconds (user+system) used so far by pid and all its descendants."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    stats: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                parts = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ppid = int(parts[1])
        children.setdefault(ppid, []).append(int(entry))
        stats[int(entry)] = (int(parts[11]) + int(parts[12])) / tick
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += stats.get(p, 0.0)
        todo.extend(children.get(p, []))
    return total


def libdir() -> str:
    return sysconfig.get_config_var("LIBDIR") or ""
