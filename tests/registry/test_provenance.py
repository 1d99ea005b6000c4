"""Provenance: the producer of an artifact (from a .keras archive, the architecture, legacy
weights or the client), the plugin modules a version needs, and the Keras boundaries an
upload crosses (kerve.registry.provenance), against the session's real server."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from importlib.metadata import version as installed

import grpc
import pytest

from kerve.protos.kerve.registry.v1 import registry_pb2 as pb
from kerve.registry import provenance
from kerve.registry.errors import FailedPreconditionError
from tests.kerve_process import server_env

KERAS = installed("keras")


def _with_metadata(archive, out, **metadata):
    """A copy of a .keras archive whose metadata.json says ``metadata``."""
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "metadata.json":
                data = json.dumps(json.loads(data) | metadata).encode()
            dst.writestr(item, data)
    return out


# --- the producer -------------------------------------------------------------------------

def test_producer_from_keras_archive_and_client(client, built, tmp_path):
    archive = built("mnist_mlp").save_keras(tmp_path / "m.keras")
    with zipfile.ZipFile(archive) as zf:
        saved = json.loads(zf.read("metadata.json"))
    v = client.upload("prov-archive", keras_path=_with_metadata(
        archive, tmp_path / "dated.keras", date_saved="2001-02-03@04:05:06"))
    assert v["producer"]["keras_version"] == saved["keras_version"] == KERAS
    assert v["producer"]["date_saved"] == "2001-02-03@04:05:06"
    # The archive says nothing of TensorFlow or the backend: the client's environment does.
    assert v["producer"]["tensorflow_version"] == installed("tensorflow")
    assert v["producer"]["backend"] == "tensorflow"
    assert v["producer_sources"] == {"keras_version": "keras_archive",
                                     "date_saved": "keras_archive",
                                     "tensorflow_version": "client", "backend": "client"}
    assert v["warnings"] == []


def test_archive_beats_the_client(server, built, tmp_path):
    """A raw upload whose client claims other versions: the archive's own word wins for
    what it says, the client's is kept for the rest."""
    archive = _with_metadata(built("mnist_mlp").save_keras(tmp_path / "m.keras"),
                             tmp_path / "m2.keras", keras_version="3.0.1")
    header = pb.UploadHeader(
        name="prov-claims", producer={"keras_version": "3.9.9", "backend": "jax",
                                      "tensorflow_version": "2.99.0", "shoe_size": "44"},
        parts=[pb.PartInfo(kind=pb.KERAS_ARCHIVE, size=archive.stat().st_size,
                           sha256=_sha(archive))])
    v = _raw_upload(server, header, [(pb.KERAS_ARCHIVE, archive.read_bytes())])
    producer = dict(v.producer)
    assert producer.pop("date_saved")
    assert producer == {"keras_version": "3.0.1", "backend": "jax",
                        "tensorflow_version": "2.99.0"}  # no shoe size
    assert v.producer_sources["keras_version"] == "keras_archive"
    assert v.producer_sources["backend"] == "client"


def test_producer_from_the_python_client(client, built):
    v = client.upload("prov-client", model=built("mnist_mlp").model)
    assert v["producer"] == {"keras_version": KERAS, "backend": "tensorflow",
                             "tensorflow_version": installed("tensorflow")}
    assert set(v["producer_sources"].values()) == {"client"}


def test_client_producer_imports_no_tensorflow():
    code = ("import sys; from kerve.clients.client import producer_environment as p; "
            "e = p(); assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules; "
            "print(e['keras_version'], e['backend'])")
    env = server_env() | {"KERAS_BACKEND": "jax"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [KERAS, "jax"]


def test_backend_from_the_keras_config_file(tmp_path, monkeypatch):
    from kerve.clients import client as client_module

    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setitem(sys.modules, "keras", None)  # as if Keras were not imported
    (tmp_path / "keras.json").write_text(json.dumps({"backend": "torch"}))
    assert client_module.keras_backend() == "torch"
    (tmp_path / "keras.json").unlink()
    assert client_module.keras_backend() == "tensorflow"


def test_producer_from_legacy_weights(client, built, tmp_path):
    arch, weights = built("mnist_mlp").save(tmp_path, legacy=True)
    v = client.upload("prov-legacy", architecture=arch, weights=weights)
    assert v["weights_format"] == "legacy_h5"
    assert v["producer"]["keras_version"] == KERAS
    assert v["producer"]["backend"] == "tensorflow"
    assert v["producer_sources"]["keras_version"] == "weights"


def test_producer_from_a_keras2_architecture(client, built, tmp_path):
    """Keras 2's to_json put keras_version and backend at the top level: they beat the
    client, and crossing from Keras 2 to Keras 3 is a warning stored with the version."""
    b = built("mnist_mlp")
    arch, weights = b.save(tmp_path)
    config = json.loads(arch.read_text()) | {"keras_version": "2.15.0", "backend": "tensorflow"}
    arch.write_text(json.dumps(config))
    v = client.upload("prov-keras2", architecture=arch, weights=weights)
    assert v["producer"]["keras_version"] == "2.15.0"
    assert v["producer_sources"]["keras_version"] == "architecture"
    assert len(v["warnings"]) == 1
    assert v["warnings"][0].startswith("Keras 2 to Keras 3: the artifact was saved by Keras "
                                       "2.15.0 (per its architecture JSON)")


def test_client_producer_is_bounded(server, built, tmp_path):
    archive = built("mnist_mlp").save_keras(tmp_path / "m.keras")
    header = pb.UploadHeader(name="prov-bounded", producer={"keras_version": "3" * 500},
                             parts=[pb.PartInfo(kind=pb.KERAS_ARCHIVE,
                                                size=archive.stat().st_size,
                                                sha256=_sha(archive))])
    with pytest.raises(grpc.RpcError) as e:
        _raw_upload(server, header, [(pb.KERAS_ARCHIVE, archive.read_bytes())])
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "producer 'keras_version'" in e.value.details()


# --- plugin modules ---------------------------------------------------------------------

def test_plugin_modules_recorded(client, built, tmp_path):
    import hashlib

    import seedzoo_layers

    arch, weights = built("custom_layers").save(tmp_path)
    v = client.upload("prov-plugins", architecture=arch, weights=weights)
    sha = hashlib.sha256(open(seedzoo_layers.__file__, "rb").read()).hexdigest()
    # seedzoo_layers is no distribution and has no __version__: its file's digest is it.
    assert v["plugin_modules"] == [{
        "module": "seedzoo_layers", "version": f"sha256:{sha[:12]}",
        "version_source": "source sha256", "sha256": sha,
        "custom_objects": v["custom_objects"]}]


def test_module_version_from_distribution_then_dunder_version():
    described = provenance.describe_module("numpy.linalg")
    assert described["version"] == installed("numpy")
    assert described["version_source"] == "distribution numpy"
    assert described["sha256"]
    assert provenance.describe_module("no_such_module_anywhere") is None


# --- boundaries -------------------------------------------------------------------------

def test_newer_keras_major_refused_at_upload(client, built, tmp_path):
    archive = _with_metadata(built("mnist_mlp").save_keras(tmp_path / "m.keras"),
                             tmp_path / "k4.keras", keras_version="4.0.0")
    with pytest.raises(grpc.RpcError) as e:
        client.upload("prov-keras4", keras_path=archive)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert e.value.details().startswith(
        f"newer Keras major: the artifact was saved by Keras 4.0.0 (per its metadata.json) "
        f"and this server runs Keras {KERAS}")
    assert "prov-keras4" not in [m["name"] for m in client.list_models()]


def test_newer_keras_minor_warned_at_upload(client, built, tmp_path):
    major, minor = (int(x) for x in KERAS.split(".")[:2])
    newer = f"{major}.{minor + 1}.0"
    archive = _with_metadata(built("mnist_mlp").save_keras(tmp_path / "m.keras"),
                             tmp_path / "newer.keras", keras_version=newer)
    v = client.upload("prov-newer-minor", keras_path=archive)
    assert v["status"] == "READY"
    assert v["warnings"] == [
        f"newer Keras minor: the artifact was saved by Keras {newer} (per its metadata.json) "
        f"and is read by the older Keras {KERAS}, which may ignore or misread what is new"]


def test_theano_weights_refused_for_convolutions(client, built, tmp_path):
    import h5py

    b = built("conv_autoencoder")
    arch, weights = b.save(tmp_path, legacy=True)
    with h5py.File(weights, "r+") as f:
        for group in (f, f.get("model_weights")):
            if group is not None:
                group.attrs["backend"] = "theano"
                group.attrs["keras_version"] = "2.2.4"
    with pytest.raises(grpc.RpcError) as e:
        client.upload("prov-theano", architecture=arch, weights=weights)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "Theano/CNTK weights: legacy weights saved under the theano backend" in \
        e.value.details()
    assert "Conv2D" in e.value.details()


def test_crossings_without_a_server():
    assert provenance.crossings({}, "3.15.1") == []
    assert provenance.crossings({"keras_version": "3.15.9"}, "3.15.1") == []
    assert provenance.crossings({"keras_version": "3.14.0"}, "3.15.1") == []
    assert provenance.crossings({"keras_version": "nightly"}, "3.15.1") == []
    [older] = provenance.crossings({"keras_version": "2.13.1"}, "3.15.1")
    assert (older.boundary, older.refused) == ("Keras 2 to Keras 3", False)
    [theano] = provenance.crossings({"backend": "theano"}, "3.15.1",
                                    layer_classes=["Dense"], weights_format="legacy_h5")
    assert not theano.refused
    with pytest.raises(FailedPreconditionError, match="^newer Keras major"):
        provenance.judge({"keras_version": "4.1.0"}, "3.15.1")


def test_models_show_prints_provenance(server, client, built, tmp_path):
    arch, weights = built("custom_layers", seed=1).save(tmp_path)
    client.upload("prov-show", architecture=arch, weights=weights)
    cli = [sys.executable, "-m", "kerve.clients.cli", "models", "show", "prov-show",
           "--server", server.target]
    text = subprocess.run(cli, capture_output=True, text=True, env=server_env(), timeout=120)
    assert text.returncode == 0, text.stderr
    assert (f"    produced by Keras {KERAS} (client), TensorFlow {installed('tensorflow')} "
            "(client), backend tensorflow (client)\n") in text.stdout
    assert "    plugin seedzoo_layers sha256:" in text.stdout
    assert "(source sha256): seedzoo>CustomDense, seedzoo>ExampleRandomNormal" in text.stdout
    as_json = subprocess.run(cli + ["--json"], capture_output=True, text=True,
                             env=server_env(), timeout=120)
    [v] = json.loads(as_json.stdout)["versions"]
    assert v["producer"]["keras_version"] == KERAS
    assert v["producer_sources"]["keras_version"] == "client"
    assert v["plugin_modules"][0]["module"] == "seedzoo_layers"
    assert v["load_warnings"] == []


# --- helpers ------------------------------------------------------------------------------

def _sha(path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _raw_upload(server, header, parts) -> pb.ModelVersion:
    from kerve.protos.kerve.registry.v1 import registry_pb2_grpc

    def requests():
        yield pb.UploadModelRequest(header=header)
        for kind, data in parts:
            yield pb.UploadModelRequest(chunk=pb.UploadChunk(kind=kind, data=data))

    with grpc.insecure_channel(server.target) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        return stub.UploadModel(requests(), timeout=120).version

