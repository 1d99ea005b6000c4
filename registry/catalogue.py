"""The registry: the persistent catalogue of model versions, over a metadata store and a
blob store. Transport-free: the gRPC servicer only moves bytes in and out of it."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

from kerve.registry.archive import split_keras_archive
from kerve.registry.blobs import BlobStore
from kerve.registry.errors import DataLossError, InvalidArgumentError, ResourceExhaustedError
from kerve.registry.metadata import Blob, MetadataStore, ModelInfo, NewVersion, VersionInfo
from kerve.registry.names import VersionRef, check_alias, check_model_name
from kerve.registry.serving_options import ServingOptions, options_from_tags
from kerve.registry.validator import Validator

log = logging.getLogger(__name__)

ARCHITECTURE, WEIGHTS, KERAS_ARCHIVE = "architecture", "weights", "keras"
PART_KINDS = (ARCHITECTURE, WEIGHTS, KERAS_ARCHIVE)
MAX_TAGS, MAX_TAG_LEN, MAX_DESCRIPTION = 64, 256, 4096


@dataclass(frozen=True)
class DeclaredPart:
    kind: str
    size: int
    sha256: str


class StagedUpload:
    """An upload being received: each part streams into its own temporary file while it is
    hashed, so memory stays O(chunk). Nothing is visible until Registry.commit."""

    def __init__(self, tmp_root: Path, parts: list[DeclaredPart], max_bytes: int) -> None:
        kinds = sorted(p.kind for p in parts)
        if kinds not in ([ARCHITECTURE, WEIGHTS], [KERAS_ARCHIVE], [WEIGHTS]):
            raise InvalidArgumentError(
                "an upload is an architecture and weights, one .keras archive, or weights "
                f"alone (reusing the current architecture); got parts: {kinds or 'none'}")
        total = sum(p.size for p in parts)
        if total > max_bytes:
            raise ResourceExhaustedError(
                f"upload of {total} bytes is over the server's limit of {max_bytes}")
        for p in parts:
            if len(p.sha256) != 64 or any(c not in "0123456789abcdef" for c in p.sha256):
                raise InvalidArgumentError(
                    f"part {p.kind}: sha256 must be 64 lowercase hex digits, got {p.sha256!r}")
        self.parts = {p.kind: p for p in parts}
        self.dir = Path(tempfile.mkdtemp(prefix="upload-", dir=tmp_root))
        self.paths = {k: self.dir / f"part-{k}" for k in self.parts}
        self._files: dict[str, BinaryIO] = {k: open(p, "wb") for k, p in self.paths.items()}
        self._hashes = {k: hashlib.sha256() for k in self.parts}
        self._sizes = dict.fromkeys(self.parts, 0)

    def write(self, kind: str, data: bytes) -> None:
        if kind not in self.parts:
            raise InvalidArgumentError(f"chunk for part {kind!r}, which the header did not declare")
        self._sizes[kind] += len(data)
        if self._sizes[kind] > self.parts[kind].size:
            raise InvalidArgumentError(
                f"part {kind} is longer than the {self.parts[kind].size} bytes declared")
        self._files[kind].write(data)
        self._hashes[kind].update(data)

    def finish(self) -> None:
        """Check every part arrived whole and matches its sha256 (else DATA_LOSS)."""
        for f in self._files.values():
            f.close()
        for kind, part in self.parts.items():
            if self._sizes[kind] != part.size:
                raise DataLossError(
                    f"part {kind}: received {self._sizes[kind]} of {part.size} bytes declared")
            digest = self._hashes[kind].hexdigest()
            if digest != part.sha256:
                raise DataLossError(
                    f"part {kind}: sha256 mismatch (header {part.sha256}, received {digest})")

    def discard(self) -> None:
        for f in self._files.values():
            f.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _hash_file(path: Path) -> Blob:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return Blob(digest.hexdigest(), size)


class Registry:
    """Upload, list, resolve, alias and delete versions. Async: blocking work runs in
    threads, validation in the validator's worker."""

    def __init__(self, metadata: MetadataStore, blobs: BlobStore, validator: Validator,
                 tmp_dir: Path, *, max_upload_bytes: int) -> None:
        self.metadata = metadata
        self.blobs = blobs
        self.validator = validator
        self.tmp_dir = Path(tmp_dir)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.max_upload_bytes = max_upload_bytes
        self._listeners: list[Callable[[str], None]] = []

    def on_change(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(model_name)`` after a version or alias of a model changes here."""
        self._listeners.append(listener)

    def _changed(self, name: str) -> None:
        for listener in self._listeners:
            listener(name)

    def stage(self, parts: list[DeclaredPart]) -> StagedUpload:
        return StagedUpload(self.tmp_dir, parts, self.max_upload_bytes)

    async def commit(self, staged: StagedUpload, name: str, *, aliases: list[str],
                     description: str = "", tags: dict[str, str] | None = None) -> VersionInfo:
        """Validate a finished upload and make it a version. Leaves nothing behind on failure."""
        tags = dict(tags or {})
        try:
            check_upload_header(name, aliases, description, tags)
            staged.finish()
            architecture, weights = await self._parts(staged, name)
            report = await self.validator.validate(architecture, weights)
            arch_blob, weights_blob = await asyncio.gather(
                asyncio.to_thread(_hash_file, architecture), asyncio.to_thread(_hash_file, weights))
            await asyncio.to_thread(self.blobs.put, arch_blob.sha256, architecture)
            await asyncio.to_thread(self.blobs.put, weights_blob.sha256, weights)
            new = NewVersion(
                name=name, architecture=arch_blob, weights=weights_blob,
                weights_format=report.weights_format, signature=report.signature,
                layer_classes=report.layer_classes, custom_objects=report.custom_objects,
                keras_version=report.keras_version,
                tensorflow_version=report.tensorflow_version,
                parameter_count=report.parameter_count, description=description, tags=tags)
            try:
                info = await asyncio.to_thread(self.metadata.add_version, new, list(aliases))
            except BaseException:
                await asyncio.to_thread(self._collect, [arch_blob.sha256, weights_blob.sha256])
                raise
        finally:
            staged.discard()
        log.info("registered %s version %d (%d parameters)", name, info.version,
                 info.parameter_count)
        self._changed(name)
        return info

    async def _parts(self, staged: StagedUpload, name: str) -> tuple[Path, Path]:
        if KERAS_ARCHIVE in staged.paths:
            architecture, weights = staged.dir / "config.json", staged.dir / "model.weights.h5"
            await asyncio.to_thread(split_keras_archive, staged.paths[KERAS_ARCHIVE],
                                    architecture, weights, self.max_upload_bytes * 4)
            return architecture, weights
        if ARCHITECTURE in staged.paths:
            return staged.paths[ARCHITECTURE], staged.paths[WEIGHTS]
        # Weights alone: the architecture of the model's current default version.
        current = await self.resolve(VersionRef(name))
        architecture = staged.dir / "architecture.json"
        await asyncio.to_thread(shutil.copyfile,
                                self.blobs.local_path(current.architecture.sha256), architecture)
        return architecture, staged.paths[WEIGHTS]

    def _collect(self, shas: list[str]) -> None:
        """Delete blobs that no version references any more."""
        for sha in set(shas):
            if not self.metadata.blob_in_use(sha):
                self.blobs.delete(sha)

    async def list_models(self) -> list[ModelInfo]:
        return await asyncio.to_thread(self.metadata.list_models)

    async def get_model(self, name: str) -> tuple[ModelInfo, list[VersionInfo]]:
        return await asyncio.to_thread(self.metadata.get_model, check_model_name(name))

    async def resolve(self, ref: VersionRef) -> VersionInfo:
        return await asyncio.to_thread(self.metadata.resolve, ref)

    async def set_alias(self, name: str, alias: str, version: int) -> ModelInfo:
        info = await asyncio.to_thread(self.metadata.set_alias, check_model_name(name), alias,
                                       version)
        self._changed(name)
        return info

    async def delete_alias(self, name: str, alias: str) -> ModelInfo:
        info = await asyncio.to_thread(self.metadata.delete_alias, check_model_name(name),
                                       check_alias(alias))
        self._changed(name)
        return info

    async def delete_version(self, name: str, version: int) -> VersionInfo:
        info = await asyncio.to_thread(self.metadata.delete_version, check_model_name(name),
                                       version)
        await asyncio.to_thread(self._collect, [info.architecture.sha256, info.weights.sha256])
        self._changed(name)
        return info

    def open_blob(self, sha256: str) -> BinaryIO:
        return self.blobs.open(sha256)


def check_upload_header(name: str, aliases: list[str], description: str,
                        tags: dict[str, str]) -> None:
    """Refuse a bad name, alias, description or tag before any byte is received."""
    check_model_name(name)
    for alias in aliases:
        check_alias(alias)
    if len(tags) > MAX_TAGS:
        raise InvalidArgumentError(f"at most {MAX_TAGS} tags")
    for k, v in tags.items():
        if not k or len(k) > MAX_TAG_LEN or len(v) > MAX_TAG_LEN:
            raise InvalidArgumentError(f"tag {k!r}: keys must be 1-{MAX_TAG_LEN} characters, "
                                       f"values at most {MAX_TAG_LEN}")
    if len(description) > MAX_DESCRIPTION:
        raise InvalidArgumentError(f"description is longer than {MAX_DESCRIPTION} characters")
    options_from_tags(tags, ServingOptions())  # refuses unknown kerve.* tags and bad values
