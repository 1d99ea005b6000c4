"""inference.GRPCInferenceService: the KServe v2 / Open Inference Protocol, over the core."""

from __future__ import annotations

import time

import numpy as np

from kerve.protos.inference import grpc_service_pb2 as pb
from kerve.protos.inference import grpc_service_pb2_grpc
from kerve.registry.errors import InvalidArgumentError, NotFoundError
from kerve.registry.names import VersionRef
from kerve.server import codecs
from kerve.server.core import InferenceCore
from kerve.server.manager import State

SERVER_NAME = "kerve"
EXTENSIONS = ["model_repository", "statistics"]


def _deadline(context) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


class KServeServicer(grpc_service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, core: InferenceCore, version: str) -> None:
        self.core = core
        self.version = version

    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=self.core.manager.ready())

    async def ModelReady(self, request, context):
        ref = VersionRef.of(request.name, request.version)
        version = await self.core.manager.resolve(ref)
        return pb.ModelReadyResponse(ready=self.core.manager.model_ready(ref.name, version))

    async def ServerMetadata(self, request, context):
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=self.version,
                                         extensions=EXTENSIONS)

    async def ModelMetadata(self, request, context):
        ref = VersionRef.of(request.name, request.version)
        version, signature = await self.core.signature(ref)
        response = pb.ModelMetadataResponse(name=ref.name, versions=[str(version)],
                                            platform="tensorflow_keras")
        for specs, target in ((signature.inputs, response.inputs),
                              (signature.outputs, response.outputs)):
            for spec in specs:
                target.add(name=spec.name, datatype=codecs.v2_datatype(np.dtype(spec.dtype)),
                           shape=spec.shape)
        return response

    async def ModelInfer(self, request, context):
        ref = VersionRef.of(request.model_name, request.model_version)
        raw = len(request.raw_input_contents) > 0
        if raw and len(request.raw_input_contents) != len(request.inputs):
            raise InvalidArgumentError(
                f"{len(request.raw_input_contents)} raw_input_contents for "
                f"{len(request.inputs)} inputs")
        inputs = {}
        for i, tensor in enumerate(request.inputs):
            if tensor.name in inputs:
                raise InvalidArgumentError(f"input {tensor.name!r} given twice")
            if raw:
                inputs[tensor.name] = codecs.v2_raw_to_ndarray(
                    tensor.name, tensor.datatype, tensor.shape, request.raw_input_contents[i])
            else:
                inputs[tensor.name] = codecs.v2_contents_to_ndarray(
                    tensor.name, tensor.datatype, tensor.shape, tensor.contents)
        wanted = [o.name for o in request.outputs] or None
        result = await self.core.infer(ref, inputs, api="kserve", outputs=wanted,
                                       deadline=_deadline(context))
        response = pb.ModelInferResponse(model_name=result.name,
                                         model_version=str(result.version), id=request.id)
        for name, arr in result.outputs.items():
            out = response.outputs.add(name=name, datatype=codecs.v2_datatype(arr.dtype),
                                       shape=arr.shape)
            if raw:
                response.raw_output_contents.append(codecs.ndarray_to_v2_raw(arr))
            else:
                codecs.ndarray_to_v2_contents(arr, out.contents)
        return response

    async def ModelStatistics(self, request, context):
        catalogue = self.core.manager.catalogue()
        names = [request.name] if request.name else sorted(catalogue)
        response = pb.ModelStatisticsResponse()
        for name in names:
            if name not in catalogue:
                raise NotFoundError(f"model {name!r} not found")
            for version in catalogue[name].versions:
                if request.version and request.version != str(version):
                    continue
                stats = self.core.stats.get((name, version))
                entry = response.model_stats.add(name=name, version=str(version))
                if stats is not None:
                    entry.last_inference = stats.last_inference_ms
                    entry.inference_count = stats.inference_count
                    entry.inference_stats.success.count = stats.success_count
                    entry.inference_stats.success.ns = stats.success_ns
                    entry.inference_stats.fail.count = stats.fail_count
                    entry.inference_stats.fail.ns = stats.fail_ns
        return response

    async def RepositoryIndex(self, request, context):
        response = pb.RepositoryIndexResponse()
        for name, info in sorted(self.core.manager.catalogue().items()):
            for version in info.versions:
                served = self.core.manager.status(name, version)
                state = served.state.value if served else "UNAVAILABLE"
                if request.ready and (served is None or served.state is not State.READY):
                    continue
                response.models.add(name=name, version=str(version), state=state,
                                    reason=served.reason if served else "")
        return response

    async def RepositoryModelLoad(self, request, context):
        await self.core.manager.load_model(request.model_name)
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(self, request, context):
        await self.core.manager.unload_model(request.model_name)
        return pb.RepositoryModelUnloadResponse()
