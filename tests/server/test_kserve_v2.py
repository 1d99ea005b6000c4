"""The KServe v2 / Open Inference Protocol through tritonclient.grpc, unchanged, against a
real server: every seed model, raw and typed tensors, metadata, repository and errors."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from tests.conftest import SAFE_ZOO


def _infer(triton, name, inputs: dict, outputs=None, version=""):
    import tritonclient.grpc as grpcclient

    infer_inputs = []
    for key, arr in inputs.items():
        i = grpcclient.InferInput(key, list(arr.shape), _datatype(arr))
        i.set_data_from_numpy(arr)
        infer_inputs.append(i)
    requested = [grpcclient.InferRequestedOutput(n) for n in outputs] if outputs else None
    return triton.infer(name, infer_inputs, outputs=requested, model_version=version)


def _datatype(arr):
    from tritonclient.utils import np_to_triton_dtype

    return np_to_triton_dtype(arr.dtype)


@pytest.mark.parametrize("name", SAFE_ZOO)
def test_infer_matches_keras(name, served_zoo, triton):
    b, version = served_zoo[name]
    in_names = [t["name"] for t in version["signature"]["inputs"]]
    out_names = [t["name"] for t in version["signature"]["outputs"]]
    result = _infer(triton, f"srv-{name}", b.input_dict(in_names))
    response = result.get_response()
    assert response.model_version == str(version["version"])
    for out_name, expected in zip(out_names, b.outputs):
        np.testing.assert_allclose(result.as_numpy(out_name), expected, atol=1e-5, rtol=1e-5)


def test_metadata_lists_signature_names(served_zoo, triton):
    b, _ = served_zoo["custom_layers"]
    meta = triton.get_model_metadata("srv-custom_layers")
    assert [i.name for i in meta.inputs] == ["a", "b"]
    assert [o.name for o in meta.outputs] == b.output_names
    assert meta.inputs[0].datatype == "FP32" and list(meta.inputs[0].shape) == [-1, 5]
    assert meta.versions == [str(served_zoo["custom_layers"][1]["version"])]


def test_server_endpoints(served_zoo, triton):
    assert triton.is_server_live()
    assert triton.is_server_ready()
    assert triton.is_model_ready("srv-mnist_mlp")
    meta = triton.get_server_metadata()
    assert meta.name == "kerve" and "model_repository" in meta.extensions
    index = triton.get_model_repository_index()
    entries = {(m.name, m.version): m.state for m in index.models}
    assert entries[("srv-mnist_mlp", str(served_zoo["mnist_mlp"][1]["version"]))] == "READY"
    b, _ = served_zoo["mnist_mlp"]
    _infer(triton, "srv-mnist_mlp", {"x": b.inputs})
    stats = triton.get_inference_statistics("srv-mnist_mlp").model_stats[0]
    assert stats.name == "srv-mnist_mlp"
    assert stats.inference_stats.success.count >= 1 and stats.inference_count >= 3
    assert stats.inference_stats.success.ns > 0 and stats.last_inference > 0
    assert stats.inference_stats.queue.count >= 1 and stats.execution_count >= 1


def test_requested_output_filtering(served_zoo, triton):
    b, _ = served_zoo["custom_layers"]
    second = b.output_names[1]
    result = _infer(triton, "srv-custom_layers", b.input_dict(["a", "b"]), outputs=[second])
    assert [o.name for o in result.get_response().outputs] == [second]
    np.testing.assert_allclose(result.as_numpy(second), b.outputs[1], atol=1e-5)


def _typed_request(name, inputs: dict):
    from tritonclient.grpc import service_pb2

    request = service_pb2.ModelInferRequest(model_name=name)
    for key, arr in inputs.items():
        tensor = request.inputs.add(name=key, datatype="FP32", shape=arr.shape)
        tensor.contents.fp32_contents.extend(arr.ravel().tolist())
    return request


def test_typed_contents_in_typed_out(served_zoo, server):
    from tritonclient.grpc import service_pb2_grpc

    b, _ = served_zoo["custom_layers"]
    with grpc.insecure_channel(server.target) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        response = stub.ModelInfer(_typed_request("srv-custom_layers", b.input_dict(["a", "b"])),
                                   timeout=30)
    assert not response.raw_output_contents
    out = {o.name: o for o in response.outputs}
    first = out[b.output_names[0]]
    got = np.asarray(first.contents.fp32_contents, np.float32).reshape(first.shape)
    np.testing.assert_allclose(got, b.outputs[0], atol=1e-5)


def test_fp16_through_raw(client, triton, tmp_path):
    import keras

    from tests.server.helpers import wait_ready

    inputs = keras.Input((4,), dtype="float16", name="half")
    outputs = keras.layers.Dense(2, dtype="float16", name="out")(inputs)
    model = keras.Model(inputs, outputs)
    client.upload("fp16", model=model)
    wait_ready(client, "fp16")
    x = np.arange(8, dtype=np.float16).reshape(2, 4) / 8
    result = _infer(triton, "fp16", {"half": x})
    assert result.as_numpy("out").dtype == np.float16
    np.testing.assert_allclose(result.as_numpy("out"), model.predict(x, verbose=0), atol=1e-3)


def _error(call):
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException) as e:
        call()
    return e.value.status(), e.value.message()


def test_infer_errors(served_zoo, triton, server):
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    b, _ = served_zoo["custom_layers"]
    good = b.input_dict(["a", "b"])
    status, message = _error(lambda: _infer(triton, "srv-custom_layers", {"a": good["a"]}))
    assert status == "StatusCode.INVALID_ARGUMENT" and "missing input(s) b" in message
    status, message = _error(lambda: _infer(
        triton, "srv-custom_layers", {"a": good["a"].astype(np.int32), "b": good["b"]}))
    assert status == "StatusCode.INVALID_ARGUMENT"
    assert "input 'a': expected dtype float32, got int32" in message
    status, _ = _error(lambda: _infer(triton, "nope", good))
    assert status == "StatusCode.NOT_FOUND"
    status, message = _error(lambda: _infer(triton, "srv-custom_layers", good, outputs=["zzz"]))
    assert status == "StatusCode.INVALID_ARGUMENT" and "unknown output(s) zzz" in message

    with grpc.insecure_channel(server.target) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)

        def call(request):
            with pytest.raises(grpc.RpcError) as e:
                stub.ModelInfer(request, timeout=30)
            return e.value.code(), e.value.details()

        # truncated raw bytes
        request = service_pb2.ModelInferRequest(model_name="srv-custom_layers")
        request.inputs.add(name="a", datatype="FP32", shape=[3, 5])
        request.inputs.add(name="b", datatype="FP32", shape=[3, 3])
        request.raw_input_contents.extend([good["a"].tobytes()[:-1], good["b"].tobytes()])
        code, details = call(request)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "raw contents have 59 bytes" in details
        # a huge declared shape with no data
        request = service_pb2.ModelInferRequest(model_name="srv-custom_layers")
        request.inputs.add(name="a", datatype="FP32", shape=[1 << 40, 5])
        request.inputs.add(name="b", datatype="FP32", shape=[3, 3])
        request.raw_input_contents.extend([b"", good["b"].tobytes()])
        code, details = call(request)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "too large" in details
        # strings where floats are due
        request = service_pb2.ModelInferRequest(model_name="srv-custom_layers")
        request.inputs.add(name="a", datatype="BYTES", shape=[1, 1]).contents.bytes_contents.append(b"x")
        request.inputs.add(name="b", datatype="FP32", shape=[1, 3]).contents.fp32_contents.extend([1, 2, 3])
        code, details = call(request)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "input 'a'" in details
        # typed contents in the wrong field
        request = service_pb2.ModelInferRequest(model_name="srv-custom_layers")
        request.inputs.add(name="a", datatype="FP32", shape=[1, 5]).contents.int_contents.extend([1] * 5)
        request.inputs.add(name="b", datatype="FP32", shape=[1, 3]).contents.fp32_contents.extend([1, 2, 3])
        code, details = call(request)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "data is in int_contents" in details
        # unknown datatype, negative dims
        request = service_pb2.ModelInferRequest(model_name="srv-custom_layers")
        request.inputs.add(name="a", datatype="FP99", shape=[1, 5])
        assert call(request)[0] == grpc.StatusCode.INVALID_ARGUMENT
        request = service_pb2.ModelInferRequest(model_name="srv-custom_layers")
        request.inputs.add(name="a", datatype="FP32", shape=[-1, 5])
        request.raw_input_contents.append(b"")
        assert call(request)[0] == grpc.StatusCode.INVALID_ARGUMENT


def test_repository_unload_and_load(client, built, triton, tmp_path):
    from tests.server.helpers import wait_ready

    b = built("linear_sequential", seed=6)
    arch, weights = b.save(tmp_path)
    version = client.upload("repo-cycle", architecture=arch, weights=weights)
    output = version["signature"]["outputs"][0]["name"]
    wait_ready(client, "repo-cycle")
    triton.unload_model("repo-cycle")
    assert not triton.is_model_ready("repo-cycle")
    status, _ = _error(lambda: _infer(triton, "repo-cycle", {"x": b.inputs}))
    assert status == "StatusCode.UNAVAILABLE"
    triton.load_model("repo-cycle")  # returns once loaded, as Triton's does
    assert triton.is_model_ready("repo-cycle")
    result = _infer(triton, "repo-cycle", {"x": b.inputs})
    np.testing.assert_allclose(result.as_numpy(output), b.outputs[0], atol=1e-5)
    status, _ = _error(lambda: triton.load_model("no-such-model"))
    assert status == "StatusCode.NOT_FOUND"


def test_bf16_through_raw(client, triton):
    import keras
    import ml_dtypes

    from tests.server.helpers import wait_ready

    inputs = keras.Input((4,), dtype="bfloat16", name="brain")
    outputs = keras.layers.Dense(2, dtype="bfloat16", name="out")(inputs)
    model = keras.Model(inputs, outputs)
    version = client.upload("bf16", model=model)
    assert version["signature"]["inputs"][0]["dtype"] == "bfloat16"
    wait_ready(client, "bf16")
    assert triton.get_model_metadata("bf16").inputs[0].datatype == "BF16"
    x = (np.arange(8, dtype=np.float32).reshape(2, 4) / 8).astype(ml_dtypes.bfloat16)
    import tritonclient.grpc as grpcclient

    infer_input = grpcclient.InferInput("brain", [2, 4], "BF16")
    infer_input.set_data_from_numpy(x.astype(np.float32))  # tritonclient's BF16 convention
    result = triton.infer("bf16", [infer_input])
    expected = np.asarray(model(x)).astype(np.float32)
    np.testing.assert_allclose(result.as_numpy("out").astype(np.float32), expected, atol=1e-2)
