"""TensorFlow Serving's PredictionService and ModelService, through the official stubs of
the tensorflow-serving-api package, against a real server."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from tests.conftest import SAFE_ZOO


def _predict_request(name, inputs: dict, *, version=None, label=None, typed=False):
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = "serving_default"
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    for key, arr in inputs.items():
        if typed:
            proto = request.inputs[key]
            proto.dtype = tf.as_dtype(arr.dtype).as_datatype_enum
            proto.tensor_shape.CopyFrom(tf.TensorShape(arr.shape).as_proto())
            proto.float_val.extend(arr.ravel().tolist())
        else:
            request.inputs[key].CopyFrom(tf.make_tensor_proto(arr))
    return request


def _input_names(version):
    return [t["name"] for t in version["signature"]["inputs"]]


def _output_names(version):
    return [t["name"] for t in version["signature"]["outputs"]]


@pytest.mark.parametrize("typed", [False, True], ids=["tensor_content", "float_val"])
@pytest.mark.parametrize("name", SAFE_ZOO)
def test_predict_matches_keras(name, typed, served_zoo, tf_stub):
    import tensorflow as tf

    b, version = served_zoo[name]
    request = _predict_request(f"srv-{name}", b.input_dict(_input_names(version)), typed=typed)
    response = tf_stub.Predict(request, timeout=60)
    assert response.model_spec.version.value == version["version"]
    assert sorted(response.outputs) == sorted(_output_names(version))
    for out_name, expected in zip(_output_names(version), b.outputs):
        np.testing.assert_allclose(tf.make_ndarray(response.outputs[out_name]), expected,
                                   atol=1e-5, rtol=1e-5)


def test_output_filter(served_zoo, tf_stub):
    b, version = served_zoo["custom_layers"]
    request = _predict_request("srv-custom_layers", b.input_dict(_input_names(version)))
    request.output_filter.append(b.output_names[1])
    response = tf_stub.Predict(request, timeout=60)
    assert list(response.outputs) == [b.output_names[1]]


def test_get_model_metadata_signature_def(served_zoo, server):
    from tensorflow_serving.apis import (
        get_model_metadata_pb2,
        prediction_service_pb2_grpc,
    )

    b, version = served_zoo["custom_layers"]
    with grpc.insecure_channel(server.target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = get_model_metadata_pb2.GetModelMetadataRequest()
        request.model_spec.name = "srv-custom_layers"
        request.metadata_field.append("signature_def")
        response = stub.GetModelMetadata(request, timeout=30)
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(sig_map)
    sig = sig_map.signature_def["serving_default"]
    assert sig.method_name == "tensorflow/serving/predict"
    assert sorted(sig.inputs) == ["a", "b"]
    assert sorted(sig.outputs) == sorted(b.output_names)
    assert [d.size for d in sig.inputs["a"].tensor_shape.dim] == [-1, 5]
    assert response.model_spec.version.value == version["version"]


def test_get_model_status(served_zoo, server):
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    with grpc.insecure_channel(server.target) as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = "srv-mnist_mlp"
        response = stub.GetModelStatus(request, timeout=30)
    states = {s.version: s.state for s in response.model_version_status}
    available = get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert states[served_zoo["mnist_mlp"][1]["version"]] == available


def test_a_stored_version_is_not_called_available(client, built, server, triton, tmp_path):
    """Each protocol's words for a version stored but not loaded here: kerve STORED,
    TF Serving END (AVAILABLE means loaded), KServe v2 UNAVAILABLE."""
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    from tests.server.helpers import wait_ready

    b = built("linear_sequential", seed=41)
    arch, weights = b.save(tmp_path)
    client.upload("states", architecture=arch, weights=weights, aliases=["production"])
    client.upload("states", architecture=arch, weights=weights)  # v2: stored, not loaded
    wait_ready(client, "states", 1)
    kerve_words = {v["version"]: v["status"] for v in client.get_model("states")["versions"]}
    assert kerve_words == {1: "READY", 2: "STORED"}
    with grpc.insecure_channel(server.target) as channel:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = "states"
        response = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
            request, timeout=30)
    status = get_model_status_pb2.ModelVersionStatus
    assert {s.version: s.state for s in response.model_version_status} == {
        1: status.AVAILABLE, 2: status.END}
    index = {m.version: m.state for m in triton.get_model_repository_index().models
             if m.name == "states"}
    assert index == {"1": "READY", "2": "UNAVAILABLE"}


def _error(stub_call, request):
    with pytest.raises(grpc.RpcError) as e:
        stub_call(request, timeout=30)
    return e.value.code(), e.value.details()


def test_predict_errors(served_zoo, tf_stub):
    from tensorflow_serving.apis import predict_pb2

    b, version = served_zoo["custom_layers"]
    good = b.input_dict(["a", "b"])
    cases = [
        ({"a": good["a"]}, "missing input(s) b"),
        ({**good, "c": good["a"]}, "unknown input(s) c"),
        ({"a": good["a"].astype("float64"), "b": good["b"]},
         "input 'a': expected dtype float32, got float64"),
        ({"a": good["a"][:, :4], "b": good["b"]}, "input 'a': expected shape [-1, 5], got [3, 4]"),
        ({"a": good["a"], "b": good["b"][:2]}, "batch size"),
        ({"a": np.array([b"x"] * 15).reshape(3, 5), "b": good["b"]}, "expected dtype float32"),
    ]
    for inputs, message in cases:
        code, details = _error(tf_stub.Predict, _predict_request("srv-custom_layers", inputs))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (message, details)
        assert message in details

    request = _predict_request("srv-custom_layers", good)
    request.inputs["a"].tensor_content = request.inputs["a"].tensor_content[:-4]
    code, details = _error(tf_stub.Predict, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "tensor_content has" in details

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "srv-custom_layers"
    request.inputs["a"].dtype = 1
    for size in (1 << 20, 1 << 20, 1 << 20):
        request.inputs["a"].tensor_shape.dim.add().size = size
    code, details = _error(tf_stub.Predict, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "too large" in details

    request = predict_pb2.PredictRequest()  # one float_val, a shape of 2**30 elements
    request.model_spec.name = "srv-custom_layers"
    request.inputs["a"].dtype = 1
    for size in (1 << 25, 32):
        request.inputs["a"].tensor_shape.dim.add().size = size
    request.inputs["a"].float_val.append(1.0)
    code, details = _error(tf_stub.Predict, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "would be broadcast" in details

    code, _ = _error(tf_stub.Predict, _predict_request("no-such-model", good))
    assert code == grpc.StatusCode.NOT_FOUND
    code, _ = _error(tf_stub.Predict, _predict_request("srv-custom_layers", good, version=999))
    assert code == grpc.StatusCode.NOT_FOUND
    code, _ = _error(tf_stub.Predict, _predict_request("srv-custom_layers", good, label="nope"))
    assert code == grpc.StatusCode.NOT_FOUND
    request = _predict_request("srv-custom_layers", good)
    request.model_spec.signature_name = "other"
    assert _error(tf_stub.Predict, request)[0] == grpc.StatusCode.INVALID_ARGUMENT


def test_single_input_accepts_any_name(served_zoo, tf_stub):
    import tensorflow as tf

    b, _ = served_zoo["mnist_mlp"]
    response = tf_stub.Predict(_predict_request("srv-mnist_mlp", {"whatever": b.inputs}))
    np.testing.assert_allclose(tf.make_ndarray(response.outputs[b.output_names[0]]),
                               b.outputs[0], atol=1e-5)


def test_classify_regress_unimplemented(tf_stub):
    from tensorflow_serving.apis import classification_pb2, regression_pb2

    assert _error(tf_stub.Classify, classification_pb2.ClassificationRequest())[0] == \
        grpc.StatusCode.UNIMPLEMENTED
    assert _error(tf_stub.Regress, regression_pb2.RegressionRequest())[0] == \
        grpc.StatusCode.UNIMPLEMENTED


def test_one_typed_value_broadcasts_like_tf_make_ndarray(served_zoo, tf_stub):
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    b, _ = served_zoo["mnist_mlp"]
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "srv-mnist_mlp"
    request.inputs["x"].dtype = 1
    for size in (2, 784):
        request.inputs["x"].tensor_shape.dim.add().size = size
    request.inputs["x"].float_val.append(0.5)
    response = tf_stub.Predict(request, timeout=30)
    expected = b.model.predict(np.full((2, 784), 0.5, np.float32), verbose=0)
    np.testing.assert_allclose(tf.make_ndarray(response.outputs[b.output_names[0]]), expected,
                               atol=1e-5)
