"""A candidate design measured before it is built: N kerve serving processes instead of one.

kerve answers gRPC from one Python process (one event loop); at c32 b1 on 2 cores that
process, not the model, is the limit. Would several serving processes behind one port
(SO_REUSEPORT: the kernel hands each new connection to one of them) pay? This measures the
upper bound without touching the server: N independent `kerve serve` processes (default
settings, each its own port and data dir, the same model file), each driven by its own
perf_analyzer at concurrency C/N, all at once; their throughputs add up. A real
SO_REUSEPORT setup would balance connections, not requests, so it can only do worse (a client
with one connection reaches one process). Same run, interleaved repeats, against one kerve
process at concurrency C and Triton (PyTriton) at C, the same client for all.

    .venv/bin/python -m bench.multiproc --processes 2 --repeats 3 --duration 6

Prints req/s (samples/s for batch > 1), p50, the servers' CPU and memory (RSS) per line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench import loadgen, peers
from bench import models as bench_models
from bench import perf_analyzer as pa
from bench.peers import log

HERE = Path(__file__).resolve().parent


def rss_mib(pid: int) -> float:
    """Resident memory of pid and its descendants, MiB."""
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    kids.setdefault(int(f.read().rsplit(")", 1)[1].split()[1]), []).append(
                        int(entry))
            except OSError:
                pass
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for ln in open(f"/proc/{p}/status"):
                if ln.startswith("VmRSS:"):
                    total += int(ln.split()[1])
        except OSError:
            pass
        todo.extend(kids.get(p, []))
    return total / 1024


def drive(servers, concurrency: int, batch: int, duration: float) -> dict:
    """perf_analyzer on every server at once, concurrency split evenly; summed figures."""
    share = max(1, concurrency // len(servers))
    results: list = [None] * len(servers)
    cpu0 = [peers.process_tree_cpu(s.pid) for s in servers]
    t0 = time.perf_counter()

    def one(i, srv):
        extra = tuple(a for k, v in srv.headers.items() for a in ("-H", f"{k}:{v}"))
        results[i] = pa.run(srv.target, srv.model, "kserve", share, batch, duration,
                            extra=extra)

    threads = [threading.Thread(target=one, args=(i, s)) for i, s in enumerate(servers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    cpu = sum(peers.process_tree_cpu(s.pid) - c for s, c in zip(servers, cpu0)) / wall
    errors = [r.first_error for r in results if r.errors]
    rps = sum(r.rps for r in results if not r.errors)
    return {"rps": rps, "sps": rps * batch,
            "p50_ms": statistics.mean(r.p50_ms for r in results if not r.errors)
            if len(errors) < len(results) else float("nan"),
            "server_cores": cpu, "server_cpu_us_per_req": cpu / max(rps, 1e-9) * 1e6,
            "errors": errors, "loadavg": os.getloadavg()[0]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--duration", type=float, default=6.0)
    p.add_argument("--triton", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--cells", default="32:1,8:32", help="CONCURRENCY:BATCH,...")
    p.add_argument("--out", default=str(HERE / "results" / "multiproc.json"))
    a = p.parse_args(argv)
    if pa.find()[0] is None:
        print(f"perf_analyzer cannot run: {pa.find()[2]}")
        return 1
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    work = Path(tempfile.mkdtemp(prefix="kerve-multiproc-"))
    logdir = HERE / "results" / "logs"
    info = bench_models.save_all(work / "models", ["mlp"])["mlp"]
    servers = {}
    try:
        for i in range(a.processes):
            (work / f"p{i}").mkdir()
            servers[f"kerve{i}"] = peers.start_kerve(f"mp{i}", "mlp", info["path"],
                                                     work / f"p{i}", [], logdir)
        if a.triton:
            t = peers.start_peer("triton", "mlp", info["path"], info["input_name"], work,
                                 logdir)
            loadgen.wait_ready(t.target, "kserve", "mlp", t.input_name,
                               bench_models.make_inputs("mlp", 1, 1)[0], timeout_s=300,
                               proc=t.proc)
            servers["triton"] = t
        time.sleep(8)  # kerve's upload validators go quiet
        kerves = [s for k, s in servers.items() if k.startswith("kerve")]
        lines = [("kerve x1", kerves[:1]), (f"kerve x{a.processes}", kerves)]
        if "triton" in servers:
            lines.append(("triton", [servers["triton"]]))
        cells = [tuple(int(v) for v in c.split(":")) for c in a.cells.split(",")]
        runs: dict = {}
        for r in range(a.repeats):
            order = lines[r % len(lines):] + lines[:r % len(lines)]
            for c, b in cells:
                for name, srvs in order:
                    res = drive(srvs, c, b, a.duration)
                    runs.setdefault(f"{name}|c{c} b{b}", []).append(res)
                    log(f"r{r + 1} c{c} b{b} {name:9s} {res['rps'] * b:8.0f} "
                        f"{'samples' if b > 1 else 'req'}/s p50 {res['p50_ms']:6.2f} ms  "
                        f"servers {res['server_cores']:.2f} cores, "
                        f"{res['server_cpu_us_per_req']:.0f} us/req  load "
                        f"{res['loadavg']:.2f}" + (f"  !!! {res['errors']}" if res["errors"]
                                                   else ""))
        mem = {name: sum(rss_mib(s.pid) for s in srvs) for name, srvs in lines}
    finally:
        for s in servers.values():
            s.stop()
    print(f"\n== {a.processes} kerve processes vs 1 (MLP; perf_analyzer; medians of "
          f"{a.repeats} interleaved runs x {a.duration} s)")
    table = {}
    for key, rs in runs.items():
        table[key] = {f: statistics.median(x[f] for x in rs) for f in
                      ("rps", "sps", "p50_ms", "server_cores", "server_cpu_us_per_req",
                       "loadavg")}
        v = table[key]
        name, cell = key.split("|")
        print(f"{cell:7s} {name:9s} {v['rps']:8.0f} req/s {v['sps']:8.0f} samples/s p50 "
              f"{v['p50_ms']:6.2f} ms  servers {v['server_cores']:.2f} cores "
              f"{v['server_cpu_us_per_req']:5.0f} us/req  (load {v['loadavg']:.2f})")
    print("resident memory after the run (MiB): " + ", ".join(
        f"{k} {v:.0f}" for k, v in mem.items()))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"args": vars(a), "runs": runs, "median": table,
                                       "rss_mib": mem}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
