"""The blob store: architecture and weights files, content-addressed by sha256.

A blob appears only complete: it is written elsewhere first and renamed (or uploaded) into
its final name. Chosen by URL: a local folder (``file:///path`` or a plain path), or
S3-compatible storage (``s3://BUCKET/PREFIX``, kerve.registry.s3_blobs) with a local cache.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from pathlib import Path
from typing import BinaryIO, Iterator, Protocol

from kerve.registry.errors import DataLossError, NotFoundError, UnavailableError

_SHA256 = re.compile(r"[0-9a-f]{64}")


class StoreUnavailableError(UnavailableError):
    """The blob store cannot be used at all (unwritable folder, unreachable bucket, wrong
    credentials); the message is one line that says which and what to check."""


class BlobStore(Protocol):
    def put(self, sha256: str, source: Path) -> None:
        """Store ``source`` (a finished temporary file, consumed) under ``sha256``."""

    def exists(self, sha256: str) -> bool: ...

    def open(self, sha256: str) -> BinaryIO:
        """Read the blob as a stream."""

    def local_path(self, sha256: str) -> Path:
        """A local file with the blob's bytes (a remote store caches it)."""

    def delete(self, sha256: str) -> None: ...

    def list_blobs(self) -> Iterator[tuple[str, float]]:
        """Every stored blob's sha256 and when it was written (epoch seconds)."""

    def check(self) -> None:
        """Raise StoreUnavailableError, with one line saying why, unless the store is usable."""


def _check(sha256: str) -> str:
    if not _SHA256.fullmatch(sha256):
        raise ValueError(f"not a sha256: {sha256!r}")
    return sha256


class LocalBlobStore:
    """Blobs as files under ``root/ab/abcdef...``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, sha256: str) -> Path:
        _check(sha256)
        return self.root / sha256[:2] / sha256

    def put(self, sha256: str, source: Path) -> None:
        final = self._path(sha256)
        if final.exists():
            source.unlink(missing_ok=True)
            # Fresh again: start-up recovery spares blobs younger than its grace, and this
            # one is about to be referenced by a row not yet committed.
            os.utime(final)
            return
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(source, final)  # atomic on one filesystem
        except OSError:
            staging = final.with_name(f".{sha256}.partial")
            with open(source, "rb") as src, open(staging, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            os.replace(staging, final)
            source.unlink(missing_ok=True)

    def exists(self, sha256: str) -> bool:
        return self._path(sha256).exists()

    def open(self, sha256: str) -> BinaryIO:
        try:
            return open(self._path(sha256), "rb")
        except FileNotFoundError:
            raise NotFoundError(f"blob {sha256} is missing from the store") from None

    def local_path(self, sha256: str) -> Path:
        """The blob's file, its content checked against its sha256 first (DATA_LOSS if it
        changed on disk): this is the path models are loaded from."""
        path = self._path(sha256)
        if not path.exists():
            raise NotFoundError(f"blob {sha256} is missing from the store")
        verify_file(path, sha256)
        return path

    def delete(self, sha256: str) -> None:
        self._path(sha256).unlink(missing_ok=True)

    def list_blobs(self) -> Iterator[tuple[str, float]]:
        """Every blob, and (removed on the way) copies a crash left half-written that are
        older than an hour: a put in progress is seconds old."""
        stale = time.time() - 3600
        for path in self.root.glob("*/*"):
            try:
                mtime = path.stat().st_mtime
            except FileNotFoundError:
                continue  # deleted meanwhile
            if _SHA256.fullmatch(path.name):
                yield path.name, mtime
            elif path.name.endswith(".partial") and mtime < stale:
                path.unlink(missing_ok=True)

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".check-"):
                pass
        except OSError as e:
            raise StoreUnavailableError(
                f"blob folder {self.root} is not writable: {e.strerror or e}") from None


def verify_file(path: Path, sha256: str) -> None:
    """DataLossError unless the file's content hashes to ``sha256``. One sequential read,
    which also puts the file in the page cache for the reader that follows; hashlib
    releases the GIL on large buffers, so serving threads keep running meanwhile."""
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        while n := f.readinto(buf):
            digest.update(view[:n])
    if digest.hexdigest() != sha256:
        raise DataLossError(f"blob {sha256} is corrupt in the store: it no longer matches its "
                            f"sha256 (its content hashes to {digest.hexdigest()})")


def open_blob_store(url: str, *, cache_dir: Path, s3_endpoint: str | None = None,
                    s3_region: str | None = None) -> BlobStore:
    """A blob store from its URL: ``file:///dir`` or a path (the other arguments are
    ignored), or ``s3://BUCKET/PREFIX`` (cached under ``cache_dir``; ``s3_endpoint`` for
    SeaweedFS, MinIO and the like; credentials from the standard AWS chain)."""
    if url.startswith("file://"):
        return LocalBlobStore(Path(url[len("file://"):]))
    if url.startswith("s3://"):
        from kerve.registry.s3_blobs import S3BlobStore

        bucket, _, prefix = url[len("s3://"):].partition("/")
        if not bucket:
            raise ValueError(f"no bucket in blob store URL {url!r} (expected s3://BUCKET/PREFIX)")
        return S3BlobStore(bucket, prefix, cache_dir=Path(cache_dir), endpoint_url=s3_endpoint,
                           region=s3_region)
    if "://" in url:
        raise ValueError(f"unsupported blob store URL {url!r} "
                         "(supported: a folder, file://, s3://BUCKET/PREFIX)")
    return LocalBlobStore(Path(url))
