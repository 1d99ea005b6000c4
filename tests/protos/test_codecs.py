"""The v2 tensor codecs on their own, without TensorFlow: raw and typed round trips, BYTES,
FP16/BF16, and shapes that must be refused before any allocation. (TensorProto's codecs
need TensorFlow's protos; the server tests cover them, its broadcast bound included.)"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

# tritonclient's copy of the v2 messages: the test process holds tritonclient's, and one
# descriptor pool cannot hold both copies of package "inference".
from tritonclient.grpc import service_pb2 as pb

from kerve.protos import codecs
from kerve.registry.errors import InvalidArgumentError


def test_importing_the_codecs_and_interceptors_does_not_import_tensorflow():
    code = ("import sys, kerve.protos.codecs, kerve.server.interceptors; "
            "sys.exit('tensorflow' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.mark.parametrize("dtype", ["bool", "uint8", "uint16", "uint32", "uint64", "int8",
                                   "int16", "int32", "int64", "float16", "float32", "float64"])
def test_raw_round_trip_every_numeric_dtype(dtype):
    arr = (np.arange(24) % 7).astype(dtype).reshape(2, 3, 4)
    datatype = codecs.v2_datatype(arr.dtype)
    back = codecs.v2_raw_to_ndarray("x", datatype, arr.shape, codecs.ndarray_to_v2_raw(arr))
    assert back.dtype == arr.dtype
    np.testing.assert_array_equal(back, arr)


def test_bf16_travels_raw():
    import ml_dtypes

    arr = np.array([[1.5, -2.25], [0.0, 3.0]], dtype=ml_dtypes.bfloat16)
    assert codecs.v2_datatype(arr.dtype) == "BF16"
    back = codecs.v2_raw_to_ndarray("x", "BF16", [2, 2], codecs.ndarray_to_v2_raw(arr))
    np.testing.assert_array_equal(back.astype(np.float32), arr.astype(np.float32))
    with pytest.raises(InvalidArgumentError, match="only as raw"):
        codecs.v2_contents_to_ndarray("x", "BF16", [2, 2], pb.InferTensorContents())
    with pytest.raises(InvalidArgumentError, match="only be returned raw"):
        codecs.ndarray_to_v2_contents(arr, pb.InferTensorContents())


def test_bytes_raw_round_trip_with_empty_and_binary_elements():
    arr = np.array([b"", b"hello", b"\x00\xff\x04", "caf\u00e9".encode()], dtype=object)
    raw = codecs.ndarray_to_v2_raw(arr.reshape(2, 2))
    back = codecs.v2_raw_to_ndarray("s", "BYTES", [2, 2], raw)
    assert back.shape == (2, 2) and back.ravel().tolist() == arr.tolist()


@pytest.mark.parametrize("raw, message", [
    (b"\x05\x00\x00\x00abc", "truncated BYTES element"),
    (b"\x01\x00", "truncated BYTES element length"),
    (b"\x01\x00\x00\x00a", r"1 BYTES elements, shape \[2\] needs 2"),
])
def test_malformed_bytes_raw_is_refused(raw, message):
    with pytest.raises(InvalidArgumentError, match=message):
        codecs.v2_raw_to_ndarray("s", "BYTES", [2], raw)


def test_typed_contents_round_trip_and_wrong_field_hint():
    arr = np.arange(6, dtype=np.int32).reshape(2, 3)
    contents = pb.InferTensorContents()
    codecs.ndarray_to_v2_contents(arr, contents)
    np.testing.assert_array_equal(codecs.v2_contents_to_ndarray("x", "INT32", [2, 3], contents),
                                  arr)
    with pytest.raises(InvalidArgumentError, match=r"data is in int_contents"):
        codecs.v2_contents_to_ndarray("x", "FP32", [2, 3], contents)


@pytest.mark.parametrize("shape, message", [
    ([2**40, 2**40], "too large"),            # the product overflows 64 bits
    ([2**62, 2**62, 0, 2**62], "too large"),  # zero elements, huge dimensions
    ([0, 2**31 + 1], "too large"),
    ([-1, 4], "negative dimension"),
    ([3, 2**31], "too large"),
])
def test_shapes_are_checked_before_allocating(shape, message):
    with pytest.raises(InvalidArgumentError, match=message):
        codecs.v2_raw_to_ndarray("x", "FP32", shape, b"\x00" * 8)


def test_zero_elements_beside_a_huge_dimension_are_refused_typed_too():
    with pytest.raises(InvalidArgumentError, match="too large"):
        codecs.v2_contents_to_ndarray("x", "INT32", [717, 2**63 - 1, 0],
                                      pb.InferTensorContents())


def test_raw_of_the_wrong_length_is_refused():
    with pytest.raises(InvalidArgumentError, match="raw contents have 7 bytes"):
        codecs.v2_raw_to_ndarray("x", "FP32", [2], b"\x00" * 7)


def test_unknown_datatype_is_refused():
    with pytest.raises(InvalidArgumentError, match="unknown datatype 'FP8'"):
        codecs.v2_raw_to_ndarray("x", "FP8", [1], b"\x00")

