"""Start-up recovery and load-time checks on both blob stores: orphan blobs older than the
grace go, younger ones and referenced ones stay, the upload temporary folder is emptied; a
blob changed on disk is DATA_LOSS where a model is loaded from."""

from __future__ import annotations

import hashlib
import os
import time

import pytest

from kerve.registry.database import Blob, Database, NewVersion
from kerve.registry.errors import DataLossError
from kerve.registry.registry import Registry
from kerve.registry.signature import Signature
from tests.registry.test_stores import blobs, make_s3, s3  # noqa: F401 (fixtures)


def _put(store, tmp_path, data: bytes) -> str:
    sha = hashlib.sha256(data).hexdigest()
    src = tmp_path / f"src-{sha[:8]}"
    src.write_bytes(data)
    store.put(sha, src)
    return sha


def test_recover_removes_orphans_after_the_grace(blobs, tmp_path):  # noqa: F811
    db = Database(f"sqlite:///{tmp_path / 'r.db'}")
    registry = Registry(db, blobs, None, tmp_path / "tmp", max_upload_bytes=1 << 20)
    used, orphan = _put(blobs, tmp_path, b"used"), _put(blobs, tmp_path, b"orphan")
    db.add_version(NewVersion(
        name="m", architecture=Blob(used, 4), weights=Blob(used, 4), weights_format="keras",
        signature=Signature(), layer_classes=[], custom_objects=[], keras_version="3",
        tensorflow_version="2", parameter_count=0), [])
    (tmp_path / "tmp" / "upload-x").mkdir()
    (tmp_path / "tmp" / "upload-x" / "part-weights").write_bytes(b"partial")

    assert registry.recover(grace_s=3600) == (1, 0)  # the orphan is younger than the grace
    assert blobs.exists(orphan) and list((tmp_path / "tmp").iterdir()) == []
    time.sleep(1.1)
    assert registry.recover(grace_s=1) == (0, 1)
    assert not blobs.exists(orphan) and blobs.exists(used)
    db.close()


def test_local_blob_changed_on_disk_is_data_loss(tmp_path):
    from kerve.registry.blobs import LocalBlobStore

    store = LocalBlobStore(tmp_path / "blobs")
    sha = _put(store, tmp_path, os.urandom(3 << 20))
    assert store.local_path(sha).stat().st_size == 3 << 20
    path = tmp_path / "blobs" / sha[:2] / sha
    data = bytearray(path.read_bytes())
    data[12345] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(DataLossError, match="no longer matches its sha256"):
        store.local_path(sha)


def test_s3_corrupt_cache_is_fetched_again(make_s3, tmp_path):  # noqa: F811
    store = make_s3()
    sha = _put(store, tmp_path, b"cached bytes")
    cached = store.local_path(sha)
    cached.write_bytes(b"rotten bytes")
    assert store.local_path(sha).read_bytes() == b"cached bytes"
