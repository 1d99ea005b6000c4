"""A model version's signature: its input and output tensors, by name."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import cached_property

import numpy as np

STRING = "string"
"""The signature dtype of a string tensor (Keras's own name for it). On the wire it is
DT_STRING (TF Serving) or BYTES (KServe v2); in numpy, an object array of bytes."""


def numpy_dtype(name: str) -> np.dtype:
    """The numpy dtype that carries a signature dtype."""
    if name == STRING:
        return np.dtype(object)
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: numpy dtype name and shape, -1 for a free dimension."""

    name: str
    dtype: str
    shape: tuple[int, ...]

    @cached_property
    def np_dtype(self) -> np.dtype:
        """The numpy dtype of this tensor's arrays (an object array of bytes for strings)."""
        return numpy_dtype(self.dtype)

    @property
    def batched(self) -> bool:
        """Whether the first dimension is a free batch dimension."""
        return bool(self.shape) and self.shape[0] == -1


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...] = field(default_factory=tuple)
    outputs: tuple[TensorSpec, ...] = field(default_factory=tuple)

    @property
    def batchable(self) -> bool:
        """Whether requests may be merged along the first dimension: every input and output
        has a free batch dimension (to concatenate inputs and split outputs)."""
        return all(spec.batched for spec in self.inputs + self.outputs)

    def to_json(self) -> dict:
        return {"inputs": [asdict(t) | {"shape": list(t.shape)} for t in self.inputs],
                "outputs": [asdict(t) | {"shape": list(t.shape)} for t in self.outputs]}

    @classmethod
    def from_json(cls, data: dict) -> "Signature":
        def specs(items):
            return tuple(TensorSpec(i["name"], i["dtype"], tuple(i["shape"])) for i in items)
        return cls(specs(data.get("inputs", [])), specs(data.get("outputs", [])))


def unique_names(names: list[str]) -> list[str]:
    """Keep the first of each name; later repeats get _1, _2, ..."""
    seen: dict[str, int] = {}
    taken = set(names)
    out = []
    for name in names:
        if name not in seen:
            seen[name] = 0
            out.append(name)
            continue
        n = seen[name]
        while True:
            n += 1
            candidate = f"{name}_{n}"
            if candidate not in taken:
                break
        seen[name] = n
        taken.add(candidate)
        out.append(candidate)
    return out
