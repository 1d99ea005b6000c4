"""Every seed-zoo model uploads through the Python client and the CLI, downloads back
byte-identical, and rebuilds into a model that predicts exactly as the original."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import SAFE_ZOO
from tests.kerve_process import server_env


def _rebuild(arch_path, weights_path):
    import keras
    import seedzoo_layers

    model = keras.models.model_from_json(open(arch_path).read(),
                                         custom_objects=seedzoo_layers.CUSTOM_OBJECTS)
    if str(weights_path).endswith(".weights.h5"):
        model.load_weights(weights_path)
    else:
        from kerve.registry.keras_model import load_weights

        load_weights(model, weights_path)
    return model


def _assert_same_predictions(model, b):
    got = model.predict(b.inputs, verbose=0)
    got = got if isinstance(got, list) else [got]
    assert len(got) == len(b.outputs)
    for g, e in zip(got, b.outputs):
        np.testing.assert_array_equal(g, e)


@pytest.mark.parametrize("name", SAFE_ZOO)
def test_client_upload_download_rebuild(name, client, built, tmp_path):
    b = built(name)
    arch, weights = b.save(tmp_path / "in")
    version = client.upload(f"rt-{name}", architecture=arch, weights=weights,
                            description=f"seed {name}", tags={"zoo": name})
    assert version["version"] >= 1
    assert version["architecture_sha256"] and version["weights_sha256"]
    assert version["tags"] == {"zoo": name}
    out = client.download(f"rt-{name}", tmp_path / "out", version=version["version"])
    assert open(out["architecture_path"], "rb").read() == arch.read_bytes()
    assert open(out["weights_path"], "rb").read() == weights.read_bytes()
    _assert_same_predictions(_rebuild(out["architecture_path"], out["weights_path"]), b)


@pytest.mark.parametrize("name", SAFE_ZOO)
def test_cli_upload_keras_archive(name, server, built, tmp_path):
    b = built(name, seed=1)
    archive = b.save_keras(tmp_path / f"{name}.keras")
    result = subprocess.run(
        [sys.executable, "-m", "kerve.clients.cli", "upload", f"cli-{name}", str(archive),
         "--server", server.target, "--alias", "staging", "--tag", "via=cli", "--json"],
        capture_output=True, text=True, env=server_env(), timeout=300)
    assert result.returncode == 0, result.stderr
    version = json.loads(result.stdout)
    assert version["aliases"] == ["staging"]
    result = subprocess.run(
        [sys.executable, "-m", "kerve.clients.cli", "download", f"cli-{name}@staging",
         str(tmp_path / "out"), "--server", server.target, "--json"],
        capture_output=True, text=True, env=server_env(), timeout=300)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    import zipfile

    with zipfile.ZipFile(archive) as zf:
        assert open(out["architecture_path"], "rb").read() == zf.read("config.json")
        assert open(out["weights_path"], "rb").read() == zf.read("model.weights.h5")
    _assert_same_predictions(_rebuild(out["architecture_path"], out["weights_path"]), b)


@pytest.mark.parametrize("name", ["mnist_mlp", "custom_layers", "antirectifier"])
def test_legacy_h5_weights_recognised_by_content(name, client, built, tmp_path):
    b = built(name, seed=2)
    arch, weights = b.save(tmp_path, legacy=True)
    renamed = tmp_path / "weights.bin"  # the name says nothing: the content decides
    weights.rename(renamed)
    version = client.upload(f"legacy-{name}", architecture=arch, weights=renamed)
    assert version["weights_format"] == "legacy_h5"
    out = client.download(f"legacy-{name}", tmp_path / "out")
    assert open(out["weights_path"], "rb").read() == renamed.read_bytes()
    _assert_same_predictions(_rebuild(out["architecture_path"], out["weights_path"]), b)


def test_subclassed_model_upload(client, tmp_path):
    import seedzoo_layers

    model = seedzoo_layers.MLP(input_dim=20, hidden_units=8, num_classes=3)
    x = np.random.default_rng(0).standard_normal((4, 20)).astype("float32")
    expected = model.predict(x, verbose=0)
    version = client.upload("subclassed-mlp", model=model)
    sig = version["signature"]
    assert [t["name"] for t in sig["inputs"]] == ["input_0"]
    assert [t["name"] for t in sig["outputs"]] == ["output_0"]
    assert sig["inputs"][0]["shape"] == [-1, 20]
    assert version["custom_objects"] == ["seedzoo>MLP"]
    out = client.download("subclassed-mlp", tmp_path)
    np.testing.assert_array_equal(
        _rebuild(out["architecture_path"], out["weights_path"]).predict(x, verbose=0), expected)


def test_version_records_what_it_needs(client, built, tmp_path):
    b = built("custom_layers")
    arch, weights = b.save(tmp_path)
    v = client.upload("record-custom", architecture=arch, weights=weights)
    assert v["custom_objects"] == sorted([
        "seedzoo>CustomDense", "seedzoo>ExampleRandomNormal", "seedzoo>MyLayer",
        "seedzoo>MyMultiIOLayer", "seedzoo>MyRegularizer", "seedzoo>SeedDense"])
    assert "seedzoo>SeedDense" in v["layer_classes"] and "InputLayer" in v["layer_classes"]
    assert v["parameter_count"] == b.model.count_params()
    assert v["keras_version"] and v["tensorflow_version"].startswith("2.21")
    sig = v["signature"]
    assert [t["name"] for t in sig["inputs"]] == ["a", "b"]
    assert [t["name"] for t in sig["outputs"]] == b.output_names
    assert b.output_names[0].startswith("seed_dense")
    assert sig["inputs"][0] == {"name": "a", "dtype": "float32", "shape": [-1, 5]}


def test_weights_only_upload_reuses_architecture(client, built, tmp_path):
    b1, b2 = built("mnist_mlp", seed=3), built("mnist_mlp", seed=4)
    arch, w1 = b1.save(tmp_path / "1")
    _, w2 = b2.save(tmp_path / "2")
    v1 = client.upload("weights-only", architecture=arch, weights=w1)
    v2 = client.upload("weights-only", weights=w2)
    assert v2["version"] == v1["version"] + 1
    assert v2["architecture_sha256"] == v1["architecture_sha256"]
    assert v2["weights_sha256"] != v1["weights_sha256"]
