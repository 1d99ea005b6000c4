"""The demo model of ``kerve serve --demo``: a small MLP registered as ``demo`` (alias
``production``) through the registry's one upload path, from inside the server, so that a
server whose clients may not write (tokens, or listening beyond loopback) still gets it."""

from __future__ import annotations

import asyncio
import logging
import tempfile
from pathlib import Path

from kerve.registry.registry import Registry
from kerve.registry.uploads import KERAS_ARCHIVE
from kerve.server.model_dir import register_files

log = logging.getLogger(__name__)

NAME = "demo"


def _save(path: Path) -> None:
    import keras
    import numpy as np

    inputs = keras.Input((4,), name="features")
    hidden = keras.layers.Dense(16, activation="relu")(inputs)
    outputs = keras.layers.Dense(3, activation="softmax", name="probabilities")(hidden)
    model = keras.Model(inputs, outputs, name=NAME)
    model(np.zeros((1, 4), "float32"))
    model.save(path)


async def install_demo(registry: Registry) -> int | None:
    """Register the demo unless a model of that name exists; its version, or None."""
    if any(m.name == NAME for m in await registry.list_models()):
        return None
    with tempfile.TemporaryDirectory(prefix="kerve-demo-") as tmp:
        path = Path(tmp) / "demo.keras"
        await asyncio.to_thread(_save, path)
        info = await register_files(
            registry, NAME, [(KERAS_ARCHIVE, path)], aliases=["production"],
            description="kerve demo: 4 features -> 3 class probabilities")
    log.info("uploaded demo model, version %d", info.version)
    return info.version
