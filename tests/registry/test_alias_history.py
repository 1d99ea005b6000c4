"""Alias history and rollback: every move recorded (from, to, when, by whom), and a rollback
that servers swap in as any alias move."""

from __future__ import annotations

import json

import grpc
import numpy as np
import pytest

from tests.clients.test_cli import kerve
from tests.server.helpers import wait_ready


def test_history_and_rollback(server, client, tmp_path):
    import keras

    inputs = keras.Input((3,), name="x")
    model = keras.Model(inputs, keras.layers.Dense(1, name="y")(inputs))
    path = tmp_path / "m.keras"
    outputs = {}
    x = np.ones((1, 3), np.float32)
    for version in (1, 2, 3):
        model.set_weights([np.full(w.shape, version, "float32") for w in model.get_weights()])
        model.save(path)
        client.upload("history", keras_path=path,
                      aliases=["production"] if version == 1 else [])
        outputs[version] = model.predict(x, verbose=0)
    with pytest.raises(grpc.RpcError) as e:  # only one move so far: nowhere to go back to
        client.rollback_alias("history", "production")
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    client.set_alias("history", "production", 2)
    client.set_alias("history", "production", 3)
    moves = client.alias_history("history", "production")
    assert [(m["from"], m["to"]) for m in moves] == [(None, 1), (1, 2), (2, 3)]
    assert all(m["actor"] and m["at"] for m in moves)

    rolled = client.rollback_alias("history", "production")
    assert rolled["version"] == 2 and rolled["aliases"]["production"] == 2
    wait_ready(client, "history", 2)
    got = client.predict("history", {"x": x})["y"]  # the default is 2 again, served
    np.testing.assert_allclose(got, outputs[2], rtol=1e-5)
    assert client.alias_history("history", "production")[-1]["from"] == 3

    lines = kerve("alias", "history", "production", "--history", server=server).stdout
    assert len(lines.strip().splitlines()) == 4 and "3 -> 2" in lines
    assert "history@production -> 3" in kerve("rollback", "history", "production",
                                              server=server).stdout
    as_json = json.loads(kerve("alias", "history", "production", "--history", "--json",
                               server=server).stdout)
    assert as_json[-1]["to"] == 3
    missing = kerve("alias", "history", "nope", "--history", server=server, check=False)
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr


def test_moving_an_alias_where_it_already_is_is_not_a_move(client, tmp_path):
    """A rollback after a no-op move goes back to the version before, not onto itself."""
    import keras

    inputs = keras.Input((2,), name="x")
    model = keras.Model(inputs, keras.layers.Dense(1, name="y")(inputs))
    path = tmp_path / "m.keras"
    model.save(path)
    for version in (1, 2):
        client.upload("noop-move", keras_path=path,
                      aliases=["production"] if version == 1 else [])
    client.set_alias("noop-move", "production", 2)
    before = client.alias_history("noop-move", "production")
    client.set_alias("noop-move", "production", 2)  # already there
    assert client.alias_history("noop-move", "production") == before
    assert [(m["from"], m["to"]) for m in before] == [(None, 1), (1, 2)]
    rolled = client.rollback_alias("noop-move", "production")
    assert rolled["aliases"]["production"] == 1
