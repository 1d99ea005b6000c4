"""kerve's benchmark runner: one run, one machine, the same model (same weights) everywhere.

Lines measured, per model:
  inproc         the model's compiled tf.function called in this process (no server): the limit
  naive          hand-written grpc.aio KServe v2 server calling model.predict per request
  bare           hand-written grpc.aio KServe v2 server calling the tf.function inline
  echo           the same server answering zeros without any model: the ceiling of a Python
                 gRPC server on this machine (what no Python server can beat)
  echo-sync      (--front-ends) the echo on gRPC's synchronous Python server instead
  echo-c++       (--front-ends) the echo in C++ (gRPC C++, bench/cpp_echo.py): what a front
                 end that is not Python would cost per request here
  kerve-nb/v2    kerve --max-batch-size 1 (batching off), KServe v2 ModelInfer
  kerve-nb/tfs   the same server through TF Serving Predict
  kerve/v2       kerve with its default batching, KServe v2 ModelInfer   <- "kerve" below
  kerve/tfs      the same server through TF Serving Predict
  mlserver       Seldon MLServer 1.7.1, custom Keras runtime, adaptive batching (32, 2 ms)
  kserve         KServe 0.21 Python model server, custom Keras model (no batcher)
  triton         NVIDIA Triton 2.51 via PyTriton 0.7.0, dynamic batching, Python backend
Load (closed loop, loopback only): concurrency 1, 8, 32 with batch-1 requests and
concurrency 8 with batch-32 requests, --repeats interleaved runs, medians reported.

Client: perf_analyzer (Triton's C++ load generator, bench/perf_analyzer.py) for every server
that answers what it needs (ModelMetadata and ModelConfig over gRPC, or TF Serving's
GetModelMetadata): kerve on both protocols, Triton, the hand-written servers. The Python load
generator (bench/loadgen.py) measures MLServer and KServe, which lack ModelConfig, and checks
every server's answers against local Keras before the measured cells (perf_analyzer sends
random data and checks nothing). Each line says which client measured it.

    .venv/bin/python -m bench.run --quick          # MLP only, < 5 min, no peers
    .venv/bin/python -m bench.run                  # everything, peers included
    .venv/bin/python -m bench.run --tune           # kerve batching settings sweep (MLP)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from bench import loadgen, peers
from bench import models as bench_models
from bench import perf_analyzer as pa
from bench.peers import log

HERE = Path(__file__).resolve().parent

FULL_CELLS = [(1, 1), (8, 1), (32, 1), (8, 32)]
QUICK_CELLS = [(1, 1), (32, 1), (8, 32)]
INPROC_BATCHES = (1, 8, 32, 128)
KERVE = "kerve/v2"
PEER_KEYS = ("mlserver", "kserve", "triton")
TRITON = "triton"
NO_MODEL_CONFIG = ("mlserver", "kserve")  # perf_analyzer cannot drive them: loadgen does
ECHO_LINES = ("echo", "echo-sync", "echo-c++")  # no model: they answer zeros
CHECK_REQUESTS = 16  # answers checked per line and batch size before the measured cells


def cell_name(c: int, b: int) -> str:
    return f"c{c} b{b}"


# --- in-process limit ---------------------------------------------------------------------

def inproc_sps(predict, x: np.ndarray, duration_s: float) -> float:
    for _ in range(3):
        predict(x)
    n, t0 = 0, time.perf_counter()
    stop = t0 + duration_s
    while True:
        predict(x)
        n += 1
        t = time.perf_counter()
        if t >= stop:
            break
    return n * x.shape[0] / (t - t0)


# --- servers of one model -------------------------------------------------------------------

def start_lines(name: str, minfo: dict, args, workdir: Path, logdir: Path, report: dict):
    """Start every server for model ``name``; returns (servers by key, lines) where a line is
    (line name, server, protocol). Failures are reported and skipped."""
    servers: dict[str, peers.Server] = {}
    path = minfo["path"]
    probe = bench_models.make_inputs(name, 1, 1)[0]

    def attempt(key: str, start) -> None:
        t0 = time.perf_counter()
        srv = None
        try:
            srv = start()
            loadgen.wait_ready(srv.target, "kserve", srv.model, srv.input_name, probe,
                               timeout_s=args.start_timeout, proc=srv.proc)
            servers[key] = srv
            report["servers"].setdefault(name, {})[key] = {
                "status": "ran", "start_s": round(time.perf_counter() - t0, 1), **srv.info}
            log(f"{name}: {key} ready at {srv.target} (pid {srv.pid}, "
                f"{time.perf_counter() - t0:.0f}s)")
        except Exception as exc:  # noqa: BLE001 - a server that fails is reported, not fatal
            msg = f"{type(exc).__name__}: {exc}"
            if srv is not None:
                msg += f"; log: {peers.tail(srv)}"
                srv.stop(5)
            report["servers"].setdefault(name, {})[key] = {"status": "failed", "error": msg}
            log(f"!!! {name}: {key} could not be started: {msg}")

    local_input = minfo["input_name"]
    if not args.only_kerve:
        attempt("naive", lambda: peers.start_handwritten("naive", name, path, local_input,
                                                          workdir, logdir))
        attempt("bare", lambda: peers.start_handwritten("bare", name, path, local_input,
                                                         workdir, logdir))
        attempt("echo", lambda: peers.start_handwritten("echo", name, path, local_input,
                                                         workdir, logdir))
        if args.front_ends:
            attempt("echo-sync", lambda: peers.start_handwritten(
                "echo-sync", name, path, local_input, workdir, logdir))
            attempt("echo-c++", lambda: peers.start_cpp_echo(name, minfo, workdir, logdir))
    kerve_flags = args.kerve_flags.split() if args.kerve_flags else []
    attempt("kerve-nb", lambda: peers.start_kerve("nobatch", name, path, workdir,
                                                  ["--max-batch-size", "1", *kerve_flags],
                                                  logdir, python=args.kerve_python))
    attempt("kerve", lambda: peers.start_kerve("default", name, path, workdir, kerve_flags,
                                               logdir, python=args.kerve_python))
    if args.peers:
        for key in [k for k in PEER_KEYS if k in args.peer_list.split(",")]:
            attempt(key, lambda key=key: peers.start_peer(key, name, path, "x", workdir,
                                                           logdir))
    lines = []
    for key, srv in servers.items():
        if key in ("kerve", "kerve-nb"):
            lines.append((f"{key}/v2", srv, "kserve", client_of(args, key)))
            if key == "kerve" or not args.quick:
                lines.append((f"{key}/tfs", srv, "tfserving", client_of(args, key)))
        else:
            lines.append((key, srv, "kserve", client_of(args, key)))
    return servers, lines


def client_of(args, key: str) -> str:
    """Which load generator measures server ``key``: perf_analyzer wherever it can."""
    if args.client == "loadgen" or key in NO_MODEL_CONFIG:
        return "loadgen"
    return "perf_analyzer"


def pa_mode(args, proto: str) -> str:
    """perf_analyzer drives TF Serving synchronously only (one thread per request in flight)."""
    return "sync" if proto == "tfserving" else args.pa_mode


def client_label(client: str, proto: str, args=None) -> str:
    """The client as printed."""
    if client == "loadgen":
        return "loadgen"
    return f"PA {pa_mode(args, proto) if args else 'sync'}"


def measure(args, lname, srv, proto, client, c, xs, want, dur):
    """One cell of one line with its client; a loadgen Result or a perf_analyzer Result."""
    if client == "loadgen":
        return loadgen.run_load(srv.target, proto, srv.model, srv.input_name, xs, want,
                                concurrency=c, duration_s=dur, warmup_s=args.warmup,
                                engine=args.engine)
    extra = tuple(a for k, v in srv.headers.items() for a in ("-H", f"{k}:{v}"))
    return pa.run(srv.target, srv.model, proto, concurrency=c, batch=int(xs[0].shape[0]),
                  duration_s=dur, windows=args.pa_windows,
                  mode=pa_mode(args, proto), extra=extra)


def check_answers(lines, data, report_model: dict) -> None:
    """A few requests per line and batch size through the Python client, every answer
    compared to local Keras: perf_analyzer's random data is never checked."""
    for lname, srv, proto, _client in lines:
        for b, (xs, ys) in data.items():
            want = [np.zeros_like(y) for y in ys] if lname in ECHO_LINES else ys
            res = loadgen.run_load(srv.target, proto, srv.model, srv.input_name, xs, want,
                                   concurrency=1, duration_s=60, warmup_s=0,
                                   max_requests=CHECK_REQUESTS)
            report_model.setdefault("checks", {})[f"{lname}|b{b}"] = {
                "checked": res.checked, "mismatches": res.mismatches, "errors": res.errors,
                "first_mismatch": res.first_mismatch, "first_error": res.first_error}
            if res.mismatches or res.errors or not res.checked:
                log(f"!!! {lname} b{b}: {res.mismatches} answers differ from local Keras, "
                    f"{res.errors} errors: {res.first_mismatch or res.first_error}")


def system_busy_s() -> float:
    """CPU seconds the whole machine has been busy (all cores, from /proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (v + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class Foreign:
    """CPU used during a window by processes that are not this runner or its servers (other
    users of the machine): their share of one core, to flag contaminated cells."""

    def __enter__(self):
        self.t0, self.sys0 = time.perf_counter(), system_busy_s()
        self.own0 = peers.process_tree_cpu(os.getpid())
        return self

    def __exit__(self, *exc):
        wall = time.perf_counter() - self.t0
        own = peers.process_tree_cpu(os.getpid()) - self.own0
        self.share = max(0.0, (system_busy_s() - self.sys0 - own) / max(wall, 1e-9))
        self.own_share = own / max(wall, 1e-9)


def settle(servers: dict, limit_s: float = 60.0, quiet: float = 0.05) -> dict[str, float]:
    """Wait (at most limit_s) until every idle server burns less than ``quiet`` of a core
    (kerve's upload-validation worker, for one, imports TensorFlow a few seconds after the
    server is ready); returns the last idle shares."""
    deadline = time.monotonic() + limit_s
    while True:
        shares = idle_cpu(servers)
        if all(v < quiet for v in shares.values()) or time.monotonic() > deadline:
            return shares


def quiesce(srv, limit_s: float = 20.0, window_s: float = 0.25, quiet: float = 0.05) -> float:
    """Wait until a server that was just loaded is idle again: a closed-loop client stops
    sending, but a server may still be working off requests it had queued, and that CPU
    would land on the next line's cell. Returns the seconds waited (recorded per cell)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        before = peers.process_tree_cpu(srv.pid)
        time.sleep(window_s)
        if (peers.process_tree_cpu(srv.pid) - before) / window_s < quiet:
            break
    return time.monotonic() - t0


def idle_cpu(servers: dict, seconds: float = 2.0) -> dict[str, float]:
    """CPU share (of one core) each idle server burns: background noise in the figures."""
    before = {k: peers.process_tree_cpu(s.pid) for k, s in servers.items()}
    time.sleep(seconds)
    return {k: (peers.process_tree_cpu(s.pid) - before[k]) / seconds
            for k, s in servers.items()}


# --- the run ----------------------------------------------------------------------------------

def med(values):
    values = [v for v in values if v == v]  # drop NaN
    return statistics.median(values) if values else float("nan")


def run_model(name: str, minfo: dict, args, workdir: Path, logdir: Path, report: dict) -> None:
    import keras

    cells = QUICK_CELLS if args.quick else FULL_CELLS
    model = keras.saving.load_model(minfo["path"], compile=False)
    predict = bench_models.compiled_predict(model)
    data = {}
    for _, b in cells:
        if b not in data:
            xs = bench_models.make_inputs(name, b, args.pool, seed=b)
            data[b] = (xs, [np.asarray(model.predict(x, verbose=0), np.float32) for x in xs])
    servers, lines = start_lines(name, minfo, args, workdir, logdir, report)
    mrep = report["models"][name] = {"params": minfo["params"], "inproc": {}, "cells": {}}
    try:
        noise = settle(servers)
        mrep["idle_cpu_share"] = noise
        noisy = {k: round(v, 3) for k, v in noise.items() if v > 0.03}
        if noisy:
            log(f"note: idle servers burning CPU (share of one core): {noisy}")
        check_answers(lines, data, mrep)
        for r in range(args.repeats):
            mrep.setdefault("loadavg", []).append(os.getloadavg()[0])
            for b in INPROC_BATCHES:
                x = bench_models.make_inputs(name, b, 1, seed=99)[0]
                sps = inproc_sps(predict, x, max(0.5, args.duration / 2))
                mrep["inproc"].setdefault(str(b), []).append(sps)
            log(f"{name} repeat {r + 1}/{args.repeats}: inproc "
                + ", ".join(f"b{b} {mrep['inproc'][str(b)][-1]:.0f}/s" for b in INPROC_BATCHES))
            for c, b in cells:
                xs, ys = data[b]
                order = lines[r % len(lines):] + lines[:r % len(lines)] if lines else []
                for lname, srv, proto, client in order:
                    # echo runs no model: it answers zeros of the output's shape
                    want = [np.zeros_like(y) for y in ys] if lname in ECHO_LINES else ys
                    if lname == "naive" and args.naive_duration:
                        dur = min(args.duration, args.naive_duration)
                    else:
                        dur = args.duration
                    srv_cpu0, t_cell = peers.process_tree_cpu(srv.pid), time.perf_counter()
                    with Foreign() as fg:
                        res = measure(args, lname, srv, proto, client, c, xs, want, dur)
                    # the server's CPU while its client ran (ramp-up and warm-up included)
                    srv_share = (peers.process_tree_cpu(srv.pid) - srv_cpu0) / (
                        time.perf_counter() - t_cell)
                    drained_s = quiesce(srv)
                    key = f"{lname}|{cell_name(c, b)}"
                    row = asdict(res)
                    row["drain_after_s"] = drained_s
                    row["foreign_cpu_share"] = fg.share
                    row["bench_cpu_share"] = fg.own_share
                    row["client"] = client_label(client, proto, args)
                    row["server_cpu_share"] = srv_share
                    row["server_cpu_us_per_req"] = srv_share / max(res.rps, 1e-9) * 1e6
                    row["client_cpu_share"] = res.client_cpu_s / (
                        res.wall_s if client != "loadgen" else res.duration_s + args.warmup)
                    mrep["cells"].setdefault(key, []).append(row)
                    flag = f"  (other processes: {fg.share:.0%} of a core)" \
                        if fg.share > 0.15 else ""
                    if res.mismatches:
                        flag = f"  !!! MISMATCH vs local Keras: {res.first_mismatch}"
                    elif res.errors:
                        flag = f"  !!! {res.errors} errors: {res.first_error}"
                    if srv.proc.poll() is not None:
                        flag += f"  !!! server exited ({srv.proc.returncode})"
                    log(f"{name} r{r + 1} {cell_name(c, b):7s} {lname:13s} "
                        f"{client_label(client, proto, args):8s}{res.rps:8.0f} req/s "
                        f"{res.sps:9.0f} samples/s p50 {res.p50_ms:7.2f} ms p99 "
                        f"{res.p99_ms:7.2f} ms  client {res.client_cpu_us_per_req:4.0f} us/req"
                        + flag)
    finally:
        for srv in servers.values():
            srv.stop()
    mrep["lines"] = [ln for ln, _, _, _ in lines]
    mrep["clients"] = {ln: client_label(cl, proto, args) for ln, _, proto, cl in lines}


def summarize(report: dict, cells) -> list[str]:
    out = []
    for name, m in report["models"].items():
        med_cells = {}
        for key, runs in m["cells"].items():
            med_cells[key] = {f: med([r.get(f, float("nan")) for r in runs]) for f in
                              ("rps", "sps", "p50_ms", "p90_ms", "p99_ms",
                               "client_cpu_us_per_req", "foreign_cpu_share",
                               "client_cpu_share", "server_cpu_share",
                               "server_cpu_us_per_req")}
            med_cells[key]["mismatches"] = sum(r["mismatches"] for r in runs)
            med_cells[key]["errors"] = sum(r["errors"] for r in runs)
            med_cells[key]["runs"] = len(runs)
        m["median"] = med_cells
        m["inproc_median"] = {b: med(v) for b, v in m["inproc"].items()}
        out.append("")
        out.append(f"== {name} ({m['params']:,} parameters): median of {report['args']['repeats']}"
                   f" runs x {report['args']['duration']} s; req/s, p50 ms (b32: samples/s)")
        hdr = f"{'line':14s}{'client':9s}" + "".join(f"{cell_name(c, b):>22s}" for c, b in cells)
        out.append(hdr)
        for line in m["lines"]:
            row = f"{line:14s}{m.get('clients', {}).get(line, 'loadgen'):9s}"
            for c, b in cells:
                v = med_cells.get(f"{line}|{cell_name(c, b)}")
                if v is None:
                    row += f"{'-':>22s}"
                    continue
                bad = "!" if v["mismatches"] or v["errors"] else (
                    "~" if v["foreign_cpu_share"] > 0.3 else " ")
                main = f"{v['sps']:.0f} sps" if b > 1 else f"{v['rps']:.0f}/s"
                row += f"{main:>12s} {v['p50_ms']:7.2f}ms{bad}"
            out.append(row)
        fmax = max((v["foreign_cpu_share"] for v in med_cells.values()
                    if v["foreign_cpu_share"] == v["foreign_cpu_share"]), default=0)
        out.append("(! = errors or answer mismatches; ~ = other processes on the machine took "
                   "> 30% of a core during that cell, median of its runs)")
        out.append("client: PA sync/async = perf_analyzer (C++) --sync (a thread per request "
                   "in flight; its only mode for TF Serving) / --async; loadgen = "
                   "bench/loadgen.py (Python grpc.aio)")
        checks = m.get("checks", {})
        if checks:
            bad = {k: v for k, v in checks.items() if v["mismatches"] or v["errors"]
                   or not v["checked"]}
            out.append(f"answers checked against local Keras (atol 1e-5) before measuring: "
                       f"{sum(v['checked'] for v in checks.values())} answers, "
                       + (f"!!! WRONG OR FAILED: {sorted(bad)}" if bad else "all equal"))
        kc = med_cells.get(f"{KERVE}|c32 b1")
        out.append(f"machine noise: other processes used up to {fmax:.0%} of a core (median per"
                   " cell)" + (f"; the client used {kc['client_cpu_share']:.0%} of a core"
                               f" at kerve c32 b1 ({kc['client_cpu_us_per_req']:.0f} us/req)"
                               if kc else ""))
        out.append("server CPU at c32 b1 (cores used, CPU per request): " + ", ".join(
            f"{line} {v['server_cpu_share']:.2f} / {v['server_cpu_us_per_req']:.0f} us"
            for line in m["lines"] if (v := med_cells.get(f"{line}|c32 b1"))
            and v.get("server_cpu_share", float("nan")) == v.get("server_cpu_share")))
        loads = m.get("loadavg", [])
        if loads:
            out.append("load average (1 min) at each repeat's start: "
                       + ", ".join(f"{v:.2f}" for v in loads))
        out.append("inproc (tf.function in-process, samples/s): " + ", ".join(
            f"b{b} {v:.0f}" for b, v in m["inproc_median"].items()))
        # ratios: kerve/v2 over every other line, per cell (throughput), and c1 latency
        k = {cell_name(c, b): med_cells.get(f"{KERVE}|{cell_name(c, b)}") for c, b in cells}
        out.append(f"ratios: {KERVE} throughput / line throughput (>1: kerve faster); "
                   "c1 also p50 latency line/kerve")
        for line in m["lines"]:
            if line == KERVE:
                continue
            parts = []
            for c, b in cells:
                v = med_cells.get(f"{line}|{cell_name(c, b)}")
                kv = k[cell_name(c, b)]
                if v and kv and v["sps"] > 0:
                    parts.append(f"{cell_name(c, b)} x{kv['sps'] / v['sps']:.2f}")
            c1 = med_cells.get(f"{line}|c1 b1")
            if c1 and k.get("c1 b1"):
                parts.append(f"c1 p50 kerve/line {k['c1 b1']['p50_ms'] / c1['p50_ms']:.2f}")
            out.append(f"  vs {line:12s} " + ", ".join(parts))
        kb = k.get("c8 b32")
        if kb and "32" in m["inproc_median"]:
            out.append(f"  vs inproc b32: kerve c8 b32 {kb['sps']:.0f} sps = "
                       f"{kb['sps'] / m['inproc_median']['32']:.0%} of {m['inproc_median']['32']:.0f}")
        bad = [key for key, v in med_cells.items() if v["mismatches"]]
        if bad:
            out.append(f"  !!! ANSWER MISMATCHES vs local Keras (atol 1e-5): {bad}")
        errs = [f"{key} ({v['errors']})" for key, v in med_cells.items() if v["errors"]]
        if errs:
            out.append(f"  !!! REQUEST ERRORS: {errs}")
    return out


def targets(report: dict) -> list[str]:
    out, results = ["", "== targets (MLP unless said)"], []
    m = report["models"].get("mlp")

    def get(model, line, cell):
        mm = report["models"].get(model)
        return mm and mm["median"].get(f"{line}|{cell}")

    def verdict(label, ok, detail):
        results.append({"target": label, "pass": ok, "detail": detail})
        out.append(f"  {'PASS' if ok else ('FAIL' if ok is False else 'N/A ')}  {label}: {detail}")

    if m:
        clients = m.get("clients", {})

        def same_client(a: str, b: str) -> str:
            ca, cb = clients.get(a, "loadgen"), clients.get(b, "loadgen")
            return f" [{ca}]" if ca == cb else f" [NOT THE SAME CLIENT: {ca} vs {cb}]"

        kv, tv = get("mlp", KERVE, "c32 b1"), get("mlp", TRITON, "c32 b1")
        if kv and tv:
            ev = get("mlp", "echo", "c32 b1")
            ceiling = (f"; the echo server (no model) answers {ev['rps']:.0f}/s, so 2x Triton "
                       f"needs {2 * tv['rps'] / ev['rps']:.0%} of it") if ev else ""
            for other in ("echo-sync", "echo-c++"):
                if ov := get("mlp", other, "c32 b1"):
                    ceiling += f"; {other} {ov['rps']:.0f}/s"
            verdict("c32 b1: kerve >= 2x Triton req/s", kv["rps"] >= 2 * tv["rps"],
                    f"kerve {kv['rps']:.0f} vs Triton {tv['rps']:.0f} = "
                    f"x{kv['rps'] / tv['rps']:.2f}" + same_client(KERVE, TRITON) + ceiling)
        else:
            verdict("c32 b1: kerve >= 2x Triton req/s", None, "Triton not measured")
        kv, tv = get("mlp", KERVE, "c8 b32"), get("mlp", TRITON, "c8 b32")
        if kv and tv:
            verdict("c8 b32: kerve >= 2x Triton samples/s", kv["sps"] >= 2 * tv["sps"],
                    f"kerve {kv['sps']:.0f} vs Triton {tv['sps']:.0f} = "
                    f"x{kv['sps'] / tv['sps']:.2f}" + same_client(KERVE, TRITON))
        else:
            verdict("c8 b32: kerve >= 2x Triton samples/s", None, "Triton not measured")
        lim = m["inproc_median"].get("32")
        if kv and lim:
            verdict("c8 b32: kerve >= 80% of the in-process limit at b32",
                    kv["sps"] >= 0.8 * lim,
                    f"kerve {kv['sps']:.0f} vs inproc {lim:.0f} = {kv['sps'] / lim:.0%}")
    for name in report["models"]:
        kv, bv = get(name, KERVE, "c1 b1"), get(name, "bare", "c1 b1")
        if kv and bv:
            clients = report["models"][name].get("clients", {})
            same = clients.get(KERVE) == clients.get("bare")
            verdict(f"{name} c1: kerve p50 <= 0.9x bare grpc.aio+tf.function",
                    kv["p50_ms"] <= 0.9 * bv["p50_ms"],
                    f"kerve {kv['p50_ms']:.3f} ms vs bare {bv['p50_ms']:.3f} ms = "
                    f"x{kv['p50_ms'] / bv['p50_ms']:.2f}"
                    + (f" [{clients.get(KERVE, 'loadgen')}]" if same else " [NOT SAME CLIENT]"))
    worst = None
    for name, mm in report["models"].items():
        for key, v in mm["median"].items():
            line, cell = key.split("|")
            if line != "naive":
                continue
            kv = get(name, KERVE, cell)
            if kv and v["sps"] > 0:
                ratio = kv["sps"] / v["sps"]
                if worst is None or ratio < worst[0]:
                    worst = (ratio, f"{name} {cell}")
    if worst:
        verdict(">= 50x the naive server in every cell (issue 3)", worst[0] >= 50,
                f"lowest: x{worst[0]:.1f} ({worst[1]})")
    mism = [f"{n}:{k}" for n, mm in report["models"].items()
            for k, v in mm["median"].items() if v["mismatches"]]
    mism += [f"{n}:{k} (check)" for n, mm in report["models"].items()
             for k, v in mm.get("checks", {}).items() if v["mismatches"] or not v["checked"]]
    verdict("every answer matches local Keras (atol 1e-5)", not mism,
            "all matched" if not mism else f"MISMATCHES in {mism}")
    report["targets"] = results
    return out


def machine() -> dict:
    cpu = ""
    try:
        for ln in open("/proc/cpuinfo"):
            if ln.startswith("model name"):
                cpu = ln.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import subprocess

    def git(*a):
        try:
            return subprocess.run(["git", "-C", str(HERE.parent), *a], capture_output=True,
                                  text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    # kerve is installed editable: record which server code the kerve lines ran
    kerve_code = {"commit": git("rev-parse", "--short", "HEAD"),
                  "dirty_files": git("status", "--porcelain", "--", "server", "registry",
                                     "clients").splitlines()}
    return {"kerve_code": kerve_code, "cpu": cpu, "cores": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(), "loadavg_at_start": os.getloadavg(),
            "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30)}


def tune(args, workdir: Path, logdir: Path, infos: dict) -> dict:
    """kerve's batching settings on the MLP: max_batch_size x batch_timeout_ms, instances."""
    import keras

    name, minfo = "mlp", infos["mlp"]
    model = keras.saving.load_model(minfo["path"], compile=False)
    cells = [(1, 1), (8, 1), (32, 1), (8, 32)]
    data = {}
    for _, b in cells:
        xs = bench_models.make_inputs(name, b, args.pool, seed=b)
        data[b] = (xs, [np.asarray(model.predict(x, verbose=0), np.float32) for x in xs])
    if args.tune_configs:
        configs = [tuple(int(float(v)) if i != 1 else float(v)
                         for i, v in enumerate(c.split(":")))
                   for c in args.tune_configs.split(",")]
    else:
        configs = [(mbs, to, 1) for mbs in (8, 32, 64) for to in (0, 1, 2, 5)]
        configs += [(32, 2, 2), (64, 2, 2), (32, 0, 2)]
    results = {}
    for r in range(args.repeats):
        for mbs, to, inst in configs:
            label = f"mbs{mbs}-t{to:g}-i{inst}"
            flags = ["--max-batch-size", str(mbs), "--batch-timeout-ms", str(to),
                     "--model-instances", str(inst)]
            srv = peers.start_kerve(label, name, minfo["path"], workdir, flags, logdir,
                                    python=args.kerve_python)
            try:
                loadgen.wait_ready(srv.target, "kserve", name, srv.input_name, data[1][0][0])
                settle({"kerve": srv}, limit_s=30)
                for c, b in cells:
                    xs, ys = data[b]
                    res = measure(args, "kerve/v2", srv, "kserve", client_of(args, "kerve"),
                                  c, xs, ys, args.duration)
                    results.setdefault(label, {}).setdefault(cell_name(c, b), []).append(
                        asdict(res))
                    log(f"tune r{r + 1} {label:16s} {cell_name(c, b):7s} {res.rps:7.0f} req/s "
                        f"{res.sps:8.0f} sps p50 {res.p50_ms:6.2f} ms p99 {res.p99_ms:6.2f} ms"
                        + (" !!! MISMATCH" if res.mismatches else "")
                        + (f" !!! errors {res.errors}" if res.errors else ""))
            finally:
                srv.stop()
    print(f"\n== kerve batching sweep on the MLP (median of {args.repeats}; req/s | p50 ms; "
          "b32: samples/s)")
    print(f"{'config':18s}" + "".join(f"{cell_name(c, b):>20s}" for c, b in cells))
    table = {}
    for label, per in results.items():
        row = f"{label:18s}"
        for c, b in cells:
            runs = per[cell_name(c, b)]
            v = {f: med([x[f] for x in runs]) for f in ("rps", "sps", "p50_ms", "p99_ms")}
            table.setdefault(label, {})[cell_name(c, b)] = v
            row += (f"{v['sps']:>10.0f} sps" if b > 1 else f"{v['rps']:>10.0f}/s  ") + \
                f"{v['p50_ms']:6.2f}ms"
        print(row)
    return {"raw": results, "median": table}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="kerve benchmark runner (loopback only)")
    p.add_argument("--quick", action="store_true",
                   help="MLP only, cells c1/c32 b1 and c8 b32, short runs, no peers")
    p.add_argument("--peers", action=argparse.BooleanOptionalAction, default=None,
                   help="include MLServer, KServe and Triton (default: on, off with --quick)")
    p.add_argument("--peer-list", default=",".join(PEER_KEYS),
                   help="with peers: which ones (comma list of mlserver,kserve,triton)")
    p.add_argument("--models", default=None, help="comma list of mlp,resnet,wide")
    p.add_argument("--duration", type=float, default=None, help="seconds per measured cell")
    p.add_argument("--warmup", type=float, default=None, help="seconds before each cell")
    p.add_argument("--repeats", type=int, default=None, help="interleaved repeats (median)")
    p.add_argument("--naive-duration", type=float, default=None,
                   help="cap on the naive server's cell duration")
    p.add_argument("--engine", choices=["aio", "threads"], default="aio",
                   help="engine of the Python load generator")
    p.add_argument("--client", choices=["auto", "loadgen"], default="auto",
                   help="auto: perf_analyzer wherever the server allows it, loadgen for "
                        "MLServer and KServe; loadgen: the Python load generator everywhere")
    p.add_argument("--pa-mode", choices=["sync", "async"], default="sync",
                   help="perf_analyzer's mode on KServe v2 (TF Serving: sync only)")
    p.add_argument("--pa-windows", type=int, default=3,
                   help="perf_analyzer time windows per cell (--duration split among them)")
    p.add_argument("--pool", type=int, default=8, help="distinct inputs per cell")
    p.add_argument("--kerve-flags", default="", help="extra flags for both kerve servers")
    p.add_argument("--kerve-python", default=None,
                   help="python that runs `-m kerve.clients.cli serve` (e.g. another "
                        "checkout's venv; default: this venv's kerve)")
    p.add_argument("--only-kerve", action="store_true", help="skip naive and bare")
    p.add_argument("--front-ends", action="store_true",
                   help="also the echo on gRPC's synchronous Python server and the echo in C++ "
                        "(needs Debian's libgrpc++-dev and protobuf-compiler-grpc)")
    p.add_argument("--tune", action="store_true", help="kerve batching settings sweep only")
    p.add_argument("--tune-configs", default="",
                   help="with --tune: MBS:TIMEOUT_MS:INSTANCES,... (default: the full grid)")
    p.add_argument("--start-timeout", type=float, default=240)
    p.add_argument("--workdir", default=None, help="temp folder (default: a new one)")
    p.add_argument("--out", default=str(HERE / "results" / "latest.json"))
    p.add_argument("--resummarize", metavar="JSON",
                   help="print the table and targets of an earlier run's JSON, run nothing")
    args = p.parse_args(argv)
    if args.resummarize:
        report = json.loads(Path(args.resummarize).read_text())
        cells = QUICK_CELLS if report["args"]["quick"] else FULL_CELLS
        print("\n".join(summarize(report, cells) + targets(report)))
        return 0
    if args.peers is None:
        args.peers = not args.quick
    args.duration = args.duration or (2.0 if args.quick else 3.0)
    args.warmup = args.warmup if args.warmup is not None else (0.5 if args.quick else 1.0)
    args.repeats = args.repeats or (2 if args.quick else 3)
    names = args.models.split(",") if args.models else (
        ["mlp"] if args.quick or args.tune else list(bench_models.MODELS))
    cells = QUICK_CELLS if args.quick else FULL_CELLS

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="kerve-bench-"))
    logdir = HERE / "results" / "logs"
    logdir.mkdir(parents=True, exist_ok=True)
    report = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "argv": sys.argv,
              "args": vars(args), "machine": machine(), "servers": {}, "models": {},
              "notes": ["TensorFlow Serving: not measured: no TF Serving binary can be "
                        "installed here (it ships as a Docker image or apt repo outside the "
                        "reachable package registries)."]}
    log(f"machine: {report['machine']}")
    log("TensorFlow Serving itself: NOT MEASURED (no binary installable here; kerve's TF "
        "Serving API is measured instead as kerve/tfs)")
    log(f"models -> {workdir / 'models'}")
    infos = bench_models.save_all(workdir / "models", names)
    report["model_files"] = infos

    if args.client == "auto":
        binary, _env, why = pa.find()
        if binary is None:
            log(f"perf_analyzer cannot run here ({why}): the Python load generator measures "
                "every line instead")
            args.client = "loadgen"
        else:
            log(f"client: perf_analyzer ({binary}) for kerve, Triton and the hand-written "
                "servers; bench/loadgen.py for MLServer and KServe")
    if args.tune:
        report["tune"] = tune(args, workdir, logdir, infos)
        stem = "tune-focused.json" if args.tune_configs else "tune.json"
        out = Path(args.out).with_name(stem) if args.out.endswith("latest.json") \
            else Path(args.out)
        out.write_text(json.dumps(report, indent=1, default=float))
        log(f"wrote {out}")
        return 0

    busy = Foreign()
    with busy:
        time.sleep(2)
    report["machine"]["other_processes_cpu_share_at_start"] = busy.share
    if busy.share > 0.2:
        log(f"WARNING: other processes use {busy.share:.0%} of a core right now: figures "
            "will be noisy (each cell records its own share as foreign_cpu_share)")
    for name in names:
        run_model(name, infos[name], args, workdir, logdir, report)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=float))  # again below, summarized
    lines = summarize(report, cells) + targets(report)
    failed = [f"{m}:{k} ({v.get('error', '')[:300]})" for m, s in report["servers"].items()
              for k, v in s.items() if v["status"] != "ran"]
    if failed:
        lines += ["", "== servers that could not be run"] + [f"  {f}" for f in failed]
    lines += ["", "TensorFlow Serving itself: not measured (no binary can be installed here)."]
    vers = {k: v.get("versions") for s in report["servers"].values() for k, v in s.items()
            if v.get("versions")}
    if vers:
        lines += ["peer venvs: " + "; ".join(
            f"{k}: " + ", ".join(f"{a} {b}" for a, b in sorted(v.items()))
            for k, v in vers.items())]
    text = "\n".join(lines)
    print(text)
    report["table"] = text
    out.write_text(json.dumps(report, indent=1, default=float))
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
