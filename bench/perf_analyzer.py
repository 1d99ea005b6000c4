"""perf_analyzer, Triton's C++ load generator (the binary in the tritonclient wheel), for the
bench and the tests: where to find it, how to make it run here, one measurement parsed from
its ``-f`` CSV.

The binary links against libb64 (Debian's libb64-0d, installed by .ci/tools) and the CUDA
runtime (libcudart.so.12, the ``nvidia-cuda-runtime-cu12`` wheel of the test extra; it runs
on the CPU all the same); ``find()`` puts the wheel's lib folder on LD_LIBRARY_PATH and says
why it cannot run where it cannot.

    .venv/bin/python -m bench.perf_analyzer --target 127.0.0.1:8500 --model mlp \
        --protocol kserve --concurrency 32 --batch 1 --duration 6
"""

from __future__ import annotations

import argparse
import csv
import io
import ipaddress
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

CLIENT = "perf_analyzer"


def find() -> tuple[Path | None, dict, str]:
    """(binary, environment, why not): binary is None, with the reason, when it cannot run."""
    binary = Path(sys.executable).with_name("perf_analyzer")
    if not binary.exists():
        return None, {}, f"no {binary} (the tritonclient wheel ships it)"
    try:
        import nvidia.cuda_runtime as cuda_runtime
    except ImportError:
        return None, {}, "no nvidia-cuda-runtime-cu12 (libcudart.so.12; the test extra)"
    lib = Path(list(cuda_runtime.__path__)[0]) / "lib"
    env = dict(os.environ, LD_LIBRARY_PATH=os.pathsep.join(
        filter(None, [str(lib), os.environ.get("LD_LIBRARY_PATH")])))
    ldd = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, env=env).stdout
    missing = [ln.split()[0] for ln in ldd.splitlines() if "not found" in ln]
    if missing:
        return None, {}, (f"{binary.name} misses {', '.join(missing)} (libb64.so.0d: apt "
                          "libb64-0d, .ci/tools installs it)")
    return binary, env, ""


@dataclass
class Result:
    """One perf_analyzer measurement (the mean of its measurement windows)."""

    target: str
    protocol: str
    concurrency: int
    batch: int
    rps: float = float("nan")           # requests per second
    sps: float = float("nan")           # samples (rows) per second = rps * batch
    p50_ms: float = float("nan")
    p90_ms: float = float("nan")
    p99_ms: float = float("nan")
    duration_s: float = 0.0             # measured seconds (windows x window)
    wall_s: float = 0.0                 # the whole perf_analyzer process
    client_cpu_s: float = 0.0           # perf_analyzer's own CPU (user + system)
    client_cpu_us_per_req: float = float("nan")
    requests: int = 0                   # estimated: rps x measured seconds
    errors: int = 0
    first_error: str = ""
    mismatches: int = 0                 # perf_analyzer checks no answers (see run.py)
    client: str = CLIENT
    extra: dict = field(default_factory=dict)

    def line(self) -> str:
        return (f"{self.protocol} c{self.concurrency} b{self.batch}: {self.rps:.0f} req/s "
                f"{self.sps:.0f} samples/s p50 {self.p50_ms:.2f} ms p99 {self.p99_ms:.2f} ms "
                f"(perf_analyzer {self.client_cpu_us_per_req:.0f} us CPU/req)")


def check_loopback(target: str) -> None:
    host = target.rsplit(":", 1)[0].strip("[]")
    if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
        raise SystemExit(f"perf_analyzer: refusing target {target!r}: loopback only")


def parse_csv(text: str) -> dict[str, float]:
    """The first data row of perf_analyzer's ``-f`` CSV as {column: float}."""
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows:
        raise ValueError(f"no rows in perf_analyzer's CSV: {text[:300]!r}")
    return {k.strip(): float(v) for k, v in rows[0].items() if k and v not in (None, "")}


def command(binary: Path, target: str, model: str, protocol: str, concurrency: int,
            batch: int, window_ms: int, windows: int, csv_path: Path,
            mode: str = "async", extra: tuple[str, ...] = ()) -> list[str]:
    cmd = [str(binary), "-m", model, "-u", target, "-i", "grpc", "-b", str(batch),
           "--concurrency-range", f"{concurrency}:{concurrency}",
           "--measurement-mode", "time_windows", "-p", str(window_ms),
           # stability is judged by the bench's interleaved repeats and medians, not here: a
           # 2-core machine shared with other jobs rarely gives 3 windows within 10 %, and
           # perf_analyzer then reports nothing at all. So: exactly `windows` windows.
           "-s", "10000", "-r", str(windows), "--percentile", "50",
           "--input-data", "random", "-f", str(csv_path)]
    if protocol == "tfserving":
        cmd.append("--service-kind=tfserving")
    elif protocol != "kserve":
        raise ValueError(f"perf_analyzer drives kserve (v2) and tfserving, not {protocol!r}")
    cmd.append("--async" if mode == "async" else "--sync")
    return cmd + list(extra)


def run(target: str, model: str, protocol: str = "kserve", concurrency: int = 1,
        batch: int = 1, duration_s: float = 6.0, windows: int = 3, mode: str = "async",
        extra: tuple[str, ...] = (), timeout_s: float | None = None) -> Result:
    """One closed-loop measurement: ``concurrency`` requests of ``batch`` rows in flight,
    ``windows`` time windows of duration_s / windows each (the first absorbs the ramp-up).
    Errors and a failed run are reported in the Result, never raised."""
    check_loopback(target)
    res = Result(target, protocol, concurrency, batch)
    binary, env, why = find()
    if binary is None:
        res.errors, res.first_error = 1, why
        return res
    window_ms = max(200, int(duration_s * 1000 / windows))
    with tempfile.TemporaryDirectory(prefix="kerve-pa-") as tmp:
        csv_path = Path(tmp) / "pa.csv"
        cmd = command(binary, target, model, protocol, concurrency, batch, window_ms, windows,
                      csv_path, mode, extra)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, env=env,
                                  timeout=timeout_s or (duration_s * 4 + 60))
        except subprocess.TimeoutExpired as exc:
            res.errors, res.first_error = 1, f"perf_analyzer timed out after {exc.timeout:.0f}s"
            return res
        res.wall_s = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        res.client_cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        text = csv_path.read_text() if csv_path.exists() else ""
        if done.returncode != 0 or not text:
            out = (done.stdout + done.stderr).strip().splitlines()
            res.errors = 1
            res.first_error = f"exit {done.returncode}: " + " | ".join(out[-4:])[-600:]
            return res
    row = parse_csv(text)
    ips = row["Inferences/Second"]
    res.sps, res.rps = ips, ips / batch
    res.p50_ms = row["p50 latency"] / 1000
    res.p90_ms = row["p90 latency"] / 1000
    res.p99_ms = row["p99 latency"] / 1000
    res.duration_s = window_ms / 1000 * windows
    res.requests = int(res.rps * res.duration_s)
    res.client_cpu_us_per_req = res.client_cpu_s / max(res.requests, 1) * 1e6
    res.extra = {k: v for k, v in row.items() if k not in ("Concurrency", "Inferences/Second")}
    res.extra["window_ms"], res.extra["mode"] = window_ms, mode
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", required=True, help="host:port (loopback only)")
    p.add_argument("--model", required=True)
    p.add_argument("--protocol", choices=["kserve", "tfserving"], default="kserve")
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--duration", type=float, default=6.0, help="measured seconds")
    p.add_argument("--windows", type=int, default=3)
    p.add_argument("--mode", choices=["async", "sync"], default="async")
    a = p.parse_args(argv)
    res = run(a.target, a.model, a.protocol, a.concurrency, a.batch, a.duration, a.windows,
              a.mode)
    print(res.line() if not res.errors else f"failed: {res.first_error}")
    print({k: v for k, v in asdict(res).items() if k != "extra"})
    return 1 if res.errors else 0


if __name__ == "__main__":
    sys.exit(main())
