"""First-request latency with and without golden examples.

Starts one ``kerve serve`` (loopback, free port, temp data dir). For each model, mode
(``plain``: no examples, the loader warms up on made-up inputs at batch 1; ``examples``:
golden examples of ``--example-rows`` rows, which the loader checks and then replays at
batch 1 and at their own batch) and request batch size, it uploads a fresh copy of the model,
waits until it is READY, and times the first TF Serving ``Predict`` (what a user's first
request pays) and then ``--steady`` more (the median: "the thousandth"). Each cell is
repeated ``--repeats`` times on new uploads; medians are printed and written to
bench/results/first_request.json.

    .venv/bin/python -m bench.first_request                     # mlp, resnet, text; b1, b32
    .venv/bin/python -m bench.first_request --models mlp --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import models as bench_models
from bench.peers import start_kerve, stop_proc

HERE = Path(__file__).resolve().parent
MODELS = ("mlp", "resnet", "text")
WORDS = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran"]


def build(name: str):
    """(Keras model, input name, make_inputs(rows, seed))."""
    import keras

    if name in ("mlp", "resnet"):
        model = bench_models.build(name)
        return model, model.inputs[0]._keras_history.operation.name, \
            lambda rows, seed: bench_models.make_inputs(name, rows, 1, seed)[0]
    keras.utils.set_random_seed(1234)
    sentences = keras.Input((), dtype="string", name="sentence")
    x = keras.layers.TextVectorization(vocabulary=WORDS, output_sequence_length=16)(sentences)
    x = keras.layers.Embedding(len(WORDS) + 2, 32, mask_zero=True)(x)
    x = keras.layers.Bidirectional(keras.layers.GRU(16))(x)
    model = keras.Model(sentences, keras.layers.Dense(3, name="label")(x), name="text")

    def make(rows: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return np.array([" ".join(rng.choice(WORDS, int(rng.integers(2, 12))))
                         for _ in range(rows)], dtype=object)
    return model, "sentence", make


def keras_outputs(model, x: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    return np.asarray(tf.function(lambda t: model(t, training=False))(tf.constant(x)))


def predict_once(stub, name: str, input_name: str, x: np.ndarray) -> float:
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.inputs[input_name].CopyFrom(tf.make_tensor_proto(x))
    started = time.perf_counter()
    stub.Predict(request, timeout=60)
    return time.perf_counter() - started


def wait_ready(client, name: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        version = client.get_model(name)["versions"][-1]
        if version["status"] == "READY":
            return
        if version["status"] == "FAILED":
            raise RuntimeError(f"{name} FAILED: {version['status_message']}")
        time.sleep(0.05)
    raise TimeoutError(name)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--example-rows", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steady", type=int, default=30)
    parser.add_argument("--out", default=str(HERE / "results" / "first_request.json"))
    args = parser.parse_args(argv)

    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    from kerve.clients.client import Client

    workdir = Path(tempfile.mkdtemp(prefix="kerve-first-"))
    built = {name: build(name) for name in args.models}
    mlp_path = workdir / "warm.keras"
    built[args.models[0]][0].save(mlp_path)
    server = start_kerve("first", "warm", str(mlp_path), workdir, [], workdir / "logs")
    results = []
    try:
        with Client(server.target, timeout=300) as client, \
                grpc.insecure_channel(server.target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            for repeat in range(args.repeats):
                for name, (model, input_name, make) in built.items():
                    for batch in args.batches:
                        for mode in ("plain", "examples"):
                            tag = f"{name}-{mode}-b{batch}-r{repeat}"
                            examples = None
                            if mode == "examples":
                                ex = make(args.example_rows, 99)
                                examples = {f"input/{input_name}": ex,
                                            f"output/{model.output_names[0]}":
                                                keras_outputs(model, ex)}
                            client.upload(tag, model=model, examples=examples)
                            wait_ready(client, tag)
                            x = make(batch, repeat)
                            first = predict_once(stub, tag, input_name, x)
                            steady = statistics.median(
                                predict_once(stub, tag, input_name, make(batch, 1000 + i))
                                for i in range(args.steady))
                            results.append({"model": name, "mode": mode, "batch": batch,
                                            "repeat": repeat, "first_ms": first * 1e3,
                                            "steady_ms": steady * 1e3})
                            print(f"{tag}: first {first * 1e3:.1f} ms, then median "
                                  f"{steady * 1e3:.2f} ms", flush=True)
    finally:
        stop_proc(server.proc)
    summary = {}
    for r in results:
        key = f"{r['model']} b{r['batch']} {r['mode']}"
        summary.setdefault(key, {"first_ms": [], "steady_ms": []})
        summary[key]["first_ms"].append(r["first_ms"])
        summary[key]["steady_ms"].append(r["steady_ms"])
    print("\nmedians over repeats (first request / steady median), ms:")
    for key, v in summary.items():
        v["first_ms_median"] = statistics.median(v["first_ms"])
        v["steady_ms_median"] = statistics.median(v["steady_ms"])
        print(f"  {key:24s} {v['first_ms_median']:8.1f} / {v['steady_ms_median']:.2f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"results": results, "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
