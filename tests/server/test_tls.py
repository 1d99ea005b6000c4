"""TLS on the gRPC port, and mutual TLS with --tls-client-ca."""

from __future__ import annotations

import subprocess

import grpc
import pytest

from tests.kerve_process import KerveProcess


def _openssl(*args: str, cwd) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
             "ca.pem", "-days", "2", "-subj", "/CN=kerve-test-ca", cwd=d)
    (d / "san.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
                 f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", "san.cnf",
                 cwd=d)
    return d


def test_mutual_tls(pki, tmp_path):
    read = lambda name: (pki / name).read_bytes()  # noqa: E731
    with_client_cert = grpc.ssl_channel_credentials(read("ca.pem"), read("client.key"),
                                                    read("client.pem"))
    proc = KerveProcess(tmp_path, "--tls-cert", str(pki / "server.pem"), "--tls-key",
                        str(pki / "server.key"), "--tls-client-ca", str(pki / "ca.pem"),
                        credentials=with_client_cert)
    try:
        from kerve.clients.client import Client

        with Client(proc.target, credentials=with_client_cert, timeout=30) as c:
            assert c.list_models() == []
        without_cert = grpc.ssl_channel_credentials(read("ca.pem"))
        with Client(proc.target, credentials=without_cert, timeout=10) as c:
            with pytest.raises(grpc.RpcError) as e:
                c.list_models()
            assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        with Client(proc.target, timeout=10) as c:  # plaintext to a TLS port
            with pytest.raises(grpc.RpcError):
                c.list_models()
    finally:
        assert proc.stop() == 0  # SIGTERM drains and exits cleanly
    assert "stopped: drained in" in proc.log().strip().splitlines()[-1]  # the log's last line
