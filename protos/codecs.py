"""Tensor codecs at the edge: TensorProto (TF Serving) and KServe v2 tensors <-> numpy.

Bytes go through np.frombuffer and tobytes; no Python loop touches tensor elements. Every
decode checks the declared shape against the data before allocating anything.
"""

from __future__ import annotations

import math

import numpy as np

from kerve.registry.errors import InvalidArgumentError
from kerve.registry.signature import numpy_dtype

MAX_ELEMENTS = 1 << 31
# A single typed value broadcast to its shape (as tf.make_ndarray does) allocates memory the
# request never carried: bounded, so a tiny request cannot make the server allocate gigabytes.
MAX_BROADCAST_ELEMENTS = 1 << 22


def _element_count(name: str, shape) -> int:
    dims = [int(d) for d in shape]
    if any(d < 0 for d in dims):
        raise InvalidArgumentError(f"input {name!r}: negative dimension in shape {dims}")
    if math.prod(d for d in dims if d) > MAX_ELEMENTS:  # even beside a zero: numpy cannot
        # shape it (found by tests/server/test_fuzz.py: [2**31, 2**31, 0] of BF16)
        raise InvalidArgumentError(f"input {name!r}: a dimension of shape {dims} is too large")
    count = math.prod(dims)
    if count > MAX_ELEMENTS:
        raise InvalidArgumentError(f"input {name!r}: shape {dims} is too large")
    return count


# --- TensorProto (tensorflow.core.framework.tensor_pb2) ----------------------------------

def _tf_types():
    from tensorflow.core.framework import types_pb2 as t

    return {
        t.DT_BFLOAT16: (_bf16(), "half_val"),  # TF keeps bfloat16 bits in half_val too
        t.DT_FLOAT: (np.float32, "float_val"), t.DT_DOUBLE: (np.float64, "double_val"),
        t.DT_HALF: (np.float16, "half_val"), t.DT_INT8: (np.int8, "int_val"),
        t.DT_INT16: (np.int16, "int_val"), t.DT_INT32: (np.int32, "int_val"),
        t.DT_INT64: (np.int64, "int64_val"), t.DT_UINT8: (np.uint8, "int_val"),
        t.DT_UINT16: (np.uint16, "int_val"), t.DT_UINT32: (np.uint32, "uint32_val"),
        t.DT_UINT64: (np.uint64, "uint64_val"), t.DT_BOOL: (np.bool_, "bool_val"),
        t.DT_STRING: (np.object_, "string_val"),
    }


_TF_TYPES = None


def tf_types() -> dict:
    global _TF_TYPES
    if _TF_TYPES is None:
        _TF_TYPES = _tf_types()
    return _TF_TYPES


def tf_dtype_enum(dtype: str) -> int:
    """The TensorProto dtype enum of a signature or numpy dtype name ("string" is DT_STRING)."""
    np_type = numpy_dtype(dtype).type
    for enum_value, (candidate, _) in tf_types().items():
        if candidate is np_type:
            return enum_value
    raise InvalidArgumentError(f"dtype {dtype} has no TensorFlow Serving equivalent")


def tensor_proto_to_ndarray(name: str, proto) -> np.ndarray:
    types = tf_types()
    if proto.dtype not in types:
        raise InvalidArgumentError(f"input {name!r}: unsupported dtype enum {proto.dtype}")
    np_type, field = types[proto.dtype]
    if proto.tensor_shape.unknown_rank:
        raise InvalidArgumentError(f"input {name!r}: shape of unknown rank")
    shape = [d.size for d in proto.tensor_shape.dim]
    count = _element_count(name, shape)
    if proto.tensor_content:
        if np_type is np.object_:
            raise InvalidArgumentError(f"input {name!r}: strings cannot use tensor_content")
        itemsize = np.dtype(np_type).itemsize
        if len(proto.tensor_content) != count * itemsize:
            raise InvalidArgumentError(
                f"input {name!r}: tensor_content has {len(proto.tensor_content)} bytes, shape "
                f"{shape} of {np.dtype(np_type).name} needs {count * itemsize}")
        return np.frombuffer(proto.tensor_content, dtype=np_type).reshape(shape)
    values = getattr(proto, field)
    n = len(values)
    if n not in (count, 1) and not (n == 0 and count == 0):
        raise InvalidArgumentError(
            f"input {name!r}: {field} has {n} values, shape {shape} needs {count}")
    if np_type is np.object_:
        arr = np.empty(n, dtype=object)
        arr[:] = list(values)
    elif np_type is np.float16 or np_type is _bf16():
        arr = np.asarray(values, dtype=np.uint16).view(np_type)
    else:
        arr = np.asarray(values, dtype=np_type)
    if n == 1 and count != 1:
        if count > MAX_BROADCAST_ELEMENTS:
            raise InvalidArgumentError(
                f"input {name!r}: one {field} value would be broadcast to shape {shape} "
                f"({count} elements, at most {MAX_BROADCAST_ELEMENTS}); send the values")
        arr = np.full(shape, arr[0], dtype=arr.dtype)  # TF's broadcast of one value
    return arr.reshape(shape)


def ndarray_to_tensor_proto(arr: np.ndarray, proto) -> None:
    """Fill ``proto`` (a TensorProto) from ``arr`` with tensor_content."""
    if arr.dtype.kind in "OSU":
        arr = as_string_array(arr)
    proto.dtype = tf_dtype_enum(arr.dtype.name)
    for d in arr.shape:
        proto.tensor_shape.dim.add().size = int(d)
    if arr.dtype == np.object_:
        proto.string_val.extend(arr.ravel().tolist())
    else:
        proto.tensor_content = np.ascontiguousarray(arr).tobytes()


def as_string_array(arr: np.ndarray) -> np.ndarray:
    """A numpy array of text (str, bytes, or objects holding either) as the object array of
    bytes that both protocols carry: str is encoded as UTF-8."""
    if arr.dtype == np.object_ and all(isinstance(x, bytes) for x in arr.flat):
        return arr
    if arr.dtype.kind not in "OSU":
        raise InvalidArgumentError(f"expected strings, got an array of {arr.dtype}")
    out = np.empty(arr.shape, dtype=object)
    flat = out.reshape(-1)
    for i, item in enumerate(arr.flat):
        if isinstance(item, (bytes, np.bytes_)):
            flat[i] = bytes(item)
        elif isinstance(item, str):
            flat[i] = item.encode()
        else:
            raise InvalidArgumentError(
                f"expected strings, got an element of type {type(item).__name__}")
    return out


# --- KServe v2 --------------------------------------------------------------------------

def _bf16():
    import ml_dtypes

    return ml_dtypes.bfloat16


V2_TO_NUMPY = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
    "UINT64": np.uint64, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
    "INT64": np.int64, "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
}
_CONTENTS_FIELD = {
    "BOOL": "bool_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
    "UINT32": "uint_contents", "UINT64": "uint64_contents", "INT8": "int_contents",
    "INT16": "int_contents", "INT32": "int_contents", "INT64": "int64_contents",
    "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}


def v2_numpy_dtype(datatype: str, name: str = "") -> np.dtype:
    if datatype == "BF16":
        return np.dtype(_bf16())
    if datatype in V2_TO_NUMPY:
        return np.dtype(V2_TO_NUMPY[datatype])
    if datatype == "BYTES":
        return np.dtype(object)
    raise InvalidArgumentError(f"input {name!r}: unknown datatype {datatype!r}")


_V2_BY_DTYPE = {np.dtype(t): name for name, t in V2_TO_NUMPY.items()}


def v2_datatype(dtype: np.dtype) -> str:
    known = _V2_BY_DTYPE.get(dtype)  # one dict lookup on the hot path
    if known is not None:
        return known
    if dtype == np.object_:
        return "BYTES"
    if dtype.name == "bfloat16":
        return "BF16"
    for datatype, np_type in V2_TO_NUMPY.items():
        if np.dtype(np_type) == dtype:
            return datatype
    raise InvalidArgumentError(f"dtype {dtype} has no KServe v2 datatype")


def v2_raw_to_ndarray(name: str, datatype: str, shape, raw: bytes) -> np.ndarray:
    dtype = v2_numpy_dtype(datatype, name)
    count = _element_count(name, shape)
    if dtype == np.object_:
        return _decode_raw_bytes(name, shape, count, raw)
    if len(raw) != count * dtype.itemsize:
        raise InvalidArgumentError(
            f"input {name!r}: raw contents have {len(raw)} bytes, shape {list(shape)} of "
            f"{datatype} needs {count * dtype.itemsize}")
    return np.frombuffer(raw, dtype=dtype).reshape([int(d) for d in shape])


def _decode_raw_bytes(name: str, shape, count: int, raw: bytes) -> np.ndarray:
    """BYTES raw layout: each element a 4-byte little-endian length, then its bytes."""
    items, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise InvalidArgumentError(f"input {name!r}: truncated BYTES element length")
        size = int.from_bytes(raw[offset:offset + 4], "little")
        offset += 4
        if offset + size > len(raw):
            raise InvalidArgumentError(f"input {name!r}: truncated BYTES element")
        items.append(raw[offset:offset + size])
        offset += size
    if len(items) != count:
        raise InvalidArgumentError(
            f"input {name!r}: {len(items)} BYTES elements, shape {list(shape)} needs {count}")
    arr = np.empty(count, dtype=object)
    arr[:] = items
    return arr.reshape([int(d) for d in shape])


def v2_contents_to_ndarray(name: str, datatype: str, shape, contents) -> np.ndarray:
    if datatype not in _CONTENTS_FIELD:
        raise InvalidArgumentError(
            f"input {name!r}: {datatype} travels only as raw_input_contents")
    dtype = v2_numpy_dtype(datatype, name)
    count = _element_count(name, shape)
    values = getattr(contents, _CONTENTS_FIELD[datatype])
    if len(values) != count:
        other = [f for f in set(_CONTENTS_FIELD.values()) if len(getattr(contents, f))]
        hint = f" (data is in {', '.join(sorted(other))})" if other else ""
        raise InvalidArgumentError(
            f"input {name!r}: {_CONTENTS_FIELD[datatype]} has {len(values)} values, shape "
            f"{list(shape)} needs {count}{hint}")
    if dtype == np.object_:
        arr = np.empty(count, dtype=object)
        arr[:] = list(values)
    else:
        arr = np.asarray(values, dtype=dtype)
    return arr.reshape([int(d) for d in shape])


def ndarray_to_v2_raw(arr: np.ndarray) -> bytes:
    if arr.dtype.kind in "OSU":
        out = bytearray()
        for data in as_string_array(arr).ravel():
            out += len(data).to_bytes(4, "little") + data
        return bytes(out)
    return np.ascontiguousarray(arr).tobytes()


def ndarray_to_v2_contents(arr: np.ndarray, contents) -> None:
    if arr.dtype.kind in "SU":
        arr = as_string_array(arr)
    datatype = v2_datatype(arr.dtype)
    if datatype not in _CONTENTS_FIELD:
        raise InvalidArgumentError(f"output of {datatype} can only be returned raw")
    if datatype == "BYTES":
        arr = as_string_array(arr)
    getattr(contents, _CONTENTS_FIELD[datatype]).extend(arr.ravel().tolist())
