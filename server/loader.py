"""The loader: turns a registry version's blobs into a model ready to serve, with a compiled
tf.function that takes the signature's tensors with a free batch dimension."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from kerve.registry.blobs import BlobStore
from kerve.registry.database import VersionInfo
from kerve.registry.examples import Examples, check_reproduced, read_examples
from kerve.registry.plugins import Plugins
from kerve.registry.provenance import check_at_load
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
    call_path: str = "concrete"

    @property
    def signature(self) -> Signature:
        return self.info.signature



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
    check_at_load(info)  # a refused Keras boundary; plugin modules that differ (logged)
    options = options_from_tags(info.tags, defaults)
    config = km.parse_architecture(blobs.local_path(info.architecture.sha256).read_bytes())
    signature = info.signature
    with tf.device(device):
        model, _ = km.build_model(config, plugins, allow_unsafe_lambda)
        km.load_weights(model, blobs.local_path(info.weights.sha256), info.weights_format)
        # "string" is tf.string; string outputs come back as object arrays of bytes.
        specs = [tf.TensorSpec([None if d == -1 else d for d in s.shape], s.dtype, name=s.name)
                 for s in signature.inputs]

        @tf.function(input_signature=specs, jit_compile=options.jit_compile or None)
        def serve(*tensors):
            out = model(km.model_inputs(signature, list(tensors)), training=False)
            return keras.tree.flatten(out)

        call_flat, call_path = flat_caller(serve.get_concrete_function())

        def predict(arrays: list[np.ndarray]) -> list[np.ndarray]:
            with tf.device(device):
                return [t.numpy() for t in call_flat([tf.constant(a) for a in arrays])]

        examples = _golden_examples(info, blobs)
        if examples is not None:
            check_golden(examples, predict, signature)
        _warm_up(predict, signature, model, options, examples)
    seconds = time.perf_counter() - started
    log.info("loaded %s:%d on %s in %.2f s (%s call)", info.name, info.version, device,
             seconds, call_path)
    return LoadedModel(info=info, device=device, predict_fn=predict, load_seconds=seconds,
                       model=model, options=options, call_path=call_path)


def flat_caller(concrete) -> tuple[Callable[[list], list], str]:
    """The cheapest way to run one traced function on a flat list of tensors.

    The signature is fixed, so nothing per call needs tf.function's input binding, cache
    lookup or gradient-tape checks: the traced graph's own function ("atomic", TF 2.14+) runs
    with the captured variables appended, about 40 % less time per call than calling the
    ConcreteFunction on the bench's MLP. That is TensorFlow's internal API, so where it is
    missing the ConcreteFunction itself is called ("concrete"); tests check which one runs.
    """
    atomic = getattr(concrete, "_inference_function", None)
    captured = list(getattr(concrete, "captured_inputs", ()))
    if atomic is not None and callable(getattr(atomic, "call_flat", None)):
        def call_atomic(tensors: list) -> list:
            return atomic.call_flat(*tensors, *captured)
        return call_atomic, "atomic"

    def call_concrete(tensors: list) -> list:
        return concrete(*tensors)
    return call_concrete, "concrete"


def _golden_examples(info: VersionInfo, blobs: BlobStore) -> Examples | None:
    if info.examples is None:
        return None
    return read_examples(blobs.local_path(info.examples.sha256), info.signature)


def check_golden(examples: Examples, predict: Callable, signature: Signature) -> None:
    """FAILED_PRECONDITION (the version is FAILED) unless this device reproduces them."""
    outputs = predict(examples.inputs)
    check_reproduced(examples, {s.name: o for s, o in zip(signature.outputs, outputs)},
                     signature)


def warm_up_sizes(signature: Signature, options: ServingOptions,
                  examples: Examples | None) -> list[int]:
    """Every batch size the batcher will run before any request does: 1, the examples'
    own batch, and under XLA each padded size (each compiles once)."""
    if not signature.batchable:
        return [examples.rows if examples is not None else 1]
    sizes = {1}
    if examples is not None:
        sizes.add(examples.rows)
    if options.jit_compile:
        sizes.update(options.batch_sizes())
    return sorted(sizes)


def _warm_up(predict: Callable, signature: Signature, model, options: ServingOptions,
             examples: Examples | None) -> None:
    """Run each warm-up size once: the golden examples' rows where there are any (real
    data takes the paths real requests take), else made-up inputs (kerve.registry.smoke)."""
    from kerve.registry.smoke import FREE_DIM_SIZES, has_free_inner_dims, made_up_inputs

    for rows in warm_up_sizes(signature, options, examples):
        if examples is not None:
            predict(examples.take(rows))
            continue
        sizes = FREE_DIM_SIZES if has_free_inner_dims(signature) else FREE_DIM_SIZES[:1]
        for free in sizes:
            try:
                predict(made_up_inputs(signature, model, batch=rows, free=free))
                break
            except Exception as exc:  # noqa: BLE001 - made-up data; validation ran the model
                log.debug("warm-up at batch %d, free dims %d: %s", rows, free, exc)
