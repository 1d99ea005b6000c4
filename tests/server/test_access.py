"""Access control, finished: tokens with names, reloaded on a file change or SIGHUP without
a restart; every write recorded with the token that made it; and, without tokens, writes
only from this machine unless the operator opened the server."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

import grpc
import pytest

from kerve.protos.kerve.registry.v1 import registry_pb2 as pb
from kerve.protos.kerve.registry.v1 import registry_pb2_grpc
from tests.kerve_process import KerveProcess
from tests.server.helpers import wait_ready

TOKENS = "reader: read\nwriter: {scope: write, name: ci}\nboss: {scope: admin, name: ops}\n"


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("access")
    tokens = tmp / "tokens.yaml"
    tokens.write_text(TOKENS)
    proc = KerveProcess(tmp / "data", "--tokens", str(tokens))
    proc.tokens_file = tokens
    yield proc
    proc.stop()


def _client(proc, token):
    from kerve.clients.client import Client

    return Client(proc.target, token=token, timeout=60)


def _code(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as e:
        call()
    return e.value.code()


def _until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _works(proc, token) -> bool:
    with _client(proc, token) as c:
        try:
            c.list_models()
            return True
        except grpc.RpcError:
            return False


def test_writes_record_the_token_name(secured, built, tmp_path, capsys):
    import tritonclient.grpc as grpcclient

    from kerve.clients.cli import main

    arch, weights = built("linear_sequential").save(tmp_path)
    with _client(secured, "writer") as writer, _client(secured, "boss") as boss:
        v = writer.upload("audited", architecture=arch, weights=weights)
        assert v["created_by"] == "ci"
        writer.set_alias("audited", "staging", v["version"])
        writer.delete_alias("audited", "staging")
        wait_ready(boss, "audited")
        triton = grpcclient.InferenceServerClient(secured.target)
        auth = {"authorization": "Bearer boss"}
        triton.unload_model("audited", headers=auth)
        triton.load_model("audited", headers=auth)
        triton.close()
        v2 = writer.upload("audited", architecture=arch, weights=weights)
        boss.delete_version("audited", v2["version"])
        writes = boss.get_model("audited")["writes"]
    assert [(w["action"], w["actor"]) for w in reversed(writes)] == [
        ("upload", "ci"), ("set_alias", "ci"), ("delete_alias", "ci"), ("unload", "ops"),
        ("load", "ops"), ("upload", "ci"), ("delete_version", "ops")]
    assert main(["models", "show", "audited", "--server", secured.target,
                 "--token", "reader"]) == 0
    shown = capsys.readouterr().out
    assert "by ci" in shown and "delete_version 2  by ops" in shown


def test_tokens_reload_on_change_and_sighup(secured):
    path = secured.tokens_file
    assert not _works(secured, "late1")
    path.write_text(TOKENS + "late1: read\n")  # a file change: picked up by the watch
    _until(lambda: _works(secured, "late1"))

    # Same size, same mtime, same inode: invisible to the watch; SIGHUP reloads it.
    stat = path.stat()
    path.write_text(TOKENS + "late2: read\n")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    time.sleep(1.5)
    assert _works(secured, "late1") and not _works(secured, "late2")
    os.kill(secured.proc.pid, signal.SIGHUP)
    _until(lambda: _works(secured, "late2"))
    assert not _works(secured, "late1")

    path.write_text("late2: [not a scope\n")  # malformed: refused, the old tokens stay
    _until(lambda: "tokens file not reloaded" in secured.log())
    assert _works(secured, "late2") and _works(secured, "reader")
    path.write_text(TOKENS)
    _until(lambda: not _works(secured, "late2"))


def test_reload_does_not_disturb_a_call_in_flight(secured, built, tmp_path):
    """An upload admitted under the old tokens finishes after its token is removed."""
    import hashlib

    arch, weights = built("linear_sequential").save(tmp_path)
    parts = [(pb.ARCHITECTURE, arch.read_bytes()), (pb.WEIGHTS, weights.read_bytes())]
    removed = threading.Event()

    def requests():
        yield pb.UploadModelRequest(header=pb.UploadHeader(name="inflight", parts=[
            pb.PartInfo(kind=k, size=len(d), sha256=hashlib.sha256(d).hexdigest())
            for k, d in parts]))
        yield pb.UploadModelRequest(chunk=pb.UploadChunk(kind=parts[0][0], data=parts[0][1]))
        secured.tokens_file.write_text("reader: read\n")  # the writer's token goes
        _until(lambda: not _works(secured, "boss"))
        removed.set()
        yield pb.UploadModelRequest(chunk=pb.UploadChunk(kind=parts[1][0], data=parts[1][1]))

    try:
        with grpc.insecure_channel(secured.target) as channel:
            stub = registry_pb2_grpc.RegistryServiceStub(channel)
            response = stub.UploadModel(requests(), timeout=120,
                                        metadata=(("authorization", "Bearer writer"),))
        assert removed.is_set() and response.version.created_by == "ci"
    finally:
        secured.tokens_file.write_text(TOKENS)
        _until(lambda: _works(secured, "boss"))


def _outside_address() -> str | None:
    """An address of this machine other than loopback, if it has one."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))  # no packet is sent: picks the route's address
            address = s.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") else address


@pytest.fixture(scope="module")
def open_servers(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("open")
    default = KerveProcess(tmp / "default", "--role", "registry", plugins=())
    opened = KerveProcess(tmp / "opened", "--role", "registry", "--allow-open-writes",
                          plugins=())
    yield default, opened
    default.stop()
    opened.stop()


def _set_alias_code(target: str) -> grpc.StatusCode:
    with grpc.insecure_channel(target) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        stub.ListModels(pb.ListModelsRequest(), timeout=10)  # reads are open
        try:
            stub.SetAlias(pb.SetAliasRequest(name="nothing", alias="a", version=1), timeout=10)
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


def test_open_server_takes_writes_only_from_loopback(open_servers):
    default, opened = open_servers
    # Loopback: the write reaches the registry (which answers NOT_FOUND for this model).
    assert _set_alias_code(default.target) == grpc.StatusCode.NOT_FOUND
    assert "writes only from this machine" in default.log()
    assert "access: OPEN" in opened.log()
    assert _set_alias_code(opened.target) == grpc.StatusCode.NOT_FOUND


def test_open_server_refuses_outside_writes(tmp_path):
    outside = _outside_address()
    if outside is None:
        pytest.skip("this machine has no non-loopback address to call from")
    default = KerveProcess(tmp_path / "d", "--role", "registry", "--host", "0.0.0.0",
                           plugins=())
    opened = KerveProcess(tmp_path / "o", "--role", "registry", "--host", "0.0.0.0",
                          "--allow-open-writes", plugins=())
    try:
        code = _set_alias_code(f"{outside}:{default.port}")
        assert code == grpc.StatusCode.PERMISSION_DENIED
        assert _set_alias_code(f"{outside}:{opened.port}") == grpc.StatusCode.NOT_FOUND
    finally:
        default.stop()
        opened.stop()


@pytest.mark.parametrize("peer", [
    "ipv4:127.0.0.1:5000", "ipv4:127.3.2.1:1", "ipv6:[::1]:5000", "ipv6:%5B::1%5D:5000",
    "ipv6:[::ffff:127.0.0.1]:5000", "ipv6:%5B::ffff:127.0.0.1%5D:5000", "unix:/tmp/kerve.sock",
    "unix-abstract:kerve"])
def test_every_loopback_peer_form_is_loopback(peer):
    from kerve.server.interceptors import is_loopback

    assert is_loopback(peer)


@pytest.mark.parametrize("peer", [
    "ipv4:10.0.0.5:5000", "ipv6:[fd00::2]:5000", "ipv6:%5Bfd00::2%5D:5000",
    "ipv6:%5B::ffff:10.0.0.5%5D:5000", "ipv4:localhost:1", "", "garbage"])
def test_outside_peers_are_not_loopback(peer):
    from kerve.server.interceptors import is_loopback

    assert not is_loopback(peer)


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_open_server_takes_writes_from_localhost_over_ipv4_and_ipv6(tmp_path):
    """The CLI's default address is localhost:8500, which gRPC resolves to ::1 and 127.0.0.1
    and balances over; the default host, localhost, listens on both: every write from
    either is taken (gRPC writes the IPv6 peer URL-escaped, ipv6:%5B::1%5D:PORT)."""
    if not _has_ipv6_loopback():
        pytest.skip("this machine has no IPv6 loopback")
    proc = KerveProcess(tmp_path / "d", "--role", "registry", "--host", "localhost",
                        plugins=())
    try:
        assert "writes only from this machine" in proc.log()
        for target in (f"localhost:{proc.port}", f"[::1]:{proc.port}",
                       f"ipv6:[::1]:{proc.port}", f"127.0.0.1:{proc.port}"):
            for _ in range(3):
                assert _set_alias_code(target) == grpc.StatusCode.NOT_FOUND, target
    finally:
        proc.stop()


@pytest.mark.parametrize("host", ["0.0.0.0", "[::]", "::"])
def test_a_server_beyond_loopback_without_tokens_takes_no_writes(tmp_path, host):
    """Behind a proxy or sidecar (Knative's queue-proxy) every call comes from 127.0.0.1, so
    a server that listens beyond loopback cannot trust a loopback peer: no tokens, no
    writes, unless --allow-open-writes."""
    proc = KerveProcess(tmp_path / "d", "--role", "registry", "--host", host, plugins=())
    opened = KerveProcess(tmp_path / "o", "--role", "registry", "--host", host,
                          "--allow-open-writes", plugins=())
    try:
        assert "no writes, since this server listens beyond loopback" in proc.log()
        with grpc.insecure_channel(f"127.0.0.1:{proc.port}") as channel:
            stub = registry_pb2_grpc.RegistryServiceStub(channel)
            stub.ListModels(pb.ListModelsRequest(), timeout=10)  # reads are open
            with pytest.raises(grpc.RpcError) as e:
                stub.SetAlias(pb.SetAliasRequest(name="x", alias="a", version=1), timeout=10)
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "listens beyond loopback" in e.value.details()
        assert _set_alias_code(f"127.0.0.1:{opened.port}") == grpc.StatusCode.NOT_FOUND
    finally:
        proc.stop()
        opened.stop()
