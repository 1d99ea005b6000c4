"""A closed-loop gRPC load generator for model servers, loopback only.

Each of ``concurrency`` workers holds its own channel (its own TCP connection) and sends one
request, waits for the answer, sends the next, until ``duration`` seconds have passed or
``max_requests`` have been sent: it always stops by itself. Two protocols:

- ``kserve``: inference.GRPCInferenceService/ModelInfer (KServe v2 / Open Inference
  Protocol) with ``raw_input_contents``; answers read from ``raw_output_contents`` or, for
  servers that answer with typed contents, ``outputs[0].contents.fp32_contents``;
- ``tfserving``: tensorflow.serving.PredictionService/Predict with ``tensor_content``.

Requests are serialized once up front (a pool of distinct inputs per worker, rotated), so
the client spends its CPU on gRPC only. Every answer is checked against a local Keras
prediction (atol 1e-5 by default); mismatches and errors are counted and reported.

Two client engines: ``aio`` (default; grpc.aio, every worker a coroutine on one event loop)
and ``threads`` (sync grpc, a thread per worker). Both report the client's own CPU time per
request, so one can see how much of the 2-core machine the client takes.

Use as a library (``run_load``) or from the shell:

    python -m bench.loadgen --target 127.0.0.1:8500 --protocol kserve --model mlp \
        --keras-model /tmp/mlp.keras --batch 1 --concurrency 8 --duration 5
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import resource
import sys
import threading
import time
from dataclasses import asdict, dataclass, field

import numpy as np

KSERVE_INFER = "/inference.GRPCInferenceService/ModelInfer"
TFS_PREDICT = "/tensorflow.serving.PredictionService/Predict"
MAX_DURATION_S = 600.0
MAX_REQUESTS = 5_000_000
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 256 << 20),
                   ("grpc.max_send_message_length", 256 << 20),
                   ("grpc.use_local_subchannel_pool", 1)]  # one connection per channel


def check_loopback(target: str) -> None:
    """Refuse anything but a loopback address: load is only ever sent to this machine."""
    host = target.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise SystemExit(f"loadgen: refusing target {target!r}: only loopback addresses "
                     "(127.0.0.0/8, ::1, localhost) may be loaded")


# --- requests and answers -------------------------------------------------------------

def build_request(protocol: str, model: str, input_name: str, x: np.ndarray,
                  output_name: str | None = None) -> bytes:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if protocol == "kserve":
        from tritonclient.grpc import service_pb2 as pb

        req = pb.ModelInferRequest(model_name=model)
        req.inputs.add(name=input_name, datatype="FP32", shape=list(x.shape))
        if output_name:
            req.outputs.add(name=output_name)
        req.raw_input_contents.append(x.tobytes())
        return req.SerializeToString()
    if protocol == "tfserving":
        from tensorflow_serving.apis import predict_pb2

        req = predict_pb2.PredictRequest()
        req.model_spec.name = model
        proto = req.inputs[input_name]
        proto.dtype = 1  # DT_FLOAT
        for d in x.shape:
            proto.tensor_shape.dim.add().size = int(d)
        proto.tensor_content = x.tobytes()
        return req.SerializeToString()
    raise ValueError(f"unknown protocol {protocol!r}")


def answer_parser(protocol: str):
    """A function: serialized response bytes -> float32 numpy array (the first output)."""
    if protocol == "kserve":
        from tritonclient.grpc import service_pb2 as pb

        def parse(data: bytes) -> np.ndarray:
            resp = pb.ModelInferResponse.FromString(data)
            if resp.raw_output_contents:
                return np.frombuffer(resp.raw_output_contents[0], dtype=np.float32)
            out = resp.outputs[0]
            if out.datatype == "FP32":
                return np.asarray(out.contents.fp32_contents, dtype=np.float32)
            return np.asarray(out.contents.fp64_contents, dtype=np.float32)
        return parse
    from tensorflow_serving.apis import predict_pb2

    def parse_tfs(data: bytes) -> np.ndarray:
        resp = predict_pb2.PredictResponse.FromString(data)
        proto = next(iter(resp.outputs.values()))
        if proto.tensor_content:
            return np.frombuffer(proto.tensor_content, dtype=np.float32)
        return np.asarray(proto.float_val, dtype=np.float32)
    return parse_tfs


@dataclass
class Checker:
    """Compares answers to the expected arrays; fast path: identical bytes."""

    expected: list[np.ndarray]
    atol: float = 1e-5
    parse: object = None
    checked: int = 0
    mismatches: int = 0
    max_abs_err: float = 0.0
    first_mismatch: str = ""
    _cache: dict = field(default_factory=dict)

    def check(self, idx: int, data: bytes) -> None:
        self.checked += 1
        if self._cache.get(idx) == data:
            return
        try:
            got = self.parse(data)
            want = self.expected[idx].ravel()
            if got.shape != want.shape:
                raise ValueError(f"answer has {got.size} values, expected {want.size}")
            err = float(np.max(np.abs(got - want))) if got.size else 0.0
        except Exception as exc:  # noqa: BLE001 - an unreadable answer is a mismatch
            err, got = float("inf"), None
            self.first_mismatch = self.first_mismatch or repr(exc)
        self.max_abs_err = max(self.max_abs_err, err)
        if err <= self.atol:
            if len(self._cache) < 256:
                self._cache[idx] = data
        else:
            self.mismatches += 1
            self.first_mismatch = self.first_mismatch or f"max abs error {err:.3g} > {self.atol}"


@dataclass
class Result:
    protocol: str
    target: str
    engine: str
    concurrency: int
    batch: int
    duration_s: float
    requests: int
    errors: int
    rps: float
    sps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    checked: int
    mismatches: int
    max_abs_err: float
    client_cpu_s: float
    client_cpu_us_per_req: float
    first_error: str = ""
    first_mismatch: str = ""

    def line(self) -> str:
        return (f"{self.requests} req in {self.duration_s:.1f}s: {self.rps:.0f} req/s, "
                f"{self.sps:.0f} samples/s, p50 {self.p50_ms:.2f} ms, p90 {self.p90_ms:.2f} ms, "
                f"p99 {self.p99_ms:.2f} ms, errors {self.errors}, mismatches "
                f"{self.mismatches}/{self.checked} (max err {self.max_abs_err:.2g}), "
                f"client CPU {self.client_cpu_us_per_req:.0f} us/req")


# --- engines ---------------------------------------------------------------------------

class _State:
    def __init__(self, n_workers: int) -> None:
        self.lat: list[list[float]] = [[] for _ in range(n_workers)]
        self.errors = 0
        self.first_error = ""
        self.sent = 0

    def error(self, exc: BaseException) -> None:
        self.errors += 1
        if not self.first_error:
            code = getattr(exc, "code", None)
            details = getattr(exc, "details", None)
            try:
                self.first_error = f"{code()}: {details()}" if callable(code) else repr(exc)
            except Exception:  # noqa: BLE001
                self.first_error = repr(exc)


async def _aio_run(target, method, pools, concurrency, warmup_s, duration_s, max_requests,
                   timeout_s, checker, state):
    import grpc

    channels = [grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
                for _ in range(concurrency)]
    try:
        calls = [ch.unary_unary(method) for ch in channels]  # bytes in, bytes out
        start = time.perf_counter()
        measure_from = start + warmup_s
        stop_at = measure_from + duration_s

        async def worker(w: int) -> None:
            call = calls[w]
            pool = pools[w % len(pools)]
            lat = state.lat[w]
            i = 0
            while True:
                now = time.perf_counter()
                if now >= stop_at or state.sent >= max_requests:
                    return
                idx, req = pool[i % len(pool)]
                i += 1
                state.sent += 1
                try:
                    data = await call(req, timeout=timeout_s)
                except grpc.aio.AioRpcError as exc:
                    state.error(exc)
                    if exc.code() in (grpc.StatusCode.UNAVAILABLE,):
                        await asyncio.sleep(0.01)
                    continue
                t1 = time.perf_counter()
                if now >= measure_from:
                    lat.append(t1 - now)
                checker.check(idx, data)

        await asyncio.gather(*(worker(w) for w in range(concurrency)))
    finally:
        for ch in channels:
            await ch.close()


def _thread_run(target, method, pools, concurrency, warmup_s, duration_s, max_requests,
                timeout_s, checker, state):
    import grpc

    lock = threading.Lock()
    start = time.perf_counter()
    measure_from = start + warmup_s
    stop_at = measure_from + duration_s

    def worker(w: int) -> None:
        with grpc.insecure_channel(target, options=CHANNEL_OPTIONS) as ch:
            call = ch.unary_unary(method)
            pool = pools[w % len(pools)]
            lat = state.lat[w]
            i = 0
            while True:
                now = time.perf_counter()
                if now >= stop_at or state.sent >= max_requests:
                    return
                idx, req = pool[i % len(pool)]
                i += 1
                state.sent += 1
                try:
                    data = call(req, timeout=timeout_s)
                except grpc.RpcError as exc:
                    with lock:
                        state.error(exc)
                    continue
                t1 = time.perf_counter()
                if now >= measure_from:
                    lat.append(t1 - now)
                with lock:
                    checker.check(idx, data)

    threads = [threading.Thread(target=worker, args=(w,), daemon=True)
               for w in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=duration_s + warmup_s + timeout_s + 30)


def run_load(target: str, protocol: str, model: str, input_name: str,
             inputs: list[np.ndarray], expected: list[np.ndarray], *, concurrency: int = 1,
             duration_s: float = 5.0, warmup_s: float = 1.0, engine: str = "aio",
             max_requests: int = MAX_REQUESTS, timeout_s: float = 30.0, atol: float = 1e-5,
             output_name: str | None = None) -> Result:
    """Closed-loop load on ``target``; ``inputs[i]`` (batch, ...) answered by
    ``expected[i]``. Returns the measured window's figures (warm-up excluded)."""
    check_loopback(target)
    duration_s = min(float(duration_s), MAX_DURATION_S)
    max_requests = min(int(max_requests), MAX_REQUESTS)
    method = KSERVE_INFER if protocol == "kserve" else TFS_PREDICT
    reqs = [build_request(protocol, model, input_name, x, output_name) for x in inputs]
    # every worker rotates through all requests, starting at its own offset
    n = len(reqs)
    pools = [[((w + k) % n, reqs[(w + k) % n]) for k in range(n)] for w in range(min(n, 64))]
    checker = Checker(expected, atol, answer_parser(protocol))
    state = _State(concurrency)
    batch = int(inputs[0].shape[0])
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    if engine == "aio":
        asyncio.run(_aio_run(target, method, pools, concurrency, warmup_s, duration_s,
                             max_requests, timeout_s, checker, state))
    elif engine == "threads":
        _thread_run(target, method, pools, concurrency, warmup_s, duration_s, max_requests,
                    timeout_s, checker, state)
    else:
        raise ValueError(f"unknown engine {engine!r}")
    wall = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    lat = np.array([v for w in state.lat for v in w], dtype=np.float64) * 1e3
    count = int(lat.size)
    window = min(duration_s, max(wall - warmup_s, 1e-9))
    pct = np.percentile(lat, [50, 90, 99]) if count else [float("nan")] * 3
    return Result(
        protocol=protocol, target=target, engine=engine, concurrency=concurrency, batch=batch,
        duration_s=window, requests=count, errors=state.errors, rps=count / window,
        sps=count * batch / window, p50_ms=float(pct[0]), p90_ms=float(pct[1]),
        p99_ms=float(pct[2]), mean_ms=float(lat.mean()) if count else float("nan"),
        checked=checker.checked, mismatches=checker.mismatches,
        max_abs_err=checker.max_abs_err, client_cpu_s=cpu,
        client_cpu_us_per_req=cpu / max(state.sent, 1) * 1e6, first_error=state.first_error,
        first_mismatch=checker.first_mismatch)


def wait_ready(target: str, protocol: str, model: str, input_name: str, x: np.ndarray,
               timeout_s: float = 120.0, proc=None) -> None:
    """Until one request succeeds (the generic readiness probe for every server)."""
    import grpc

    check_loopback(target)
    method = KSERVE_INFER if protocol == "kserve" else TFS_PREDICT
    req = build_request(protocol, model, input_name, x)
    deadline = time.monotonic() + timeout_s
    last = None
    with grpc.insecure_channel(target) as ch:
        call = ch.unary_unary(method)
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"server exited with code {proc.returncode} before ready")
            try:
                call(req, timeout=10)
                return
            except grpc.RpcError as exc:
                last = f"{exc.code()}: {exc.details()}"
                time.sleep(0.25)
    raise TimeoutError(f"{target} not ready after {timeout_s:.0f}s (last: {last})")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", required=True, help="host:port, loopback only")
    p.add_argument("--protocol", choices=["kserve", "tfserving"], default="kserve")
    p.add_argument("--model", required=True, help="model name on the server")
    p.add_argument("--input-name", help="input tensor name (default: the Keras model's)")
    p.add_argument("--keras-model", required=True,
                   help=".keras file of the same model, for the expected answers and shapes")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--engine", choices=["aio", "threads"], default="aio")
    p.add_argument("--max-requests", type=int, default=1_000_000)
    p.add_argument("--atol", type=float, default=1e-5)
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    check_loopback(a.target)
    import keras

    model = keras.saving.load_model(a.keras_model, compile=False)
    shape = tuple(model.inputs[0].shape[1:])
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((a.batch, *shape)).astype(np.float32) for _ in range(8)]
    expected = [np.asarray(model.predict(x, verbose=0), dtype=np.float32) for x in inputs]
    name = a.input_name or model.inputs[0].name
    wait_ready(a.target, a.protocol, a.model, name, inputs[0], timeout_s=60)
    r = run_load(a.target, a.protocol, a.model, name, inputs, expected,
                 concurrency=a.concurrency, duration_s=a.duration, warmup_s=a.warmup,
                 engine=a.engine, max_requests=a.max_requests, atol=a.atol)
    print(json.dumps(asdict(r), indent=1) if a.json else r.line())
    if r.mismatches:
        print(f"MISMATCH: {r.mismatches} answers differ from local Keras: {r.first_mismatch}",
              file=sys.stderr)
    return 1 if (r.mismatches or r.errors) else 0


if __name__ == "__main__":
    sys.exit(main())
