"""The registry: the persistent catalogue of model versions, over the registry database and
the blob store. Transport-free: the gRPC servicer only converts messages to and from it."""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import shutil
import time
from concurrent.futures import Executor
from pathlib import Path
from typing import AsyncIterator, Awaitable, BinaryIO, Callable

from kerve.registry import provenance
from kerve.registry.archive import split_keras_archive
from kerve.registry.audit import actor
from kerve.registry.blobs import BlobStore
from kerve.registry.database import (
    AliasMove,
    Blob,
    Database,
    ModelInfo,
    NewVersion,
    VersionInfo,
    Write,
)
from kerve.registry.diff import VersionDiff, diff_versions
from kerve.registry.errors import FailedPreconditionError, NotFoundError
from kerve.registry.limits import UploadLimits, check_architecture_size
from kerve.registry.memory import with_total
from kerve.registry.names import VersionRef, check_alias, check_model_name
from kerve.registry.serving_options import ServingOptions, options_from_tags
from kerve.registry.uploads import (
    ARCHITECTURE,
    EXAMPLES,
    KERAS_ARCHIVE,
    WEIGHTS,
    Chunk,
    StagedUpload,
    UploadHeader,
    receive,
)
from kerve.registry.validation_worker import ValidationWorker

log = logging.getLogger(__name__)


def _installed_keras() -> str:
    """The Keras version validation runs (the worker imports this installation), read
    without importing Keras into a process that may not need it."""
    try:
        return importlib.metadata.version("keras")
    except importlib.metadata.PackageNotFoundError:
        return ""


class Registry:
    """Upload, list, resolve, alias and delete versions. Async: blocking work runs in
    threads, validation in the validation worker."""

    def __init__(self, database: Database, blobs: BlobStore,
                 validation: ValidationWorker | None, tmp_dir: Path, *,
                 max_upload_bytes: int, limits: UploadLimits | None = None,
                 serving_defaults: ServingOptions | None = None,
                 bulk_executor: Executor | None = None) -> None:
        """Without a validation worker the registry is read-only (an inference replica)."""
        self.limits = limits or UploadLimits()
        self.database = database
        self.blobs = blobs
        self.validation = validation
        self.tmp_dir = Path(tmp_dir)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.max_upload_bytes = max_upload_bytes
        self.serving_defaults = serving_defaults
        # The upload's bulk work (writing and hashing chunks, splitting an archive, storing
        # blobs): threads the composition root may run at a lower priority than serving.
        self._bulk = bulk_executor
        self._listeners: list[Callable[[str], Awaitable[None]]] = []

    def on_change(self, listener: Callable[[str], Awaitable[None]]) -> None:
        """Await ``listener(model_name)`` after a version or alias of a model changes here,
        before the change's call returns: a write answered is a write this server knows."""
        self._listeners.append(listener)

    async def _changed(self, name: str) -> None:
        for listener in self._listeners:
            try:
                await listener(name)
            except Exception:  # noqa: BLE001 - the write is done; the poll catches up
                log.exception("a listener failed after a change to %s", name)

    def _check_writable(self) -> None:
        if self.validation is None:
            raise FailedPreconditionError(
                "this server runs the inference role and takes no writes: send uploads, alias "
                "moves and deletions to a server of the registry role (kerve serve --role "
                "registry or all)")

    async def upload(self, header: UploadHeader, chunks: AsyncIterator[Chunk]) -> VersionInfo:
        """Receive, verify, validate and register one upload: the one way a version is made.

        Every rule is checked once, the header's before any byte is received; the parts'
        sha256 digests are computed as the bytes arrive and kept. A refused upload leaves
        nothing behind: no version, no blob, no temporary file.
        """
        self._check_writable()
        header.check(self.max_upload_bytes)
        for part in header.parts:
            if part.kind == ARCHITECTURE:
                check_architecture_size(part.size, self.limits)
        staged = await asyncio.to_thread(StagedUpload, self.tmp_dir, header)
        try:
            verified = await receive(staged, chunks, self._bulk)
            (architecture, arch_blob), (weights, weights_blob) = \
                await self._architecture_and_weights(staged, verified, header)
            examples = staged.paths.get(EXAMPLES)
            by_source = await self._declared_producer(staged, header)
            report = await self.validation.validate(architecture, weights, examples)
            by_source.update(report.producer)
            recorded = provenance.provenance(by_source, report.plugin_modules)
            crossed = provenance.judge(recorded["producer"], report.keras_version,
                                       sources=recorded["sources"],
                                       layer_classes=report.layer_classes,
                                       weights_format=report.weights_format)
            new = NewVersion(
                name=header.name, architecture=arch_blob, weights=weights_blob,
                weights_format=report.weights_format, signature=report.signature,
                layer_classes=report.layer_classes, custom_objects=report.custom_objects,
                keras_version=report.keras_version,
                tensorflow_version=report.tensorflow_version,
                parameter_count=report.parameter_count, description=header.description,
                tags=dict(header.tags), warnings=report.warnings + crossed,
                examples=verified.get(EXAMPLES), created_by=actor(), provenance=recorded,
                memory_estimate=self._memory_estimate(report, header.tags))
            files = [(arch_blob, architecture), (weights_blob, weights)]
            if examples is not None:
                files.append((verified[EXAMPLES], examples))
            info = await self._in_bulk(self._store, new, header.aliases, staged.dir, files)
        finally:
            await asyncio.to_thread(staged.discard)
        log.info("registered %s version %d (%d parameters)", info.name, info.version,
                 info.parameter_count)
        await self._changed(info.name)
        return info

    def _memory_estimate(self, report, tags: dict[str, str]) -> dict | None:
        """The validation's estimate with its total at the largest batch the version will
        run here: the batcher's max_batch_size (the version's tag, else this server's)."""
        if not report.memory_estimate or self.serving_defaults is None:
            return report.memory_estimate or None
        rows = 1
        if report.signature.batchable:
            rows = options_from_tags(tags, self.serving_defaults).max_batch_size
        return with_total(report.memory_estimate, rows)

    async def _declared_producer(self, staged: StagedUpload,
                                 header: UploadHeader) -> dict[str, dict[str, str]]:
        """What the archive's metadata and the client say of the producer, by source. A
        refused boundary the archive shows is refused before validation runs; the client's
        word is judged after, with what the architecture and weights say, which beats it."""
        by_source = {provenance.CLIENT: provenance.check_client_producer(header.producer)}
        if KERAS_ARCHIVE in staged.paths:
            archive = await asyncio.to_thread(provenance.read_archive_metadata,
                                              staged.paths[KERAS_ARCHIVE])
            by_source[provenance.KERAS_ARCHIVE] = archive
            provenance.judge(archive, _installed_keras(),
                             sources=dict.fromkeys(archive, provenance.KERAS_ARCHIVE))
        return by_source

    async def _in_bulk(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._bulk, fn, *args)

    async def _architecture_and_weights(
            self, staged: StagedUpload, verified: dict[str, Blob],
            header: UploadHeader) -> tuple[tuple[Path, Blob], tuple[Path, Blob]]:
        """The two files validation reads, each with its verified blob."""
        if KERAS_ARCHIVE in staged.paths:
            architecture, weights = staged.dir / "config.json", staged.dir / "model.weights.h5"
            arch_blob, weights_blob = await self._in_bulk(
                split_keras_archive, staged.paths[KERAS_ARCHIVE], architecture, weights,
                self.max_upload_bytes, self.limits)
            return (architecture, arch_blob), (weights, weights_blob)
        if ARCHITECTURE in staged.paths:
            return ((staged.paths[ARCHITECTURE], verified[ARCHITECTURE]),
                    (staged.paths[WEIGHTS], verified[WEIGHTS]))
        # Weights alone: the architecture of the base version (the default unless named),
        # read where the blob store keeps it.
        try:
            current = await self.resolve(VersionRef.of(header.name, header.base))
        except NotFoundError as exc:
            raise NotFoundError(
                f"{exc.message}; weights alone reuse the architecture of a version that "
                "exists: send the architecture too (kerve upload NAME --architecture "
                "ARCH.json --weights W.h5, or a .keras archive)") from None
        path = await asyncio.to_thread(self.blobs.local_path, current.architecture.sha256)
        return (path, current.architecture), (staged.paths[WEIGHTS], verified[WEIGHTS])

    def _store(self, new: NewVersion, aliases: list[str], staged_dir: Path,
               files: list[tuple[Blob, Path]]) -> VersionInfo:
        """Put the blobs received (not those reused from the store), then the row that makes
        them a version (blocking)."""
        staged = [(blob, path) for blob, path in files if path.is_relative_to(staged_dir)]
        for blob, path in staged:
            self.blobs.put(blob.sha256, path)
        try:
            return self.database.add_version(new, list(aliases))
        except BaseException:
            self._collect([blob.sha256 for blob, _ in staged])
            raise

    def recover(self, grace_s: float) -> tuple[int, int]:
        """After a crash (blocking; at start-up, before any upload): empty the upload
        temporary folder, which only this server writes, and delete blobs that no version
        references and that are older than ``grace_s`` (an upload cut short between its
        blobs and its row, a deletion between its row and its blobs). Younger ones may be an
        upload in progress on another replica. Returns (temporary entries, blobs) removed."""
        tmp = 0
        for entry in list(self.tmp_dir.iterdir()):
            tmp += 1
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        cutoff = time.time() - grace_s
        # Listed before the rows are read: a blob put and committed in between is in both.
        candidates = [sha for sha, mtime in self.blobs.list_blobs() if mtime <= cutoff]
        referenced = self.database.referenced_blobs()
        orphans = [sha for sha in candidates if sha not in referenced]
        for sha in orphans:
            self.blobs.delete(sha)
        if tmp or orphans:
            log.warning("recovered from an unclean stop: removed %d temporary upload "
                        "file(s) and %d blob(s) no version references", tmp, len(orphans))
        return tmp, len(orphans)

    def _collect(self, shas: list[str]) -> None:
        """Delete blobs that no version references any more."""
        for sha in set(shas):
            if not self.database.blob_in_use(sha):
                self.blobs.delete(sha)

    async def list_models(self) -> list[ModelInfo]:
        return await asyncio.to_thread(self.database.list_models)

    async def search(self, *, tags: dict[str, str], layer_classes: list[str],
                     custom_objects: list[str]) -> list[VersionInfo]:
        return await asyncio.to_thread(self.database.search, tags=tags,
                                       layer_classes=layer_classes,
                                       custom_objects=custom_objects)

    async def get_model(self, name: str) -> tuple[ModelInfo, list[VersionInfo]]:
        return await asyncio.to_thread(self.database.get_model, check_model_name(name))

    async def resolve(self, ref: VersionRef) -> VersionInfo:
        return await asyncio.to_thread(self.database.resolve, ref)

    async def set_alias(self, name: str, alias: str, version: int) -> ModelInfo:
        self._check_writable()
        info = await asyncio.to_thread(self.database.set_alias, check_model_name(name), alias,
                                       version, actor())
        await self._changed(name)
        return info

    async def alias_history(self, name: str, alias: str) -> list[AliasMove]:
        moves = await asyncio.to_thread(self.database.alias_history, check_model_name(name),
                                        check_alias(alias))
        if not moves:
            await self.get_model(name)  # NOT_FOUND for an unknown model
            raise NotFoundError(f"model {name!r} has no history for alias {alias!r}")
        return moves

    async def rollback_alias(self, name: str, alias: str) -> tuple[ModelInfo, int]:
        """Move ``alias`` back to the version its last move took it from; swapped in by the
        servers as any alias move is. Returns the model and the version it now points at."""
        self._check_writable()
        last = (await self.alias_history(name, alias))[-1]
        if last.from_version is None:
            raise FailedPreconditionError(
                f"alias {alias!r} of {name!r} has no earlier version to go back to")
        info = await self.set_alias(name, alias, last.from_version)
        return info, last.from_version

    async def delete_alias(self, name: str, alias: str) -> ModelInfo:
        self._check_writable()
        info = await asyncio.to_thread(self.database.delete_alias, check_model_name(name),
                                       check_alias(alias), actor())
        await self._changed(name)
        return info

    async def delete_version(self, name: str, version: int) -> VersionInfo:
        self._check_writable()
        info = await asyncio.to_thread(self.database.delete_version, check_model_name(name),
                                       version, actor())
        await asyncio.to_thread(self._collect, [b.sha256 for b in info.blobs()])
        await self._changed(name)
        return info

    async def recent_writes(self, name: str) -> list[Write]:
        return await asyncio.to_thread(self.database.recent_writes, check_model_name(name))

    async def record_write(self, name: str, action: str, version: int | None = None) -> None:
        """Log a write made outside the registry (a load or unload), by the current actor."""
        await asyncio.to_thread(self.database.record_write, name, action, actor(), version)

    async def diff(self, name: str, a: str, b: str) -> VersionDiff:
        """What changed from version ``a`` to ``b`` (each a number, an alias, or empty for
        the default), read from the stored architectures and weights files' metadata."""
        first = await self.resolve(VersionRef.of(name, a))
        second = await self.resolve(VersionRef.of(name, b))
        return await asyncio.to_thread(self._diff, first, second)

    def _diff(self, a: VersionInfo, b: VersionInfo) -> VersionDiff:
        def read(info: VersionInfo) -> tuple[bytes, Path]:
            architecture = self.blobs.local_path(info.architecture.sha256).read_bytes()
            return architecture, self.blobs.local_path(info.weights.sha256)
        (arch_a, weights_a), (arch_b, weights_b) = read(a), read(b)
        return diff_versions(a, b, arch_a, arch_b, weights_a, weights_b)

    def open_blob(self, sha256: str) -> BinaryIO:
        return self.blobs.open(sha256)

