"""Arrays on the command line: ``kerve predict``'s input files and printed outputs, strings
included."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def read_input(path: str) -> np.ndarray:
    """An input array from ``.npy`` (read without pickle: strings as numpy str or bytes
    arrays) or ``.json`` (a nested list of numbers or strings, or ``{"dtype": ..., "data":
    [...]}`` to choose the dtype; numbers without one are float32 when any is fractional,
    else int64). Raises ValueError or OSError saying what is wrong."""
    if Path(path).suffix.lower() != ".json":
        return np.load(path, allow_pickle=False)
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    dtype = None
    if isinstance(data, dict):
        if "data" not in data:
            raise ValueError('a JSON input is a list, or an object with "data" (and "dtype")')
        dtype, data = data.get("dtype"), data["data"]
    arr = np.asarray(data)
    if dtype in ("string", "str", "bytes") or arr.dtype.kind in "SU":
        return arr.astype(str)
    if arr.dtype == np.object_:
        raise ValueError("a JSON input must be a rectangular list of numbers or of strings")
    if dtype:
        return arr.astype(dtype)
    return arr.astype(np.float32) if arr.dtype.kind == "f" else arr.astype(np.int64)


def text_or_bytes(arr: np.ndarray) -> np.ndarray:
    """A string output (object array of bytes) as numpy str where it is UTF-8, else bytes:
    arrays that ``np.save`` writes and ``np.load`` reads without pickle."""
    if arr.dtype != np.object_:
        return arr
    items = arr.ravel().tolist()
    try:
        return np.array([x.decode() for x in items], dtype=str).reshape(arr.shape)
    except (UnicodeDecodeError, AttributeError):
        return np.array(items, dtype=bytes).reshape(arr.shape)


def printable(arr: np.ndarray) -> dict:
    """One output as JSON: dtype ("string" for strings), shape and data."""
    if arr.dtype == np.object_:
        data = [x.decode(errors="replace") if isinstance(x, bytes) else str(x)
                for x in arr.ravel().tolist()]
        return {"dtype": "string", "shape": list(arr.shape),
                "data": np.array(data, dtype=object).reshape(arr.shape).tolist()}
    return {"dtype": str(arr.dtype), "shape": list(arr.shape), "data": arr.tolist()}
