"""Crash consistency: kill -9 a registry server at random points during uploads, alias
moves and deletions, 50 times; after each restart the registry is whole. And a blob
corrupted on disk fails only its own version, with DATA_LOSS.

The registry-side crashes run a registry-role server (no TensorFlow in the server process:
it starts in about a second) with --orphan-grace 0, so that start-up recovery removes every
unreferenced blob at once and the check can demand exactly the referenced ones.
"""

from __future__ import annotations

import hashlib
import random
import sqlite3
import threading
import time

import grpc
import numpy as np
import pytest

from kerve.protos.kerve.registry.v1 import registry_pb2 as pb
from kerve.protos.kerve.registry.v1 import registry_pb2_grpc
from tests.kerve_process import KerveProcess
from tests.server.helpers import wait_ready

KILLS = 50
ALIASES = ("production", "staging", "canary")


def _model_files(tmp, count: int):
    """One architecture and ``count`` different weights files (each upload stores a new
    weights blob, so that kills land between blob and row too)."""
    import keras

    inputs = keras.Input((256,), name="x")
    model = keras.Model(inputs, keras.layers.Dense(512, name="d")(inputs), name="crash")
    model(np.zeros((1, 256), "float32"))
    arch = tmp / "arch.json"
    arch.write_text(model.to_json())
    rng = np.random.default_rng(0)
    weights = []
    for i in range(count):
        model.set_weights([rng.standard_normal(w.shape).astype("float32")
                           for w in model.get_weights()])
        path = tmp / f"w{i}.weights.h5"
        model.save_weights(path)
        weights.append(path)
    return arch, weights


def _paced_upload(stub, name: str, arch, weights, aliases, chunk: int = 64 << 10,
                  pause: float = 0.01):
    """An upload streamed slowly enough for a kill to land while it is received."""
    parts = [(pb.ARCHITECTURE, arch.read_bytes()), (pb.WEIGHTS, weights.read_bytes())]

    def requests():
        yield pb.UploadModelRequest(header=pb.UploadHeader(name=name, aliases=aliases, parts=[
            pb.PartInfo(kind=k, size=len(d), sha256=hashlib.sha256(d).hexdigest())
            for k, d in parts]))
        for kind, data in parts:
            for start in range(0, len(data), chunk):
                yield pb.UploadModelRequest(chunk=pb.UploadChunk(
                    kind=kind, data=data[start:start + chunk]))
                time.sleep(pause)
    return stub.UploadModel(requests(), timeout=60)


class Workload:
    """Uploads, alias moves and deletions in threads until stopped; errors are expected
    (the server is killed under them) and ignored."""

    def __init__(self, target: str, arch, weights: list, seed: int) -> None:
        self.channel = grpc.insecure_channel(target)
        self.stub = registry_pb2_grpc.RegistryServiceStub(self.channel)
        self.arch, self.weights = arch, weights
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.uploaded = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(fn,), daemon=True)
                        for fn in (self._upload, self._upload, self._move, self._delete)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)
        self.channel.close()

    def _run(self, step) -> None:
        while not self.stop.is_set():
            try:
                step()
            except grpc.RpcError:
                time.sleep(0.02)

    def _upload(self) -> None:
        aliases = [self.rng.choice(ALIASES)] if self.rng.random() < 0.3 else []
        _paced_upload(self.stub, "crash", self.arch, self.rng.choice(self.weights), aliases)
        self.uploaded.set()

    def _versions(self) -> tuple[list[int], dict[str, int]]:
        model = self.stub.GetModel(pb.GetModelRequest(name="crash"), timeout=5).model
        return list(model.versions), dict(model.aliases)

    def _move(self) -> None:
        versions, aliases = self._versions()
        alias = self.rng.choice(ALIASES)
        if alias in aliases and self.rng.random() < 0.3:
            self.stub.DeleteAlias(pb.DeleteAliasRequest(name="crash", alias=alias), timeout=5)
        elif versions:
            self.stub.SetAlias(pb.SetAliasRequest(name="crash", alias=alias,
                                                  version=self.rng.choice(versions)), timeout=5)
        time.sleep(0.01)

    def _delete(self) -> None:
        versions, aliases = self._versions()
        free = [v for v in versions if v not in aliases.values()]
        if len(free) > 2:  # keep a few, so that moves have targets
            self.stub.DeleteModelVersion(
                pb.DeleteModelVersionRequest(name="crash", version=self.rng.choice(free)),
                timeout=5)
        time.sleep(0.05)


def check_whole(proc: KerveProcess) -> int:
    """The registry after a restart: every version's blobs there and intact, every alias
    at an existing version, no blob without a version, no temporary file. Returns the
    number of versions."""
    with sqlite3.connect(proc.data_dir / "kerve.db") as db:
        versions = db.execute("SELECT model_id, version, architecture_sha256, weights_sha256, "
                              "examples_sha256 FROM versions").fetchall()
        aliases = db.execute("SELECT model_id, alias, version FROM aliases").fetchall()
    blobs_dir = proc.data_dir / "blobs"
    referenced = {sha for row in versions for sha in row[2:] if sha}
    for sha in referenced:
        path = blobs_dir / sha[:2] / sha
        assert path.is_file(), f"a version points at missing blob {sha}"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == sha, f"blob {sha} is partial"
    existing = {(m, v) for m, v, *_ in versions}
    for model_id, alias, version in aliases:
        assert (model_id, version) in existing, f"alias {alias} points at missing {version}"
    stored = {p.name for p in blobs_dir.glob("*/*")}
    assert stored == referenced, f"blobs without a version: {sorted(stored - referenced)}"
    assert list((proc.data_dir / "tmp").iterdir()) == [], "temporary files left"
    # And what the server says matches the rows: no partial version is visible.
    with grpc.insecure_channel(proc.target) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        listed = stub.ListModels(pb.ListModelsRequest(), timeout=10).models
        assert sum(len(m.versions) for m in listed) == len(versions)
        for model in listed:
            for v in stub.GetModel(pb.GetModelRequest(name=model.name), timeout=10).versions:
                assert v.signature.inputs and v.weights.sha256 in referenced
    return len(versions)


def _start(data_dir) -> KerveProcess:
    return KerveProcess(data_dir, "--role", "registry", "--orphan-grace", "0", plugins=())


@pytest.mark.slow
def test_kill_9_at_random_points(tmp_path):
    arch, weights = _model_files(tmp_path, 12)
    data_dir = tmp_path / "data"
    rng = random.Random(12)
    started = time.monotonic()
    counts = []
    for kill in range(KILLS):
        proc = _start(data_dir)
        try:
            counts.append(check_whole(proc))
        except BaseException:
            print(proc.log())
            proc.kill()
            raise
        work = Workload(proc.target, arch, weights, seed=kill)
        work.start()
        if kill % 10 == 0 or counts[-1] < 2:
            # The validation worker is warm only seconds after start: wait for an upload
            # to commit, then kill around the next commits and deletions.
            work.uploaded.wait(60)
            time.sleep(rng.uniform(0.0, 1.0))
        else:
            time.sleep(rng.uniform(0.1, 1.2))
        proc.kill()
        work.join()
    proc = _start(data_dir)
    try:
        counts.append(check_whole(proc))
    finally:
        proc.stop()
    print(f"{KILLS} kills in {time.monotonic() - started:.0f} s; versions after each "
          f"restart: {counts}")
    assert max(counts) >= 3  # uploads did commit between kills


@pytest.fixture(scope="module")
def corrupted(tmp_path_factory, built):
    """A serving server with two models; one's weights blob is then corrupted on disk."""
    from kerve.clients.client import Client

    tmp = tmp_path_factory.mktemp("corrupt")
    proc = KerveProcess(tmp / "data")
    with Client(proc.target, timeout=120) as client:
        for name, seed in (("intact", 1), ("corrupt", 2)):
            arch, weights = built("linear_sequential", seed=seed).save(tmp / name)
            client.upload(name, architecture=arch, weights=weights)
            wait_ready(client, name)
    yield proc
    proc.stop()


def test_corrupt_blob_is_data_loss(corrupted, built):
    from kerve.clients.client import Client

    with Client(corrupted.target, timeout=60) as client:
        version = client.get_model("corrupt")["versions"][0]
        blob = corrupted.data_dir / "blobs" / version["weights_sha256"][:2] / \
            version["weights_sha256"]
        data = bytearray(blob.read_bytes())
        data[len(data) // 2] ^= 0xFF
        blob.write_bytes(bytes(data))
        # Unloaded and loaded again, the version is read from the store anew.
        import tritonclient.grpc as grpcclient

        triton = grpcclient.InferenceServerClient(corrupted.target)
        triton.unload_model("corrupt")
        with pytest.raises(Exception) as e:
            triton.load_model("corrupt")
        assert "DATA_LOSS" in str(e.value) and "no longer matches its sha256" in str(e.value)
        status = client.get_model("corrupt")["versions"][0]
        assert status["status"] == "FAILED" and "sha256" in status["status_message"]
        b = built("linear_sequential", seed=2)
        with pytest.raises(grpc.RpcError) as e:
            client.predict("corrupt", {b.input_names[0]: b.inputs})
        assert e.value.code() == grpc.StatusCode.DATA_LOSS
        b1 = built("linear_sequential", seed=1)
        out = client.predict("intact", {b1.input_names[0]: b1.inputs})
        np.testing.assert_allclose(next(iter(out.values())), b1.outputs[0], rtol=1e-5, atol=1e-5)
        triton.close()
