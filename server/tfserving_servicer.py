"""tensorflow.serving PredictionService and ModelService over the data plane, with the stubs
of the tensorflow-serving-api package, so TF Serving clients work unchanged.

Those stubs import TensorFlow, so this module is imported by the composition root only.
"""

from __future__ import annotations

from tensorflow.core.protobuf import error_codes_pb2, meta_graph_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from kerve.protos import codecs
from kerve.registry.errors import InvalidArgumentError, UnimplementedError
from kerve.registry.names import VersionRef
from kerve.server.data_plane import DataPlane, deadline_of
from kerve.server.states import VersionState, state_words

SERVING_DEFAULT = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"


def _ref(spec) -> VersionRef:
    version = spec.version.value if spec.HasField("version") else None
    return VersionRef.of(spec.name, version, spec.version_label or None)


def _check_signature_name(name: str) -> None:
    if name not in ("", SERVING_DEFAULT):
        raise InvalidArgumentError(
            f"unknown signature {name!r}; kerve models have one: {SERVING_DEFAULT!r}")


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, data_plane: DataPlane) -> None:
        self.data_plane = data_plane

    async def Predict(self, request, context):
        _check_signature_name(request.model_spec.signature_name)
        ref = _ref(request.model_spec)
        inputs = {name: codecs.tensor_proto_to_ndarray(name, proto)
                  for name, proto in request.inputs.items()}
        result = await self.data_plane.infer(ref, inputs, api="tfserving",
                                             outputs=list(request.output_filter) or None,
                                             deadline=deadline_of(context))
        response = predict_pb2.PredictResponse()
        response.model_spec.name = result.name
        response.model_spec.version.value = result.version
        response.model_spec.signature_name = SERVING_DEFAULT
        for name, arr in result.outputs.items():
            codecs.ndarray_to_tensor_proto(arr, response.outputs[name])
        return response

    async def GetModelMetadata(self, request, context):
        fields = set(request.metadata_field)
        if fields - {"signature_def"} or not fields:
            raise InvalidArgumentError(
                "metadata_field must be ['signature_def'], the one kerve provides")
        version, signature = await self.data_plane.signature(_ref(request.model_spec))
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        sig_def = sig_map.signature_def[SERVING_DEFAULT]
        sig_def.method_name = PREDICT_METHOD
        for specs, target in ((signature.inputs, sig_def.inputs),
                              (signature.outputs, sig_def.outputs)):
            for spec in specs:
                info: meta_graph_pb2.TensorInfo = target[spec.name]
                info.name = f"{spec.name}:0"
                info.dtype = codecs.tf_dtype_enum(spec.dtype)
                for d in spec.shape:
                    info.tensor_shape.dim.add().size = d
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = version
        response.metadata["signature_def"].Pack(sig_map)
        return response

    async def Classify(self, request, context):
        raise UnimplementedError("Classify is not supported; use Predict")

    async def Regress(self, request, context):
        raise UnimplementedError("Regress is not supported; use Predict")

    async def MultiInference(self, request, context):
        raise UnimplementedError("MultiInference is not supported; use Predict")


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, data_plane: DataPlane) -> None:
        self.data_plane = data_plane

    async def GetModelStatus(self, request, context):
        spec = request.model_spec
        every_version = not (spec.HasField("version") or spec.version_label)
        response = get_model_status_pb2.GetModelStatusResponse()
        for status in await self.data_plane.model_status(_ref(spec), every_version):
            entry = response.model_version_status.add(
                version=status.version, state=state_words(status.state).tfserving)
            if status.state is VersionState.FAILED:
                entry.status.error_code = error_codes_pb2.FAILED_PRECONDITION
                entry.status.error_message = status.reason
        return response

    async def HandleReloadConfigRequest(self, request, context):
        raise UnimplementedError("kerve's models come from its registry, not a config file")
