"""The loader's call path: the traced function is run without tf.function's per-call work."""

from __future__ import annotations

import numpy as np


def _two_in_two_out():
    import keras
    import tensorflow as tf

    a, b = keras.Input((3,)), keras.Input((2,))
    joined = keras.layers.Concatenate()([a, b])
    model = keras.Model([a, b], [keras.layers.Dense(4)(joined), keras.layers.Dense(1)(joined)])
    specs = [tf.TensorSpec([None, 3], tf.float32), tf.TensorSpec([None, 2], tf.float32)]

    @tf.function(input_signature=specs)
    def serve(x, y):
        return keras.tree.flatten(model([x, y], training=False))
    return model, serve.get_concrete_function()


def test_flat_caller_uses_the_atomic_function_and_matches_keras():
    import tensorflow as tf

    from kerve.server.loader import flat_caller

    model, concrete = _two_in_two_out()
    call, path = flat_caller(concrete)
    # TensorFlow is pinned; if its internals move, this says so instead of going slow quietly.
    assert path == "atomic"
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((5, 3), np.float32), rng.standard_normal((5, 2), np.float32)
    got = [t.numpy() for t in call([tf.constant(x), tf.constant(y)])]
    want = model.predict([x, y], verbose=0)
    assert [g.shape for g in got] == [(5, 4), (5, 1)]
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_flat_caller_falls_back_to_the_concrete_function():
    import tensorflow as tf

    from kerve.server.loader import flat_caller

    model, concrete = _two_in_two_out()

    class Plain:  # a ConcreteFunction without TensorFlow's internal atomic function
        def __call__(self, *tensors):
            return concrete(*tensors)

    call, path = flat_caller(Plain())
    assert path == "concrete"
    x, y = np.ones((2, 3), np.float32), np.ones((2, 2), np.float32)
    got = [t.numpy() for t in call([tf.constant(x), tf.constant(y)])]
    np.testing.assert_array_equal(got[0], model.predict([x, y], verbose=0)[0])


def test_event_loop_choice():
    import asyncio

    import pytest

    from kerve.server.app import run_event_loop

    seen = []

    async def which():
        seen.append(type(asyncio.get_running_loop()).__module__.split(".")[0])

    run_event_loop(which(), "asyncio")
    run_event_loop(which(), "uvloop")
    run_event_loop(which(), "auto")
    assert seen == ["asyncio", "uvloop", "uvloop"]
    coro = which()
    with pytest.raises(ValueError, match="unknown event loop"):
        run_event_loop(coro, "trio")


def test_session_server_runs_on_uvloop(server):
    assert "event loop: uvloop" in server.log_path.read_text()
