"""The loader: turns a registry version's blobs into a model ready to serve, with a compiled
tf.function that takes the signature's tensors with a free batch dimension."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from kerve.registry.blobs import BlobStore
from kerve.registry.metadata import VersionInfo
from kerve.registry.plugins import Plugins
from kerve.registry.serving_options import ServingOptions, options_from_tags
from kerve.registry.signature import Signature

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A version in memory: the Keras model and its compiled predict function."""

    info: VersionInfo
    device: str
    predict_fn: Callable[[list[np.ndarray]], list[np.ndarray]]
    load_seconds: float
    model: object
    options: ServingOptions

    @property
    def signature(self) -> Signature:
        return self.info.signature

    @property
    def batchable(self) -> bool:
        """Whether requests may be merged: every input and output has a free batch dimension."""
        return all(spec.batched for spec in self.signature.inputs + self.signature.outputs)


def pick_device(requested: str | None) -> str:
    """The requested device, else the first GPU TensorFlow sees, else the CPU. GPUs get
    memory growth, so kerve never grabs the whole card."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass  # already initialised
    if requested:
        return requested
    return "/GPU:0" if gpus else "/CPU:0"


def load_version(info: VersionInfo, blobs: BlobStore, plugins: Plugins, *,
                 allow_unsafe_lambda: bool, device: str, defaults: ServingOptions) -> LoadedModel:
    """Build, load weights, compile and warm up one version (blocking: run in a thread)."""
    import keras
    import tensorflow as tf

    from kerve.registry import keras_model as km

    started = time.perf_counter()
    options = options_from_tags(info.tags, defaults)
    config = km.parse_architecture(blobs.local_path(info.architecture.sha256).read_bytes())
    signature = info.signature
    with tf.device(device):
        model, _ = km.build_model(config, plugins, allow_unsafe_lambda)
        km.load_weights(model, blobs.local_path(info.weights.sha256), info.weights_format)
        specs = [tf.TensorSpec([None if d == -1 else d for d in s.shape], s.dtype, name=s.name)
                 for s in signature.inputs]

        @tf.function(input_signature=specs, jit_compile=options.jit_compile or None)
        def serve(*tensors):
            out = model(km.model_inputs(signature, list(tensors)), training=False)
            return keras.tree.flatten(out)

        # The signature is fixed, so call the one traced function directly: this skips
        # tf.function's per-call input binding and cache lookup (about a third of a small
        # model's call).
        concrete = serve.get_concrete_function()

        def predict(arrays: list[np.ndarray]) -> list[np.ndarray]:
            with tf.device(device):
                return [t.numpy() for t in concrete(*[tf.constant(a) for a in arrays])]

        batchable = all(spec.batched for spec in signature.inputs)
        warmup = options.batch_sizes() if options.jit_compile and batchable else (1,)
        for batch in warmup:
            predict([np.zeros(_example_shape(s.shape, batch), s.dtype) for s in signature.inputs])
    seconds = time.perf_counter() - started
    log.info("loaded %s:%d on %s in %.2f s", info.name, info.version, device, seconds)
    return LoadedModel(info=info, device=device, predict_fn=predict, load_seconds=seconds,
                       model=model, options=options)


def _example_shape(shape: tuple[int, ...], batch: int) -> tuple[int, ...]:
    if not shape:
        return ()
    first = batch if shape[0] == -1 else shape[0]
    return (first, *(1 if d == -1 else d for d in shape[1:]))
