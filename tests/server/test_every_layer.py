"""Every public Keras layer served exactly, through both protocols: the classes of
``layer_catalogue`` built into a few models, uploaded in parallel with golden examples (so
the load-time gate runs on each), then every output compared with Keras's own. Plus models
in float16, bfloat16, float64 and mixed precision, masking models, and variable-length
sequences.

"Exactly" is the golden examples' tolerance for the dtype (kerve.registry.examples); how
many outputs were bit-for-bit equal is printed too (run with -s to see the report)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tests.server import layer_catalogue as catalogue
from tests.server.helpers import wait_ready
from tests.server.protocols import tfs_predict, v2_raw

ROWS = 3


def test_catalogue_lists_every_public_class():
    public = set(catalogue.public_classes())
    served, excluded = catalogue.served_classes(), set(catalogue.EXCLUDED)
    assert not served & excluded
    assert public - served - excluded == set(), "new Keras layers: add them to the catalogue"
    assert served | excluded <= public


def _randomize(model, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for v in model.weights:
        if "float" in str(v.dtype):
            scale = 0.3 if "variance" not in v.path else 0.0
            value = rng.normal(0, scale, tuple(v.shape)) + (1.0 if "variance" in v.path else 0)
            v.assign(value.astype(str(v.dtype)))


def _keras_outputs(model, inputs: dict) -> dict[str, np.ndarray]:
    """What Keras answers: the model called in a tf.function, as model.predict does (which
    itself refuses string arrays)."""
    import tensorflow as tf

    names = [t._keras_history.operation.name for t in model.inputs]
    arrays = [tf.constant(inputs[n]) for n in names]
    call = tf.function(lambda *t: model(list(t) if len(t) > 1 else t[0], training=False))
    out = call(*arrays)
    out = out if isinstance(out, (list, tuple)) else [out]
    return {n: np.asarray(o) for n, o in zip(model.output_names, out)}


def _close(got: np.ndarray, want: np.ndarray) -> bool:
    from kerve.registry.examples import tolerance

    if got.shape != want.shape or got.dtype != want.dtype:
        return False
    if want.dtype == object or want.dtype.kind in "biu":
        return got.tolist() == want.tolist()
    atol, rtol = tolerance(want.dtype.name)
    g, w = got.astype(np.float64), want.astype(np.float64)
    return bool(np.allclose(g, w, atol=atol, rtol=rtol, equal_nan=True))


def _serve_and_compare(client, server_target, tf_stub, triton, models: dict) -> dict:
    """Upload ``{name: (model, inputs)}`` in parallel with golden examples, wait READY,
    and compare every output through both protocols. Returns name -> {output: (close,
    bit-for-bit)}."""
    expected = {name: _keras_outputs(model, inputs) for name, (model, inputs) in models.items()}

    def upload(name):
        model, inputs = models[name]
        client.upload(name, model=model,
                      examples={"inputs": inputs, "outputs": expected[name]})
        wait_ready(client, name, timeout=300)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(upload, models))
    results = {}
    for name, (model, inputs) in models.items():
        answers = [tfs_predict(tf_stub, name, inputs), v2_raw(triton, name, inputs)]
        results[name] = {
            out: (all(_close(a[out], want) for a in answers),
                  all(a[out].shape == want.shape and np.array_equal(
                      a[out], want, equal_nan=want.dtype.kind == "f") for a in answers))
            for out, want in expected[name].items()}
    return results


@pytest.mark.slow
def test_every_public_layer_is_served_exactly(client, server, tf_stub, triton, capsys):
    models, classes = {}, {}
    for i, group in enumerate(catalogue.GROUPS):
        model, output_classes = catalogue.build_group(group)
        _randomize(model, seed=i)
        names = [t._keras_history.operation.name for t in model.inputs]
        models[f"layers-{group}"] = (model, catalogue.make_inputs(names, ROWS, seed=i))
        classes[f"layers-{group}"] = dict(zip(model.output_names, output_classes))
    results = _serve_and_compare(client, server.target, tf_stub, triton, models)
    exact, bitwise, failed = set(), set(), {}
    per_class: dict[str, list[tuple[bool, bool]]] = {}
    for name, outputs in results.items():
        for out, verdict in outputs.items():
            per_class.setdefault(classes[name][out], []).append(verdict)
    for cls, verdicts in per_class.items():
        if all(v[0] for v in verdicts):
            exact.add(cls)
        else:
            failed[cls] = verdicts
        if all(v[1] for v in verdicts):
            bitwise.add(cls)
    public = catalogue.public_classes()
    served = exact | {c for c in catalogue.NOTES if c not in per_class}
    report = {"public_classes": len(public), "served_exactly": len(served),
              "with_an_output_of_their_own": len(per_class), "of_those_bit_for_bit":
              len(bitwise), "excluded": sorted(catalogue.EXCLUDED),
              "not_bit_for_bit": sorted(exact - bitwise), "failed": sorted(failed)}
    with capsys.disabled():
        print("\nevery-layer report:", json.dumps(report))
    assert not failed, failed
    assert len(served) == len(public) - len(catalogue.EXCLUDED)


def _precision_model(policy: str):
    import keras

    L = keras.layers
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        input_dtype = policy if not policy.startswith("mixed") else "float32"
        seq = keras.Input((5, 4), dtype=input_dtype, name="seq")
        x = L.Conv1D(6, 2, padding="same", activation="relu")(seq)
        x = L.LayerNormalization()(x)
        x = L.MultiHeadAttention(2, 3)(x, x)
        # The default orthogonal initializer needs a QR that TensorFlow lacks in bfloat16
        # (weights are replaced anyway).
        x = L.LSTM(4, return_sequences=True, recurrent_initializer="glorot_uniform")(x)
        x = L.BatchNormalization()(x)
        pooled = L.GlobalAveragePooling1D()(x)
        out = L.Dense(3, activation="softmax", name="probs")(pooled)
        model = keras.Model(seq, out, name=f"precision_{policy}")
    finally:
        keras.config.set_dtype_policy(previous)
    return model, input_dtype


def _masking_models() -> dict:
    import keras

    L = keras.layers
    rng = np.random.default_rng(7)
    models = {}

    steps = keras.Input((None, 4), name="steps")  # variable length, zero rows are padding
    x = L.Masking()(steps)
    x = L.LSTM(5, return_sequences=True)(x)
    x = L.GlobalAveragePooling1D()(x)
    model = keras.Model(steps, L.Dense(2, name="score")(x), name="masked_lstm")
    x = rng.uniform(0.2, 1, (3, 7, 4)).astype(np.float32)
    x[0, 4:] = 0
    x[2, 1:] = 0
    models["mask-lstm"] = (model, {"steps": x})

    tokens = keras.Input((None,), dtype="int32", name="tokens")
    e = L.Embedding(20, 6, mask_zero=True)(tokens)
    seqs = L.Bidirectional(L.GRU(4, return_sequences=True))(e)
    attended = L.MultiHeadAttention(2, 3)(seqs, seqs)
    pooled = L.GlobalAveragePooling1D()(attended)
    last = L.SimpleRNN(3)(e)
    model = keras.Model(tokens, [L.Dense(2, name="pooled")(pooled), L.Identity(name="last")(last)],
                        name="masked_embedding")
    t = rng.integers(1, 20, (3, 6)).astype(np.int32)
    t[0, 3:] = 0
    t[1, 5:] = 0
    models["mask-embedding"] = (model, {"tokens": t})
    return models


@pytest.mark.slow
def test_precisions_and_masking_models(client, server, tf_stub, triton):
    import ml_dtypes

    models = {}
    rng = np.random.default_rng(3)
    for policy in ("float16", "bfloat16", "float64", "mixed_float16", "mixed_bfloat16"):
        model, dtype = _precision_model(policy)
        _randomize(model, seed=len(models))
        x = rng.uniform(-1, 1, (ROWS, 5, 4))
        x = x.astype(ml_dtypes.bfloat16 if dtype == "bfloat16" else dtype)
        models[f"precision-{policy}".replace("_", "-")] = (model, {"seq": x})
    for name, (model, inputs) in _masking_models().items():
        _randomize(model, seed=len(models))
        models[name] = (model, inputs)
    results = _serve_and_compare(client, server.target, tf_stub, triton, models)
    failed = {name: out for name, outs in results.items() for out, v in outs.items() if not v[0]}
    assert not failed, failed
    sig = client.get_model("precision-bfloat16")["versions"][0]["signature"]
    assert sig["inputs"][0]["dtype"] == "bfloat16"
    assert client.get_model("precision-mixed-float16")["versions"][0]["signature"][
        "outputs"][0]["dtype"] == "float16"

    # Variable lengths: each length batched on its own, each answer as Keras gives it.
    model, _ = models["mask-embedding"]
    requests = [rng.integers(0, 20, (1 + i % 2, 2 + i % 5)).astype(np.int32) for i in range(20)]

    def call(i):
        send = tfs_predict if i % 2 else v2_raw
        target = tf_stub if i % 2 else triton
        return send(target, "mask-embedding", {"tokens": requests[i]})

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(call, range(len(requests))))
    for tokens, got in zip(requests, answers):
        want = _keras_outputs(model, {"tokens": tokens})
        for out in want:
            assert _close(got[out], want[out]), out
