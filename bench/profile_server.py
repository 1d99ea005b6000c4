"""Where a kerve request's CPU goes: py-spy samples a kerve server (MLP, KServe v2) under
closed-loop load at a given concurrency, and the stacks are sorted into buckets
(gRPC, event loop, interceptor, decode, core/checks, batcher, thread hop, model, encode,
metrics). Needs py-spy in the venv (pip install py-spy) and root or ptrace rights.

The load comes from perf_analyzer (C++, about 0.1-0.2 of a core at c32) where it can run,
else from bench/loadgen.py (Python, 0.3-0.5 of a core), which would hide part of kerve's
share of the 2 cores; --client picks one.

    .venv/bin/python -m bench.profile_server --concurrency 1 --concurrency 32 [--flags "..."]

Writes bench/results/profile-cN.txt (collapsed stacks) and prints the bucket table.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench import models as bench_models
from bench import peers
from bench import perf_analyzer as pa

HERE = Path(__file__).resolve().parent

# (bucket, substring of a frame) - the first rule that matches any frame, scanning the stack
# from the leaf towards the root, wins.
RULES = [
    ("metrics (prometheus)", "prometheus_client"),
    ("decode (raw bytes -> numpy)", "v2_raw_to_ndarray"),
    ("decode (raw bytes -> numpy)", "tensor_proto_to_ndarray"),
    ("encode (numpy -> response)", "ndarray_to_v2_raw"),
    ("encode (numpy -> response)", "ndarray_to_tensor_proto"),
    ("core checks (order_inputs etc.)", "order_inputs"),
    ("core checks (order_inputs etc.)", "select_outputs"),
    ("model (tf.function + .numpy())", "loader.py"),
    ("model (tf.function + .numpy())", "tensorflow"),
    ("model (tf.function + .numpy())", "libtensorflow"),
    ("model (tf.function + .numpy())", "_pywrap_tfe"),
    ("batcher (queue, merge, split)", "batching.py"),
    ("thread hop (executor, futures)", "concurrent/futures"),
    ("thread hop (executor, futures)", "threading.py"),
    ("manager / core", "manager.py"),
    ("manager / core", "core.py"),
    ("manager / core", "data_plane.py"),
    ("interceptor", "interceptors.py"),
    ("servicer (ModelInfer body: request/response protos)", "kserve_servicer.py"),
    ("servicer (ModelInfer body: request/response protos)", "tfserving_servicer.py"),
    ("gRPC (cygrpc, C core, aio server)", "grpc"),
    ("gRPC (cygrpc, C core, aio server)", "cygrpc"),
    ("asyncio event loop", "asyncio"),
    ("asyncio event loop", "selectors.py"),
]


# leaf frames of threads that wait (py-spy's idle detection does not work on this VM): the
# executor's idle workers, the event loop's epoll wait, condition waits
IDLE_LEAVES = ("concurrent/futures/thread.py:81", "EpollSelector.select",
               "_PollLikeSelector.select", "Condition.wait", "Event.wait")


def bucket(stack: str) -> str:
    frames = stack.split(";")
    if any(k in frames[-1] for k in IDLE_LEAVES):
        return "idle (waiting)"
    if frames[-1].startswith("Thread.run (threading.py"):
        return "gRPC poller thread (in C: polling or waiting)"
    for frame in reversed(frames):
        for name, key in RULES:
            if key in frame:
                return name
    return "other (python runtime, libc, unattributed native)"


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds so far of each thread of pid, summed by thread name (/proc/PID/task)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = collections.defaultdict(float)
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                head, _, rest = f.read().rpartition(")")
            parts = rest.split()
        except OSError:
            continue
        name = head.split("(", 1)[1]
        if tid == str(pid):
            name += " (main: event loop)"
        out[name] += (int(parts[11]) + int(parts[12])) / tick
    return out


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--concurrency", type=int, action="append")
    p.add_argument("--seconds", type=float, default=12)
    p.add_argument("--rate", type=int, default=100)
    p.add_argument("--native", action="store_true",
                   help="also native frames (much costlier to sample on 2 cores)")
    p.add_argument("--flags", default="", help="extra kerve serve flags")
    p.add_argument("--protocol", default="kserve", choices=["kserve", "tfserving"])
    p.add_argument("--client", default="perf_analyzer", choices=["perf_analyzer", "loadgen"])
    p.add_argument("--batch", type=int, default=1, help="rows per request")
    a = p.parse_args()
    if a.client == "perf_analyzer" and pa.find()[0] is None:
        print(f"perf_analyzer cannot run ({pa.find()[2]}): loadgen makes the load")
        a.client = "loadgen"
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    work = Path(tempfile.mkdtemp(prefix="kerve-prof-"))
    infos = bench_models.save_all(work / "models", ["mlp"])
    logdir = HERE / "results" / "logs"
    srv = peers.start_kerve("profile", "mlp", infos["mlp"]["path"], work, a.flags.split(),
                            logdir)
    try:
        time.sleep(8)  # let the upload validator go quiet
        for c in a.concurrency or [1, 32]:
            if a.client == "perf_analyzer":
                done: dict = {}
                load = threading.Thread(target=lambda c=c: done.setdefault("r", pa.run(
                    srv.target, "mlp", a.protocol, c, a.batch, a.seconds + 4, windows=3,
                    mode="sync" if a.protocol == "tfserving" else "async")))
                load.start()
                time.sleep(2)
            else:
                load = subprocess.Popen([
                    sys.executable, "-m", "bench.loadgen", "--target", srv.target,
                    "--protocol", a.protocol, "--model", "mlp", "--input-name",
                    srv.input_name, "--keras-model", infos["mlp"]["path"], "--concurrency",
                    str(c), "--batch", str(a.batch), "--duration", str(a.seconds + 6),
                    "--warmup", "1"], stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL, text=True, cwd=HERE.parent)
                time.sleep(10)  # the load generator imports TF and starts
            raw = HERE / "results" / f"profile-c{c}.txt"
            cpu0, t0 = thread_cpu(srv.pid), time.perf_counter()
            spy = subprocess.run([pyspy, "record", *(["--native"] if a.native else []),
                                  "--format", "raw", "--rate",
                                  str(a.rate), "--duration", str(int(a.seconds)), "--pid",
                                  str(srv.pid), "--output", str(raw)],
                                 capture_output=True, text=True)
            wall = time.perf_counter() - t0
            cpu1 = thread_cpu(srv.pid)
            per_name = {k: (v - cpu0.get(k, 0.0)) / wall for k, v in cpu1.items()}
            if spy.returncode != 0:
                raise RuntimeError(f"py-spy failed: {spy.stderr.strip()[-800:]}")
            if a.client == "perf_analyzer":
                load.join(timeout=120)
                r = done.get("r")
                out = (r.line() if r and not r.errors else f"perf_analyzer failed: "
                       f"{r.first_error if r else '?'}")
            else:
                out, _ = load.communicate(timeout=120)
            counts: collections.Counter = collections.Counter()
            per_thread: collections.Counter = collections.Counter()
            leaves: collections.Counter = collections.Counter()
            for ln in raw.read_text().splitlines():
                stack, _, n = ln.rpartition(" ")
                if not stack:
                    continue
                counts[bucket(stack)] += int(n)
                per_thread[stack.split(";")[0][:60]] += int(n)
                leaves[stack.split(";")[-1][:70]] += int(n)
            idle = counts.pop("idle (waiting)", 0)
            total = sum(counts.values())
            print(f"\n== kerve MLP, concurrency {c} batch {a.batch} ({a.protocol}, load from "
                  f"{a.client}): {total} busy samples "
                  f"({total / a.rate / a.seconds:.2f} cores busy on average; {idle} idle "
                  "samples left out)")
            print(f"   load: {out.strip().splitlines()[-1] if out.strip() else '?'}")
            for name, n in counts.most_common():
                print(f"   {n / total:6.1%}  {name}")
            print(f"   CPU by thread (/proc, cores, {sum(per_name.values()):.2f} in all; py-spy's "
                  "sampling included): " + ", ".join(
                      f"{k} {v:.2f}" for k, v in sorted(per_name.items(),
                                                       key=lambda kv: -kv[1]) if v >= 0.01))
            print("   by thread: " + ", ".join(f"{k} {v / total:.0%}"
                                             for k, v in per_thread.most_common(4)))
            print("   top leaf frames: " + "; ".join(
                f"{k} {v / total:.0%}" for k, v in leaves.most_common(8)))
    finally:
        srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
