"""Search: versions by tags, layer classes and custom objects, through the registry RPC, the
Python client and the CLI."""

from __future__ import annotations

import json

from tests.clients.test_cli import kerve


def test_search_by_tag_layer_and_custom_object(server, client, built, tmp_path):
    vision = built("conv2d_catalogue", seed=61)
    arch, weights = vision.save(tmp_path / "vision")
    client.upload("search-vision", architecture=arch, weights=weights,
                  tags={"team": "vision", "stage": "beta"})
    custom = built("custom_layers", seed=62)
    arch, weights = custom.save(tmp_path / "custom")
    client.upload("search-custom", architecture=arch, weights=weights, tags={"team": "nlp"})
    needed = client.get_model("search-custom")["versions"][0]["custom_objects"]
    assert needed

    found = client.search(tags={"team": "vision"}, layers=["Conv2D"])
    assert [(v["name"], v["version"]) for v in found] == [("search-vision", 1)]
    assert client.search(tags={"team": "vision", "stage": "ga"}) == []
    assert client.search(layers=["Conv2D", "NoSuchLayer"]) == []
    by_object = client.search(custom_objects=[needed[0]])
    assert ("search-custom", 1) in [(v["name"], v["version"]) for v in by_object]
    assert "search-vision" not in {v["name"] for v in by_object}

    out = kerve("models", "--tag", "team=vision", "--layer", "Conv2D", server=server).stdout
    assert out.startswith("search-vision:1\t")
    as_json = json.loads(kerve("models", "--custom-object", needed[0], "--json",
                               server=server).stdout)
    assert "search-custom" in {v["name"] for v in as_json}
