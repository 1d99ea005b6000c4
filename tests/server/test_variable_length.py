"""A model with a free non-batch dimension (sequences of any length) under concurrent
requests of different lengths, through both protocols: each answers what it would alone."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tests.server.helpers import wait_ready


@pytest.fixture(scope="module")
def sequence_model(client, tmp_path_factory):
    import keras

    inputs = keras.Input((None, 4), name="tokens")
    hidden = keras.layers.Dense(8, activation="tanh")(inputs)
    pooled = keras.layers.GlobalAveragePooling1D()(hidden)
    outputs = keras.layers.Dense(3, name="scores")(pooled)
    model = keras.Model(inputs, outputs)
    path = tmp_path_factory.mktemp("seq") / "seq.keras"
    model.save(path)
    client.upload("seq", keras_path=path)
    wait_ready(client, "seq")
    return model


def _tfs(tf_stub, x):
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "seq"
    request.inputs["tokens"].CopyFrom(tf.make_tensor_proto(x))
    return tf.make_ndarray(tf_stub.Predict(request, timeout=30).outputs["scores"])


def _v2(triton, x):
    import tritonclient.grpc as grpcclient

    tensor = grpcclient.InferInput("tokens", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    return triton.infer("seq", [tensor], client_timeout=30).as_numpy("scores")


def test_concurrent_requests_of_different_lengths(sequence_model, tf_stub, triton):
    rng = np.random.default_rng(0)
    requests = [rng.random((int(rng.integers(1, 4)), int(rng.integers(1, 40)), 4),
                           dtype=np.float32) for _ in range(96)]
    expected = [sequence_model.predict(x, verbose=0) for x in requests]

    def call(i):
        x = requests[i]
        return _tfs(tf_stub, x) if i % 2 else _v2(triton, x)

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(call, range(len(requests))))
    for want, got in zip(expected, answers):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
