"""`kerve diff`: what changed between two versions, through the registry RPC, the Python
client and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.clients.test_cli import kerve


@pytest.fixture(scope="module")
def two_versions(client, tmp_path_factory):
    import keras

    tmp = tmp_path_factory.mktemp("diff")

    def build(units: int, activation: str, extra: bool):
        inputs = keras.Input((8,), name="x")
        hidden = keras.layers.Dense(units, activation=activation, name="hidden")(inputs)
        if extra:
            hidden = keras.layers.Dropout(0.1, name="drop")(hidden)
        outputs = keras.layers.Dense(2, name="y")(hidden)
        return keras.Model(inputs, outputs)

    first, second = build(16, "relu", False), build(32, "tanh", True)
    for i, model in enumerate((first, second)):
        model.save(tmp / f"m{i}.keras")
        client.upload("diffed", keras_path=tmp / f"m{i}.keras")
    client.set_alias("diffed", "stable", 1)
    return first, second


def test_diff_names_layers_keys_shapes_and_parameters(client, two_versions):
    first, second = two_versions
    d = client.diff("diffed", "stable", 2)
    assert (d["version_a"], d["version_b"]) == (1, 2)
    assert not d["same_architecture"] and not d["same_weights"]
    layers = {c["layer"]: c for c in d["layers"]}
    assert layers["drop"]["change"] == "added" and layers["drop"]["class_b"] == "Dropout"
    hidden = layers["hidden"]
    assert hidden["change"] == "changed"
    assert hidden["config"]["units"] == ["16", "32"]
    assert hidden["config"]["activation"] == ['"relu"', '"tanh"']
    assert "y" not in layers  # same class, same config
    kernels = [w for w in d["weights"] if w["shape_a"] == [8, 16]]
    assert kernels and kernels[0]["shape_b"] == [8, 32]
    assert d["parameters_a"] == first.count_params()
    assert d["parameters_b"] == second.count_params()
    assert d["signature"] == []
    same = client.diff("diffed", 1, 1)
    assert same["same_architecture"] and same["same_weights"] and same["layers"] == []


def test_diff_on_the_command_line(server, two_versions):
    out = kerve("diff", "diffed:1", "diffed:2", server=server).stdout
    assert "diffed:1 -> diffed:2" in out
    assert "added    drop (Dropout)" in out and "units: 16 -> 32" in out
    as_json = json.loads(kerve("diff", "diffed@stable", "diffed", "--json",
                               server=server).stdout)
    assert as_json["version_b"] == 2
    refused = kerve("diff", "diffed:1", "other:1", server=server, check=False)
    assert refused.returncode == 1 and "one model" in refused.stderr
    missing = kerve("diff", "diffed:1", "diffed:9", server=server, check=False)
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr


def test_weights_alone_on_a_chosen_version(server, client, two_versions, tmp_path):
    """--from: weights fitting version 1's architecture, while the default is version 2."""
    import grpc

    first, _ = two_versions
    first.save_weights(tmp_path / "first.weights.h5")
    with pytest.raises(grpc.RpcError) as e:  # the default's architecture does not fit them
        client.upload("diffed", weights=tmp_path / "first.weights.h5")
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    made = client.upload("diffed", weights=tmp_path / "first.weights.h5", base="stable")
    assert client.diff("diffed", 1, made["version"])["same_architecture"]
    out = kerve("upload", "diffed", "--weights", str(tmp_path / "first.weights.h5"),
                "--from", "diffed:1", "--json", server=server).stdout
    assert client.diff("diffed", 1, json.loads(out)["version"])["same_architecture"]
    refused = kerve("upload", "diffed", "--weights", str(tmp_path / "first.weights.h5"),
                    "--from", "other:1", server=server, check=False)
    assert refused.returncode == 1 and "--from names other" in refused.stderr


def test_diff_text_says_when_only_the_weights_differ(server, client, tmp_path):
    import keras

    inputs = keras.Input((3,), name="x")
    model = keras.Model(inputs, keras.layers.Dense(2, name="y")(inputs))
    for seed in (1, 2):
        model.set_weights([np.full(w.shape, seed, "float32") for w in model.get_weights()])
        model.save(tmp_path / "m.keras")
        client.upload("reweighted", keras_path=tmp_path / "m.keras")
    out = kerve("diff", "reweighted:1", "reweighted:2", server=server).stdout
    assert "same architecture" in out and "only the weights' values differ" in out
