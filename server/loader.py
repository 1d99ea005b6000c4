"""The loader: turns a registry version's blobs into a model ready to serve, with a compiled
tf.function that takes the signature's tensors with a free batch dimension."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
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
    in_place: bool = False  # its weights were assigned into another version's model

    @property
    def signature(self) -> Signature:
        return self.info.signature



@dataclass
class StagedWeights:
    """A version's weights, read into host memory for a model that is already serving its
    architecture: what an in-place swap assigns."""

    info: VersionInfo
    values: list[tuple[object, object]]  # (the model's variable, its new value)
    examples: Examples | None
    seconds: float


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


def stage_weights(loaded: LoadedModel, info: VersionInfo, blobs: BlobStore, *,
                  defaults: ServingOptions) -> StagedWeights | None:
    """Read ``info``'s weights for the model ``loaded`` serves, without touching it (blocking:
    run in a thread). None when they cannot be assigned in place: another architecture or
    other serving options, or layers whose state is more than variables (the caller loads
    the version in full instead).

    Keras reads the file itself, inside a StatelessScope: every assignment its loaders make
    is recorded instead of applied, so the values are read exactly as a full load would
    read them while the model keeps answering requests with the old ones.
    """
    import keras
    import tensorflow as tf

    from kerve.registry import keras_model as km

    started = time.perf_counter()
    if info.architecture.sha256 != loaded.info.architecture.sha256:
        return None
    check_at_load(info)  # as a full load would
    if options_from_tags(info.tags, defaults) != loaded.options:
        log.info("%s:%d has other serving options than %s:%d: loading it in full", info.name,
                 info.version, loaded.info.name, loaded.info.version)
        return None
    obstacle = km.in_place_obstacle(loaded.model)
    if obstacle is not None:
        log.info("%s:%d cannot take new weights in place (%s): loading it in full",
                 info.name, info.version, obstacle)
        return None
    path = blobs.local_path(info.weights.sha256)  # DATA_LOSS if the blob changed on disk
    with tf.device("/CPU:0"), keras.StatelessScope() as scope:
        km.load_weights(loaded.model, path, info.weights_format)
    values = [(v, scope.get_current_value(v)) for v in loaded.model.weights]
    unset = [v.path for v, value in values if value is None]
    if unset:
        log.info("%s:%d sets no value for %s: loading it in full", info.name, info.version,
                 ", ".join(unset[:5]))
        return None
    return StagedWeights(info, values, _golden_examples(info, blobs),
                         time.perf_counter() - started)


def assign_staged(loaded: LoadedModel, staged: StagedWeights) -> LoadedModel:
    """Assign staged weights into the served model (blocking; the caller makes sure no
    request runs on the model meanwhile) and check the golden examples, if any. The traced
    function reads the variables, so nothing is rebuilt or retraced. Where the examples are
    not reproduced, the old weights are put back and FAILED_PRECONDITION raised."""
    import tensorflow as tf

    started = time.perf_counter()
    saved = None
    if staged.examples is not None:  # keep the old values only where a check could fail
        with tf.device("/CPU:0"):
            saved = [(v, tf.identity(v.value)) for v, _ in staged.values]
    with tf.device(loaded.device):
        for variable, value in staged.values:
            variable.assign(value)
    new = replace(loaded, info=staged.info, load_seconds=staged.seconds, in_place=True)
    if staged.examples is not None:
        try:
            check_golden(staged.examples, new.predict_fn, new.signature)
        except Exception:
            with tf.device(loaded.device):
                for variable, value in saved:
                    variable.assign(value)
            raise
    new.load_seconds += time.perf_counter() - started
    log.info("swapped %s:%d's weights into %s:%d's model in place (staged in %.2f s, "
             "assigned in %.3f s)", staged.info.name, staged.info.version, loaded.info.name,
             loaded.info.version, staged.seconds, time.perf_counter() - started)
    return new


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
