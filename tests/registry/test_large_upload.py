"""A weights file of a few hundred MB streams through with the server's memory growing by
O(chunk), not O(model): validation runs in its worker process, and the new version is not
the default, so the server does not load it."""

from __future__ import annotations

import pytest

MiB = 1 << 20


@pytest.mark.slow
def test_large_upload_server_memory_stays_flat(server, client, tmp_path):
    import keras

    inputs = keras.Input((8192,), name="x")
    outputs = keras.layers.Dense(8192, name="wide")(inputs)  # 67M parameters, 256 MiB
    model = keras.Model(inputs, outputs)
    arch, weights = tmp_path / "a.json", tmp_path / "w.weights.h5"
    arch.write_text(model.to_json())
    model.save_weights(weights)
    del model
    size = weights.stat().st_size
    assert size > 250 * MiB

    tiny_in = keras.Input((8192,), name="x")
    tiny = keras.Model(tiny_in, keras.layers.Dense(1, name="narrow")(tiny_in))
    client.upload("large", model=tiny, aliases=["production"])  # the default stays small

    before_peak = server.rss_peak_kib()
    before = server.rss_kib()
    version = client.upload("large", architecture=arch, weights=weights)
    after_peak = server.rss_peak_kib()
    assert version["weights"]["size"] == size
    growth_mib = (after_peak - max(before_peak, before)) / 1024
    print(f"upload of {size / MiB:.0f} MiB: server peak RSS grew by {growth_mib:.1f} MiB "
          f"(peak {before_peak / 1024:.0f} -> {after_peak / 1024:.0f} MiB)")
    assert growth_mib < 64, f"server memory grew by {growth_mib:.0f} MiB during the upload"
