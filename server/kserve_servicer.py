"""inference.GRPCInferenceService: the KServe v2 / Open Inference Protocol, over the core."""

from __future__ import annotations

from kerve.protos import codecs
from kerve.protos.inference import grpc_service_pb2 as pb
from kerve.protos.inference import grpc_service_pb2_grpc
from kerve.registry.errors import InvalidArgumentError
from kerve.registry.names import VersionRef
from kerve.server.data_plane import DataPlane, deadline_of
from kerve.server.states import state_words

SERVER_NAME = "kerve"
EXTENSIONS = ["model_repository", "statistics", "model_configuration"]


class KServeServicer(grpc_service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, data_plane: DataPlane, version: str) -> None:
        self.data_plane = data_plane
        self.version = version

    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=self.data_plane.ready())

    async def ModelReady(self, request, context):
        ref = VersionRef.of(request.name, request.version)
        return pb.ModelReadyResponse(ready=await self.data_plane.model_ready(ref))

    async def ServerMetadata(self, request, context):
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=self.version,
                                         extensions=EXTENSIONS)

    async def ModelMetadata(self, request, context):
        ref = VersionRef.of(request.name, request.version)
        version, signature = await self.data_plane.signature(ref)
        response = pb.ModelMetadataResponse(name=ref.name, versions=[str(version)],
                                            platform="tensorflow_keras")
        for specs, target in ((signature.inputs, response.inputs),
                              (signature.outputs, response.outputs)):
            for spec in specs:
                target.add(name=spec.name, datatype=codecs.v2_datatype(spec.np_dtype),
                           shape=spec.shape)
        return response

    async def ModelConfig(self, request, context):
        """Triton's model configuration, from what kerve knows: the signature, the
        batcher's settings for this version, where it runs."""
        ref = VersionRef.of(request.name, request.version)
        served = await self.data_plane.serving_config(ref)
        signature, options = served.signature, served.options
        batched = signature.batchable
        config = pb.ModelConfig(name=ref.name, platform="tensorflow_keras", backend="kerve",
                                max_batch_size=options.max_batch_size if batched else 0)
        for specs, target in ((signature.inputs, config.input),
                              (signature.outputs, config.output)):
            for spec in specs:
                datatype = codecs.v2_datatype(spec.np_dtype)
                target.add(name=spec.name,
                           data_type=pb.DataType.Value(
                               "TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}"),
                           dims=spec.shape[1:] if batched else spec.shape)
        if batched and options.max_batch_size > 1:
            config.dynamic_batching.max_queue_delay_microseconds = \
                int(options.batch_timeout_ms * 1000)
            if options.jit_compile:
                config.dynamic_batching.preferred_batch_size.extend(options.batch_sizes())
        gpu = served.device.upper().startswith("/GPU")
        config.instance_group.add(
            name=ref.name, count=served.instances,
            kind=pb.ModelInstanceGroup.KIND_GPU if gpu else pb.ModelInstanceGroup.KIND_CPU,
            gpus=[int(served.device.rsplit(":", 1)[-1])] if gpu else [])
        return pb.ModelConfigResponse(config=config)

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
        result = await self.data_plane.infer(ref, inputs, api="kserve", outputs=wanted,
                                             deadline=deadline_of(context))
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
        response = pb.ModelStatisticsResponse()
        for name, version, stats in self.data_plane.statistics(request.name, request.version):
            entry = response.model_stats.add(name=name, version=str(version),
                                             last_inference=stats.last_inference_ms,
                                             inference_count=stats.inference_count)
            entry.inference_stats.success.count = stats.success_count
            entry.inference_stats.success.ns = stats.success_ns
            entry.inference_stats.fail.count = stats.fail_count
            entry.inference_stats.fail.ns = stats.fail_ns
            entry.inference_stats.queue.count = stats.queue_count
            entry.inference_stats.queue.ns = stats.queue_ns
            entry.execution_count = stats.execution_count
        return response

    async def RepositoryIndex(self, request, context):
        response = pb.RepositoryIndexResponse()
        for status in self.data_plane.index(ready_only=request.ready):
            response.models.add(name=status.name, version=str(status.version),
                                state=state_words(status.state).kserve, reason=status.reason)
        return response

    async def RepositoryModelLoad(self, request, context):
        await self.data_plane.load(request.model_name)
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(self, request, context):
        await self.data_plane.unload(request.model_name)
        return pb.RepositoryModelUnloadResponse()
