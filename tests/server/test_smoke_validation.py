"""Validation refuses only what is wrong: made-up inputs that exercise the model (not
zeros), non-finite outputs on them a warning on the version rather than a refusal, and a
subclassed model's batch dimension free whatever batch built it."""

from __future__ import annotations

import numpy as np

from tests.clients.test_cli import kerve
from tests.server.helpers import wait_ready
from tests.server.protocols import tfs_predict, v2_raw


def test_masked_average_over_zero_padding_is_accepted_and_served(client, tf_stub, triton):
    import keras

    steps = keras.Input((None, 4), name="steps")
    x = keras.layers.Masking()(steps)  # mask_value 0.0: zero rows are padding
    x = keras.layers.GlobalAveragePooling1D()(x)  # the masked average
    out = keras.layers.Dense(2, name="score")(x)
    model = keras.Model(steps, out)
    version = client.upload("masked-average", model=model)
    wait_ready(client, "masked-average")
    assert version["warnings"] == []  # made-up steps are not zero, so none is masked
    rng = np.random.default_rng(0)
    x = rng.uniform(0.5, 1, (3, 5, 4)).astype(np.float32)
    x[0, 3:] = 0  # padded
    x[1] = 0  # all padding: 0 / 0 in Keras as well
    want = model.predict(x, verbose=0)
    assert np.isnan(want[1]).all() and np.isfinite(want[[0, 2]]).all()
    for got in (tfs_predict(tf_stub, "masked-average", {"steps": x})["score"],
                v2_raw(triton, "masked-average", {"steps": x})["score"]):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)  # NaN where NaN


def test_non_finite_outputs_on_made_up_data_are_a_warning(client, server, tf_stub):
    import keras

    inputs = keras.Input((4,), name="x")
    out = keras.layers.Dense(2, activation="exponential", name="grows")(inputs)
    model = keras.Model(inputs, out)
    model.layers[-1].kernel.assign(np.full((4, 2), 1e4, np.float32))
    version = client.upload("overflows", model=model)
    (warning,) = version["warnings"]
    assert "output 'grows' was non-finite" in warning
    wait_ready(client, "overflows")
    x = np.array([[0.0, 0.0, 0.0, -0.001], [1.0, 0.0, 0.0, 0.0]], np.float32)
    got = tfs_predict(tf_stub, "overflows", {"x": x})["grows"]
    np.testing.assert_array_equal(got, model.predict(x, verbose=0))
    shown = kerve("models", "show", "overflows", server=server).stdout
    assert "warning: output 'grows' was non-finite" in shown


def test_embedding_indices_stay_valid(client, tf_stub):
    """Made-up integers stay below the smallest input_dim: CategoryEncoding refuses
    anything else, even on made-up data."""
    import keras

    ids = keras.Input((3,), dtype="int32", name="ids")
    emb = keras.layers.Flatten()(keras.layers.Embedding(3, 2)(ids))
    onehot = keras.layers.CategoryEncoding(num_tokens=3, output_mode="multi_hot")(ids)
    model = keras.Model(ids, [emb, onehot])
    client.upload("small-vocab", model=model)
    wait_ready(client, "small-vocab")
    x = np.array([[0, 1, 2]], np.int32)
    got = tfs_predict(tf_stub, "small-vocab", {"ids": x})
    for name, want in zip(model.output_names, model.predict(x, verbose=0)):
        np.testing.assert_array_equal(got[name], want)


def test_subclassed_model_keeps_a_free_batch_dimension(client, tf_stub, triton):
    import seedzoo_layers

    model = seedzoo_layers.MLP(hidden_units=8, num_classes=3)
    model(np.zeros((2, 16), np.float32))  # built on a batch of 2
    assert list(model.get_build_config()["input_shape"]) == [2, 16]
    version = client.upload("subclassed-free-batch", model=model)
    assert version["signature"]["inputs"][0]["shape"] == [-1, 16]
    assert version["signature"]["outputs"][0]["shape"] == [-1, 3]
    wait_ready(client, "subclassed-free-batch")
    x = np.random.default_rng(1).standard_normal((3, 16)).astype(np.float32)
    want = model.predict(x, verbose=0)
    for got in (tfs_predict(tf_stub, "subclassed-free-batch", {"input_0": x})["output_0"],
                v2_raw(triton, "subclassed-free-batch", {"input_0": x})["output_0"]):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
