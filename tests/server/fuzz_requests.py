"""Hypothesis strategies for malformed requests to every RPC kerve serves, each drawn as
(method path, serialized request bytes, kind) so that one sender covers them all.

v2 requests are built with tritonclient's own messages (never kerve.protos.inference: its
descriptors clash with tritonclient's in one process); TF Serving ones with
tensorflow-serving-api's; registry ones with kerve's.
"""

from __future__ import annotations

import hashlib

import numpy as np
from hypothesis import strategies as st

MODELS = ("fuzz-a", "fuzz-b")
"""Models the fuzzing server really serves, so that requests get past name resolution."""

I64 = st.one_of(st.integers(-(1 << 63), (1 << 63) - 1),
                st.sampled_from([0, 1, -1, 2, (1 << 31), (1 << 32) + 1, (1 << 62),
                                 (1 << 63) - 1, -(1 << 63)]))
DIMS = st.lists(st.one_of(st.integers(-3, 8), I64), max_size=6)
NAMES = st.one_of(st.sampled_from(MODELS), st.sampled_from(["", "x" * 200, "a/b", "..", "\x00"]),
                  st.text(max_size=20).map(lambda s: "fz" + s))
"""Model names: served ones, invalid ones, and ones no other test uses (never mutate
another test's models)."""
INPUT_NAMES = st.one_of(st.sampled_from(["a", "b", "x", "", "input_0"]), st.text(max_size=8))
SMALL_BYTES = st.binary(max_size=96)
PARAM_KEYS = st.one_of(st.sampled_from(["binary_data", "binary_data_size", "classification",
                                        "sequence_id", "priority", "timeout"]),
                       st.text(max_size=10))

V2_TYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
            "FP16", "FP32", "FP64", "BYTES", "BF16", "", "fp32", "FP128", "STRING"]


def _v2_parameter(draw, msg) -> None:
    which = draw(st.integers(0, 4))
    if which == 0:
        msg.bool_param = draw(st.booleans())
    elif which == 1:
        msg.int64_param = draw(I64)
    elif which == 2:
        msg.string_param = draw(st.text(max_size=10))
    elif which == 3 and "double_param" in msg.DESCRIPTOR.fields_by_name:
        msg.double_param = draw(st.floats(allow_nan=True))
    # 4: left unset (a parameter with no value)


def _v2_contents(draw, contents) -> None:
    field = draw(st.sampled_from(["bool_contents", "int_contents", "int64_contents",
                                  "uint_contents", "uint64_contents", "fp32_contents",
                                  "fp64_contents", "bytes_contents", None]))
    n = draw(st.integers(0, 40))
    if field is None:
        return
    if field == "bool_contents":
        values = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    elif field in ("int_contents",):
        values = draw(st.lists(st.integers(-(1 << 31), (1 << 31) - 1), min_size=n, max_size=n))
    elif field == "int64_contents":
        values = draw(st.lists(I64, min_size=n, max_size=n))
    elif field == "uint_contents":
        values = draw(st.lists(st.integers(0, (1 << 32) - 1), min_size=n, max_size=n))
    elif field == "uint64_contents":
        values = draw(st.lists(st.integers(0, (1 << 64) - 1), min_size=n, max_size=n))
    elif field in ("fp32_contents", "fp64_contents"):
        values = draw(st.lists(st.floats(width=32 if field == "fp32_contents" else 64),
                               min_size=n, max_size=n))
    else:
        values = draw(st.lists(SMALL_BYTES, min_size=n, max_size=n))
    getattr(contents, field).extend(values)


@st.composite
def model_infer(draw) -> tuple[str, bytes]:
    from tritonclient.grpc import service_pb2

    req = service_pb2.ModelInferRequest(model_name=draw(NAMES),
                                        model_version=draw(st.sampled_from(
                                            ["", "1", "2", "-1", "0", "99999999999999999999",
                                             "production", "Bad Alias"])),
                                        id=draw(st.text(max_size=5)))
    raw = draw(st.booleans())
    for _ in range(draw(st.integers(0, 3))):
        t = req.inputs.add(name=draw(INPUT_NAMES), datatype=draw(st.sampled_from(V2_TYPES)))
        t.shape.extend(draw(DIMS))
        if raw:
            req.raw_input_contents.append(draw(st.binary(max_size=256)))
        else:
            _v2_contents(draw, t.contents)
        for _ in range(draw(st.integers(0, 2))):
            _v2_parameter(draw, t.parameters[draw(PARAM_KEYS)])
    for _ in range(draw(st.integers(0, 2))):  # raw buffers beyond the inputs
        req.raw_input_contents.append(draw(SMALL_BYTES))
    for _ in range(draw(st.integers(0, 2))):
        out = req.outputs.add(name=draw(INPUT_NAMES))
        if draw(st.booleans()):
            _v2_parameter(draw, out.parameters[draw(PARAM_KEYS)])
    for _ in range(draw(st.integers(0, 2))):
        _v2_parameter(draw, req.parameters[draw(PARAM_KEYS)])
    return "/inference.GRPCInferenceService/ModelInfer", req.SerializeToString()


_TF_FIELDS = ["half_val", "float_val", "double_val", "int_val", "string_val", "scomplex_val",
              "int64_val", "bool_val", "dcomplex_val", "uint32_val", "uint64_val", None]


@st.composite
def predict(draw) -> tuple[str, bytes]:
    from tensorflow_serving.apis import predict_pb2

    req = predict_pb2.PredictRequest()
    req.model_spec.name = draw(NAMES)
    which = draw(st.integers(0, 2))
    if which == 1:
        req.model_spec.version.value = draw(I64)
    elif which == 2:
        req.model_spec.version_label = draw(st.text(max_size=10))
    req.model_spec.signature_name = draw(st.sampled_from(["", "serving_default", "other"]))
    for _ in range(draw(st.integers(0, 3))):
        t = req.inputs[draw(INPUT_NAMES)]
        t.dtype = draw(st.one_of(st.integers(0, 30), st.integers(100, 130)))
        if draw(st.booleans()):
            t.tensor_shape.unknown_rank = True
        for d in draw(DIMS):
            t.tensor_shape.dim.add(size=d)
        field = draw(st.sampled_from(_TF_FIELDS + ["tensor_content"]))
        if field == "tensor_content":
            t.tensor_content = draw(st.binary(max_size=256))
        elif field is not None:
            n = draw(st.integers(0, 40))
            if field in ("float_val", "double_val", "scomplex_val", "dcomplex_val"):
                values = draw(st.lists(st.floats(width=32), min_size=n, max_size=n))
            elif field == "string_val":
                values = draw(st.lists(SMALL_BYTES, min_size=n, max_size=n))
            elif field == "bool_val":
                values = draw(st.lists(st.booleans(), min_size=n, max_size=n))
            elif field in ("int64_val",):
                values = draw(st.lists(I64, min_size=n, max_size=n))
            elif field in ("uint64_val",):
                values = draw(st.lists(st.integers(0, (1 << 64) - 1), min_size=n, max_size=n))
            elif field in ("uint32_val",):
                values = draw(st.lists(st.integers(0, (1 << 32) - 1), min_size=n, max_size=n))
            else:  # half_val, int_val: int32 on the wire
                values = draw(st.lists(st.integers(-(1 << 31), (1 << 31) - 1), min_size=n,
                                       max_size=n))
            getattr(t, field).extend(values)
    req.output_filter.extend(draw(st.lists(INPUT_NAMES, max_size=2)))
    method = draw(st.sampled_from(["Predict", "Predict", "Predict", "GetModelMetadata"]))
    if method == "GetModelMetadata":
        from tensorflow_serving.apis import get_model_metadata_pb2

        meta = get_model_metadata_pb2.GetModelMetadataRequest(
            metadata_field=draw(st.lists(st.sampled_from(["signature_def", "x", ""]),
                                         max_size=2)))
        meta.model_spec.CopyFrom(req.model_spec)
        return "/tensorflow.serving.PredictionService/GetModelMetadata", \
            meta.SerializeToString()
    return "/tensorflow.serving.PredictionService/Predict", req.SerializeToString()


@st.composite
def v2_other(draw) -> tuple[str, bytes]:
    """The v2 protocol's other RPCs (loads and unloads only of models no one serves)."""
    from tritonclient.grpc import service_pb2 as s

    name, version = draw(NAMES), draw(st.sampled_from(["", "1", "x", "-5", "1" * 30]))
    method = draw(st.sampled_from(["ModelMetadata", "ModelReady", "ModelConfig",
                                   "ModelStatistics", "RepositoryIndex", "RepositoryModelLoad",
                                   "RepositoryModelUnload", "ServerMetadata"]))
    if method in ("RepositoryModelLoad", "RepositoryModelUnload"):
        name = "fz" + name  # never unload a model another request is using
        msg = getattr(s, f"{method}Request")(model_name=name)
        _v2_parameter(draw, msg.parameters[draw(PARAM_KEYS)])
    elif method == "RepositoryIndex":
        msg = s.RepositoryIndexRequest(repository_name=draw(st.text(max_size=5)),
                                       ready=draw(st.booleans()))
    elif method == "ServerMetadata":
        msg = s.ServerMetadataRequest()
    else:
        msg = getattr(s, f"{method}Request")(name=name, version=version)
    return f"/inference.GRPCInferenceService/{method}", msg.SerializeToString()


@st.composite
def registry_call(draw) -> tuple[str, bytes]:
    """Registry RPCs on names no other test uses (writes never touch a served model)."""
    from kerve.protos.kerve.registry.v1 import registry_pb2 as pb

    name = draw(NAMES)
    write_name = "fz" + name
    method = draw(st.sampled_from(["GetModel", "ListModels", "SetAlias", "DeleteAlias",
                                   "DeleteModelVersion", "DownloadModelVersion"]))
    alias = draw(st.one_of(st.sampled_from(["production", "a", "", "Bad", "x" * 70]),
                           st.text(max_size=8)))
    if method == "GetModel":
        msg = pb.GetModelRequest(name=name)
    elif method == "ListModels":
        msg = pb.ListModelsRequest()
    elif method == "SetAlias":
        msg = pb.SetAliasRequest(name=write_name, alias=alias, version=draw(I64))
    elif method == "DeleteAlias":
        msg = pb.DeleteAliasRequest(name=write_name, alias=alias)
    elif method == "DeleteModelVersion":
        msg = pb.DeleteModelVersionRequest(name=write_name, version=draw(I64))
    else:
        msg = pb.DownloadModelVersionRequest(name=name, version=draw(I64), alias=alias,
                                             include_examples=draw(st.booleans()))
    return f"/kerve.registry.v1.RegistryService/{method}", msg.SerializeToString()


@st.composite
def upload(draw) -> tuple[str, list[bytes]]:
    """An upload stream: a header (or not), then chunks of any kind and length."""
    from kerve.protos.kerve.registry.v1 import registry_pb2 as pb

    messages = []
    kinds = st.sampled_from([0, 1, 2, 3, 4, 7])
    if draw(st.integers(0, 5)) > 0:
        header = pb.UploadHeader(name="fz" + draw(NAMES),
                                 aliases=draw(st.lists(st.text(max_size=6), max_size=2)),
                                 description=draw(st.text(max_size=10)))
        for _ in range(draw(st.integers(0, 3))):
            data = draw(SMALL_BYTES)
            header.parts.add(kind=draw(kinds),
                             size=draw(st.one_of(st.just(len(data)),
                                                 st.integers(0, (1 << 64) - 1))),
                             sha256=draw(st.sampled_from(
                                 [hashlib.sha256(data).hexdigest(), "", "zz" * 32,
                                  "A" * 64])))
        for k, v in draw(st.dictionaries(st.text(max_size=8), st.text(max_size=8),
                                         max_size=2)).items():
            header.tags[k] = v
        messages.append(pb.UploadModelRequest(header=header).SerializeToString())
    for _ in range(draw(st.integers(0, 3))):
        if draw(st.booleans()):
            messages.append(pb.UploadModelRequest(chunk=pb.UploadChunk(
                kind=draw(kinds), data=draw(SMALL_BYTES))).SerializeToString())
        else:
            messages.append(draw(SMALL_BYTES))  # not a message at all, or an unknown one
    return "/kerve.registry.v1.RegistryService/UploadModel", messages


@st.composite
def raw_bytes(draw) -> tuple[str, bytes]:
    """Any bytes to any unary method."""
    method = draw(st.sampled_from([
        "/tensorflow.serving.PredictionService/Predict",
        "/tensorflow.serving.PredictionService/GetModelMetadata",
        "/tensorflow.serving.ModelService/GetModelStatus",
        "/inference.GRPCInferenceService/ModelInfer",
        "/inference.GRPCInferenceService/ModelMetadata",
        "/inference.GRPCInferenceService/ModelConfig",
        "/kerve.registry.v1.RegistryService/GetModel",
        "/kerve.registry.v1.RegistryService/ListModels"]))
    return method, draw(st.binary(max_size=128))


@st.composite
def tf_status(draw) -> tuple[str, bytes]:
    from tensorflow_serving.apis import get_model_status_pb2

    req = get_model_status_pb2.GetModelStatusRequest()
    req.model_spec.name = draw(NAMES)
    if draw(st.booleans()):
        req.model_spec.version.value = draw(I64)
    return "/tensorflow.serving.ModelService/GetModelStatus", req.SerializeToString()


_V2_SIZES = {"BOOL": 1, "UINT8": 1, "INT8": 1, "UINT16": 2, "INT16": 2, "FP16": 2, "BF16": 2,
             "UINT32": 4, "INT32": 4, "FP32": 4, "UINT64": 8, "INT64": 8, "FP64": 8}
ROWS = st.sampled_from([0, 1, 2, 3, 7, 1 << 20, 1 << 40, -1])


@st.composite
def near_valid_infer(draw) -> tuple[str, bytes]:
    """Requests that get past names to the codecs and the model: the served inputs, any
    datatype, rows including zero and huge, raw buffers of about the right length."""
    from tritonclient.grpc import service_pb2

    model = draw(st.sampled_from(MODELS))
    req = service_pb2.ModelInferRequest(model_name=model)
    specs = [("a", [4])] + ([("b", [2, 3])] if model == "fuzz-b" else [])
    rows = draw(ROWS)
    for name, inner in specs:
        dtype = draw(st.sampled_from(V2_TYPES))
        t = req.inputs.add(name=name, datatype=dtype, shape=[rows, *inner])
        count = max(rows, 0) * int(np.prod(inner)) if rows < 64 else 1
        size = count * _V2_SIZES.get(dtype, 4) + draw(st.sampled_from([0, 0, 0, 1, -1]))
        if dtype == "BYTES" or draw(st.booleans()):
            data = draw(st.binary(min_size=max(size, 0), max_size=max(size, 0)))
            req.raw_input_contents.append(data)
        else:
            _v2_contents(draw, t.contents)
    if draw(st.booleans()):
        req.outputs.add(name=draw(st.sampled_from(["y", "p", "q", "z"])))
    if draw(st.booleans()):
        _v2_parameter(draw, req.parameters[draw(PARAM_KEYS)])
    return "/inference.GRPCInferenceService/ModelInfer", req.SerializeToString()


@st.composite
def near_valid_predict(draw) -> tuple[str, bytes]:
    from tensorflow_serving.apis import predict_pb2

    model = draw(st.sampled_from(MODELS))
    req = predict_pb2.PredictRequest()
    req.model_spec.name = model
    rows = draw(ROWS)
    specs = [("a", [4])] + ([("b", [2, 3])] if model == "fuzz-b" else [])
    for name, inner in specs:
        t = req.inputs[name]
        t.dtype = draw(st.integers(0, 24))
        for d in [rows, *inner]:
            t.tensor_shape.dim.add(size=d)
        count = max(rows, 0) * int(np.prod(inner)) if rows < 64 else 1
        size = count * draw(st.sampled_from([1, 2, 4, 8, 16])) + draw(st.sampled_from([0, 0, 1]))
        if draw(st.booleans()):
            t.tensor_content = draw(st.binary(min_size=size, max_size=size))
        else:
            t.float_val.extend(draw(st.lists(st.floats(width=32), min_size=count,
                                             max_size=count)))
    req.output_filter.extend(draw(st.lists(st.sampled_from(["y", "p", "q", "z"]), max_size=2)))
    return "/tensorflow.serving.PredictionService/Predict", req.SerializeToString()


UNARY = st.one_of(model_infer(), predict(), v2_other(), registry_call(), raw_bytes(),
                  tf_status(), near_valid_infer(), near_valid_predict())
