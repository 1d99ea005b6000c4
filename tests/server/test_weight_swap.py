"""Weights-only versions swapped in place: a new default with the architecture of the one it
replaces takes over the serving model's variables between requests. Under a steady stream
of concurrent requests of several batch sizes through both protocols, every answer is
entirely the old version's or entirely the new one's, and says which; none fails. The old
version, asked for by number afterwards, is loaded again in full and answers with its own
weights. Layers whose state is more than variables are loaded in full instead."""

from __future__ import annotations

import threading
import time
import urllib.request

import numpy as np
import pytest

from tests.server.helpers import retry_unavailable, wait_ready
from tests.server.protocols import tfs_predict, v2_raw


def _deep_mlp(seed: int):
    """Eight Dense layers: a request run on a mix of two versions' weights gives neither
    version's answer."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((16,), name="x")
    h = inputs
    for i in range(8):
        h = keras.layers.Dense(32, activation="tanh", name=f"d{i}")(h)
    return keras.Model(inputs, keras.layers.Dense(4, name="y")(h))


def _loads(server, name: str, kind: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics",
                                  timeout=10).read().decode()
    key = f'kerve_model_loads_total{{kind="{kind}",model="{name}"}}'
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(key))


def test_every_answer_is_one_version_under_concurrent_load(server, client, tf_stub, triton,
                                                           tmp_path):
    name = "swap-inplace"
    old, new = _deep_mlp(1), _deep_mlp(2)
    arch = tmp_path / "arch.json"
    arch.write_text(old.to_json())
    old.save_weights(tmp_path / "old.weights.h5")
    new.save_weights(tmp_path / "new.weights.h5")
    client.upload(name, architecture=arch, weights=tmp_path / "old.weights.h5",
                  aliases=["production"])
    wait_ready(client, name, 1)
    rng = np.random.default_rng(0)
    batches = {rows: rng.normal(size=(rows, 16)).astype(np.float32) for rows in (1, 3, 8)}
    expected = {1: {r: old.predict(x, verbose=0) for r, x in batches.items()},
                2: {r: new.predict(x, verbose=0) for r, x in batches.items()}}
    full_before = _loads(server, name, "full")

    answers: list[tuple[int, int, np.ndarray]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def v2(rows: int) -> tuple[int, np.ndarray]:
        import tritonclient.grpc as grpcclient

        tensor = grpcclient.InferInput("x", [rows, 16], "FP32")
        tensor.set_data_from_numpy(batches[rows])
        result = triton.infer(name, [tensor], client_timeout=30)
        return int(result.get_response().model_version), result.as_numpy("y")

    def tfs(rows: int) -> tuple[int, np.ndarray]:
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        request.model_spec.name = name
        request.inputs["x"].CopyFrom(tf.make_tensor_proto(batches[rows]))
        response = tf_stub.Predict(request, timeout=30)
        return response.model_spec.version.value, tf.make_ndarray(response.outputs["y"])

    def hammer(i: int) -> None:
        call = (v2, tfs)[i % 2]
        rows = (1, 3, 8)[i % 3]
        while not stop.is_set():
            try:
                version, out = call(rows)
                answers.append((version, rows, out))
            except BaseException as exc:  # noqa: BLE001 - every failure is reported
                errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        up = client.upload(name, weights=tmp_path / "new.weights.h5", base=1)
        assert up["version"] == 2
        client.set_alias(name, "production", 2)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(v == 2 for v, _, _ in answers[-50:]):
            time.sleep(0.1)
        time.sleep(1.0)  # and a while on the new weights
    finally:
        stop.set()
        for t in threads:
            t.join()

    assert not errors, errors[:3]
    seen = {v for v, _, _ in answers}
    assert seen == {1, 2}, seen
    for version, rows, out in answers:
        np.testing.assert_allclose(out, expected[version][rows], rtol=1e-5, atol=1e-6)
    # Every request after the first answer from version 2 is answered by version 2.
    first_new = next(i for i, (v, _, _) in enumerate(answers) if v == 2)
    late_old = [i for i, (v, _, _) in enumerate(answers[first_new:]) if v == 1]
    assert len(late_old) <= 8, late_old  # at most the requests already in flight
    assert _loads(server, name, "in_place") == 1
    assert _loads(server, name, "full") == full_before  # nothing was rebuilt

    # The old version, asked for by number, is built again with its own weights.
    out = retry_unavailable(lambda: tfs_predict(tf_stub, name, {"x": batches[3]}, version=1))
    np.testing.assert_allclose(out["y"], expected[1][3], rtol=1e-5, atol=1e-6)
    out = v2_raw(triton, name, {"x": batches[3]})
    np.testing.assert_allclose(out["y"], expected[2][3], rtol=1e-5, atol=1e-6)


def test_normalization_layer_is_loaded_in_full(server, client, tf_stub, tmp_path):
    """Normalization derives its mean and variance when its weights load: assigning the
    variables alone would leave the old ones in use."""
    import keras

    name = "swap-full"
    models = []
    for seed in (1, 2):
        keras.utils.set_random_seed(seed)
        inputs = keras.Input((4,), name="x")
        norm = keras.layers.Normalization(name="n")
        norm.adapt(np.random.default_rng(seed).normal(seed, seed, size=(64, 4)))
        models.append(keras.Model(inputs, keras.layers.Dense(2, name="y")(norm(inputs))))
    arch = tmp_path / "arch.json"
    arch.write_text(models[0].to_json())
    for i, m in enumerate(models):
        m.save_weights(tmp_path / f"{i}.weights.h5")
    client.upload(name, architecture=arch, weights=tmp_path / "0.weights.h5")
    wait_ready(client, name, 1)
    client.upload(name, weights=tmp_path / "1.weights.h5", base=1)
    wait_ready(client, name, 2)
    x = np.ones((2, 4), np.float32)
    out = tfs_predict(tf_stub, name, {"x": x})
    np.testing.assert_allclose(out["y"], models[1].predict(x, verbose=0), rtol=1e-5, atol=1e-5)
    assert _loads(server, name, "in_place") == 0
    assert _loads(server, name, "full") == 2


@pytest.mark.parametrize("layer, obstacle", [
    ("dense", None), ("normalization", "derives state"), ("custom", "its own way")])
def test_in_place_obstacle(layer, obstacle):
    import keras

    from kerve.registry.keras_model import in_place_obstacle

    class OwnLoading(keras.layers.Dense):
        def load_own_variables(self, store):
            super().load_own_variables(store)

    made = {"dense": lambda: keras.layers.Dense(2), "normalization":
            lambda: keras.layers.Normalization(mean=0.0, variance=1.0),
            "custom": lambda: OwnLoading(2)}[layer]()
    inputs = keras.Input((3,))
    model = keras.Model(inputs, made(inputs))
    found = in_place_obstacle(model)
    assert (found is None) if obstacle is None else (obstacle in found)
