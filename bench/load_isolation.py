"""Load isolation: a small model's latency while a big model is uploaded, validated,
loaded and swapped in, against the same with nothing loading.

Starts one ``kerve serve`` (loopback, free port, temp data dir), uploads the bench MLP, then
sends batch-1 KServe v2 ModelInfer requests for it from ``--concurrency`` threads (closed
loop, one channel each) in two phases:

1. idle: ``--duration`` seconds with nothing else happening;
2. loading: from the first byte of a ``--params``-parameter model (one Dense layer) until
   the upload returns, which is once the new version is READY on this server (uploaded,
   validated in the worker process, loaded, warmed up and swapped in as the default of its
   model).

Prints p50/p99/max latency and failed requests per phase and the ratio loading/idle; the
goal is p99 while loading at most 2x idle p99, with no failed request. Writes JSON to
bench/results/load_isolation.json.

    .venv/bin/python -m bench.load_isolation                   # 50M parameters, c8
    .venv/bin/python -m bench.load_isolation --flag=--load-threads=1   # A/B a server flag
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.upload_load import UPLOAD_TIMEOUT_S, Load, build_big, fmt, summarize

HERE = Path(__file__).resolve().parent


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.load_isolation",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--params", type=float, default=50e6, help="big model's parameters")
    p.add_argument("--duration", type=float, default=20.0, help="idle phase, seconds")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--flag", action="append", default=[],
                   help="extra `kerve serve` flag (repeatable), e.g. --flag=--load-threads=1")
    p.add_argument("--kerve-python", default=None,
                   help="python that runs the server and the uploading client, e.g. an older "
                        "checkout's venv (default: this one)")
    p.add_argument("--out", default=str(HERE / "results" / "load_isolation.json"))
    a = p.parse_args()

    from bench import models as bench_models
    from bench import peers
    from bench.peers import log

    work = Path(tempfile.mkdtemp(prefix="kerve-load-isolation-"))
    logdir = HERE / "results" / "logs"
    minfo = bench_models.save_all(work / "models", ["mlp"])["mlp"]
    big = build_big(work, int(np.ceil(a.params / 8192 / 32)))
    log(f"big model: {big['parameters']:,} parameters, "
        f"{big['weights_bytes'] / 2**20:.0f} MiB of weights")
    srv = peers.start_kerve("load-isolation", "mlp", minfo["path"], work, a.flag, logdir,
                            python=a.kerve_python)
    uploader = None
    report: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "argv": sys.argv,
                    "args": vars(a), "big_model": big}
    try:
        x = np.random.default_rng(0).random((1, *minfo["feature_shape"]), np.float32)
        load = Load(srv.target, "mlp", srv.input_name, x, a.concurrency)
        load.probe()
        load.start(a.warmup)
        time.sleep(a.warmup)
        load.stop()
        load.records.clear()

        log(f"phase 1: idle, {a.duration:.0f}s at concurrency {a.concurrency}")
        t0 = time.monotonic()
        load.start(a.duration + 5)
        time.sleep(a.duration)
        t1 = time.monotonic()
        load.stop()
        idle = summarize(load.window(t0, t1), t1 - t0)
        load.records.clear()

        log("phase 2: upload, validate, load and swap in the big model")
        with open(logdir / "load-isolation-uploader.log", "w") as err:
            uploader = subprocess.Popen(
                [a.kerve_python or sys.executable, "-m", "bench.upload_load",
                 "--upload-worker", srv.target,
                 big["architecture"], big["weights"]], stdout=subprocess.PIPE, stderr=err,
                text=True, cwd=HERE.parent)
        events: dict[str, dict] = {}
        for line in uploader.stdout:  # bounded: the worker's client has a deadline
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            events[ev["event"]] = ev
            if ev["event"] == "start":
                load.start(UPLOAD_TIMEOUT_S)
            if ev["event"] in ("done", "error"):
                break
        load.stop()
        uploader.wait(30)
        if "done" not in events or "start" not in events:
            raise RuntimeError(f"upload failed: {events}")
        ts, te, td = events["start"]["t"], events["end"]["t"], events["done"]["t"]
        loading = summarize(load.window(ts, td), td - ts)
        stream = summarize(load.window(ts, te), te - ts)
        after = summarize(load.window(te, td), td - te)
        ratio = {k: (round(loading[k] / idle[k], 2) if loading[k] and idle[k] else None)
                 for k in ("p50_ms", "p99_ms", "max_ms", "req_per_s")}
        report.update({"idle": idle, "loading": loading, "stream": stream,
                       "validate_load_swap": after, "ratio_loading_over_idle": ratio,
                       "status": events["done"].get("status")})
    finally:
        if uploader and uploader.poll() is None:
            uploader.kill()
        srv.stop()
        shutil.rmtree(work, ignore_errors=True)

    print("\n".join([
        f"== mlp latency at concurrency {a.concurrency}, batch 1, KServe v2, while a "
        f"{big['parameters'] / 1e6:.0f}M-parameter model is uploaded, validated, loaded and "
        f"swapped in; server flags {a.flag or 'none'}",
        f"{'phase':<22} {'seconds':>7} {'requests':>8} {'req/s':>8} {'p50 ms':>9} "
        f"{'p99 ms':>9} {'max ms':>9} {'failed':>7}",
        fmt("idle", idle), fmt("loading (all)", loading), fmt("  upload stream", stream),
        fmt("  validate+load+swap", after),
        "ratio loading/idle: " + ", ".join(f"{k} x{v}" for k, v in ratio.items()),
        f"goal p99 <= 2x idle and 0 failed: "
        f"{'met' if (ratio['p99_ms'] or 99) <= 2 and loading['failed'] == 0 else 'NOT met'}",
    ]), flush=True)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
