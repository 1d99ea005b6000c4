"""The shared stores (S3 blobs, PostgreSQL metadata) against real services (tests/stores.py),
and the same behavioural checks against the embedded ones (a blob folder, SQLite): the shared
stores must behave exactly like the default. Small files, no TensorFlow."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import socket
import threading
import time
import tracemalloc
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from kerve.registry.blobs import LocalBlobStore, StoreUnavailableError, open_blob_store
from kerve.registry.database import (
    Blob,
    Database,
    DatabaseUnavailableError,
    NewVersion,
)
from kerve.registry.errors import DataLossError, FailedPreconditionError, NotFoundError
from kerve.registry.s3_blobs import S3BlobStore
from kerve.registry.signature import Signature

MiB = 1 << 20


def _file(dir: Path, data: bytes, name: str = "src") -> tuple[Path, str]:
    path = dir / name
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def _one_line(e: BaseException) -> str:
    message = str(e)
    assert message and "\n" not in message, repr(message)
    return message


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- blob stores ----------------------------------------------------------------------------


@pytest.fixture
def s3(s3_store, monkeypatch):
    """The S3 service with its credentials in the environment (the standard AWS chain)."""
    for name, value in s3_store.env().items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    return s3_store


@pytest.fixture
def make_s3(s3, tmp_path):
    """New S3BlobStore objects: on a fresh prefix, or on ``url`` / ``cache_dir`` to share."""
    def make(url: str | None = None, cache_dir: Path | None = None, **kwargs) -> S3BlobStore:
        store = open_blob_store(url or s3.new_url(), cache_dir=cache_dir or tmp_path / "cache",
                                s3_endpoint=s3.endpoint, s3_region=s3.region)
        for name, value in kwargs.items():
            setattr(store, name, value)
        return store
    return make


@pytest.fixture(params=["local", "s3"])
def blobs(request, tmp_path):
    if request.param == "local":
        return open_blob_store(str(tmp_path / "blobs"), cache_dir=tmp_path / "unused",
                               s3_endpoint="http://ignored", s3_region="ignored")
    return request.getfixturevalue("make_s3")()


def test_open_blob_store_urls(tmp_path):
    assert isinstance(open_blob_store(f"file://{tmp_path}/a", cache_dir=tmp_path),
                      LocalBlobStore)
    store = open_blob_store("s3://bucket/some/prefix/", cache_dir=tmp_path / "c",
                            s3_endpoint="http://127.0.0.1:1", s3_region="eu-west-1")
    assert isinstance(store, S3BlobStore)
    assert (store.bucket, store.prefix) == ("bucket", "some/prefix")
    assert store.key("ab" * 32) == "some/prefix/" + "ab" * 32
    with pytest.raises(ValueError, match="unsupported"):
        open_blob_store("ftp://x/y", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="no bucket"):
        open_blob_store("s3:///prefix", cache_dir=tmp_path)


def test_round_trip(blobs, tmp_path):
    blobs.check()
    data = os.urandom(300_000)
    src, sha = _file(tmp_path, data)
    assert not blobs.exists(sha)
    blobs.put(sha, src)
    assert not src.exists(), "put consumes the source file"
    assert blobs.exists(sha)
    with blobs.open(sha) as f:
        assert f.read() == data
    assert blobs.local_path(sha).read_bytes() == data
    again, _ = _file(tmp_path, data, "again")
    blobs.put(sha, again)  # the same blob twice: fine, consumed
    assert not again.exists()
    blobs.delete(sha)
    assert not blobs.exists(sha)
    for read in (blobs.open, blobs.local_path):
        with pytest.raises(NotFoundError, match=f"blob {sha} is missing from the store"):
            read(sha)
    blobs.delete(sha)  # deleting what is gone is not an error


def test_local_check_says_why(tmp_path):
    store = LocalBlobStore(tmp_path / "blobs")
    store.check()
    store.root.rmdir()
    store.root.write_text("a file where the folder should be")
    with pytest.raises(StoreUnavailableError, match="is not writable") as e:
        store.check()
    _one_line(e.value)


def test_s3_put_is_multipart_and_memory_is_per_part(make_s3, s3, tmp_path):
    """A 40 MiB file in 5 MiB parts, 2 at a time: the test process's traced memory peaks
    under 4 parts (20 MiB), half the file; the download peaks under 4 MiB."""
    part = 5 * MiB
    store = make_s3(part_size=part, max_concurrency=2)
    src, sha = _file(tmp_path, os.urandom(40 * MiB))
    tracemalloc.start()
    try:
        store.put(sha, src)
        _, put_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    head = s3.client().head_object(Bucket=store.bucket, Key=store.key(sha))
    assert head["ContentLength"] == 40 * MiB
    assert head["ETag"].strip('"').endswith("-8"), f"not 8 parts: {head['ETag']}"
    print(f"put 40 MiB in 5 MiB parts: peak traced memory {put_peak / MiB:.1f} MiB")
    assert put_peak < 4 * part, f"{put_peak / MiB:.1f} MiB"
    assert store.cache_path(sha).exists(), "the uploader keeps its file as the cache entry"

    store.cache_path(sha).unlink()
    tracemalloc.start()
    try:
        path = store.local_path(sha)
        _, get_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"download 40 MiB: peak traced memory {get_peak / MiB:.1f} MiB")
    assert get_peak < 4 * MiB, f"{get_peak / MiB:.1f} MiB"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha


def test_s3_put_refuses_a_wrong_sha256(make_s3, s3, tmp_path):
    store = make_s3(part_size=5 * MiB)
    for size in (1000, 11 * MiB):  # one PUT, and multipart
        src, _ = _file(tmp_path, os.urandom(size))
        wrong = hashlib.sha256(b"something else").hexdigest()
        with pytest.raises(DataLossError, match=wrong):
            store.put(wrong, src)
        assert not store.exists(wrong), "the object was deleted"
        assert not store.cache_path(wrong).exists()
        listing = s3.client().list_objects_v2(Bucket=store.bucket, Prefix=store.prefix + "/")
        assert listing.get("KeyCount", 0) == 0


def _cache_files(store: S3BlobStore) -> list[Path]:
    return [p for p in store.cache_dir.rglob("*") if p.is_file()]


def test_s3_corrupt_object_is_refused_and_not_cached(make_s3, s3, tmp_path):
    store = make_s3()
    data = os.urandom(2 * MiB + 17)
    src, sha = _file(tmp_path, data)
    store.put(sha, src)
    corrupt = bytearray(data)
    corrupt[12345] ^= 0xFF
    s3.client().put_object(Bucket=store.bucket, Key=store.key(sha), Body=bytes(corrupt))
    store.cache_path(sha).unlink()  # as on another replica
    with pytest.raises(DataLossError, match=f"blob {sha}") as e:
        store.local_path(sha)
    _one_line(e.value)
    assert _cache_files(store) == [], "nothing cached, no partial file left"
    with pytest.raises(DataLossError, match=f"blob {sha}"), store.open(sha) as f:
        while f.read(64 * 1024):
            pass


def test_s3_cache_survives_a_restart(make_s3, s3, tmp_path):
    """A new store object on the same cache folder serves a cached blob without a GET (the
    object is even deleted behind its back); an uncached one is downloaded once."""
    url, cache = s3.new_url(), tmp_path / "cache"
    first = make_s3(url, cache)
    data = os.urandom(100_000)
    src, sha = _file(tmp_path, data)
    first.put(sha, src)
    other, other_sha = _file(tmp_path, os.urandom(50_000), "other")
    first.put(other_sha, other)
    first.cache_path(other_sha).unlink()

    restarted = make_s3(url, cache)
    gets = []
    restarted.client.meta.events.register("before-parameter-build.s3.GetObject",
                                          lambda **kw: gets.append(kw["params"]["Key"]))
    s3.client().delete_object(Bucket=restarted.bucket, Key=restarted.key(sha))
    assert restarted.local_path(sha).read_bytes() == data
    with restarted.open(sha) as f:
        assert f.read() == data
    assert gets == []
    restarted.local_path(other_sha)
    restarted.local_path(other_sha)
    assert gets == [restarted.key(other_sha)], "downloaded once, then from the cache"


def test_s3_check_says_why_in_one_line(make_s3, s3, tmp_path, monkeypatch):
    make_s3().check()
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(StoreUnavailableError, match="AWS_ACCESS_KEY_ID") as e:
        make_s3().check()
    assert f"cannot reach S3 bucket 'kerve-test' at {s3.endpoint}" in _one_line(e.value)
    assert "SignatureDoesNotMatch" in str(e.value)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "nobody")
    with pytest.raises(StoreUnavailableError, match="InvalidAccessKeyId") as e:
        make_s3().check()
    _one_line(e.value)

    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    with pytest.raises(StoreUnavailableError, match="NoSuchBucket") as e:
        make_s3("s3://no-such-bucket/x").check()
    _one_line(e.value)

    unreachable = open_blob_store(s3.new_url(), cache_dir=tmp_path / "c2",
                                  s3_endpoint=f"http://127.0.0.1:{_closed_port()}",
                                  s3_region=s3.region)
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError, match="endpoint unreachable") as e:
        unreachable.check()
    assert time.monotonic() - started < 10
    _one_line(e.value)


# --- databases ------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    return request.getfixturevalue("postgres_cluster").new_database()


def _new(name: str, n: int = 0) -> NewVersion:
    return NewVersion(name=name, architecture=Blob(f"{n:064x}", 10), weights=Blob("f" * 64, 20),
                      weights_format="h5", signature=Signature(), layer_classes=["Dense"],
                      custom_objects=[], keras_version="3", tensorflow_version="2",
                      parameter_count=1, tags={"n": str(n)})


def _head_revision() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    import kerve.registry.database as database

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(database.__file__).parent / "migrations"))
    return ScriptDirectory.from_config(cfg).get_current_head()


def test_migrations_run_twice(db_url):
    Database(db_url).close()
    db = Database(db_url)
    db.migrate()
    with db.engine.connect() as conn:
        assert set(inspect(conn).get_table_names()) >= {"models", "versions", "aliases",
                                                        "alembic_version"}
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() \
            == [_head_revision()]
    db.close()


def test_versions_and_aliases_behave_alike(db_url):
    db = Database(db_url)
    assert [db.add_version(_new("m", i), []).version for i in range(3)] == [1, 2, 3]
    assert db.add_version(_new("m"), ["production"]).aliases == ["production"]
    assert db.set_alias("m", "staging", 2).aliases == {"production": 4, "staging": 2}
    with pytest.raises(FailedPreconditionError, match="staging"):
        db.delete_version("m", 2)
    db.delete_alias("m", "staging")
    db.delete_version("m", 2)
    db.delete_alias("m", "production")
    db.delete_version("m", 4)
    assert db.add_version(_new("m"), []).version == 5, "numbers are never reused"
    info, versions = db.get_model("m")
    assert info.versions == [1, 3, 5] and [v.version for v in versions] == [1, 3, 5]
    assert versions[1].tags == {"n": "2"} and versions[1].created.tzinfo is not None
    with pytest.raises(NotFoundError):
        db.set_alias("m", "x", 2)
    with pytest.raises(NotFoundError):
        db.delete_alias("nope", "x")
    assert db.blob_in_use(f"{2:064x}") and not db.blob_in_use(f"{1:064x}")  # v2 is gone
    db.close()


def _write_versions(url: str, name: str, threads: int, barrier, results) -> None:
    """One process's writers: ``threads`` concurrent add_version calls of one model."""
    db = Database(url)
    start = threading.Barrier(threads)
    got: list[int] = []

    def write() -> None:
        start.wait()
        got.append(db.add_version(_new(name), []).version)

    workers = [threading.Thread(target=write) for _ in range(threads)]
    barrier.wait()  # both processes are ready: go together
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    db.close()
    results.put(got)


def test_concurrent_writers_of_a_new_model_get_distinct_versions(db_url):
    """2 processes x 25 threads upload the same new model at once: versions 1..50, none
    refused. (Before the writes locked first, SQLite ran out of retries here: 7 of 50.)"""
    threads = 25
    Database(db_url).close()  # migrated before the race, as a running server's would be
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_write_versions, args=(db_url, "racy", threads, barrier, results))
             for _ in range(2)]
    for p in procs:
        p.start()
    got = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    versions = sorted(got[0] + got[1])
    assert versions == list(range(1, 2 * threads + 1)), versions
    db = Database(db_url)
    assert db.get_model("racy")[0].versions == list(range(1, 2 * threads + 1))
    db.close()


def _collect(seen: list[str], want: int, timeout: float = 10) -> list[str]:
    deadline = time.monotonic() + timeout
    while len(seen) < want and time.monotonic() < deadline:
        time.sleep(0.02)
    return list(seen)


def test_watch(db_url, request):
    watcher_db, writer_db = Database(db_url), Database(db_url)
    seen: list[str] = []
    stop = watcher_db.watch(seen.append)
    if db_url.startswith("sqlite"):
        assert stop is None, "SQLite: no notifications, the server polls"
        return
    try:
        writer_db.add_version(_new("a"), [])
        writer_db.add_version(_new("b"), ["production"])
        writer_db.set_alias("a", "staging", 1)
        writer_db.delete_alias("a", "staging")
        writer_db.delete_version("a", 1)
        with pytest.raises(FailedPreconditionError):
            writer_db.delete_version("b", 1)  # refused: rolled back, not announced
        assert _collect(seen, 5) == ["a", "b", "a", "a", "a"]
        time.sleep(0.3)
        assert len(seen) == 5

        # The listener's connection drops: it reconnects, says everything may have changed,
        # and hears later writes again.
        cluster = request.getfixturevalue("postgres_cluster")
        with cluster.admin() as conn:
            killed = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                  "WHERE query LIKE 'LISTEN%'").fetchall()
        assert killed
        seen.clear()
        assert set(_collect(seen, 2)) == {"a", "b"}
        seen.clear()
        deadline = time.monotonic() + 10
        while "c" not in seen and time.monotonic() < deadline:
            writer_db.add_version(_new("c"), [])  # until the new connection is listening
            time.sleep(0.2)
        assert "c" in seen
    finally:
        stop()
        watcher_db.close()
        writer_db.close()


def test_postgres_check_says_why_in_one_line(postgres_cluster):
    cluster = postgres_cluster
    Database(cluster.url()).check()
    cases = [
        (cluster.url(password="wrong"), "password authentication failed"),
        (cluster.url("no_such_db"), 'database "no_such_db" does not exist'),
        (cluster.url().replace(f":{cluster.port}/", f":{_closed_port()}/"),
         "connection refused"),
    ]
    for url, why in cases:
        with pytest.raises(DatabaseUnavailableError, match=why) as e:
            Database(url)  # opening checks first
        assert _one_line(e.value).startswith("cannot reach PostgreSQL database")
        assert e.value.code.name == "UNAVAILABLE"


def test_sqlite_check_says_why_in_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(DatabaseUnavailableError, match="cannot open SQLite database") as e:
        Database(f"sqlite:///{tmp_path / 'file' / 'registry.db'}")
    _one_line(e.value)
