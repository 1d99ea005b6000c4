"""Prediction latency of a small model while a large upload streams in.

Starts one ``kerve serve`` (loopback, free port, temp data dir), uploads the bench MLP, then
sends batch-1 KServe v2 ModelInfer requests for it from ``--concurrency`` threads (closed
loop, one channel each) in two phases:

1. idle: ``--duration`` seconds with nothing else happening;
2. upload: while a ``--upload-mib`` model (architecture JSON + ``.weights.h5``, built before
   phase 1) streams in through a second client in its own process. Only requests sent while
   the bytes stream count (from the client's first ``progress`` call to the last byte);
   requests sent after it, until the upload returns (validation), are reported apart.

Prints p50/p99/max latency and failed requests per phase and the ratios upload/idle; writes
JSON to bench/results/upload_load.json.

    .venv/bin/python -m bench.upload_load                       # 512 MiB, 10 s idle, c4
    .venv/bin/python -m bench.upload_load --kerve-python /tmp/kerve-before/.venv/bin/python

``--kerve-python`` runs the server and the uploading client (``kerve.clients``) with another
interpreter, e.g. an older checkout's venv, while this script runs from kerve's venv.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REQUEST_TIMEOUT_S = 10.0
UPLOAD_TIMEOUT_S = 900.0


# --- the uploading client (runs in its own process) ---------------------------------------

def upload_worker(target: str, architecture: str, weights: str) -> int:
    """Upload as model ``big``; prints JSON events with time.monotonic() (system-wide on
    Linux, so comparable with the parent's clock): start (first progress call, just before
    the first byte), end (the last chunk handed to gRPC), done / error."""
    from kerve.clients.client import Client

    def emit(**event) -> None:
        print(json.dumps({"t": time.monotonic(), **event}), flush=True)

    def factory(total: int, parts: int):
        emit(event="start", total=total, parts=parts)
        sent = 0

        def advance(n: int) -> None:
            nonlocal sent
            sent += n
            if sent >= total:
                emit(event="end", bytes=sent)
        return advance

    try:
        with Client(target, timeout=UPLOAD_TIMEOUT_S) as client:
            v = client.upload("big", architecture=architecture, weights=weights,
                              progress=factory)
        emit(event="done", version=v["version"], status=v.get("status", ""),
             parameter_count=v["parameter_count"])
        return 0
    except Exception as exc:  # reported to the parent, which prints it
        emit(event="error", error=f"{type(exc).__name__}: {exc}"[:2000])
        return 1


# --- the load ----------------------------------------------------------------------------

class Load:
    """``concurrency`` threads, each with its own channel, sending the same batch-1 request in
    a closed loop until stopped; every request is recorded as (send time, seconds, outcome)."""

    def __init__(self, target: str, model: str, input_name: str, x: np.ndarray,
                 concurrency: int) -> None:
        from kerve.protos.inference import grpc_service_pb2 as pb

        req = pb.ModelInferRequest(model_name=model)
        req.inputs.add(name=input_name, datatype="FP32", shape=list(x.shape))
        req.raw_input_contents.append(np.ascontiguousarray(x, np.float32).tobytes())
        self.request = req.SerializeToString()
        self.target, self.concurrency = target, concurrency
        self.records: list[tuple[float, float, str]] = []
        self.expected: bytes | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _answer(self, data: bytes) -> bytes:
        from kerve.protos.inference import grpc_service_pb2 as pb

        resp = pb.ModelInferResponse.FromString(data)
        if resp.raw_output_contents:
            return resp.raw_output_contents[0]
        return np.asarray(resp.outputs[0].contents.fp32_contents, np.float32).tobytes()

    def _matches(self, answer: bytes) -> bool:
        """Equal to the probe's answer within 1e-5 (merged batches may differ in the last
        bits); identical bytes short-cut."""
        if answer == self.expected:
            return True
        a, b = np.frombuffer(answer, np.float32), np.frombuffer(self.expected, np.float32)
        return a.shape == b.shape and bool(np.allclose(a, b, rtol=0, atol=1e-5))

    def probe(self) -> None:
        """One request; its answer is what every later answer must equal (same input)."""
        import grpc

        with grpc.insecure_channel(self.target) as ch:
            call = ch.unary_unary("/inference.GRPCInferenceService/ModelInfer")
            self.expected = self._answer(call(self.request, timeout=REQUEST_TIMEOUT_S))

    def _worker(self, deadline: float) -> None:
        import grpc

        with grpc.insecure_channel(self.target) as ch:
            call = ch.unary_unary("/inference.GRPCInferenceService/ModelInfer")
            while not self._stop.is_set() and time.monotonic() < deadline:
                t0 = time.monotonic()
                try:
                    data = call(self.request, timeout=REQUEST_TIMEOUT_S)
                    outcome = "ok" if self._matches(self._answer(data)) else "mismatch"
                except grpc.RpcError as exc:
                    outcome = exc.code().name
                t1 = time.monotonic()
                with self._lock:
                    self.records.append((t0, t1 - t0, outcome))

    def start(self, max_seconds: float) -> None:
        self._stop.clear()
        deadline = time.monotonic() + max_seconds  # bounded even if nobody calls stop()
        self._threads = [threading.Thread(target=self._worker, args=(deadline,), daemon=True)
                         for _ in range(self.concurrency)]
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(REQUEST_TIMEOUT_S + 5)

    def window(self, t0: float, t1: float) -> list[tuple[float, float, str]]:
        with self._lock:
            return [r for r in self.records if t0 <= r[0] < t1]


def summarize(records: list[tuple[float, float, str]], seconds: float) -> dict:
    ok = np.array([r[1] for r in records if r[2] == "ok"]) * 1e3
    failures: dict[str, int] = {}
    for r in records:
        if r[2] != "ok":
            failures[r[2]] = failures.get(r[2], 0) + 1
    pct = (lambda q: round(float(np.percentile(ok, q)), 3)) if len(ok) else (lambda q: None)
    return {"seconds": round(seconds, 3), "requests": len(records), "ok": int(len(ok)),
            "failed": sum(failures.values()), "failures": failures,
            "req_per_s": round(len(ok) / seconds, 1) if seconds > 0 else None,
            "p50_ms": pct(50), "p99_ms": pct(99),
            "max_ms": round(float(ok.max()), 3) if len(ok) else None}


def fmt(name: str, s: dict) -> str:
    def ms(v):
        return f"{v:9.2f}" if v is not None else "        -"
    return (f"{name:<22} {s['seconds']:7.1f} {s['requests']:8d} {s['req_per_s'] or 0:8.0f} "
            f"{ms(s['p50_ms'])} {ms(s['p99_ms'])} {ms(s['max_ms'])} {s['failed']:7d}"
            + (f"  {s['failures']}" if s["failures"] else ""))


# --- the big model -----------------------------------------------------------------------

def build_big(folder: Path, mib: int) -> dict:
    """Dense(8192 -> mib*32): mib MiB of float32 kernel (+ a small bias)."""
    import keras

    units = max(1, mib * 32)
    model = keras.Sequential([keras.Input((8192,), name="x"),
                              keras.layers.Dense(units, name="big_dense")], name="big")
    arch, weights = folder / "big.json", folder / "big.weights.h5"
    arch.write_text(model.to_json())
    model.save_weights(weights)
    info = {"architecture": str(arch), "weights": str(weights), "units": units,
            "parameters": int(model.count_params()), "weights_bytes": weights.stat().st_size}
    del model
    keras.backend.clear_session()
    return info


# --- main --------------------------------------------------------------------------------

def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.upload_load", description=__doc__.split(
        "\n\n")[0])
    p.add_argument("--upload-mib", type=int, default=512, help="size of the uploaded weights")
    p.add_argument("--duration", type=float, default=10.0, help="idle phase, seconds")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of load before phase 1")
    p.add_argument("--kerve-python", default=None,
                   help="python that runs `-m kerve.clients.cli serve` and the upload client "
                        "(default: this one)")
    p.add_argument("--out", default=str(HERE / "results" / "upload_load.json"))
    p.add_argument("--keep", action="store_true", help="keep the temp dir (models, data dir)")
    p.add_argument("--upload-worker", nargs=3, metavar=("TARGET", "ARCH", "WEIGHTS"),
                   help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.upload_worker:
        return upload_worker(*a.upload_worker)

    from bench import models as bench_models
    from bench import peers
    from bench.peers import log

    kerve_python = a.kerve_python or sys.executable
    work = Path(tempfile.mkdtemp(prefix="kerve-upload-load-"))
    logdir = HERE / "results" / "logs"
    log(f"work dir {work}; kerve python {kerve_python}")
    minfo = bench_models.save_all(work / "models", ["mlp"])["mlp"]
    t = time.monotonic()
    big = build_big(work, a.upload_mib)
    log(f"big model: {big['parameters']:,} parameters, weights {big['weights_bytes'] / 2**20:.0f}"
        f" MiB ({time.monotonic() - t:.0f}s to build)")
    report: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "argv": sys.argv,
                    "args": vars(a), "kerve_python": kerve_python, "big_model": big,
                    "kerve_code": kerve_code(kerve_python)}
    srv = peers.start_kerve("upload-load", "mlp", minfo["path"], work, [], logdir,
                            python=a.kerve_python)
    uploader = None
    try:
        log(f"kerve at {srv.target} (pid {srv.pid}), log {srv.logfile}")
        x = np.random.default_rng(0).random((1, *minfo["feature_shape"]), np.float32)
        load = Load(srv.target, "mlp", srv.input_name, x, a.concurrency)
        load.probe()
        load.start(a.warmup)
        time.sleep(a.warmup)
        load.stop()
        load.records.clear()

        log(f"phase 1: idle, {a.duration:.0f}s at concurrency {a.concurrency}")
        cpu0 = peers.process_tree_cpu(srv.pid)
        t0 = time.monotonic()
        load.start(a.duration + 5)
        time.sleep(a.duration)
        t1 = time.monotonic()
        load.stop()
        idle_cpu = (peers.process_tree_cpu(srv.pid) - cpu0) / (t1 - t0)
        idle = summarize(load.window(t0, t1), t1 - t0)
        idle["server_cpu_cores"] = round(idle_cpu, 2)
        load.records.clear()

        log(f"phase 2: uploading {big['weights_bytes'] / 2**20:.0f} MiB while the load runs")
        uploader_log = logdir / "upload-load-uploader.log"
        with open(uploader_log, "w") as err:
            uploader = subprocess.Popen(
                [kerve_python, "-m", "bench.upload_load", "--upload-worker", srv.target,
                 big["architecture"], big["weights"]], stdout=subprocess.PIPE, stderr=err,
                text=True, cwd=HERE.parent)
        events: dict[str, dict] = {}
        load_started = False
        cpu_marks = {}
        for line in uploader.stdout:  # bounded: the worker's client has a deadline
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            events[ev["event"]] = ev
            cpu_marks[ev["event"]] = peers.process_tree_cpu(srv.pid)
            if ev["event"] == "start" and not load_started:
                load.start(UPLOAD_TIMEOUT_S)
                load_started = True
            if ev["event"] in ("done", "error"):
                break
        if load_started:
            load.stop()
        uploader.wait(30)
        stderr = uploader_log.read_text(errors="replace")
        if "error" in events or "start" not in events or "end" not in events:
            raise RuntimeError(f"upload failed: {events.get('error', {}).get('error')} "
                               f"{stderr.strip()[-1500:]}")
        ts, te = events["start"]["t"], events["end"]["t"]
        td = events.get("done", events["end"])["t"]
        during = summarize(load.window(ts, te), te - ts)
        during["server_cpu_cores"] = round((cpu_marks["end"] - cpu_marks["start"]) / (te - ts), 2)
        during["stream_mib_per_s"] = round(events["start"]["total"] / 2**20 / (te - ts), 1)
        after = summarize(load.window(te, td), td - te)
        if "done" in events:
            after["server_cpu_cores"] = round((cpu_marks["done"] - cpu_marks["end"]) / (td - te),
                                              2)
        ratio = {k: (round(during[k] / idle[k], 2) if during[k] and idle[k] else None)
                 for k in ("p50_ms", "p99_ms", "max_ms", "req_per_s")}
        report.update({"idle": idle, "during_upload": during, "after_stream_until_done": after,
                       "ratio_during_over_idle": ratio, "upload": events})
    finally:
        if uploader and uploader.poll() is None:
            uploader.kill()
        srv.stop()
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)  # ~2x --upload-mib: the file and the blob

    lines = [
        f"== mlp latency at concurrency {a.concurrency}, batch 1, KServe v2; "
        f"upload {big['weights_bytes'] / 2**20:.0f} MiB ({during['stream_mib_per_s']} MiB/s)",
        f"{'phase':<22} {'seconds':>7} {'requests':>8} {'req/s':>8} {'p50 ms':>9} "
        f"{'p99 ms':>9} {'max ms':>9} {'failed':>7}",
        fmt("idle", idle), fmt("during upload stream", during),
        fmt("after stream (valid.)", after),
        "ratio during/idle: " + ", ".join(f"{k} x{v}" for k, v in ratio.items()),
        f"server CPU (cores): idle {idle['server_cpu_cores']}, during "
        f"{during['server_cpu_cores']}, after {after.get('server_cpu_cores')}",
    ]
    print("\n".join(lines), flush=True)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    log(f"wrote {out}")
    return 0


def kerve_code(python: str) -> dict:
    """Where the server's kerve comes from, and its git commit."""
    try:
        where = subprocess.run([python, "-c", "import kerve.server as s; print(s.__file__)"],
                               capture_output=True, text=True, timeout=60, cwd="/").stdout.strip()
        root = Path(where).resolve().parents[1]
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--",
                                "server", "registry", "clients", "protos"],
                               capture_output=True, text=True).stdout.split("\n")
        return {"path": str(root), "commit": commit, "dirty": [d for d in dirty if d.strip()]}
    except Exception as exc:  # informational only
        return {"error": str(exc)}


if __name__ == "__main__":
    sys.exit(main())
