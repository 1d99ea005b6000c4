"""tensorflow.serving PredictionService and ModelService, with the stubs of the
tensorflow-serving-api package, so TF Serving clients work unchanged."""

from __future__ import annotations

import time

from kerve.registry.errors import InvalidArgumentError, UnimplementedError
from kerve.registry.names import VersionRef
from kerve.server import codecs
from kerve.server.core import InferenceCore
from kerve.server.manager import State

SERVING_DEFAULT = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"


def _ref(spec) -> VersionRef:
    version = spec.version.value if spec.HasField("version") else None
    return VersionRef.of(spec.name, version, spec.version_label or None)


def _check_signature_name(name: str) -> None:
    if name not in ("", SERVING_DEFAULT):
        raise InvalidArgumentError(
            f"unknown signature {name!r}; kerve models have one: {SERVING_DEFAULT!r}")


def _deadline(context) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


def build_prediction_servicer(core: InferenceCore):
    from tensorflow_serving.apis import (get_model_metadata_pb2, predict_pb2,
                                         prediction_service_pb2_grpc)

    class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
        async def Predict(self, request, context):
            _check_signature_name(request.model_spec.signature_name)
            ref = _ref(request.model_spec)
            inputs = {name: codecs.tensor_proto_to_ndarray(name, proto)
                      for name, proto in request.inputs.items()}
            result = await core.infer(ref, inputs, api="tfserving",
                                      outputs=list(request.output_filter) or None,
                                      deadline=_deadline(context))
            response = predict_pb2.PredictResponse()
            response.model_spec.name = result.name
            response.model_spec.version.value = result.version
            response.model_spec.signature_name = SERVING_DEFAULT
            for name, arr in result.outputs.items():
                codecs.ndarray_to_tensor_proto(arr, response.outputs[name])
            return response

        async def GetModelMetadata(self, request, context):
            from tensorflow.core.protobuf import meta_graph_pb2

            fields = set(request.metadata_field)
            if fields - {"signature_def"} or not fields:
                raise InvalidArgumentError(
                    "metadata_field must be ['signature_def'], the one kerve provides")
            version, signature = await core.signature(_ref(request.model_spec))
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

    return PredictionServicer()


_TF_STATE = {State.LOADING: 20, State.READY: 30, State.UNLOADING: 40, State.FAILED: 50}


def build_model_servicer(core: InferenceCore):
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
        async def GetModelStatus(self, request, context):
            spec = request.model_spec
            info = core.model_info(spec.name)
            if spec.HasField("version") or spec.version_label:
                versions = [await core.manager.resolve(_ref(spec))]
            else:
                versions = info.versions
            response = get_model_status_pb2.GetModelStatusResponse()
            for version in versions:
                served = core.manager.status(spec.name, version)
                entry = response.model_version_status.add()
                entry.version = version
                if served is None:
                    entry.state = 50  # END: stored, not loaded here
                    continue
                entry.state = _TF_STATE[served.state]
                if served.state is State.FAILED:
                    entry.status.error_code = 9  # FAILED_PRECONDITION
                    entry.status.error_message = served.reason
            return response

        async def HandleReloadConfigRequest(self, request, context):
            raise UnimplementedError("kerve's models come from its registry, not a config file")

    return ModelServicer()
