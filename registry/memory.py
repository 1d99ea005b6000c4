"""How much memory a version needs once loaded: estimated at upload, checked before a load.

A loaded version holds its weights, the activations of the batch it is running, and the
objects around them (the Keras model, the traced graph). The estimate has one figure for
each, so that it can be told where the bytes go:

- ``weights_bytes``: every variable's elements times its dtype's size;
- ``activation_bytes_fixed`` and ``activation_bytes_per_row``: the most bytes of tensors
  alive at once while the traced model runs, found by walking the graph in execution order
  (a tensor lives from the op that makes it to its last consumer), at one row and at
  ``_PROBE_ROWS`` rows, fitted to fixed + per-row. Inner dimensions the signature leaves
  free count at the size validation's made-up inputs use. Variable reads and constants are
  not counted (they alias the weights or are small);
- ``overhead_bytes``: the model's objects and graph, ``_BASE_OVERHEAD`` plus
  ``_PER_OP_OVERHEAD`` per graph operation;
- ``load_bytes``: held only while the version loads: the values read from the weights file
  (and the initial values before them) beside the variables they are assigned to, about
  the weights once more.

The total for a batch size is ``total_bytes(estimate, rows)``: what a loaded version holds;
the server uses its largest batch, the batcher's ``max_batch_size`` for batchable versions.
Admission counts a loading version for its total plus ``load_bytes``
(tests/server/test_memory_admission.py compares that with the RSS a load adds).
"""

from __future__ import annotations

import math

_PROBE_ROWS = 64
_BASE_OVERHEAD = 2 << 20
_PER_OP_OVERHEAD = 4 << 10
_NOT_NEW_MEMORY = {"ReadVariableOp", "Const", "VarHandleOp", "Identity", "NoOp",
                   "IdentityN", "StopGradient", "Reshape", "ExpandDims", "Squeeze"}


def total_bytes(estimate: dict, rows: int) -> int:
    """The estimate's figure for a batch of ``rows``."""
    return int(estimate.get("weights_bytes", 0) + estimate.get("overhead_bytes", 0)
               + estimate.get("activation_bytes_fixed", 0)
               + estimate.get("activation_bytes_per_row", 0) * max(1, rows))


def estimate_memory(model, signature, free_dim: int) -> dict:
    """The estimate's parts for a built model with weights (blocking: TensorFlow traces)."""
    import tensorflow as tf

    from kerve.registry.keras_model import model_inputs

    seen, weights = set(), 0
    for v in model.weights:
        if id(v) not in seen:
            seen.add(id(v))
            weights += math.prod(v.shape) * _itemsize(v.dtype)
    specs = [tf.TensorSpec([None if d == -1 and i == 0 else (free_dim if d == -1 else d)
                            for i, d in enumerate(s.shape)], s.dtype)
             for s in signature.inputs]
    graph = tf.function(lambda *xs: model(model_inputs(signature, list(xs)), training=False)
                        ).get_concrete_function(*specs).graph
    operations = graph.get_operations()
    at_one = _peak_live_bytes(operations, rows=1, free_dim=free_dim)
    at_probe = _peak_live_bytes(operations, rows=_PROBE_ROWS, free_dim=free_dim)
    per_row = max(0, math.ceil((at_probe - at_one) / (_PROBE_ROWS - 1)))
    return {"weights_bytes": int(weights),
            "activation_bytes_fixed": int(max(0, at_one - per_row)),
            "activation_bytes_per_row": int(per_row),
            "overhead_bytes": _BASE_OVERHEAD + _PER_OP_OVERHEAD * len(operations),
            "load_bytes": int(weights)}


def _peak_live_bytes(operations, *, rows: int, free_dim: int) -> int:
    """The most bytes of op outputs alive at once, ops run in graph order."""
    last_use: dict = {}
    for i, op in enumerate(operations):
        for t in op.inputs:
            last_use[t.ref()] = i
    frees: dict[int, int] = {}
    live = peak = 0
    for i, op in enumerate(operations):
        if op.type not in _NOT_NEW_MEMORY:
            for t in op.outputs:
                size = _tensor_bytes(t, rows, free_dim)
                end = last_use.get(t.ref(), len(operations))  # an output lives to the end
                if size and end > i:
                    live += size
                    frees[end] = frees.get(end, 0) + size
        peak = max(peak, live)
        live -= frees.pop(i, 0)
    return peak


def _tensor_bytes(t, rows: int, free_dim: int) -> int:
    dtype = t.dtype
    if dtype.name in ("resource", "variant") or t.shape.rank is None:
        return 0
    dims = t.shape.as_list()
    count = 1
    for i, d in enumerate(dims):
        count *= (rows if i == 0 else free_dim) if d is None else d
    return count * (dtype.size if dtype.name != "string" else 64)


def _itemsize(dtype) -> int:
    import numpy as np

    name = str(dtype)
    return {"bfloat16": 2, "string": 64, "bool": 1}.get(name) or np.dtype(name).itemsize


def with_total(estimate: dict, rows: int) -> dict:
    """The estimate with its total for the largest batch the version runs (``rows``)."""
    return {**estimate, "rows": int(rows), "total_bytes": total_bytes(estimate, rows)}


def memory_need(info) -> tuple[int, int]:
    """What a version (a VersionInfo) is counted for when loaded, and besides that while it
    loads."""
    return (need_bytes(info.memory_estimate, info.weights.size),
            load_bytes(info.memory_estimate, info.weights.size))


def need_bytes(estimate: dict | None, weights_size: int) -> int:
    """An estimate's total, else, for versions stored before estimates, the weights' size."""
    return int((estimate or {}).get("total_bytes") or weights_size)


def load_bytes(estimate: dict | None, weights_size: int) -> int:
    """What a version holds besides its total while it loads (before estimates: the weights'
    size)."""
    return int((estimate or {}).get("load_bytes") or weights_size)
