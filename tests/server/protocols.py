"""One request through each wire format, numpy in and out, with the official client
packages only (tensorflow-serving-api, tritonclient): TF Serving TensorProto, KServe v2 raw
(tritonclient's own encoding) and KServe v2 typed ``contents`` (built by hand from
tritonclient's messages)."""

from __future__ import annotations

import numpy as np

_TYPED_FIELDS = {
    "BOOL": "bool_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
    "UINT32": "uint_contents", "UINT64": "uint64_contents", "INT8": "int_contents",
    "INT16": "int_contents", "INT32": "int_contents", "INT64": "int64_contents",
    "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}


def v2_datatype(arr: np.ndarray) -> str:
    if arr.dtype.name == "bfloat16":
        return "BF16"
    from tritonclient.utils import np_to_triton_dtype

    return np_to_triton_dtype(arr.dtype)


def tfs_predict(tf_stub, name: str, inputs: dict, version: int | None = None,
                timeout: float = 60) -> dict[str, np.ndarray]:
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    if version is not None:
        request.model_spec.version.value = version
    for key, arr in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(arr))
    response = tf_stub.Predict(request, timeout=timeout)
    return {key: tf.make_ndarray(proto) for key, proto in response.outputs.items()}


def v2_raw(triton, name: str, inputs: dict, version: str = "",
           timeout: float = 60) -> dict[str, np.ndarray]:
    import tritonclient.grpc as grpcclient

    tensors = []
    for key, arr in inputs.items():
        tensor = grpcclient.InferInput(key, list(arr.shape), v2_datatype(arr))
        if arr.dtype.name == "bfloat16":  # tritonclient has no numpy bfloat16: raw bytes
            tensor._raw_content = np.ascontiguousarray(arr).tobytes()
            tensor._input.ClearField("contents")
        else:
            tensor.set_data_from_numpy(arr)
        tensors.append(tensor)
    result = triton.infer(name, tensors, model_version=version, client_timeout=timeout)
    response = result.get_response()
    out = {}
    for i, o in enumerate(response.outputs):
        if o.datatype == "BF16":
            import ml_dtypes

            out[o.name] = np.frombuffer(response.raw_output_contents[i],
                                        ml_dtypes.bfloat16).reshape(list(o.shape))
        else:
            out[o.name] = result.as_numpy(o.name)
    return out


def v2_typed(target: str, name: str, inputs: dict, timeout: float = 60) -> dict[str, np.ndarray]:
    """Typed ``contents`` (bytes_contents for strings), answered typed."""
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    request = service_pb2.ModelInferRequest(model_name=name)
    for key, arr in inputs.items():
        datatype = v2_datatype(arr)
        tensor = request.inputs.add(name=key, datatype=datatype, shape=list(arr.shape))
        values = arr.ravel().tolist()
        if datatype == "BYTES":
            values = [v.encode() if isinstance(v, str) else v for v in values]
        getattr(tensor.contents, _TYPED_FIELDS[datatype]).extend(values)
    with grpc.insecure_channel(target) as channel:
        response = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
            request, timeout=timeout)
    out = {}
    for o in response.outputs:
        values = list(getattr(o.contents, _TYPED_FIELDS[o.datatype]))
        if o.datatype == "BYTES":
            arr = np.empty(len(values), dtype=object)
            arr[:] = values
        else:
            from tritonclient.utils import triton_to_np_dtype

            arr = np.asarray(values, dtype=triton_to_np_dtype(o.datatype))
        out[o.name] = arr.reshape(list(o.shape))
    return out
