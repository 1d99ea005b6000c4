"""Blobs in S3-compatible storage (AWS S3, SeaweedFS, MinIO), keyed ``PREFIX/SHA256``, with a
local cache of verified files.

Every byte is hashed as it moves: on upload (a mismatch deletes the object and raises
DataLossError) and on download (a mismatch leaves nothing in the cache). A file is in the
cache, under its sha256, only once its bytes matched that name, so a restarted server trusts
the cache by name and does not download again. Uploads are multipart, streamed from the file:
memory stays O(part size), not O(model).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO, Self

from kerve.registry.blobs import StoreUnavailableError, _check, verify_file
from kerve.registry.errors import DataLossError, NotFoundError

log = logging.getLogger(__name__)

MiB = 1 << 20
_CHUNK = 1 * MiB
_MISSING = {"404", "NoSuchKey", "NotFound"}
_BAD_CREDENTIALS = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken",
                    "ExpiredToken", "InvalidClientTokenId", "AuthorizationHeaderMalformed"}


class _HashingReader:
    """A non-seekable reader over a file that hashes what is read, so that the hash is of
    exactly the bytes handed to the uploader, each once, in order."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self.sha = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self.sha.update(data)
        self.size += len(data)
        return data

    def seekable(self) -> bool:
        return False


class _VerifyingStream:
    """An S3 object body read as a stream, that raises DataLossError at its end if the bytes
    do not match the blob's sha256."""

    def __init__(self, body, sha256: str) -> None:
        self._body = body
        self._expected = sha256
        self._sha = hashlib.sha256()
        self._done = False

    def read(self, n: int = -1) -> bytes:
        data = self._body.read() if n is None or n < 0 else self._body.read(n)
        self._sha.update(data)
        if not data or n is None or n < 0:
            self._finish()
        return data

    def _finish(self) -> None:
        if not self._done:
            self._done = True
            if self._sha.hexdigest() != self._expected:
                raise DataLossError(f"blob {self._expected} in the store does not match its "
                                    f"sha256 (read {self._sha.hexdigest()})")

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._body.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class S3BlobStore:
    """Blobs as objects ``s3://bucket/prefix/SHA256``, cached as ``cache_dir/ab/SHA256``."""

    def __init__(self, bucket: str, prefix: str = "", *, cache_dir: Path,
                 endpoint_url: str | None = None, region: str | None = None,
                 part_size: int = 8 * MiB, max_concurrency: int = 4) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.endpoint_url = endpoint_url
        self.region = region
        self.part_size = max(int(part_size), 5 * MiB)  # S3's smallest part
        self.max_concurrency = max(int(max_concurrency), 1)
        s3 = {"addressing_style": "path"} if endpoint_url else {}
        self._session = boto3.session.Session()
        self.client = self._session.client(
            "s3", endpoint_url=endpoint_url, region_name=region,
            config=Config(s3=s3, retries={"max_attempts": 5, "mode": "standard"},
                          connect_timeout=10, read_timeout=60))
        # check(): fail fast, one attempt.
        self._probe = self._session.client(
            "s3", endpoint_url=endpoint_url, region_name=region,
            config=Config(s3=s3, retries={"total_max_attempts": 1}, connect_timeout=3,
                          read_timeout=5))

    def __repr__(self) -> str:
        return f"S3BlobStore(s3://{self.bucket}/{self.prefix}, cache={self.cache_dir})"

    # --- names ------------------------------------------------------------------------

    def key(self, sha256: str) -> str:
        _check(sha256)
        return f"{self.prefix}/{sha256}" if self.prefix else sha256

    def cache_path(self, sha256: str) -> Path:
        _check(sha256)
        return self.cache_dir / sha256[:2] / sha256

    def _where(self) -> str:
        return self.endpoint_url or f"AWS S3 ({self.region or self.client.meta.region_name})"

    def _missing(self, sha256: str) -> NotFoundError:
        return NotFoundError(f"blob {sha256} is missing from the store")

    # --- the BlobStore protocol -------------------------------------------------------

    def put(self, sha256: str, source: Path) -> None:
        """Upload ``source`` in parts, hashing it on the way; then keep it as the cache
        entry (the uploading replica need not download it again)."""
        from boto3.s3.transfer import TransferConfig

        key = self.key(sha256)
        source = Path(source)
        if self.exists(sha256):
            self._keep(sha256, source)
            return
        config = TransferConfig(multipart_threshold=self.part_size,
                                multipart_chunksize=self.part_size,
                                max_concurrency=self.max_concurrency,
                                preferred_transfer_client="classic")
        # Parts read ahead and held in memory at once: the bound on memory.
        config.max_in_memory_upload_chunks = self.max_concurrency
        with open(source, "rb") as f:
            reader = _HashingReader(f)
            self._call("upload", lambda: self.client.upload_fileobj(
                reader, self.bucket, key, Config=config))
        digest = reader.sha.hexdigest()
        if digest != sha256:
            self._call("delete", lambda: self.client.delete_object(Bucket=self.bucket, Key=key))
            raise DataLossError(f"blob {sha256}: the file uploaded has sha256 {digest}; "
                                "the object was deleted")
        self._cache_file(sha256, source, move=True)

    def _keep(self, sha256: str, source: Path) -> None:
        """The object exists already: cache the local copy if its bytes match, then drop it."""
        try:
            if not self.cache_path(sha256).exists() and _sha256_of(source) == sha256:
                self._cache_file(sha256, source, move=True)
        finally:
            source.unlink(missing_ok=True)

    def exists(self, sha256: str) -> bool:
        from botocore.exceptions import ClientError

        key = self.key(sha256)
        try:
            self._call("head", lambda: self.client.head_object(Bucket=self.bucket, Key=key),
                       passthrough=True)
            return True
        except ClientError as e:
            if _code(e) in _MISSING:
                return False
            raise self._unavailable("head", e) from None

    def open(self, sha256: str) -> BinaryIO:
        """The cached file if there is one, else the object streamed from S3 (verified
        against its sha256 when read to the end)."""
        try:
            return open(self.cache_path(sha256), "rb")
        except FileNotFoundError:
            pass
        return _VerifyingStream(self._get(sha256), sha256)  # type: ignore[return-value]

    def local_path(self, sha256: str) -> Path:
        """The cached file; downloaded, verified and cached first if it is not there."""
        final = self.cache_path(sha256)
        if final.exists():
            try:
                verify_file(final, sha256)
                return final
            except DataLossError:  # the cache went bad, not the store: fetch it again
                log.warning("cached blob %s is corrupt; downloading it again", sha256)
                final.unlink(missing_ok=True)
        final.parent.mkdir(parents=True, exist_ok=True)
        body = self._get(sha256)
        fd, tmp_name = tempfile.mkstemp(dir=final.parent, prefix=f".{sha256}.", suffix=".part")
        tmp = Path(tmp_name)
        try:
            sha = hashlib.sha256()
            with os.fdopen(fd, "wb") as out, body:
                while chunk := self._call("download", lambda: body.read(_CHUNK)):
                    sha.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if sha.hexdigest() != sha256:
                raise DataLossError(f"blob {sha256} in the store does not match its sha256 "
                                    f"(downloaded {sha.hexdigest()}); not cached")
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        return final

    def delete(self, sha256: str) -> None:
        key = self.key(sha256)
        self._call("delete", lambda: self.client.delete_object(Bucket=self.bucket, Key=key))
        self.cache_path(sha256).unlink(missing_ok=True)

    def list_blobs(self):
        """Every object under the prefix whose name is a sha256, with its LastModified."""
        prefix = f"{self.prefix}/" if self.prefix else ""
        paginator = self.client.get_paginator("list_objects_v2")
        for page in self._call("list", lambda: list(paginator.paginate(Bucket=self.bucket,
                                                                        Prefix=prefix))):
            for obj in page.get("Contents", ()):
                name = obj["Key"].rsplit("/", 1)[-1]
                if len(name) == 64 and all(c in "0123456789abcdef" for c in name):
                    yield name, obj["LastModified"].timestamp()

    def check(self) -> None:
        """head_bucket, failing fast, with one line that says what is wrong."""
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        where = f"cannot reach S3 bucket {self.bucket!r} at {self._where()}"
        try:
            self._probe.head_bucket(Bucket=self.bucket)
        except NoCredentialsError:
            raise StoreUnavailableError(
                f"{where}: no credentials (set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"
            ) from None
        except ClientError as e:
            code = _code(e)
            if code in {"403", "AccessDenied", "Forbidden"}:
                code = self._why_forbidden() or code
            raise StoreUnavailableError(f"{where}: {_explain(code)}") from None
        except BotoCoreError as e:
            raise StoreUnavailableError(f"{where}: endpoint unreachable ({_one_line(e)})") \
                from None
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.cache_dir, prefix=".check-"):
                pass
        except OSError as e:
            raise StoreUnavailableError(
                f"blob cache folder {self.cache_dir} is not writable: {e.strerror or e}") \
                from None

    def _why_forbidden(self) -> str | None:
        """HEAD answers carry no error code: ask once more with a request whose answer does."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._probe.list_objects_v2(Bucket=self.bucket, MaxKeys=1)
        except ClientError as e:
            return _code(e)
        except BotoCoreError:
            return None
        return None

    # --- helpers ----------------------------------------------------------------------

    def _get(self, sha256: str):
        from botocore.exceptions import ClientError

        key = self.key(sha256)
        try:
            return self._call("get", lambda: self.client.get_object(
                Bucket=self.bucket, Key=key)["Body"], passthrough=True)
        except ClientError as e:
            if _code(e) in _MISSING:
                raise self._missing(sha256) from None
            raise self._unavailable("get", e) from None

    def _call(self, what: str, fn, *, passthrough: bool = False):
        """Run one S3 call; errors that mean the store cannot be used become
        StoreUnavailableError (ClientError passes through where the caller sorts it)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn()
        except ClientError as e:
            if passthrough:
                raise
            raise self._unavailable(what, e) from None
        except BotoCoreError as e:
            raise StoreUnavailableError(
                f"S3 {what} on bucket {self.bucket!r} at {self._where()} failed: "
                f"{_one_line(e)}") from None

    def _unavailable(self, what: str, e: Exception) -> StoreUnavailableError:
        return StoreUnavailableError(f"S3 {what} on bucket {self.bucket!r} at {self._where()} "
                                     f"failed: {_explain(_code(e))}")

    def _cache_file(self, sha256: str, source: Path, *, move: bool) -> None:
        """Put a file whose bytes are known to match ``sha256`` into the cache, atomically."""
        final = self.cache_path(sha256)
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            if move:
                os.replace(source, final)  # same filesystem: atomic, no copy
                return
        except OSError:
            pass
        fd, tmp_name = tempfile.mkstemp(dir=final.parent, prefix=f".{sha256}.", suffix=".part")
        tmp = Path(tmp_name)
        try:
            with open(source, "rb") as src, os.fdopen(fd, "wb") as dst:
                shutil.copyfileobj(src, dst, _CHUNK)
                dst.flush()
                os.fsync(dst.fileno())
            os.replace(tmp, final)
            if move:
                source.unlink(missing_ok=True)
        finally:
            tmp.unlink(missing_ok=True)


def _sha256_of(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            sha.update(chunk)
    return sha.hexdigest()


def _code(e: Exception) -> str:
    return str(getattr(e, "response", {}).get("Error", {}).get("Code", "")) or type(e).__name__


def _explain(code: str) -> str:
    if code in _BAD_CREDENTIALS:
        return f"{code} (check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"
    if code in {"404", "NoSuchBucket", "NotFound"}:
        return "NoSuchBucket (the bucket must exist; create it first)"
    if code in {"403", "AccessDenied", "Forbidden"}:
        return "AccessDenied (the credentials are not allowed to use this bucket)"
    return code


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())
