"""The blob store: architecture and weights files, content-addressed by sha256.

A blob appears only complete: it is written elsewhere first and renamed (or uploaded) into
its final name. Chosen by URL: a local folder (``file:///path`` or a plain path); S3-compatible
storage slots in behind the same interface.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import BinaryIO, Protocol

from kerve.registry.errors import NotFoundError

_SHA256 = re.compile(r"[0-9a-f]{64}")


class BlobStore(Protocol):
    def put(self, sha256: str, source: Path) -> None:
        """Store ``source`` (a finished temporary file, consumed) under ``sha256``."""

    def exists(self, sha256: str) -> bool: ...

    def open(self, sha256: str) -> BinaryIO:
        """Read the blob as a stream."""

    def local_path(self, sha256: str) -> Path:
        """A local file with the blob's bytes (a remote store caches it)."""

    def delete(self, sha256: str) -> None: ...


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
        path = self._path(sha256)
        if not path.exists():
            raise NotFoundError(f"blob {sha256} is missing from the store")
        return path

    def delete(self, sha256: str) -> None:
        self._path(sha256).unlink(missing_ok=True)


def open_blob_store(url: str) -> BlobStore:
    """A blob store from its URL: ``file:///dir`` or a path."""
    if url.startswith("file://"):
        return LocalBlobStore(Path(url[len("file://"):]))
    if "://" in url:
        raise ValueError(f"unsupported blob store URL {url!r} (supported: a folder, file://)")
    return LocalBlobStore(Path(url))
