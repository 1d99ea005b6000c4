"""Turning architecture JSON and HDF5 weights into a Keras model, safely.

Shared by validation (registry side) and the loader (server side): both deserialize with
safe_mode on, against the plugins' allow-list, and read the weights by their content.
"""

from __future__ import annotations

import copy
import json
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from kerve.registry.allowlist import scan_architecture
from kerve.registry.errors import InvalidArgumentError
from kerve.registry.plugins import Plugins
from kerve.registry.signature import Signature, TensorSpec, unique_names

KERAS_WEIGHTS = "keras"
LEGACY_WEIGHTS = "legacy_h5"


def parse_architecture(data: bytes) -> dict:
    try:
        config = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidArgumentError(f"architecture is not valid JSON: {exc}") from None
    if not isinstance(config, dict) or "class_name" not in config:
        raise InvalidArgumentError(
            "architecture is not a Keras model config (expected the JSON of model.to_json())")
    return config


def build_model(config: dict, plugins: Plugins, allow_unsafe_lambda: bool):
    """Deserialize ``config`` into a built keras.Model; returns (model, scan)."""
    import keras
    from keras.src.saving import serialization_lib

    scan = scan_architecture(config, plugins, allow_unsafe_lambda)
    config = copy.deepcopy(config)
    config.pop("compile_config", None)  # serving needs no optimizer or loss
    safe_mode = not allow_unsafe_lambda
    try:
        # SafeModeScope is thread-local Keras state: the process-wide
        # enable_unsafe_deserialization() is never called.
        with serialization_lib.SafeModeScope(safe_mode), \
                keras.saving.custom_object_scope(plugins.custom_objects):
            model = serialization_lib.deserialize_keras_object(
                config, custom_objects=plugins.custom_objects, safe_mode=safe_mode)
    except InvalidArgumentError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of untrusted config is the user's
        raise InvalidArgumentError(f"architecture could not be deserialized: {_short(exc)}") \
            from None
    if not isinstance(model, keras.Model):
        raise InvalidArgumentError(
            f"architecture describes a {type(model).__name__}, not a keras.Model")
    if not model.built:
        raise InvalidArgumentError(
            f"model {model.name!r} is not built: its config has no input shape (build or call "
            "the model before model.to_json())")
    return model, scan


def weights_format(path: str | os.PathLike) -> str:
    """Tell the HDF5 weights layout by content: Keras 3 (.weights.h5) or legacy layer-name."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "layer_names" in f.attrs:
                return LEGACY_WEIGHTS
            if "model_weights" in f and "layer_names" in f["model_weights"].attrs:
                return LEGACY_WEIGHTS
            if "layers" in f or "vars" in f:
                return KERAS_WEIGHTS
    except OSError as exc:
        raise InvalidArgumentError(f"weights are not an HDF5 file: {_short(exc)}") from None
    raise InvalidArgumentError(
        "weights file is HDF5 but neither the Keras 3 .weights.h5 layout nor the legacy "
        "layer-name layout")


@contextmanager
def _with_suffix(path: str | os.PathLike, suffix: str) -> Iterator[str]:
    """Keras picks its reader by file name; give it a name without copying the blob."""
    if str(path).endswith(suffix):
        yield str(path)
        return
    with tempfile.TemporaryDirectory(prefix="kerve-w-") as tmp:
        link = Path(tmp) / f"model{suffix}"
        os.symlink(os.path.abspath(path), link)
        yield str(link)


def load_weights(model, path: str | os.PathLike, fmt: str | None = None) -> str:
    """Load HDF5 weights into ``model``; returns the format. Mismatches are
    InvalidArgumentError naming the layer and variable with expected vs actual shapes."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format
    from keras.src.saving import saving_lib

    fmt = fmt or weights_format(path)
    try:
        if fmt == LEGACY_WEIGHTS:
            with h5py.File(path, "r") as f:
                group = f["model_weights"] if "layer_names" not in f.attrs else f
                legacy_h5_format.load_weights_from_hdf5_group(group, model)
        else:
            with _with_suffix(path, ".weights.h5") as named:
                saving_lib.load_weights_only(model, named)
    except InvalidArgumentError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise InvalidArgumentError(
            f"weights do not match the architecture: {_describe_weight_error(exc)}") from None
    return fmt


def _float_variables(model) -> list:
    return [v for v in model.weights if "float" in str(v.dtype)]


# A NaN with a payload of its own: what a variable holds until the weights file sets it. A
# NaN saved in a file is (nearly always) the canonical one, so the two are told apart by
# bits, not by isnan. Quiet NaNs, so that no conversion on the way changes the payload.
_POISON_BITS = {"float16": (0x7E5B, "uint16"), "bfloat16": (0x7FDB, "uint16"),
                "float32": (0x7FC0BEEF, "uint32"), "float64": (0x7FF80000DEADBEEF, "uint64")}


def _poison(dtype: str):
    import numpy as np

    if dtype not in _POISON_BITS:  # other float types: a plain NaN, told apart by isnan
        return np.array(np.nan, dtype=dtype)
    bits, carrier = _POISON_BITS[dtype]
    return np.array(bits, dtype=carrier).view(np.dtype(dtype) if dtype != "bfloat16"
                                              else _bfloat16())


def _bfloat16():
    import ml_dtypes

    return ml_dtypes.bfloat16


def poison_variables(model) -> None:
    """Fill every float variable with the poison NaN, so that a variable the weights file
    did not set stands out (Keras skips unmatched nested layers with only a warning)."""
    import numpy as np

    for v in _float_variables(model):
        v.assign(np.full(tuple(v.shape), _poison(str(v.dtype))))


def unset_variables(model) -> list[str]:
    """Variables the weights file did not set: still all poison."""
    import numpy as np

    unset = []
    for v in _float_variables(model):
        value = np.asarray(v.numpy())
        if str(v.dtype) in _POISON_BITS:
            bits, carrier = _POISON_BITS[str(v.dtype)]
            poisoned = (value.view(carrier) == bits).all()
        else:
            poisoned = np.isnan(value.astype("float64")).all()
        if value.size and poisoned:
            unset.append(v.path)
    return unset


def nan_variables(model) -> list[str]:
    """Variables whose saved values hold NaN."""
    import numpy as np

    return [v.path for v in _float_variables(model)
            if np.isnan(np.asarray(v.numpy(), dtype="float64")).any()]


_VALUE_DUMP = re.compile(r", value=\[.*?\]>", re.S)
_SHAPE_MISMATCH = re.compile(
    r"variable\.shape=(\([^)]*\)), Received: value\.shape=(\([^)]*\))\. "
    r"Target variable: <Variable path=([^,>]+)")


def _describe_weight_error(exc: Exception) -> str:
    text = str(exc)
    match = _SHAPE_MISMATCH.search(text)
    if match:
        expected, got, var = match.groups()
        layer = var.rsplit("/", 1)[0]
        return f"layer {layer!r} variable {var!r}: expected shape {expected}, got {got}"
    return _short(_VALUE_DUMP.sub(">", text))


def _short(exc: Exception | str, limit: int = 800) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _spec_shape(shape) -> tuple[int, ...]:
    return tuple(-1 if d is None else int(d) for d in shape)


def _tensor_dtype(t) -> str:
    import keras

    return keras.backend.standardize_dtype(t.dtype)


def derive_signature(model) -> Signature:
    """Inputs keyed by InputLayer names, outputs by Keras's output names (dedup'd with _1,
    _2, ...); a model without names (subclassed) gets input_0, output_0, ..."""
    import keras

    if getattr(model, "_functional", None) is not None or _has_graph(model):
        graph = model if _has_graph(model) else model._functional
        inputs = list(graph.inputs)
        outputs = list(graph.outputs)
        in_names = [t._keras_history.operation.name for t in inputs]
        out_struct = getattr(graph, "_outputs_struct", None)
        if isinstance(out_struct, dict):
            out_names = [str(k) for k in sorted(out_struct)]
        else:
            out_names = unique_names([t._keras_history.operation.name for t in outputs])
        return Signature(
            tuple(TensorSpec(n, _tensor_dtype(t), _spec_shape(t.shape))
                  for n, t in zip(in_names, inputs)),
            tuple(TensorSpec(n, _tensor_dtype(t), _spec_shape(t.shape))
                  for n, t in zip(out_names, outputs)))
    # Subclassed model: shapes from its build config, outputs from a symbolic call.
    build = (model.get_build_config() or {}).get("input_shape")
    if build is None:
        raise InvalidArgumentError(f"cannot tell the input shape of subclassed model {model.name!r}")
    # The batch dimension is free, whatever batch the model was built on: Keras's own
    # model.predict takes any batch.
    shapes = [_free_batch(s) for s in (list(build) if _is_shape_list(build) else [build])]
    dtype = keras.backend.standardize_dtype(model.input_dtype if hasattr(model, "input_dtype")
                                            else model.compute_dtype)
    in_specs = tuple(TensorSpec(f"input_{i}", dtype, _spec_shape(s)) for i, s in enumerate(shapes))
    symbolic = [keras.KerasTensor(tuple(None if d == -1 else d for d in s.shape), dtype=s.dtype)
                for s in in_specs]
    out = model.compute_output_spec(symbolic[0] if len(symbolic) == 1 else symbolic)
    flat = keras.tree.flatten(out)
    return Signature(in_specs, tuple(
        TensorSpec(f"output_{i}", _tensor_dtype(t), _spec_shape(t.shape))
        for i, t in enumerate(flat)))


def _free_batch(shape) -> list:
    shape = list(shape)
    return [None, *shape[1:]] if shape else shape


def _has_graph(model) -> bool:
    return bool(getattr(model, "_inputs_struct", None) is not None and getattr(model, "inputs", None))


def _is_shape_list(build: Any) -> bool:
    return isinstance(build, (list, tuple)) and bool(build) and \
        all(isinstance(s, (list, tuple)) for s in build)


def model_inputs(signature: Signature, arrays: list):
    """The argument a model is called with: one tensor, or a list in signature order."""
    return arrays[0] if len(signature.inputs) == 1 else list(arrays)


def layer_classes(model) -> list[str]:
    """Class names of every layer in the model, nested ones included; registered names
    for custom classes."""
    import keras

    names = set()
    for layer in model._flatten_layers(include_self=True, recursive=True):
        cls = type(layer)
        registered = keras.saving.get_registered_name(cls)
        names.add(registered)
    return sorted(names)


def in_place_obstacle(model) -> str | None:
    """Why new weights cannot be assigned into this built model in place, or None.

    Assigning is exact only where a layer's whole state is its variables and loading them is
    plain assignment. Layers that derive state when weights load (Normalization's mean and
    variance, lookup tables, anything with ``finalize_state`` or assets), and custom layers
    that override ``load_own_variables``, could keep state from the old weights: those
    versions are loaded in full instead.
    """
    for layer in model._flatten_layers(include_self=True, recursive=True):
        cls = type(layer)
        if hasattr(layer, "finalize_state") or hasattr(layer, "load_assets"):
            return f"layer {layer.name!r} ({cls.__name__}) derives state from its weights"
        owner = next(c for c in cls.__mro__ if "load_own_variables" in vars(c))
        if not owner.__module__.startswith("keras."):
            return f"layer {layer.name!r} ({cls.__name__}) loads its own variables its own way"
    return None
