"""Validation of an upload before it becomes a version.

``validate_files`` is a pure function of files and settings, so it can run in a separate,
resource-limited process (see kerve.registry.validation_worker): it deserializes untrusted input.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from kerve.registry import provenance
from kerve.registry.errors import InvalidArgumentError, KerveError
from kerve.registry.limits import UploadLimits, check_weights_file, read_architecture
from kerve.registry.plugins import Plugins, load_plugins
from kerve.registry.signature import Signature, TensorSpec


@dataclass
class ValidationReport:
    """What validation learnt about a version; stored with it."""

    signature: Signature
    weights_format: str
    layer_classes: list[str]
    custom_objects: list[str]
    parameter_count: int
    keras_version: str
    tensorflow_version: str
    warnings: list[str] = field(default_factory=list)
    """What the version is stored with and `kerve models show` prints (non-finite smoke
    outputs); not a refusal."""
    keras_warnings: list[str] = field(default_factory=list)
    """Python warnings Keras raised while building the model: logged, not stored."""
    memory_estimate: dict = field(default_factory=dict)
    """The parts of kerve.registry.memory's estimate; the registry adds the total."""
    producer: dict[str, dict[str, str]] = field(default_factory=dict)
    """What the architecture and the weights say of their producer, by source
    (kerve.registry.provenance)."""
    plugin_modules: list[dict] = field(default_factory=list)
    """The plugin modules the custom objects came from, with their versions."""


def validate_files(architecture: Path, weights: Path, plugins: Plugins,
                   allow_unsafe_lambda: bool, examples: Path | None = None,
                   limits: UploadLimits | None = None) -> ValidationReport:
    """Deserialize safely, check the weights against the architecture, smoke-predict, and
    check golden examples (if any) fit the signature."""
    import keras
    import tensorflow as tf

    from kerve.registry import keras_model as km

    limits = limits or UploadLimits()
    # Bounds first (kerve.registry.limits): nothing below allocates what the input declares.
    config = read_architecture(architecture, limits)
    check_weights_file(weights, limits)
    fmt = km.weights_format(weights)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, scan = km.build_model(config, plugins, allow_unsafe_lambda)
        signature = km.derive_signature(model)
        km.poison_variables(model)
        km.load_weights(model, weights, fmt)
    unset = km.unset_variables(model)
    if unset:
        shown = ", ".join(unset[:10]) + (f" and {len(unset) - 10} more" if len(unset) > 10 else "")
        raise InvalidArgumentError(
            f"weights do not match the architecture: no saved value for {shown}")
    saved_nan = km.nan_variables(model)
    if saved_nan:
        shown = ", ".join(saved_nan[:10]) + (f" and {len(saved_nan) - 10} more"
                                             if len(saved_nan) > 10 else "")
        raise InvalidArgumentError(f"the weights hold NaN values in {shown}")
    signature, found = smoke_predict(model, signature)
    memory = _memory_estimate(model, signature)
    if examples is not None:
        _check_examples(model, signature, examples)
    return ValidationReport(
        signature=signature,
        weights_format=fmt,
        layer_classes=km.layer_classes(model),
        custom_objects=sorted(scan.custom_objects),
        parameter_count=int(model.count_params()),
        keras_version=keras.__version__,
        tensorflow_version=tf.__version__,
        warnings=found,
        keras_warnings=sorted({str(w.message)[:300] for w in caught}),
        producer={provenance.ARCHITECTURE: provenance.architecture_producer(config),
                  provenance.WEIGHTS: (provenance.weights_producer(weights)
                                       if fmt == km.LEGACY_WEIGHTS else {})},
        plugin_modules=provenance.plugin_modules(sorted(scan.custom_objects), plugins),
        memory_estimate=memory,
    )


def _check_examples(model, signature: Signature, path: Path) -> None:
    """Golden examples must fit the signature and be reproduced here, as they are again at
    load on each serving device: a version whose examples fail is refused before it is
    stored, so an upload's aliases never move onto it."""
    import keras
    import numpy as np
    import tensorflow as tf

    from kerve.registry.examples import check_reproduced, read_examples
    from kerve.registry.keras_model import model_inputs

    examples = read_examples(path, signature)  # refuses examples that do not fit
    # Compiled, as the server runs it (an eager call can differ: NaN for an empty string
    # through TextVectorization on some machines).
    outputs = tf.function(lambda x: model(x, training=False))(
        model_inputs(signature, [tf.convert_to_tensor(a) for a in examples.inputs]))
    served = {s.name: np.asarray(o) for s, o in zip(signature.outputs,
                                                     keras.tree.flatten(outputs))}
    try:
        check_reproduced(examples, served, signature)
    except KerveError as exc:
        raise InvalidArgumentError(f"{exc.message} (checked at upload, on the validation "
                                   "worker's CPU; fix the examples or the model)") from None


def _memory_estimate(model, signature: Signature) -> dict:
    """kerve.registry.memory's estimate; where the model cannot be traced here (it ran
    eagerly), its weights alone, said in the estimate."""
    from kerve.registry.memory import estimate_memory
    from kerve.registry.smoke import FREE_DIM_SIZES

    try:
        return estimate_memory(model, signature, free_dim=FREE_DIM_SIZES[0])
    except Exception as exc:  # noqa: BLE001 - an estimate never refuses an upload
        weights = sum(int(v.numpy().nbytes) for v in model.weights)
        return {"weights_bytes": weights, "activation_bytes_fixed": 0,
                "activation_bytes_per_row": 0, "overhead_bytes": 0, "load_bytes": weights,
                "note": f"activations not estimated: {' '.join(str(exc).split())[:200]}"}


def smoke_predict(model, signature: Signature) -> tuple[Signature, list[str]]:
    """Run the model once on made-up inputs (kerve.registry.smoke). A model that cannot run
    is refused; non-finite outputs are only a warning, since the data was made up. Returns
    the signature with each output's dtype and shape as the model really gives them
    (Keras's symbolic ones are wrong for some layers: StringLookup(invert=True) says int64
    and gives strings)."""
    import keras
    import numpy as np

    from kerve.registry.keras_model import model_inputs
    from kerve.registry.smoke import FREE_DIM_SIZES, has_free_inner_dims, made_up_inputs

    sizes = FREE_DIM_SIZES if has_free_inner_dims(signature) else FREE_DIM_SIZES[:1]
    for attempt, free in enumerate(sizes):
        arrays = made_up_inputs(signature, model, free=free)
        try:
            outputs = model(model_inputs(signature, arrays), training=False)
            break
        except Exception as exc:  # noqa: BLE001
            if attempt + 1 < len(sizes):
                continue
            shapes = ", ".join(f"{s.name} {list(a.shape)}" for s, a in
                               zip(signature.inputs, arrays))
            raise InvalidArgumentError(
                f"smoke prediction on made-up inputs ({shapes}) failed: "
                f"{' '.join(str(exc).split())[:600]}") from None
    flat = keras.tree.flatten(outputs)
    found, specs = [], []
    for spec, out in zip(signature.outputs, flat):
        value = np.asarray(out)
        dtype = keras.backend.standardize_dtype(out.dtype)
        specs.append(TensorSpec(spec.name, dtype, _agreeing_shape(spec.shape, value.shape)))
        if value.dtype.kind in "fc" and not np.isfinite(value).all():
            found.append(f"output {spec.name!r} was non-finite (NaN or inf) on made-up inputs "
                         "in validation; check it on real data")
    return Signature(signature.inputs, tuple(specs)), found


def _agreeing_shape(declared: tuple[int, ...], actual: tuple[int, ...]) -> tuple[int, ...]:
    """The declared output shape, with each dimension the model did not keep freed (-1):
    RandomCrop declares its crop size but, outside training, hands back the whole image."""
    if len(declared) != len(actual):
        return tuple(-1 for _ in actual)
    return tuple(d if d == -1 or d == a else -1 for d, a in zip(declared, actual))


# --- entry points for a worker process -------------------------------------------------

_worker_plugins: Plugins | None = None
_worker_allow_unsafe = False
_worker_limits: UploadLimits | None = None


def init_worker(plugin_names: list[str], allow_unsafe_lambda: bool,
                memory_limit_bytes: int | None, limits: UploadLimits | None = None) -> None:
    """Process-pool initializer: limits, quiet TensorFlow, plugins imported once."""
    global _worker_plugins, _worker_allow_unsafe, _worker_limits
    _worker_limits = limits
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ["CUDA_VISIBLE_DEVICES"] = ""  # validation never takes GPU memory
    os.nice(10)  # serving threads get the CPU first (bench/load_isolation.py)
    if memory_limit_bytes:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_limit_bytes, memory_limit_bytes))
    _worker_plugins = load_plugins(plugin_names)
    _worker_allow_unsafe = allow_unsafe_lambda
    import keras  # noqa: F401  (pay the import once, at start)


def validate_in_worker(architecture: str, weights: str,
                       examples: str | None = None) -> ValidationReport:
    assert _worker_plugins is not None, "init_worker was not run"
    import keras

    try:
        return validate_files(Path(architecture), Path(weights), _worker_plugins,
                              _worker_allow_unsafe, Path(examples) if examples else None,
                              _worker_limits)
    finally:
        keras.backend.clear_session()  # a long-lived worker must not accumulate models


def warm_worker() -> bool:
    return _worker_plugins is not None
