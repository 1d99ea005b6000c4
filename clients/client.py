"""The Python client of a kerve server: registry calls over gRPC, uploads streamed in chunks."""

from __future__ import annotations

import hashlib
import os
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable, Iterator

import grpc
from google.protobuf.json_format import MessageToDict

from kerve.clients import DEFAULT_SERVER
from kerve.protos.kerve.registry.v1 import registry_pb2 as pb
from kerve.protos.kerve.registry.v1 import registry_pb2_grpc

CHUNK = 1 << 20
Progress = Callable[[int], None]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def version_dict(message: pb.ModelVersion) -> dict:
    """A ModelVersion as plain data: ints as ints, field names as in the proto."""
    d = MessageToDict(message, preserving_proto_field_name=True,
                      always_print_fields_with_no_presence=True)
    d["version"] = int(d.get("version", 0))
    d["parameter_count"] = int(d.get("parameter_count", 0))
    d["architecture_sha256"] = message.architecture.sha256
    d["weights_sha256"] = message.weights.sha256
    for part in ("architecture", "weights"):
        d[part]["size"] = int(d[part].get("size", 0))
    if message.HasField("examples"):
        d["examples"]["size"] = int(d["examples"].get("size", 0))
    for side in ("inputs", "outputs"):
        for spec in d["signature"].get(side, []):
            spec["shape"] = [int(x) for x in spec.get("shape", [])]
    return d


def write_dict(message: pb.Write) -> dict:
    """One write: when, what, which version or alias, and the token's name."""
    return {"at": message.at.ToDatetime().isoformat() + "Z", "action": message.action,
            "version": message.version or None, "alias": message.alias or None,
            "actor": message.actor}


def model_dict(message: pb.Model) -> dict:
    return {"name": message.name, "versions": list(message.versions),
            "aliases": dict(message.aliases), "default_version": message.default_version}


def channel_options(max_message_bytes: int = 64 << 20) -> list[tuple[str, object]]:
    """Options of every channel a client opens. Round robin: with a target that names
    several servers (``dns:///kerve-headless:8500``, ``ipv4:10.0.0.1:8500,10.0.0.2:8500``),
    calls spread over all of them instead of sticking to the first."""
    return [("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.lb_policy_name", "round_robin")]


def channel_for(target: str, credentials: grpc.ChannelCredentials | None = None,
                max_message_bytes: int = 64 << 20) -> grpc.Channel:
    options = channel_options(max_message_bytes)
    return (grpc.secure_channel(target, credentials, options) if credentials
            else grpc.insecure_channel(target, options))


def save_examples(path: str | os.PathLike, examples: dict) -> Path:
    """Write golden examples as the .npz an upload carries: ``examples`` maps
    ``"input/NAME"`` and ``"output/NAME"`` to arrays, or is ``{"inputs": {NAME: array},
    "outputs": {NAME: array}}``. Strings (str, bytes, or object arrays of them) are stored
    as numpy str/bytes arrays, which the server reads without pickle."""
    import numpy as np

    flat = {}
    for key, value in examples.items():
        if key in ("inputs", "outputs") and isinstance(value, dict):
            flat.update({f"{key[:-1]}/{name}": arr for name, arr in value.items()})
        else:
            flat[key] = value
    arrays = {}
    for key, value in flat.items():
        arr = np.asarray(value)
        if arr.dtype == np.object_:
            items = arr.ravel().tolist()
            if not all(isinstance(x, (bytes, str)) for x in items):
                raise ValueError(f"examples {key!r}: object arrays must hold str or bytes")
            arr = np.array([x.encode() if isinstance(x, str) else x for x in items],
                           dtype=bytes).reshape(arr.shape)
        arrays[key] = arr
    path = Path(path)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


class Client:
    """``Client("localhost:8500")``; every call raises grpc.RpcError with the server's status."""

    def __init__(self, target: str = DEFAULT_SERVER, *, token: str | None = None,
                 timeout: float | None = None, credentials: grpc.ChannelCredentials | None = None,
                 max_message_bytes: int = 64 << 20) -> None:
        self.target = target
        self.channel = channel_for(target, credentials, max_message_bytes)
        self.registry = registry_pb2_grpc.RegistryServiceStub(self.channel)
        self.timeout = timeout
        self.metadata = [("authorization", f"Bearer {token}")] if token else None

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, method, request, timeout: float | None = None):
        return method(request, timeout=timeout or self.timeout, metadata=self.metadata)

    # --- upload ------------------------------------------------------------------------

    def upload(self, name: str, *, model: Any = None, keras_path: str | os.PathLike | None = None,
               architecture: str | os.PathLike | None = None,
               weights: str | os.PathLike | None = None, aliases: list[str] | tuple = (),
               description: str = "", tags: dict[str, str] | None = None,
               examples: str | os.PathLike | dict | None = None,
               progress: Callable[[int, int], Progress] | None = None) -> dict:
        """Upload a new version: a keras.Model, a .keras archive, or architecture JSON and
        HDF5 weights (weights alone reuse the current architecture). Returns the version.

        ``examples``: golden examples the version must reproduce before it serves, an .npz
        path or a dict of arrays (see ``save_examples``)."""
        given = [x is not None for x in (model, keras_path)] + [
            architecture is not None or weights is not None]
        if sum(given) != 1:
            raise ValueError("give exactly one of model=, keras_path=, or architecture=/weights=")
        with ExitStack() as stack:
            if model is not None:
                tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kerve-up-")))
                architecture, weights = tmp / "architecture.json", tmp / "model.weights.h5"
                architecture.write_text(model.to_json())
                model.save_weights(weights)
            if keras_path is not None:
                parts = [(pb.KERAS_ARCHIVE, Path(keras_path))]
            elif architecture is not None:
                if weights is None:
                    raise ValueError("architecture= needs weights=")
                parts = [(pb.ARCHITECTURE, Path(architecture)), (pb.WEIGHTS, Path(weights))]
            else:
                parts = [(pb.WEIGHTS, Path(weights))]
            if isinstance(examples, dict):
                tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kerve-ex-")))
                examples = save_examples(tmp / "examples.npz", examples)
            if examples is not None:
                parts.append((pb.EXAMPLES, Path(examples)))
            for _, path in parts:
                if not path.is_file():
                    raise FileNotFoundError(f"no such file: {path}")
            header = pb.UploadHeader(
                name=name, aliases=list(aliases), description=description, tags=tags or {},
                parts=[pb.PartInfo(kind=k, size=p.stat().st_size, sha256=_sha256(p))
                       for k, p in parts])
            total = sum(p.stat().st_size for _, p in parts)
            advance = progress(total, len(parts)) if progress else None
            response = self.registry.UploadModel(
                self._upload_requests(header, parts, advance), timeout=self.timeout,
                metadata=self.metadata)
        return version_dict(response.version)

    @staticmethod
    def _upload_requests(header, parts, advance: Progress | None) -> Iterator:
        yield pb.UploadModelRequest(header=header)
        for kind, path in parts:
            with open(path, "rb") as f:
                while data := f.read(CHUNK):
                    yield pb.UploadModelRequest(chunk=pb.UploadChunk(kind=kind, data=data))
                    if advance:
                        advance(len(data))

    # --- catalogue ---------------------------------------------------------------------

    def list_models(self) -> list[dict]:
        response = self._call(self.registry.ListModels, pb.ListModelsRequest())
        return [model_dict(m) for m in response.models]

    def get_model(self, name: str) -> dict:
        response = self._call(self.registry.GetModel, pb.GetModelRequest(name=name))
        return {**model_dict(response.model),
                "versions": [version_dict(v) for v in response.versions],
                "writes": [write_dict(w) for w in response.writes]}

    def set_alias(self, name: str, alias: str, version: int) -> dict:
        response = self._call(self.registry.SetAlias,
                              pb.SetAliasRequest(name=name, alias=alias, version=version))
        return model_dict(response.model)

    def delete_alias(self, name: str, alias: str) -> dict:
        response = self._call(self.registry.DeleteAlias,
                              pb.DeleteAliasRequest(name=name, alias=alias))
        return model_dict(response.model)

    def delete_version(self, name: str, version: int) -> None:
        self._call(self.registry.DeleteModelVersion,
                   pb.DeleteModelVersionRequest(name=name, version=version))

    def download(self, name: str, directory: str | os.PathLike, *, version: int | None = None,
                 alias: str | None = None,
                 progress: Callable[[int, int], Progress] | None = None) -> dict:
        """Write architecture.json and model.weights.h5 (or model.h5 for legacy weights)
        into ``directory``; returns the version's metadata with the two paths."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        stream = self.registry.DownloadModelVersion(
            pb.DownloadModelVersionRequest(name=name, version=version or 0, alias=alias or "",
                                           include_examples=True),
            timeout=self.timeout, metadata=self.metadata)
        header = None
        files: dict[int, Any] = {}
        advance = None
        try:
            for message in stream:
                if message.HasField("header"):
                    header = message.header
                    weights_name = ("model.h5" if header.weights_format == "legacy_h5"
                                    else "model.weights.h5")
                    paths = {pb.ARCHITECTURE: directory / "architecture.json",
                             pb.WEIGHTS: directory / weights_name}
                    if header.HasField("examples"):
                        paths[pb.EXAMPLES] = directory / "examples.npz"
                    files = {k: open(p, "wb") for k, p in paths.items()}
                    if progress:
                        advance = progress(header.architecture.size + header.weights.size
                                           + header.examples.size, len(paths))
                    continue
                files[message.chunk.kind].write(message.chunk.data)
                if advance:
                    advance(len(message.chunk.data))
        finally:
            for f in files.values():
                f.close()
        if header is None:
            raise RuntimeError("the server sent no version header")
        result = version_dict(header)
        result["architecture_path"] = str(paths[pb.ARCHITECTURE])
        result["weights_path"] = str(paths[pb.WEIGHTS])
        if pb.EXAMPLES in paths:
            result["examples_path"] = str(paths[pb.EXAMPLES])
        return result

    # --- inference ---------------------------------------------------------------------

    def predict(self, name: str, inputs: dict[str, Any], *, version: int | None = None,
                alias: str | None = None, outputs: list[str] | None = None) -> dict[str, Any]:
        """One prediction through TF Serving's PredictionService; numpy in, numpy out."""
        import numpy as np
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

        from kerve.protos import codecs

        request = predict_pb2.PredictRequest()
        request.model_spec.name = name
        if version:
            request.model_spec.version.value = version
        if alias:
            request.model_spec.version_label = alias
        for key, value in inputs.items():
            codecs.ndarray_to_tensor_proto(np.asarray(value), request.inputs[key])
        request.output_filter.extend(outputs or [])
        stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        response = self._call(stub.Predict, request)
        return {key: codecs.tensor_proto_to_ndarray(key, proto)
                for key, proto in response.outputs.items()}
