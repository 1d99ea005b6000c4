"""Golden examples: inputs and the outputs the author's Keras gave for them, uploaded with a
version as one ``.npz`` of arrays ``input/INPUT_NAME`` and ``output/OUTPUT_NAME``.

Validation (at upload) checks that they fit the signature; the loader (at load, on the
serving device) checks that the version reproduces them within ``TOLERANCES``, and then uses
them as warm-up requests. Strings are stored as numpy ``U`` or ``S`` arrays (an ``.npz`` is
read without pickle, so object arrays are refused) and become object arrays of bytes.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass

import numpy as np

from kerve.registry.errors import FailedPreconditionError, InvalidArgumentError
from kerve.registry.signature import STRING, Signature, TensorSpec

INPUT_PREFIX, OUTPUT_PREFIX = "input/", "output/"
MAX_EXAMPLE_ROWS = 4096

TOLERANCES: dict[str, tuple[float, float]] = {
    # dtype: (atol, rtol); |served - expected| <= atol + rtol * |expected|, elementwise.
    # float32 allows for TF32 matmuls on NVIDIA GPUs and XLA's reordered sums; float16 and
    # bfloat16 keep 11 and 8 significant bits, so a few rounding steps move the last ones.
    "float64": (1e-8, 1e-6),
    "float32": (1e-4, 1e-3),
    "float16": (1e-2, 1e-2),
    "bfloat16": (5e-2, 5e-2),
}
"""Floats not listed compare with float32's tolerance; integers, booleans and strings must
be equal."""


@dataclass
class Examples:
    """Arrays in signature order (inputs) and keyed by output name (a subset of outputs)."""

    inputs: list[np.ndarray]
    outputs: dict[str, np.ndarray]

    @property
    def rows(self) -> int:
        return int(self.inputs[0].shape[0]) if self.inputs and self.inputs[0].ndim else 1

    def take(self, rows: int) -> list[np.ndarray]:
        """``rows`` rows of the inputs, the examples repeated as needed (warm-up batches)."""
        index = np.arange(rows) % self.rows
        return [a[index] if a.ndim else a for a in self.inputs]


def read_examples(path: str | os.PathLike, signature: Signature) -> Examples:
    """Read and check an examples ``.npz`` against ``signature``; INVALID_ARGUMENT naming
    the array that does not fit."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise InvalidArgumentError(
            f"examples are not a readable .npz of plain arrays (strings as str or bytes "
            f"arrays, not objects): {' '.join(str(exc).split())[:300]}") from None
    bad = sorted(k for k in arrays if not k.startswith((INPUT_PREFIX, OUTPUT_PREFIX)))
    if bad:
        raise InvalidArgumentError(
            f"examples: arrays must be named input/INPUT_NAME or output/OUTPUT_NAME; got "
            f"{', '.join(bad)}")
    given_in = {k[len(INPUT_PREFIX):]: v for k, v in arrays.items() if k.startswith(INPUT_PREFIX)}
    given_out = {k[len(OUTPUT_PREFIX):]: v for k, v in arrays.items()
                 if k.startswith(OUTPUT_PREFIX)}
    inputs = _match_inputs(signature, given_in)
    outputs = _match_outputs(signature, given_out)
    rows = {a.shape[0] for spec, a in zip(signature.inputs, inputs) if spec.batched}
    rows |= {a.shape[0] for spec in signature.outputs if spec.name in outputs and spec.batched
             for a in [outputs[spec.name]]}
    if len(rows) > 1:
        raise InvalidArgumentError(
            f"examples: inputs and outputs disagree on the number of rows ({sorted(rows)})")
    if rows and (min(rows) < 1 or max(rows) > MAX_EXAMPLE_ROWS):
        raise InvalidArgumentError(f"examples: 1 to {MAX_EXAMPLE_ROWS} rows, got {rows.pop()}")
    return Examples(inputs, outputs)


def _match_inputs(signature: Signature, given: dict[str, np.ndarray]) -> list[np.ndarray]:
    specs = signature.inputs
    if len(specs) == 1 and len(given) == 1:  # a single-input model takes any name
        given = {specs[0].name: next(iter(given.values()))}
    expected = [s.name for s in specs]
    if set(given) != set(expected):
        raise InvalidArgumentError(
            f"examples: inputs {', '.join(sorted(given)) or 'none'} given, the model takes "
            f"{', '.join(expected)} (arrays input/NAME)")
    return [_fit(spec, given[spec.name], "input") for spec in specs]


def _match_outputs(signature: Signature, given: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    names = [s.name for s in signature.outputs]
    if len(names) == 1 and len(given) == 1:
        given = {names[0]: next(iter(given.values()))}
    unknown = sorted(set(given) - set(names))
    if unknown or not given:
        raise InvalidArgumentError(
            f"examples: outputs {', '.join(unknown) or 'none'} given; the model gives "
            f"{', '.join(names)} (arrays output/NAME, at least one)")
    by_name = {s.name: s for s in signature.outputs}
    return {n: _fit(by_name[n], a, "output") for n, a in given.items()}


def _fit(spec: TensorSpec, arr: np.ndarray, side: str) -> np.ndarray:
    """``arr`` in ``spec``'s dtype, its shape checked: a lossless cast (or float to float,
    which Keras does itself on the way in) is accepted."""
    where = f"examples: {side} {spec.name!r}"
    if spec.dtype == STRING:
        if arr.dtype.kind not in "SU":
            raise InvalidArgumentError(f"{where}: expected strings, got {arr.dtype}")
        from kerve.protos.codecs import as_string_array

        arr = as_string_array(arr)
    else:
        target = spec.np_dtype
        if arr.dtype.kind == "V" and target.kind == "V" and arr.dtype.itemsize == target.itemsize:
            arr = arr.view(target)  # .npz keeps bfloat16 as raw 2-byte values
        same_kind = arr.dtype.kind == target.kind or (
            arr.dtype.kind in "fV" and target.kind in "fV")  # bfloat16 is kind V
        if not (same_kind or np.can_cast(arr.dtype, target, "safe")):
            raise InvalidArgumentError(f"{where}: expected {spec.dtype}, got {arr.dtype}")
        arr = arr.astype(target)
    shape = tuple(spec.shape)
    if arr.ndim != len(shape) or any(e != -1 and e != g for e, g in zip(shape, arr.shape)):
        raise InvalidArgumentError(
            f"{where}: expected shape {list(shape)}, got {list(arr.shape)}")
    return arr


def tolerance(dtype: str) -> tuple[float, float] | None:
    """(atol, rtol) for a float dtype; None where values must be equal."""
    if dtype in TOLERANCES:
        return TOLERANCES[dtype]
    if dtype.startswith(("float", "complex")):
        return TOLERANCES["float32"]
    return None


def check_reproduced(examples: Examples, served: dict[str, np.ndarray],
                     signature: Signature) -> None:
    """FAILED_PRECONDITION unless every expected output is reproduced within tolerance,
    naming the largest difference: which output, which element, served vs expected."""
    dtypes = {s.name: s.dtype for s in signature.outputs}
    for name, want in examples.outputs.items():
        got = served[name]
        if got.shape != want.shape:
            raise FailedPreconditionError(
                f"golden examples not reproduced: output {name!r} has shape "
                f"{list(got.shape)}, the examples {list(want.shape)}")
        tol = tolerance(dtypes[name])
        if tol is None:
            unequal = np.flatnonzero(got.reshape(-1) != want.reshape(-1))
            if unequal.size:
                i = np.unravel_index(unequal[0], want.shape)
                raise FailedPreconditionError(
                    f"golden examples not reproduced: output {name!r} at index "
                    f"{list(map(int, i))} is {_item(got[i])!r}, expected {_item(want[i])!r} "
                    f"({unequal.size} of {want.size} elements differ; {dtypes[name]} must be "
                    f"equal)")
            continue
        atol, rtol = tol
        g, w = got.astype(np.float64), want.astype(np.float64)
        same = (g == w) | (np.isnan(g) & np.isnan(w))  # inf == inf; NaN where NaN expected
        diff = np.where(same, 0.0, np.abs(g - w))
        diff = np.where(np.isnan(diff), np.inf, diff)
        excess = diff - (atol + rtol * np.abs(np.where(np.isfinite(w), w, 0.0)))
        if excess.size and (excess > 0).any():
            i = np.unravel_index(int(np.argmax(np.where(excess > 0, diff, -1.0))), want.shape)
            raise FailedPreconditionError(
                f"golden examples not reproduced: largest difference {float(diff[i]):.6g} "
                f"in output {name!r} at index {list(map(int, i))} (served "
                f"{float(g[i]):.8g}, expected {float(w[i]):.8g}; {dtypes[name]} tolerance "
                f"atol {atol:g} + rtol {rtol:g} * |expected|)")


def _item(value):
    """A numpy scalar as the plain Python value it prints as (1, not np.int64(1))."""
    return value.item() if isinstance(value, np.generic) else value
