"""The benchmark's models, built in code (nothing downloaded), saved once per run to a temp
dir as ``.keras`` files so that every server (kerve, the hand-written ones and the peers in
their own venvs) loads the very same weights.

- ``mlp``: the seed zoo's ``mnist_mlp`` (784-64-64-10, 55,050 parameters);
- ``resnet``: the seed zoo's ``toy_resnet`` (32x32x3 -> 10, 223,242 parameters);
- ``wide``: a wide MLP built here (784-4096-2048-10, 11.6M parameters).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
# The seed zoo beside the checkout (../shared/seedzoo), as for the tests.
SEEDZOO = Path(os.environ.get("KERVE_SEEDZOO", HERE.parent.parent / "shared" / "seedzoo"))

MODELS = ("mlp", "resnet", "wide")
FEATURE_SHAPE = {"mlp": (784,), "resnet": (32, 32, 3), "wide": (784,)}


def build(name: str):
    """The Keras model ``name`` with deterministic random weights."""
    import keras

    keras.utils.set_random_seed(1234)
    if name in ("mlp", "resnet"):
        if str(SEEDZOO) not in sys.path:
            sys.path.insert(0, str(SEEDZOO))
        import seedzoo_models as sm

        model, _ = sm.ZOO["mnist_mlp" if name == "mlp" else "toy_resnet"](compile=False)
        sm.randomize_weights(model, seed=7, scale=0.1)
        return model
    if name == "wide":
        inputs = keras.Input((784,), name="pixels")
        x = keras.layers.Dense(4096, activation="relu")(inputs)
        x = keras.layers.Dense(2048, activation="relu")(x)
        outputs = keras.layers.Dense(10, name="logits")(x)
        return keras.Model(inputs, outputs, name="wide_mlp")
    raise KeyError(name)


def save_all(folder: Path, names=MODELS) -> dict[str, dict]:
    """Build and save each model to folder/NAME.keras; returns name -> info (path, input and
    output names, feature shape, parameter count). Also writes folder/models.json."""
    folder.mkdir(parents=True, exist_ok=True)
    infos = {}
    for name in names:
        model = build(name)
        path = folder / f"{name}.keras"
        model.save(path)
        infos[name] = {
            "path": str(path),
            "input_name": model.inputs[0]._keras_history.operation.name,
            # the output's name and row shape, as the hand-written servers answer them
            "output_name": model.outputs[0].name,
            "output_shape": [int(d) for d in model.outputs[0].shape[1:]],
            "feature_shape": list(FEATURE_SHAPE[name]),
            "params": int(model.count_params()),
        }
    (folder / "models.json").write_text(json.dumps(infos, indent=1))
    return infos


def make_inputs(name: str, batch: int, count: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` distinct float32 input arrays of ``batch`` rows for model ``name``."""
    rng = np.random.default_rng(seed)
    shape = FEATURE_SHAPE[name]
    return [rng.standard_normal((batch, *shape)).astype(np.float32) for _ in range(count)]


def compiled_predict(model):
    """The in-process path: one tf.function with the input signature and a free batch dim
    (what kerve's loader builds), returning numpy."""
    import tensorflow as tf

    spec = model.inputs[0]
    sig = [tf.TensorSpec([None, *spec.shape[1:]], spec.dtype)]

    @tf.function(input_signature=sig, reduce_retracing=True)
    def serve(x):
        return model(x, training=False)

    def predict(x: np.ndarray) -> np.ndarray:
        return serve(x).numpy()

    return predict
