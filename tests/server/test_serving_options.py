"""Per-model serving options as kerve.* tags: XLA with padded batches, batch size."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest

from kerve.registry.errors import InvalidArgumentError
from kerve.registry.serving_options import ServingOptions, options_from_tags
from tests.server.helpers import wait_ready


def test_options_from_tags():
    defaults = ServingOptions(max_batch_size=128, batch_timeout_ms=2.0, jit_compile=False)
    opts = options_from_tags({"kerve.max_batch_size": "64", "kerve.jit_compile": "true",
                              "team": "vision"}, defaults)
    assert opts == ServingOptions(max_batch_size=64, batch_timeout_ms=2.0, jit_compile=True)
    assert opts.batch_sizes() == (1, 2, 4, 8, 16, 32, 64)
    assert ServingOptions(24, 2.0, True).batch_sizes() == (1, 2, 4, 8, 16, 24)
    for bad in ({"kerve.nope": "1"}, {"kerve.max_batch_size": "x"},
                {"kerve.max_batch_size": "0"}, {"kerve.jit_compile": "maybe"}):
        with pytest.raises(InvalidArgumentError):
            options_from_tags(bad, defaults)


def test_bad_serving_tag_refused_at_upload(client, built, tmp_path):
    arch, weights = built("linear_sequential").save(tmp_path)
    with pytest.raises(grpc.RpcError) as e:
        client.upload("bad-tag", architecture=arch, weights=weights,
                      tags={"kerve.max_batch_size": "lots"})
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "kerve.max_batch_size" in e.value.details()


def test_xla_model_with_padded_batches_matches_keras(client, built, server, tmp_path):
    import tritonclient.grpc.aio as aioclient

    b = built("mnist_mlp", seed=51)
    arch, weights = b.save(tmp_path)
    client.upload("xla", architecture=arch, weights=weights,
                  tags={"kerve.jit_compile": "true", "kerve.max_batch_size": "8"})
    wait_ready(client, "xla")
    rng = np.random.default_rng(0)
    requests = [rng.standard_normal((n, 784)).astype(np.float32) for n in (1, 3, 2, 5, 1, 7)]

    async def run_all():
        triton = aioclient.InferenceServerClient(server.target)
        try:
            async def one(x):
                i = aioclient.InferInput(b.input_names[0], list(x.shape), "FP32")
                i.set_data_from_numpy(x)
                return (await triton.infer("xla", [i])).as_numpy(b.output_names[0])
            return await asyncio.gather(*(one(x) for x in requests))
        finally:
            await triton.close()

    for x, got in zip(requests, asyncio.run(run_all())):
        assert got.shape == (x.shape[0], 10)
        np.testing.assert_allclose(got, b.model.predict(x, verbose=0), atol=1e-4, rtol=1e-4)
