"""Golden examples: stored with the version, checked at upload by the validation worker and
again at load on the server's device (READY only if reproduced, else FAILED with the largest
difference and where), refused at upload when they do not fit the signature or are not
reproduced, downloaded back, given by the CLI."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from tests.clients.test_cli import kerve
from tests.server.helpers import wait_ready
from tests.server.protocols import tfs_predict


@pytest.fixture(scope="module")
def mlp():
    import keras

    inputs = keras.Input((6,), name="features")
    hidden = keras.layers.Dense(16, activation="tanh")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(4, name="scores")(hidden))
    x = np.random.default_rng(0).standard_normal((5, 6)).astype(np.float32)
    return model, x, model.predict(x, verbose=0)


def test_examples_reproduced_make_the_version_ready(client, mlp, tf_stub, tmp_path):
    model, x, y = mlp
    version = client.upload("golden", model=model,
                            examples={"inputs": {"features": x}, "outputs": {"scores": y}})
    assert version["examples"]["size"] > 0
    wait_ready(client, "golden")
    np.testing.assert_allclose(tfs_predict(tf_stub, "golden", {"features": x})["scores"], y,
                               rtol=1e-6, atol=1e-6)
    out = client.download("golden", tmp_path)
    with np.load(out["examples_path"]) as npz:
        assert sorted(npz.files) == ["input/features", "output/scores"]
        np.testing.assert_array_equal(npz["output/scores"], y)


def test_examples_not_reproduced_are_refused_at_upload_saying_where(client, mlp):
    """Checked by the validation worker before the version is stored: an upload's aliases
    never move onto a version whose examples fail (each server checks them again at load
    on its own device, where a failure makes the version FAILED)."""
    model, x, y = mlp
    wrong = y.copy()
    wrong[3, 2] += 0.5
    wrong[1, 0] += 0.01
    before = client.get_model("golden")["versions"] if _exists(client, "golden") else []
    with pytest.raises(grpc.RpcError) as e:
        client.upload("golden", model=model, aliases=["production"],
                      examples={"input/features": x, "output/scores": wrong})
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    message = e.value.details()
    assert "golden examples not reproduced: largest difference 0.5" in message
    assert "in output 'scores' at index [3, 2]" in message and "float32 tolerance" in message
    assert "checked at upload" in message
    after = client.get_model("golden")["versions"] if _exists(client, "golden") else []
    assert len(after) == len(before)
    assert "production" not in (client.get_model("golden")["aliases"]
                                if _exists(client, "golden") else {})


def _exists(client, name: str) -> bool:
    return any(m["name"] == name for m in client.list_models())


@pytest.mark.parametrize("examples,message", [
    ({"input/nope": np.zeros((2, 6), np.float32), "input/features": np.zeros((2, 6), np.float32),
      "output/scores": np.zeros((2, 4), np.float32)}, "inputs features, nope given"),
    ({"input/features": np.zeros((2, 5), np.float32),
      "output/scores": np.zeros((2, 4), np.float32)}, "expected shape [-1, 6], got [2, 5]"),
    ({"input/features": np.zeros((2, 6), np.float32),
      "output/scores": np.zeros((3, 4), np.float32)}, "disagree on the number of rows"),
    ({"input/features": np.zeros((2, 6), np.float32)}, "at least one"),
    ({"features": np.zeros((2, 6), np.float32)}, "input/INPUT_NAME or output/OUTPUT_NAME"),
])
def test_examples_that_do_not_fit_are_refused_at_upload(client, mlp, examples, message):
    model, _, _ = mlp
    with pytest.raises(grpc.RpcError) as e:
        client.upload("golden-misfit", model=model, examples=examples)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in e.value.details()


def test_string_examples_and_the_cli(client, server, tmp_path):
    import keras

    words = keras.Input((2,), dtype="string", name="words")
    model = keras.Model(words, keras.layers.StringLookup(vocabulary=["a", "b"], name="lookup")(words))
    x = np.array([["a", "zz"], ["b", "a"]])
    np.savez(tmp_path / "ex.npz", **{"input/words": x,
                                     "output/lookup": np.array([[1, 0], [2, 1]])})
    model.save(tmp_path / "m.keras")
    out = kerve("upload", "golden-cli", str(tmp_path / "m.keras"), "--examples",
                str(tmp_path / "ex.npz"), server=server)
    assert "golden-cli:1" in out.stdout
    wait_ready(client, "golden-cli")
    shown = kerve("models", "show", "golden-cli", server=server).stdout
    assert "golden examples" in shown
    np.savez(tmp_path / "bad.npz", **{"input/words": x,
                                      "output/lookup": np.array([[1, 0], [2, 2]])})
    refused = kerve("upload", "golden-cli", str(tmp_path / "m.keras"), "--examples",
                    str(tmp_path / "bad.npz"), server=server, check=False)
    assert refused.returncode == 1 and "golden examples not reproduced" in refused.stderr
    assert "output 'lookup' at index [1, 1] is 1, expected 2" in refused.stderr
    assert [v["version"] for v in client.get_model("golden-cli")["versions"]] == [1]


def test_warm_up_sizes():
    from kerve.registry.examples import Examples
    from kerve.registry.serving_options import ServingOptions
    from kerve.registry.signature import Signature, TensorSpec
    from kerve.server.loader import warm_up_sizes

    sig = Signature((TensorSpec("x", "float32", (-1, 3)),), (TensorSpec("y", "float32", (-1,)),))
    examples = Examples([np.zeros((5, 3), np.float32)], {"y": np.zeros(5, np.float32)})
    plain = ServingOptions(max_batch_size=16, batch_timeout_ms=1, jit_compile=False)
    xla = ServingOptions(max_batch_size=16, batch_timeout_ms=1, jit_compile=True)
    assert warm_up_sizes(sig, plain, None) == [1]
    assert warm_up_sizes(sig, plain, examples) == [1, 5]
    assert warm_up_sizes(sig, xla, examples) == [1, 2, 4, 5, 8, 16]
    assert [a.shape[0] for a in examples.take(12)] == [12]
