"""kerve.registry.v1.RegistryService: converts messages to and from the registry
(kerve.registry.registry.Registry), which does the work."""

from __future__ import annotations

import asyncio
from typing import Protocol

from google.protobuf.timestamp_pb2 import Timestamp

from kerve.protos.kerve.registry.v1 import registry_pb2 as pb
from kerve.protos.kerve.registry.v1 import registry_pb2_grpc
from kerve.registry.database import ModelInfo, VersionInfo, Write
from kerve.registry.errors import InvalidArgumentError, KerveError
from kerve.registry.names import VersionRef
from kerve.registry.provenance import load_warnings
from kerve.registry.registry import Registry
from kerve.registry.uploads import (
    ARCHITECTURE,
    EXAMPLES,
    KERAS_ARCHIVE,
    WEIGHTS,
    Chunk,
    DeclaredPart,
    UploadHeader,
)
from kerve.server.metrics import Metrics
from kerve.server.states import VersionState, VersionStatus, state_words

KIND_NAMES = {pb.ARCHITECTURE: ARCHITECTURE, pb.WEIGHTS: WEIGHTS, pb.KERAS_ARCHIVE: KERAS_ARCHIVE,
              pb.EXAMPLES: EXAMPLES}
DOWNLOAD_CHUNK = 1 << 20


def _kind(value: int) -> str:
    if value not in KIND_NAMES:
        raise InvalidArgumentError(f"unknown part kind {value}")
    return KIND_NAMES[value]


def write_proto(write: Write) -> pb.Write:
    at = Timestamp()
    at.FromDatetime(write.at)
    return pb.Write(at=at, action=write.action, version=write.version or 0,
                    alias=write.alias or "", actor=write.actor)


class ServingView(Protocol):
    """What this server serves, as the registry's answers show it."""

    def version_status(self, name: str, version: int) -> VersionStatus:
        """A version's state in this server."""

    def serving_default(self, name: str) -> int | None:
        """The version answering requests for the model's default here, if any."""


class StoredOnly:
    """A registry-only server: nothing is loaded, every version is STORED."""

    def version_status(self, name: str, version: int) -> VersionStatus:
        return VersionStatus(name, version, VersionState.STORED)

    def serving_default(self, name: str) -> int | None:
        return None


def model_proto(info: ModelInfo, serving: ServingView) -> pb.Model:
    answering = serving.serving_default(info.name)
    return pb.Model(name=info.name, versions=info.versions, aliases=info.aliases,
                    default_version=info.default_version, serving_version=answering or 0,
                    states={v: state_words(serving.version_status(info.name, v).state).kerve
                            for v in info.versions})


def version_proto(info: VersionInfo, serving: ServingView) -> pb.ModelVersion:
    created = Timestamp()
    created.FromDatetime(info.created)
    status = serving.version_status(info.name, info.version)
    sig = info.signature
    return pb.ModelVersion(
        name=info.name, version=info.version,
        status=state_words(status.state).kerve, status_message=status.reason,
        created=created,
        architecture=pb.Blob(sha256=info.architecture.sha256, size=info.architecture.size),
        weights=pb.Blob(sha256=info.weights.sha256, size=info.weights.size),
        weights_format=info.weights_format,
        signature=pb.Signature(
            inputs=[pb.TensorSpec(name=t.name, dtype=t.dtype, shape=t.shape) for t in sig.inputs],
            outputs=[pb.TensorSpec(name=t.name, dtype=t.dtype, shape=t.shape)
                     for t in sig.outputs]),
        layer_classes=info.layer_classes, custom_objects=info.custom_objects,
        keras_version=info.keras_version, tensorflow_version=info.tensorflow_version,
        parameter_count=info.parameter_count, description=info.description, tags=info.tags,
        aliases=info.aliases, warnings=info.warnings, created_by=info.created_by,
        examples=(pb.Blob(sha256=info.examples.sha256, size=info.examples.size)
                  if info.examples else None),
        memory_estimate=_memory_estimate(info.memory_estimate),
        **provenance_fields(info))


def _memory_estimate(estimate: dict | None) -> pb.MemoryEstimate | None:
    if not estimate:
        return None
    fields = pb.MemoryEstimate.DESCRIPTOR.fields_by_name
    return pb.MemoryEstimate(**{k: v for k, v in estimate.items() if k in fields})


def provenance_fields(info: VersionInfo) -> dict:
    """ModelVersion's provenance fields: the producer and its sources, the plugin modules,
    and what this server noticed when it last loaded the version."""
    recorded = info.provenance or {}
    return dict(
        producer={k: str(v) for k, v in recorded.get("producer", {}).items()},
        producer_sources={k: str(v) for k, v in recorded.get("sources", {}).items()},
        plugin_modules=[pb.PluginModule(
            module=m.get("module", ""), version=m.get("version", ""),
            version_source=m.get("version_source", ""), sha256=m.get("sha256", ""),
            custom_objects=m.get("custom_objects", [])) for m in recorded.get("plugins", [])],
        load_warnings=load_warnings(info.name, info.version))


async def _chunks(request_iterator):
    async for message in request_iterator:
        if not message.HasField("chunk"):
            raise InvalidArgumentError("only chunks may follow the header")
        yield Chunk(_kind(message.chunk.kind), message.chunk.data)


class RegistryServicer(registry_pb2_grpc.RegistryServiceServicer):
    def __init__(self, registry: Registry, metrics: Metrics,
                 serving: ServingView = StoredOnly()) -> None:
        self.registry = registry
        self.metrics = metrics
        self.serving = serving

    async def UploadModel(self, request_iterator, context):
        code = "OK"
        try:
            return await self._upload(request_iterator)
        except KerveError as exc:
            code = exc.code.name
            raise
        except BaseException:
            code = "INTERNAL"
            raise
        finally:
            self.metrics.uploads.labels(code).inc()

    async def _upload(self, request_iterator) -> pb.UploadModelResponse:
        first = await anext(aiter(request_iterator), None)
        if first is None or not first.HasField("header"):
            raise InvalidArgumentError("an upload starts with an UploadHeader message")
        h = first.header
        parts = [DeclaredPart(_kind(p.kind), p.size, p.sha256) for p in h.parts]
        if len({p.kind for p in parts}) != len(parts):
            raise InvalidArgumentError("each part kind may be declared once")
        header = UploadHeader(h.name, parts, list(h.aliases), h.description, dict(h.tags),
                              base=h.base, producer=dict(h.producer))
        info = await self.registry.upload(header, _chunks(request_iterator))
        return pb.UploadModelResponse(version=version_proto(info, self.serving))

    async def ListModels(self, request, context):
        models = await self.registry.list_models()
        if not (request.tags or request.layer_classes or request.custom_objects):
            return pb.ListModelsResponse(models=[model_proto(m, self.serving) for m in models])
        versions = await self.registry.search(tags=dict(request.tags),
                                              layer_classes=list(request.layer_classes),
                                              custom_objects=list(request.custom_objects))
        names = {v.name for v in versions}
        return pb.ListModelsResponse(
            models=[model_proto(m, self.serving) for m in models if m.name in names],
            versions=[version_proto(v, self.serving) for v in versions])

    async def GetModel(self, request, context):
        info, versions = await self.registry.get_model(request.name)
        writes = await self.registry.recent_writes(request.name)
        return pb.GetModelResponse(model=model_proto(info, self.serving),
                                   versions=[version_proto(v, self.serving) for v in versions],
                                   writes=[write_proto(w) for w in writes])

    async def SetAlias(self, request, context):
        if request.version <= 0:
            raise InvalidArgumentError("SetAlias needs a version number")
        info = await self.registry.set_alias(request.name, request.alias, request.version)
        return pb.SetAliasResponse(model=model_proto(info, self.serving))

    async def DeleteAlias(self, request, context):
        info = await self.registry.delete_alias(request.name, request.alias)
        return pb.DeleteAliasResponse(model=model_proto(info, self.serving))

    async def DeleteModelVersion(self, request, context):
        await self.registry.delete_version(request.name, request.version)
        return pb.DeleteModelVersionResponse()

    async def GetAliasHistory(self, request, context):
        moves = await self.registry.alias_history(request.name, request.alias)
        response = pb.GetAliasHistoryResponse()
        for move in moves:
            entry = response.moves.add(from_version=move.from_version or 0,
                                       to_version=move.to_version or 0, actor=move.actor)
            entry.at.FromDatetime(move.at)
        return response

    async def RollbackAlias(self, request, context):
        info, version = await self.registry.rollback_alias(request.name, request.alias)
        return pb.RollbackAliasResponse(model=model_proto(info, self.serving), version=version)

    async def DiffVersions(self, request, context):
        d = await self.registry.diff(request.name, request.a, request.b)
        return pb.DiffVersionsResponse(
            name=d.name, version_a=d.version_a, version_b=d.version_b,
            same_architecture=d.same_architecture, same_weights=d.same_weights,
            layers=[pb.LayerChange(layer=c.layer, change=c.change, class_a=c.class_a,
                                   class_b=c.class_b,
                                   config=[pb.ConfigChange(key=k, a=va, b=vb)
                                           for k, (va, vb) in c.config.items()])
                    for c in d.layers],
            weights=[pb.WeightChange(variable=w.variable, shape_a=w.shape_a or [],
                                     shape_b=w.shape_b or [], in_a=w.shape_a is not None,
                                     in_b=w.shape_b is not None) for w in d.weights],
            parameters_a=d.parameters_a, parameters_b=d.parameters_b,
            custom_objects_added=d.custom_objects_added,
            custom_objects_removed=d.custom_objects_removed,
            signature=[pb.SignatureChange(side=c.side, name=c.name, a=c.a, b=c.b)
                       for c in d.signature])

    async def DownloadModelVersion(self, request, context):
        ref = VersionRef.of(request.name, request.version or None, request.alias or None)
        info = await self.registry.resolve(ref)
        yield pb.DownloadModelVersionResponse(header=version_proto(info, self.serving))
        parts = [(pb.ARCHITECTURE, info.architecture), (pb.WEIGHTS, info.weights)]
        if info.examples is not None and request.include_examples:
            parts.append((pb.EXAMPLES, info.examples))
        for kind, blob in parts:
            f = await asyncio.to_thread(self.registry.open_blob, blob.sha256)
            try:
                while data := await asyncio.to_thread(f.read, DOWNLOAD_CHUNK):
                    yield pb.DownloadModelVersionResponse(chunk=pb.UploadChunk(kind=kind, data=data))
            finally:
                f.close()
