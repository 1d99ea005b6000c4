"""Each refusal of an upload, with its status and message; and a refused upload leaves
nothing behind (no version, no blob)."""

from __future__ import annotations

import hashlib
import json

import grpc
import pytest

from kerve.protos.kerve.registry.v1 import registry_pb2 as pb


def _blob_files(server):
    return sorted(p.name for p in (server.data_dir / "blobs").rglob("*") if p.is_file())


def _tmp_leftovers(server):
    return [p for p in (server.data_dir / "tmp").iterdir()]


@pytest.fixture
def leaves_nothing(server, client):
    """Asserts that the test's failed uploads left no version, no blob and no temp file."""
    models_before = {m["name"]: m["versions"] for m in client.list_models()}
    blobs_before = _blob_files(server)
    yield
    assert {m["name"]: m["versions"] for m in client.list_models()} == models_before
    assert _blob_files(server) == blobs_before
    assert _tmp_leftovers(server) == []


def _status(excinfo) -> tuple[grpc.StatusCode, str]:
    return excinfo.value.code(), excinfo.value.details()


def test_unknown_custom_classes_listed_all_at_once(client, built, tmp_path, leaves_nothing):
    b = built("linear_sequential")
    config = json.loads(b.model.to_json())
    config["config"]["layers"][-1]["registered_name"] = "acme>Secret"
    extra = json.loads(json.dumps(config["config"]["layers"][-1]))
    extra["registered_name"] = "acme>Other"
    extra["config"]["name"] = "other"
    config["config"]["layers"].append(extra)
    arch = tmp_path / "a.json"
    arch.write_text(json.dumps(config))
    _, weights = b.save(tmp_path / "w")
    with pytest.raises(grpc.RpcError) as e:
        client.upload("refused-unknown", architecture=arch, weights=weights)
    code, details = _status(e)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "acme>Other" in details and "acme>Secret" in details
    assert "loaded plugins: seedzoo_layers" in details


def test_module_outside_keras_refused(client, built, tmp_path, leaves_nothing):
    b = built("mnist_mlp")
    config = json.loads(b.model.to_json())
    layer = config["config"]["layers"][1]
    layer["module"], layer["class_name"], layer["registered_name"] = "os", "system", None
    arch = tmp_path / "a.json"
    arch.write_text(json.dumps(config))
    _, weights = b.save(tmp_path / "w")
    with pytest.raises(grpc.RpcError) as e:
        client.upload("refused-os", architecture=arch, weights=weights)
    code, details = _status(e)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "os.system" in details and "outside Keras" in details


@pytest.mark.parametrize("module,name", [("keras.config", "enable_unsafe_deserialization"),
                                         ("keras.utils", "get_file"),
                                         ("keras.saving", "load_model")])
def test_non_modelling_keras_api_refused(module, name, client, built, tmp_path, leaves_nothing):
    b = built("mnist_mlp")
    config = json.loads(b.model.to_json())
    config["config"]["layers"][1]["config"]["kernel_initializer"] = {
        "module": module, "class_name": name, "config": {}, "registered_name": None}
    arch = tmp_path / "a.json"
    arch.write_text(json.dumps(config))
    _, weights = b.save(tmp_path / "w")
    with pytest.raises(grpc.RpcError) as e:
        client.upload("refused-api", architecture=arch, weights=weights)
    code, details = _status(e)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert f"{module}.{name} is not a modelling API" in details


def test_python_lambda_refused_without_flag(client, built, tmp_path, leaves_nothing):
    b = built("lambda_square")
    arch, weights = b.save(tmp_path)
    with pytest.raises(grpc.RpcError) as e:
        client.upload("lambda", architecture=arch, weights=weights)
    code, details = _status(e)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "Lambda" in details and "--allow-unsafe-lambda" in details


def test_weights_shape_mismatch_names_layer_and_variable(client, built, tmp_path, leaves_nothing):
    mlp = built("mnist_mlp")
    arch, _ = mlp.save(tmp_path / "a")
    _, other = built("toy_resnet").save(tmp_path / "b")
    # Keras numbers auto-named layers per process: take the name this model got.
    dense = next(layer.name for layer in mlp.model.layers if layer.name.startswith("dense"))
    with pytest.raises(grpc.RpcError) as e:
        client.upload("mismatch", architecture=arch, weights=other)
    code, details = _status(e)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "weights do not match the architecture" in details
    assert (f"layer '{dense}' variable '{dense}/kernel': expected shape (784, 64), got"
            in details)


def test_weights_missing_a_layer_refused(client, tmp_path, leaves_nothing):
    import keras

    inputs = keras.Input((4,), name="x")
    small = keras.Model(inputs, keras.layers.Dense(2, name="only")(inputs))
    hidden = keras.layers.Dense(3, name="extra")(inputs)
    big = keras.Model(inputs, keras.layers.Dense(2, name="only")(hidden))
    arch = tmp_path / "a.json"
    arch.write_text(big.to_json())
    small.save_weights(tmp_path / "w.weights.h5")
    with pytest.raises(grpc.RpcError) as e:
        client.upload("missing-layer", architecture=arch, weights=tmp_path / "w.weights.h5")
    code, details = _status(e)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "weights do not match the architecture" in details


def test_nan_weights_are_named_as_nan(client, tmp_path, leaves_nothing):
    """A saved NaN is not an unset variable: each is reported as what it is."""
    import keras
    import numpy as np

    inputs = keras.Input((4,), name="x")
    model = keras.Model(inputs, keras.layers.Dense(2, name="nanny")(inputs))
    kernel, bias = model.get_weights()
    kernel[0, 0] = np.nan
    model.set_weights([kernel, bias])
    arch = tmp_path / "a.json"
    arch.write_text(model.to_json())
    model.save_weights(tmp_path / "w.weights.h5")
    with pytest.raises(grpc.RpcError) as e:
        client.upload("nan-weights", architecture=arch, weights=tmp_path / "w.weights.h5")
    code, details = _status(e)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "NaN values in" in details and "nanny/kernel" in details
    assert "no saved value" not in details


@pytest.mark.parametrize("content,message", [
    (b"not json", "architecture is not valid JSON"),
    (b'{"hello": 1}', "not a Keras model config"),
    (b'{"class_name": "Dense", "module": "keras.layers", "config": {"units": 2}}',
     "not a keras.Model"),
])
def test_bad_architecture(content, message, client, built, tmp_path, leaves_nothing):
    _, weights = built("mnist_mlp").save(tmp_path)
    arch = tmp_path / "bad.json"
    arch.write_bytes(content)
    with pytest.raises(grpc.RpcError) as e:
        client.upload("bad-arch", architecture=arch, weights=weights)
    assert _status(e)[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert message in _status(e)[1]


def test_weights_not_hdf5(client, built, tmp_path, leaves_nothing):
    arch, _ = built("mnist_mlp").save(tmp_path)
    weights = tmp_path / "w.h5"
    weights.write_bytes(b"\x00" * 1000)
    with pytest.raises(grpc.RpcError) as e:
        client.upload("bad-weights", architecture=arch, weights=weights)
    assert _status(e)[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert "not an HDF5 file" in _status(e)[1]


def test_keras_archive_without_weights(client, tmp_path, leaves_nothing):
    import zipfile

    archive = tmp_path / "m.keras"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("config.json", "{}")
    with pytest.raises(grpc.RpcError) as e:
        client.upload("bad-archive", keras_path=archive)
    assert _status(e)[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert "lacks model.weights.h5" in _status(e)[1]


def test_non_finite_smoke_prediction_is_a_warning_not_a_refusal(client, zoo, tmp_path):
    """The smoke run's data is made up: non-finite outputs on it are recorded on the version
    (and shown by `kerve models show`), not a reason to refuse it."""
    import numpy as np

    model, _ = zoo.ZOO["linear_sequential"]()
    model.set_weights([np.full_like(w, np.inf) for w in model.get_weights()])
    arch, w = tmp_path / "a.json", tmp_path / "w.weights.h5"
    arch.write_text(model.to_json())
    model.save_weights(w)
    version = client.upload("inf", architecture=arch, weights=w)
    assert len(version["warnings"]) == 1 and "non-finite" in version["warnings"][0]


def _raw_upload(client, requests):
    return client.registry.UploadModel(iter(requests), timeout=60)


def _header(name, parts):
    return pb.UploadModelRequest(header=pb.UploadHeader(name=name, parts=parts))


def test_sha256_mismatch_is_data_loss(client, built, tmp_path, leaves_nothing):
    arch, weights = built("mnist_mlp").save(tmp_path)
    a, w = arch.read_bytes(), weights.read_bytes()
    parts = [pb.PartInfo(kind=pb.ARCHITECTURE, size=len(a), sha256=hashlib.sha256(a).hexdigest()),
             pb.PartInfo(kind=pb.WEIGHTS, size=len(w), sha256="0" * 64)]
    with pytest.raises(grpc.RpcError) as e:
        _raw_upload(client, [_header("sha", parts),
                             pb.UploadModelRequest(chunk=pb.UploadChunk(kind=pb.ARCHITECTURE, data=a)),
                             pb.UploadModelRequest(chunk=pb.UploadChunk(kind=pb.WEIGHTS, data=w))])
    assert _status(e)[0] == grpc.StatusCode.DATA_LOSS
    assert "sha256 mismatch" in _status(e)[1]


def test_truncated_upload_is_data_loss(client, built, tmp_path, leaves_nothing):
    arch, weights = built("mnist_mlp").save(tmp_path)
    a, w = arch.read_bytes(), weights.read_bytes()
    parts = [pb.PartInfo(kind=pb.ARCHITECTURE, size=len(a), sha256=hashlib.sha256(a).hexdigest()),
             pb.PartInfo(kind=pb.WEIGHTS, size=len(w), sha256=hashlib.sha256(w).hexdigest())]
    with pytest.raises(grpc.RpcError) as e:
        _raw_upload(client, [_header("trunc", parts),
                             pb.UploadModelRequest(chunk=pb.UploadChunk(kind=pb.ARCHITECTURE, data=a)),
                             pb.UploadModelRequest(chunk=pb.UploadChunk(kind=pb.WEIGHTS, data=w[:100]))])
    assert _status(e)[0] == grpc.StatusCode.DATA_LOSS
    assert f"received 100 of {len(w)} bytes" in _status(e)[1]


@pytest.mark.parametrize("requests,message", [
    ([], "starts with an UploadHeader"),
    ([pb.UploadModelRequest(chunk=pb.UploadChunk(kind=pb.WEIGHTS, data=b"x"))],
     "starts with an UploadHeader"),
    ([_header("x", [pb.PartInfo(kind=pb.ARCHITECTURE, size=1, sha256="a" * 64)])],
     "an upload is an architecture and weights"),
    ([_header("bad name!", [pb.PartInfo(kind=pb.KERAS_ARCHIVE, size=1, sha256="a" * 64)])],
     "invalid model name"),
    ([_header("x", [pb.PartInfo(kind=pb.KERAS_ARCHIVE, size=1, sha256="XYZ")])],
     "64 lowercase hex"),
    ([_header("x", [pb.PartInfo(kind=pb.KERAS_ARCHIVE, size=1, sha256="a" * 64)]),
      pb.UploadModelRequest(chunk=pb.UploadChunk(kind=pb.KERAS_ARCHIVE, data=b"12"))],
     "longer than the 1 bytes declared"),
    ([_header("x", [pb.PartInfo(kind=pb.KERAS_ARCHIVE, size=1, sha256="a" * 64)]),
      pb.UploadModelRequest(chunk=pb.UploadChunk(kind=pb.WEIGHTS, data=b"1"))],
     "did not declare"),
])
def test_malformed_upload_streams(requests, message, client, leaves_nothing):
    with pytest.raises(grpc.RpcError) as e:
        _raw_upload(client, requests)
    assert _status(e)[0] == grpc.StatusCode.INVALID_ARGUMENT, _status(e)
    assert message in _status(e)[1]


def test_upload_over_the_size_limit(client, leaves_nothing):
    parts = [pb.PartInfo(kind=pb.KERAS_ARCHIVE, size=1 << 50, sha256="a" * 64)]
    with pytest.raises(grpc.RpcError) as e:
        _raw_upload(client, [_header("huge", parts)])
    assert _status(e)[0] == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_unsafe_server_accepts_python_lambda(unsafe_server, built, tmp_path):
    from kerve.clients.client import Client

    b = built("lambda_square")
    arch, weights = b.save(tmp_path)
    with Client(unsafe_server.target, timeout=120) as c:
        version = c.upload("lambda", architecture=arch, weights=weights)
    assert version["version"] == 1
