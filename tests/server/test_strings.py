"""Text models served end to end: string inputs and outputs as DT_STRING (TF Serving) and
BYTES (KServe v2, raw and typed), through validation, the signature, both metadata RPCs,
the batcher, the Python client and ``kerve predict``."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tests.server.helpers import wait_ready
from tests.server.protocols import tfs_predict, v2_raw, v2_typed

VOCAB = ["the", "cat", "sat", "on", "mat", "dog"]
SENTENCES = np.array([b"The cat sat on the mat.", b"A DOG!", b"", b"the the dog sat",
                      "caf\u00e9 cat".encode()], dtype=object)


def _strings(*items) -> np.ndarray:
    arr = np.empty(len(items), dtype=object)
    arr[:] = [x.encode() if isinstance(x, str) else x for x in items]
    return arr


def _lookups():
    """StringLookup, Hashing on strings, IntegerLookup and StringLookup(invert=True) (a
    string output) in one model."""
    import keras

    words = keras.Input((3,), dtype="string", name="words")
    ids = keras.Input((2,), dtype="int64", name="ids")
    outputs = [
        keras.layers.StringLookup(vocabulary=VOCAB, name="word_index")(words),
        keras.layers.Hashing(num_bins=17, name="word_hash")(words),
        keras.layers.IntegerLookup(vocabulary=[3, 7, 11, 42], name="id_index")(ids),
        keras.layers.StringLookup(vocabulary=VOCAB, invert=True, name="id_word")(ids),
    ]
    return keras.Model([words, ids], outputs, name="lookups")


def _vectorizer():
    import keras

    sentences = keras.Input((), dtype="string", name="sentence")
    vectorize = keras.layers.TextVectorization(
        vocabulary=VOCAB + ["the cat", "cat sat"], standardize="lower_and_strip_punctuation",
        ngrams=2, output_sequence_length=8, name="tokens")
    return keras.Model(sentences, vectorize(sentences), name="vectorizer")


def _classifier():
    """A text classifier on raw sentences: vectorize, embed (masking padding), average,
    classify."""
    import keras

    sentences = keras.Input((), dtype="string", name="sentence")
    x = keras.layers.TextVectorization(vocabulary=VOCAB, output_sequence_length=6)(sentences)
    x = keras.layers.Embedding(len(VOCAB) + 2, 8, mask_zero=True)(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    x = keras.layers.Dense(8, activation="relu")(x)
    out = keras.layers.Dense(3, activation="softmax", name="label")(x)
    model = keras.Model(sentences, out, name="classifier")
    rng = np.random.default_rng(3)
    for v in model.weights:
        v.assign(rng.normal(0, 0.5, tuple(v.shape)).astype("float32"))
    return model


@pytest.fixture(scope="module")
def text_models(client):
    models = {"str-lookups": _lookups(), "str-vectorizer": _vectorizer(),
              "str-classifier": _classifier()}
    versions = {name: client.upload(name, model=model) for name, model in models.items()}
    for name in models:
        wait_ready(client, name)
    return models, versions


def _lookup_inputs(rows: int = 4, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    words = np.array([w.encode() for w in rng.choice(VOCAB + ["unknown", ""], rows * 3)],
                     dtype=object).reshape(rows, 3)
    ids = rng.choice([0, 1, 3, 6, 7, 42, 99], (rows, 2)).astype(np.int64)
    return {"words": words, "ids": ids}


def _expected(model, inputs: dict) -> dict:
    # Compiled, as Keras's predict and the server run it: an eager call of the model gives
    # NaN for the empty sentence on some machines where a tf.function does not.
    import tensorflow as tf

    x = {k: tf.convert_to_tensor(v) for k, v in inputs.items()}
    x = x if len(model.inputs) > 1 else next(iter(x.values()))
    out = tf.function(lambda t: model(t, training=False))(x)
    out = out if isinstance(out, (list, tuple)) else [out]
    return {name: np.asarray(o) for name, o in zip(model.output_names, out)}


def _assert_same(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for name, w in want.items():
        g = got[name]
        assert g.shape == w.shape, name
        if w.dtype == object:
            assert g.dtype == object and g.tolist() == w.tolist(), name
        else:
            np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6, err_msg=name)


def test_signature_says_string(text_models, client, triton, tf_stub):
    _, versions = text_models
    sig = versions["str-lookups"]["signature"]
    assert [(t["name"], t["dtype"], t["shape"]) for t in sig["inputs"]] == [
        ("words", "string", [-1, 3]), ("ids", "int64", [-1, 2])]
    outputs = {t["name"]: t["dtype"] for t in sig["outputs"]}
    # Keras's symbolic dtype of StringLookup(invert=True) is int64; the version records
    # what the model really gives.
    assert outputs == {"word_index": "int64", "word_hash": "int64", "id_index": "int64",
                       "id_word": "string"}
    meta = triton.get_model_metadata("str-lookups")
    assert [(i.name, i.datatype) for i in meta.inputs] == [("words", "BYTES"), ("ids", "INT64")]
    assert {o.name: o.datatype for o in meta.outputs}["id_word"] == "BYTES"

    from tensorflow.core.framework import types_pb2
    from tensorflow_serving.apis import get_model_metadata_pb2

    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "str-lookups"
    response = tf_stub.GetModelMetadata(request, timeout=30)
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(sig_map)
    sig_def = sig_map.signature_def["serving_default"]
    assert sig_def.inputs["words"].dtype == types_pb2.DT_STRING
    assert sig_def.outputs["id_word"].dtype == types_pb2.DT_STRING


def test_lookups_through_every_wire_format(text_models, server, triton, tf_stub):
    models, _ = text_models
    inputs = _lookup_inputs()
    want = _expected(models["str-lookups"], inputs)
    _assert_same(tfs_predict(tf_stub, "str-lookups", inputs), want)
    _assert_same(v2_raw(triton, "str-lookups", inputs), want)
    _assert_same(v2_typed(server.target, "str-lookups", inputs), want)


def test_text_vectorization_and_classifier(text_models, server, triton, tf_stub):
    models, _ = text_models
    for name in ("str-vectorizer", "str-classifier"):
        want = _expected(models[name], {"sentence": SENTENCES})
        for answer in (tfs_predict(tf_stub, name, {"sentence": SENTENCES}),
                       v2_raw(triton, name, {"sentence": SENTENCES}),
                       v2_typed(server.target, name, {"sentence": SENTENCES})):
            _assert_same(answer, want)
    tokens = tfs_predict(tf_stub, "str-vectorizer", {"sentence": SENTENCES[:1]})["tokens"]
    # "The cat sat on the mat." lowercased, unpunctuated, unigrams then bigrams
    assert tokens.tolist() == [[2, 3, 4, 5, 2, 6, 8, 9]]


def test_concurrent_string_requests_are_batched_and_split_back(text_models, tf_stub, triton):
    models, _ = text_models
    requests = [_lookup_inputs(rows=1 + i % 3, seed=i) for i in range(48)]
    expected = [_expected(models["str-lookups"], r) for r in requests]

    def call(i):
        if i % 2:
            return tfs_predict(tf_stub, "str-lookups", requests[i])
        return v2_raw(triton, "str-lookups", requests[i])

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(call, range(len(requests))))
    for got, want in zip(answers, expected):
        _assert_same(got, want)


def test_wrong_dtype_names_the_input(text_models, tf_stub):
    import grpc

    with pytest.raises(grpc.RpcError) as e:
        tfs_predict(tf_stub, "str-vectorizer", {"sentence": np.zeros(2, np.float32)})
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "expected dtype string" in e.value.details()


def test_python_client_takes_and_gives_strings(text_models, client):
    out = client.predict("str-lookups", {"words": [["the", "cat", "zebra"]],
                                         "ids": np.array([[1, 2]])})
    assert out["id_word"].tolist() == [[b"the", b"cat"]]
    assert out["word_index"].tolist() == [[1, 2, 0]]


def test_cli_predict_json_and_npy_strings(text_models, server, tmp_path):
    from tests.clients.test_cli import kerve

    (tmp_path / "s.json").write_text(json.dumps(["the cat sat", "dog"]))
    printed = json.loads(kerve("predict", "str-vectorizer", "--input",
                               f"sentence={tmp_path / 's.json'}", "--json", server=server).stdout)
    assert printed["tokens"]["data"][1][:2] == [7, 0]
    np.save(tmp_path / "w.npy", np.array([["mat", "on", "the"]]))
    np.save(tmp_path / "i.npy", np.array([[4, 5]], dtype=np.int64))
    out = kerve("predict", "str-lookups", "--input", f"words={tmp_path / 'w.npy'}",
                "--input", f"ids={tmp_path / 'i.npy'}", "--output-dir", str(tmp_path / "o"),
                server=server)
    assert "id_word: string[1, 2]" in out.stdout
    assert np.load(tmp_path / "o" / "id_word.npy").tolist() == [["on", "mat"]]
    printed = json.loads(kerve("predict", "str-lookups", "--input", f"words={tmp_path / 'w.npy'}",
                               "--input", f"ids={tmp_path / 'i.npy'}", "--json",
                               server=server).stdout)
    assert printed["id_word"] == {"dtype": "string", "shape": [1, 2], "data": [["on", "mat"]]}
