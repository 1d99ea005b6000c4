"""Weights-only versions: swap time and peak memory of an in-place weight swap against a full
reload of the same version, in the same run.

For each mode (``--weight-swap-in-place`` and ``--no-weight-swap-in-place``) and each repeat,
interleaved, it starts one ``kerve serve``, uploads a deep MLP (``--params`` parameters,
float32) as version 1 with alias ``production``, then a weights-only version 2 on its
architecture (``--from``-style base), and keeps batch-1 requests going to the default from
two threads. It then moves ``production`` to 2 and measures:

- swap: from the alias move until the first request answered by version 2;
- pause: the slowest request sent during the swap (requests wait while weights are
  assigned, or while the new model is built beside the old one);
- peak: the serving process's peak RSS (VmHWM, reset just before the move) over its RSS
  before the move: what the swap needed on top of the model being served;
- the server's own account of the in-place swap (staged / assigned seconds, from its log).

Prints one line per run and the medians, and the ratios in-place / full reload. Writes JSON
to bench/results/weight_swap.json.

    .venv/bin/python -m bench.weight_swap                 # 25M parameters, 3 repeats
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
MODES = {"in_place": "--weight-swap-in-place", "full": "--no-weight-swap-in-place"}
_SWAPPED = re.compile(r"swapped .* in place \(staged in ([\d.]+) s, assigned in ([\d.]+) s\)")


def build(folder: Path, params: float) -> dict:
    """Input(1024) -> Dense(w) x3 -> Dense(10), w chosen for about ``params`` parameters;
    two sets of weights on one architecture."""
    import keras

    width = int((-(1024 + 10 + 3) + ((1024 + 13) ** 2 + 8 * params) ** 0.5) / 4)
    paths = {}
    for seed in (1, 2):
        keras.utils.set_random_seed(seed)
        inputs = keras.Input((1024,), name="x")
        h = inputs
        for i in range(3):
            h = keras.layers.Dense(width, activation="relu", name=f"d{i}")(h)
        model = keras.Model(inputs, keras.layers.Dense(10, name="y")(h))
        if seed == 1:
            (folder / "arch.json").write_text(model.to_json())
            paths["parameters"] = int(model.count_params())
        model.save_weights(folder / f"w{seed}.weights.h5")
        paths[f"w{seed}"] = str(folder / f"w{seed}.weights.h5")
        keras.backend.clear_session()
    paths["architecture"] = str(folder / "arch.json")
    paths["weights_bytes"] = Path(paths["w1"]).stat().st_size
    return paths


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {key} for {pid}")


class Prober:
    """Batch-1 requests to the default version from two threads; records (sent, done,
    version)."""

    def __init__(self, target: str, name: str) -> None:
        self.target, self.name = target, name
        self.records: list[tuple[float, float, int]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _run(self) -> None:
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(self.target)
        tensor = grpcclient.InferInput("x", [1, 1024], "FP32")
        tensor.set_data_from_numpy(np.ones((1, 1024), np.float32))
        try:
            while not self._stop.is_set():
                sent = time.monotonic()
                try:
                    result = client.infer(self.name, [tensor], client_timeout=60)
                except Exception as exc:  # noqa: BLE001 - counted and shown
                    self.errors.append(str(exc)[:200])
                    continue
                self.records.append((sent, time.monotonic(),
                                     int(result.get_response().model_version)))
        finally:
            client.close()

    def start(self) -> None:
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(2)]
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)


def one_run(mode: str, model: dict, work: Path, logdir: Path) -> dict:
    from bench import peers
    from kerve.clients.client import Client

    data = work / f"data-{mode}-{time.monotonic_ns()}"
    port_file = data / "port.json"
    data.mkdir(parents=True)
    logfile = logdir / f"weight-swap-{mode}.log"
    proc = peers.spawn([str(peers.KERVE_BIN), "serve", "--host", "127.0.0.1", "--port", "0",
                        "--metrics-port", "-1", "--port-file", str(port_file), "--data-dir",
                        str(data), MODES[mode]], logfile, cwd=work)
    try:
        target = f"127.0.0.1:{peers._wait_port_file(port_file, proc, 300)['port']}"
        with Client(target, timeout=600) as client:
            client.upload("swap", architecture=model["architecture"], weights=model["w1"],
                          aliases=["production"])
            client.upload("swap", weights=model["w2"], base=1)
            prober = Prober(target, "swap")
            prober.start()
            time.sleep(2.0)
            before_kib = _status_kib(proc.pid, "VmRSS")
            Path(f"/proc/{proc.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
            moved = time.monotonic()
            client.set_alias("swap", "production", 2)
            deadline = moved + 600
            while time.monotonic() < deadline and not any(
                    v == 2 for _, _, v in prober.records[-20:]):
                time.sleep(0.01)
            time.sleep(2.0)  # the old version unloads
            prober.stop()
            peak_kib = _status_kib(proc.pid, "VmHWM")
            after_kib = _status_kib(proc.pid, "VmRSS")
    finally:
        peers.stop_proc(proc)
    first_new = min((done for _, done, v in prober.records if v == 2), default=None)
    if first_new is None:
        raise RuntimeError(f"{mode}: version 2 never answered; see {logfile}")
    during = [done - sent for sent, done, _ in prober.records if moved <= sent <= first_new]
    swapped = ([None] + list(_SWAPPED.finditer(logfile.read_text())))[-1]
    return {"mode": mode, "swap_s": first_new - moved,
            "pause_ms": 1000 * max(during, default=0.0),
            "peak_mib": (peak_kib - before_kib) / 1024, "retained_mib": (after_kib - before_kib) / 1024,
            "rss_before_mib": before_kib / 1024, "failed": len(prober.errors),
            "staged_s": float(swapped.group(1)) if swapped else None,
            "assigned_s": float(swapped.group(2)) if swapped else None}


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.weight_swap",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--params", type=float, default=25e6, help="the model's parameters")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(HERE / "results" / "weight_swap.json"))
    a = p.parse_args()

    from bench.peers import log

    work = Path(tempfile.mkdtemp(prefix="kerve-weight-swap-"))
    logdir = HERE / "results" / "logs"
    logdir.mkdir(parents=True, exist_ok=True)
    runs: list[dict] = []
    try:
        model = build(work, a.params)
        log(f"model: {model['parameters']:,} parameters, "
            f"{model['weights_bytes'] / 2**20:.0f} MiB of weights")
        for repeat in range(a.repeats):
            for mode in (MODES if repeat % 2 == 0 else reversed(list(MODES))):
                run = one_run(mode, model, work, logdir)
                log(f"repeat {repeat + 1} {mode}: {json.dumps(run)}")
                runs.append(run)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = {mode: {k: statistics.median(r[k] for r in runs if r["mode"] == mode)
                  for k in ("swap_s", "pause_ms", "peak_mib", "retained_mib", "failed")}
           for mode in MODES}
    lines = [f"== weights-only version of a {model['parameters'] / 1e6:.0f}M-parameter MLP "
             f"({model['weights_bytes'] / 2**20:.0f} MiB) made the default under batch-1 load; "
             f"medians of {a.repeats}",
             f"{'mode':<10} {'swap s':>8} {'pause ms':>9} {'peak MiB':>9} {'kept MiB':>9} "
             f"{'failed':>7}"]
    for mode, m in med.items():
        lines.append(f"{mode:<10} {m['swap_s']:>8.2f} {m['pause_ms']:>9.1f} "
                     f"{m['peak_mib']:>9.0f} {m['retained_mib']:>9.0f} {m['failed']:>7.0f}")
    ratio = {k: round(med["in_place"][k] / med["full"][k], 2) if med["full"][k] else None
             for k in ("swap_s", "pause_ms", "peak_mib")}
    lines.append("ratio in_place/full: " + ", ".join(f"{k} x{v}" for k, v in ratio.items()))
    print("\n".join(lines), flush=True)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"started": time.strftime("%Y-%m-%d %H:%M:%S"), "args": vars(a),
                               "model": model, "runs": runs, "medians": med, "ratio": ratio},
                              indent=1))
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
