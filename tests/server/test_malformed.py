"""No request, however malformed, stops the server: garbage bytes on every method answer
INVALID_ARGUMENT, and the server keeps serving."""

from __future__ import annotations

import grpc
import pytest

UNARY = ["/tensorflow.serving.PredictionService/Predict",
         "/tensorflow.serving.PredictionService/GetModelMetadata",
         "/tensorflow.serving.ModelService/GetModelStatus",
         "/inference.GRPCInferenceService/ModelInfer",
         "/inference.GRPCInferenceService/ModelMetadata",
         "/inference.GRPCInferenceService/RepositoryModelLoad",
         "/kerve.registry.v1.RegistryService/GetModel",
         "/kerve.registry.v1.RegistryService/SetAlias"]
GARBAGE = [b"\xff\xff\xff\xff", b"\x0a\xff\x01"]  # an invalid tag; a length past the end


@pytest.mark.parametrize("method", UNARY)
def test_garbage_unary(method, server):
    with grpc.insecure_channel(server.target) as channel:
        call = channel.unary_unary(method)
        for payload in GARBAGE:
            with pytest.raises(grpc.RpcError) as e:
                call(payload, timeout=10)
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (payload, e.value)
            assert "not a valid protobuf message" in e.value.details()


def test_garbage_streams(server):
    with grpc.insecure_channel(server.target) as channel:
        upload = channel.stream_unary("/kerve.registry.v1.RegistryService/UploadModel")
        with pytest.raises(grpc.RpcError) as e:
            upload(iter([b"\xff\xff\xff"]), timeout=10)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        download = channel.unary_stream("/kerve.registry.v1.RegistryService/DownloadModelVersion")
        with pytest.raises(grpc.RpcError) as e:
            list(download(b"\xff\xff\xff", timeout=10))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_unknown_model_names_do_not_become_metric_labels(server, triton):
    import urllib.request

    from tritonclient.utils import InferenceServerException

    for i in range(3):
        with pytest.raises(InferenceServerException):
            triton.get_model_metadata(f"random-name-{i}")
        with pytest.raises(InferenceServerException):
            triton.infer(f"random-name-{i}", [])
    body = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics",
                                  timeout=10).read().decode()
    assert "random-name" not in body
    server.wait_serving(timeout=5)
