"""Validation of an upload before it becomes a version.

``validate_files`` is a pure function of files and settings, so it can run in a separate,
resource-limited process (see kerve.registry.validation_worker): it deserializes untrusted input.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from kerve.registry.errors import InvalidArgumentError
from kerve.registry.plugins import Plugins, load_plugins
from kerve.registry.signature import Signature


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


def validate_files(architecture: Path, weights: Path, plugins: Plugins,
                   allow_unsafe_lambda: bool) -> ValidationReport:
    """Deserialize safely, check the weights against the architecture, smoke-predict."""
    import keras
    import tensorflow as tf

    from kerve.registry import keras_model as km

    config = km.parse_architecture(Path(architecture).read_bytes())
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
    _smoke_predict(model, signature)
    return ValidationReport(
        signature=signature,
        weights_format=fmt,
        layer_classes=km.layer_classes(model),
        custom_objects=sorted(scan.custom_objects),
        parameter_count=int(model.count_params()),
        keras_version=keras.__version__,
        tensorflow_version=tf.__version__,
        warnings=sorted({str(w.message)[:300] for w in caught}),
    )


def _smoke_predict(model, signature: Signature) -> None:
    import keras
    import numpy as np

    from kerve.registry.keras_model import model_inputs

    arrays = [np.zeros(tuple(1 if d == -1 else d for d in spec.shape), dtype=spec.dtype)
              for spec in signature.inputs]
    try:
        outputs = model(model_inputs(signature, arrays), training=False)
    except Exception as exc:  # noqa: BLE001
        raise InvalidArgumentError(
            f"smoke prediction on zeros of the signature's shapes failed: "
            f"{' '.join(str(exc).split())[:600]}") from None
    for spec, out in zip(signature.outputs, keras.tree.flatten(outputs)):
        value = np.asarray(out)
        if value.dtype.kind in "fc" and not np.isfinite(value).all():
            raise InvalidArgumentError(
                f"smoke prediction gave non-finite values in output {spec.name!r}")


# --- entry points for a worker process -------------------------------------------------

_worker_plugins: Plugins | None = None
_worker_allow_unsafe = False


def init_worker(plugin_names: list[str], allow_unsafe_lambda: bool,
                memory_limit_bytes: int | None) -> None:
    """Process-pool initializer: limits, quiet TensorFlow, plugins imported once."""
    global _worker_plugins, _worker_allow_unsafe
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ["CUDA_VISIBLE_DEVICES"] = ""  # validation never takes GPU memory
    if memory_limit_bytes:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_limit_bytes, memory_limit_bytes))
    _worker_plugins = load_plugins(plugin_names)
    _worker_allow_unsafe = allow_unsafe_lambda
    import keras  # noqa: F401  (pay the import once, at start)


def validate_in_worker(architecture: str, weights: str) -> ValidationReport:
    assert _worker_plugins is not None, "init_worker was not run"
    import keras

    try:
        return validate_files(Path(architecture), Path(weights), _worker_plugins,
                              _worker_allow_unsafe)
    finally:
        keras.backend.clear_session()  # a long-lived worker must not accumulate models


def warm_worker() -> bool:
    return _worker_plugins is not None
