"""The Python client of a kerve server: registry calls over gRPC, uploads streamed in chunks."""

from __future__ import annotations

import hashlib
import inspect
import os
import shutil
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable, Iterator

import grpc
from google.protobuf.json_format import MessageToDict

from kerve.clients import DEFAULT_SERVER
from kerve.clients.errors import ServerError, raises_server_errors  # noqa: F401 (re-exported)
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


TENSORFLOW_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tf-nightly",
                            "tensorflow-macos", "tensorflow-intel")


def _installed(distributions: tuple[str, ...]) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    for dist in distributions:
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return None


def keras_backend() -> str:
    """The backend Keras runs (or would run) here, found as Keras finds it, without
    importing it: keras.config.backend() where Keras is imported already, else
    KERAS_BACKEND, else the keras.json in KERAS_HOME (or ~/.keras, or /tmp/.keras where
    that is not writable), else Keras's default, tensorflow."""
    import json
    import sys

    keras = sys.modules.get("keras")
    config = getattr(keras, "config", None)
    if config is not None and callable(getattr(config, "backend", None)):
        return str(config.backend())
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = os.environ.get("KERAS_HOME")
    if not home:
        base = os.path.expanduser("~")
        home = os.path.join(base if os.access(base, os.W_OK) else "/tmp", ".keras")
    try:
        with open(os.path.join(home, "keras.json")) as f:
            backend = json.load(f).get("backend")
        if isinstance(backend, str) and backend:
            return backend
    except (OSError, ValueError, AttributeError):
        pass
    return "tensorflow"


def producer_environment(model: Any = None) -> dict[str, str]:
    """What this client says of the environment an upload comes from: the installed keras
    and tensorflow versions and the backend (no TensorFlow import). For a model object, the
    Keras that built it (tf_keras for a tf.keras model under Keras 3)."""
    import sys

    found = {"keras_version": _installed(("keras",)),
             "tensorflow_version": _installed(TENSORFLOW_DISTRIBUTIONS),
             "backend": keras_backend()}
    package = type(model).__module__.split(".")[0] if model is not None else ""
    if package == "tf_keras":
        found["keras_version"] = getattr(sys.modules.get("tf_keras"), "__version__", None)
        found["backend"] = "tensorflow"
    return {k: v for k, v in found.items() if v}


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
    d.setdefault("producer", {})
    d.setdefault("producer_sources", {})
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
            "aliases": dict(message.aliases), "default_version": message.default_version,
            "serving_version": message.serving_version or None,
            "states": {int(v): state for v, state in sorted(message.states.items())}}


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


_CAST_NOTED: set[tuple[str, str, str]] = set()


def _conform(key: str, value: Any, specs: dict[str, tuple[str, list[int]]]):
    """``value`` as an array of the model's dtype for input ``key``: (datatype, array)."""
    import warnings

    import numpy as np

    from kerve.protos import codecs

    arr = np.asarray(value)
    spec = specs.get(key) or (next(iter(specs.values())) if len(specs) == 1 else None)
    if spec is None:  # an unknown name: the server says which names it takes
        return codecs.v2_datatype(arr.dtype) if arr.dtype.kind not in "USO" else "BYTES", arr
    datatype, _ = spec
    if datatype == "BYTES":
        if arr.dtype.kind in "US" or arr.dtype == np.object_:
            items = [x.encode() if isinstance(x, str) else x for x in arr.ravel().tolist()]
            out = np.empty(len(items), dtype=object)
            out[:] = items
            return datatype, out.reshape(arr.shape)
    want = codecs.v2_numpy_dtype(datatype, key)
    if arr.dtype == want:
        return datatype, arr
    if want != np.object_ and arr.dtype.kind in "biuf" and \
            np.can_cast(arr.dtype, want, "same_kind"):
        if (key, str(arr.dtype), str(want)) not in _CAST_NOTED:
            _CAST_NOTED.add((key, str(arr.dtype), str(want)))
            warnings.warn(f"input {key!r}: cast from {arr.dtype} to {want}, the model's dtype",
                          stacklevel=3)
        return datatype, arr.astype(want)
    raise ValueError(f"input {key!r}: expected dtype {want}, got {arr.dtype}")


class Client:
    """``Client("localhost:8500")``; a failed call raises ``kerve.clients.ServerError``
    (a grpc.RpcError) with the server's status and message."""

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
               progress: Callable[[int, int], Progress] | None = None, wait: bool = True,
               on_stage: Callable[[str], None] | None = None,
               base: int | str | None = None) -> dict:
        """Upload a new version: a keras.Model, a .keras archive, or architecture JSON and
        HDF5 weights (weights alone reuse the current architecture). Returns the version.

        With ``wait`` (the default), a version that becomes the default on a server that
        serves is returned once it is READY there, or FAILED (``status_message`` says why):
        a predict right after an upload is answered. ``base``: with ``weights`` alone, the
        version (number or alias) whose architecture they fit, instead of the default.
        ``on_stage`` hears "uploading",
        "validating", "loading" and the final status.

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
                base="" if base is None else str(base), producer=producer_environment(model),
                parts=[pb.PartInfo(kind=k, size=p.stat().st_size, sha256=_sha256(p))
                       for k, p in parts])
            total = sum(p.stat().st_size for _, p in parts)
            advance = progress(total, len(parts)) if progress else None
            stage = on_stage or (lambda _: None)
            stage("uploading")
            response = self.registry.UploadModel(
                self._upload_requests(header, parts, advance, stage), timeout=self.timeout,
                metadata=self.metadata)
        version = version_dict(response.version)
        if wait and version["status"] == "LOADING":
            stage("loading")
            version = self.wait_loaded(name, version["version"]) or version
        stage(version["status"])
        return version

    def wait_loaded(self, name: str, version: int, timeout: float | None = None) -> dict:
        """Poll until ``version`` of ``name`` is no longer LOADING on this server (READY or
        FAILED, or STORED where it stopped being the default meanwhile); returns it."""
        deadline = time.monotonic() + (timeout or self.timeout or 600)
        pause = 0.02
        while True:
            current = {v["version"]: v for v in self.get_model(name)["versions"]}.get(version)
            if current is None or current["status"] != "LOADING" \
                    or time.monotonic() > deadline:
                return current
            time.sleep(pause)
            pause = min(pause * 2, 0.5)

    @staticmethod
    def _upload_requests(header, parts, advance: Progress | None,
                         stage: Callable[[str], None]) -> Iterator:
        yield pb.UploadModelRequest(header=header)
        for kind, path in parts:
            with open(path, "rb") as f:
                while data := f.read(CHUNK):
                    yield pb.UploadModelRequest(chunk=pb.UploadChunk(kind=kind, data=data))
                    if advance:
                        advance(len(data))
        stage("validating")  # every byte is sent; the server checks the model now

    # --- catalogue ---------------------------------------------------------------------

    def list_models(self) -> list[dict]:
        response = self._call(self.registry.ListModels, pb.ListModelsRequest())
        return [model_dict(m) for m in response.models]

    def search(self, *, tags: dict[str, str] | None = None, layers: list[str] = (),
               custom_objects: list[str] = ()) -> list[dict]:
        """The versions, of any model, that have all these tags, layer classes
        (``"Conv2D"``) and custom objects (``"seedzoo>Linear"``)."""
        request = pb.ListModelsRequest(tags=tags or {}, layer_classes=list(layers),
                                       custom_objects=list(custom_objects))
        if not (request.tags or request.layer_classes or request.custom_objects):
            raise ValueError("search needs a tag, a layer class or a custom object")
        response = self._call(self.registry.ListModels, request)
        return [version_dict(v) for v in response.versions]

    def get_model(self, name: str) -> dict:
        response = self._call(self.registry.GetModel, pb.GetModelRequest(name=name))
        return {**model_dict(response.model),
                "versions": [version_dict(v) for v in response.versions],
                "writes": [write_dict(w) for w in response.writes]}

    def set_alias(self, name: str, alias: str, version: int) -> dict:
        response = self._call(self.registry.SetAlias,
                              pb.SetAliasRequest(name=name, alias=alias, version=version))
        return model_dict(response.model)

    def alias_history(self, name: str, alias: str) -> list[dict]:
        """Every move of ``alias``, oldest first: ``from`` and ``to`` (None where the alias
        did not exist, or was deleted), ``at`` and ``actor``."""
        response = self._call(self.registry.GetAliasHistory,
                              pb.GetAliasHistoryRequest(name=name, alias=alias))
        return [{"from": m.from_version or None, "to": m.to_version or None,
                 "at": m.at.ToDatetime().isoformat() + "Z", "actor": m.actor}
                for m in response.moves]

    def rollback_alias(self, name: str, alias: str) -> dict:
        """Move ``alias`` back to the version its last move took it from."""
        response = self._call(self.registry.RollbackAlias,
                              pb.RollbackAliasRequest(name=name, alias=alias))
        return {**model_dict(response.model), "version": response.version}

    def delete_alias(self, name: str, alias: str) -> dict:
        response = self._call(self.registry.DeleteAlias,
                              pb.DeleteAliasRequest(name=name, alias=alias))
        return model_dict(response.model)

    def delete_version(self, name: str, version: int) -> None:
        self._call(self.registry.DeleteModelVersion,
                   pb.DeleteModelVersionRequest(name=name, version=version))

    def diff(self, name: str, a: int | str | None = None, b: int | str | None = None) -> dict:
        """What changed from version ``a`` to ``b`` of ``name`` (each a number, an alias,
        or None for the default): layers and config keys, weight shapes, parameter counts,
        custom objects, signature."""
        response = self._call(self.registry.DiffVersions, pb.DiffVersionsRequest(
            name=name, a="" if a is None else str(a), b="" if b is None else str(b)))
        d = MessageToDict(response, preserving_proto_field_name=True,
                          always_print_fields_with_no_presence=True)
        for key in ("version_a", "version_b", "parameters_a", "parameters_b"):
            d[key] = int(d[key])
        for w in d["weights"]:
            w["shape_a"] = [int(x) for x in w["shape_a"]] if w.pop("in_a") else None
            w["shape_b"] = [int(x) for x in w["shape_b"]] if w.pop("in_b") else None
        for layer in d["layers"]:
            layer["config"] = {c["key"]: [c["a"], c["b"]] for c in layer["config"]}
        return d

    def download(self, name: str, directory: str | os.PathLike, *, version: int | None = None,
                 alias: str | None = None,
                 progress: Callable[[int, int], Progress] | None = None) -> dict:
        """Write architecture.json and model.weights.h5 (or model.h5 for legacy weights)
        into ``directory``; returns the version's metadata with the two paths. A download
        that fails leaves nothing behind: no partial file, no folder it made."""
        directory = Path(directory)
        if directory.exists() and not directory.is_dir():
            raise ValueError(f"{directory} exists and is not a folder")
        made = not directory.exists()
        directory.mkdir(parents=True, exist_ok=True)
        try:
            return self._download(name, directory, version, alias, progress)
        except BaseException:
            if made:
                shutil.rmtree(directory, ignore_errors=True)
            raise

    def _download(self, name: str, directory: Path, version: int | None, alias: str | None,
                  progress: Callable[[int, int], Progress] | None) -> dict:
        paths: dict[int, Path] = {}
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
        except BaseException:
            for f in files.values():
                f.close()
            for path in paths.values():
                path.unlink(missing_ok=True)
            raise
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
        """One prediction, numpy (or nested lists) in, numpy out, through the KServe v2
        protocol (raw tensors; no TensorFlow on the client).

        Inputs are cast to the model's dtypes where that loses nothing but precision (int64
        to float32, float64 to float32, ...; said once, as a warning); anything else is
        refused as the server would. A version still loading is retried with backoff until
        the client's timeout (default 60 s)."""
        from kerve.clients import v2
        from kerve.protos import codecs

        m = v2.messages()
        ref = str(version) if version else (alias or "")
        specs = self._input_specs(name, ref)
        request = m.ModelInferRequest(model_name=name, model_version=ref)
        for key, value in inputs.items():
            datatype, arr = _conform(key, value, specs)
            request.inputs.add(name=key, datatype=datatype, shape=arr.shape)
            request.raw_input_contents.append(codecs.ndarray_to_v2_raw(arr))
        for output in outputs or []:
            request.outputs.add(name=output)
        infer = v2.method(self.channel, "ModelInfer", m.ModelInferRequest, m.ModelInferResponse)
        response = self._retry_loading(infer, request)
        return {out.name: codecs.v2_raw_to_ndarray(out.name, out.datatype, out.shape, raw)
                for out, raw in zip(response.outputs, response.raw_output_contents)}

    def _input_specs(self, name: str, ref: str) -> dict[str, tuple[str, list[int]]]:
        """The model's inputs: name -> (v2 datatype, shape), from ModelMetadata."""
        from kerve.clients import v2

        m = v2.messages()
        metadata = v2.method(self.channel, "ModelMetadata", m.ModelMetadataRequest,
                             m.ModelMetadataResponse)
        response = self._retry_loading(metadata, m.ModelMetadataRequest(name=name, version=ref))
        return {t.name: (t.datatype, list(t.shape)) for t in response.inputs}

    def _retry_loading(self, call, request):
        """Call; while the server answers UNAVAILABLE (a version loading on demand, a
        replica starting), retry with backoff up to the client's timeout."""
        deadline = time.monotonic() + (self.timeout or 60)
        pause = 0.05
        while True:
            try:
                return call(request, timeout=max(deadline - time.monotonic(), 0.1),
                            metadata=self.metadata)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE or \
                        time.monotonic() + pause > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 1.0)


# Every public call, wrapped in one place rather than at each of its gRPC calls (streams too).
for _name, _method in list(vars(Client).items()):
    if inspect.isfunction(_method) and not _name.startswith("_") and _name != "close":
        setattr(Client, _name, raises_server_errors(_method))
