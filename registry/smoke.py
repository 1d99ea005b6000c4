"""Made-up inputs that exercise a model: what validation's smoke prediction and an
example-less warm-up feed it.

Zeros are a degenerate input (``Masking()`` masks every step of a zero sequence, and a
masked average then divides by zero), so each dtype gets values a real request could carry:
small random floats away from zero, integers that are valid indices for every embedding in
the model, a few short strings.
"""

from __future__ import annotations

import numpy as np

from kerve.registry.signature import STRING, Signature, TensorSpec

SMOKE_BATCH = 2
FREE_DIM_SIZES = (8, 32)
"""Sizes tried for a free non-batch dimension (a sequence length, an image side): small
first, then one large enough for a few strided convolutions or poolings."""
_WORDS = [b"the cat sat", b"a dog", b"hello world", b"kerve", b"x"]


def integer_limit(model) -> int:
    """An exclusive bound for made-up integer inputs: below the smallest ``input_dim``
    (Embedding) or ``num_tokens`` (CategoryEncoding) in the model, else 2 (0 and 1 are
    valid wherever integers index something)."""
    bounds = []
    if model is not None:
        for layer in model._flatten_layers(include_self=False, recursive=True):
            for attr in ("input_dim", "num_tokens"):
                value = getattr(layer, attr, None)
                if isinstance(value, int) and value > 0:
                    bounds.append(value)
    return min(bounds) if bounds else 2


def made_up(spec: TensorSpec, shape: tuple[int, ...], rng: np.random.Generator,
            int_limit: int = 2) -> np.ndarray:
    """One array of ``shape`` for ``spec``, per its dtype."""
    if spec.dtype == STRING:
        out = np.empty(shape, dtype=object)
        flat = out.reshape(-1)
        for i in range(flat.size):
            flat[i] = _WORDS[int(rng.integers(len(_WORDS)))]
        return out
    dtype = spec.np_dtype
    if dtype.kind == "b":
        return rng.integers(0, 2, shape).astype(bool)
    if dtype.kind in "iu":
        return rng.integers(0, int_limit, shape).astype(dtype)
    if dtype.kind == "c":
        return (rng.uniform(0.1, 1.0, shape) + 0j).astype(dtype)
    return rng.uniform(0.1, 1.0, shape).astype(dtype)


def made_up_inputs(signature: Signature, model=None, *, batch: int = SMOKE_BATCH,
                   free: int = FREE_DIM_SIZES[0], seed: int = 0) -> list[np.ndarray]:
    """One array per input: ``batch`` rows for a free batch dimension, ``free`` for any
    other free dimension."""
    rng = np.random.default_rng(seed)
    limit = integer_limit(model)
    arrays = []
    for spec in signature.inputs:
        shape = tuple(batch if i == 0 and d == -1 else (free if d == -1 else d)
                      for i, d in enumerate(spec.shape))
        arrays.append(made_up(spec, shape, rng, limit))
    return arrays


def has_free_inner_dims(signature: Signature) -> bool:
    return any(-1 in spec.shape[1:] for spec in signature.inputs)
