"""stage_weights and assign_staged on their own, with a real Keras model and the loader's
traced function: staging touches nothing; assigning changes what the same traced function
answers (no retrace); golden examples that the new weights do not reproduce put the old
weights back and raise FAILED_PRECONDITION."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

from kerve.registry.database import Blob, VersionInfo
from kerve.registry.errors import FailedPreconditionError
from kerve.registry.examples import Examples
from kerve.registry.serving_options import ServingOptions

DEFAULTS = ServingOptions(max_batch_size=8, batch_timeout_ms=1.0, jit_compile=False)


class Blobs:
    """A blob store of named files (the loader asks it for local paths only)."""

    def __init__(self, paths: dict[str, str]) -> None:
        self.paths = paths

    def local_path(self, sha256: str):
        from pathlib import Path

        return Path(self.paths[sha256])


def _info(version: int, arch: str, weights: str, signature) -> VersionInfo:
    return VersionInfo("m", version, Blob(arch, 1), Blob(weights, 1), "keras", signature,
                       ["Dense"], [], "3", "2.21", 1, "", {}, datetime.now(timezone.utc))


@pytest.fixture
def two_versions(tmp_path):
    import keras

    from kerve.registry import keras_model as km
    from kerve.registry.plugins import load_plugins
    from kerve.server.loader import load_version

    models = []
    for seed in (1, 2):
        keras.utils.set_random_seed(seed)
        inputs = keras.Input((4,), name="x")
        models.append(keras.Model(inputs, keras.layers.Dense(3, name="y")(
            keras.layers.Dense(8, activation="tanh", name="h")(inputs)), name="m"))
    (tmp_path / "arch.json").write_text(models[0].to_json())
    for i, m in enumerate(models):
        m.save_weights(tmp_path / f"{i}.weights.h5")
    blobs = Blobs({"a" * 64: str(tmp_path / "arch.json"), "0" * 64: str(tmp_path / "0.weights.h5"),
                   "1" * 64: str(tmp_path / "1.weights.h5")})
    signature = km.derive_signature(models[0])
    old = _info(1, "a" * 64, "0" * 64, signature)
    loaded = load_version(old, blobs, load_plugins([]), allow_unsafe_lambda=False,
                          device="/CPU:0", defaults=DEFAULTS)
    return loaded, models, blobs, _info(2, "a" * 64, "1" * 64, signature)


def test_stage_then_assign_changes_the_traced_function(two_versions):
    from kerve.server.loader import assign_staged, stage_weights

    loaded, models, blobs, new_info = two_versions
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    predict = loaded.predict_fn
    np.testing.assert_allclose(predict([x])[0], models[0].predict(x, verbose=0), atol=1e-6)
    staged = stage_weights(loaded, new_info, blobs, defaults=DEFAULTS)
    assert staged is not None
    np.testing.assert_allclose(predict([x])[0], models[0].predict(x, verbose=0), atol=1e-6)
    new = assign_staged(loaded, staged)
    assert new.in_place and new.info.version == 2 and new.predict_fn is predict
    np.testing.assert_allclose(predict([x])[0], models[1].predict(x, verbose=0), atol=1e-6)


def test_unreproduced_examples_put_the_old_weights_back(two_versions):
    from kerve.server.loader import assign_staged, stage_weights

    loaded, models, blobs, new_info = two_versions
    x = np.ones((2, 4), np.float32)
    staged = stage_weights(loaded, new_info, blobs, defaults=DEFAULTS)
    staged.examples = Examples([x], {"y": models[1].predict(x, verbose=0) + 1.0})
    with pytest.raises(FailedPreconditionError, match="golden examples not reproduced"):
        assign_staged(loaded, staged)
    np.testing.assert_allclose(loaded.predict_fn([x])[0], models[0].predict(x, verbose=0),
                               atol=1e-6)


def test_another_architecture_is_not_staged(two_versions):
    from kerve.server.loader import stage_weights

    loaded, _, blobs, new_info = two_versions
    new_info.architecture = Blob("b" * 64, 1)
    assert stage_weights(loaded, new_info, blobs, defaults=DEFAULTS) is None
