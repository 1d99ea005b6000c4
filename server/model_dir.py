"""Single-model mode: the model a folder holds, registered under one name at start.

KServe's storage initializer lays an InferenceService's model into ``/mnt/models`` and the
runtime passes the service's name; ``kerve serve --model-dir /mnt/models --model-name NAME``
then serves it with nothing else to set up. The folder's files go through the registry's one
upload path, so they are validated exactly as an upload would be. A restart with the same
files registers nothing new.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path
from typing import AsyncIterator

from kerve.registry.errors import InvalidArgumentError, NotFoundError
from kerve.registry.names import VersionRef
from kerve.registry.registry import Registry
from kerve.registry.uploads import (
    ARCHITECTURE,
    KERAS_ARCHIVE,
    WEIGHTS,
    Chunk,
    DeclaredPart,
    UploadHeader,
)

log = logging.getLogger(__name__)

CHUNK = 1 << 20
SOURCE_TAG = "source_sha256"  # what the version was made from, so a restart can tell


def find_model_files(folder: Path) -> list[tuple[str, Path]]:
    """The upload parts a folder holds: one .keras archive (any name), or one architecture
    JSON with one HDF5 weights file. Anything else is one clear error."""
    if not folder.is_dir():
        raise InvalidArgumentError(f"--model-dir {folder} is not a folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    archives = [p for p in files if p.suffix == ".keras"]
    configs = [p for p in files if p.suffix == ".json"]
    weights = [p for p in files if p.suffix == ".h5"]
    if len(archives) == 1:
        return [(KERAS_ARCHIVE, archives[0])]
    if not archives and len(configs) == 1 and len(weights) == 1:
        return [(ARCHITECTURE, configs[0]), (WEIGHTS, weights[0])]
    shown = ", ".join(str(p.relative_to(folder)) for p in files[:10]) or "nothing"
    raise InvalidArgumentError(
        f"--model-dir {folder} must hold one .keras archive, or one architecture .json and "
        f"one .weights.h5; it holds: {shown}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


async def _chunks(parts: list[tuple[str, Path]]) -> AsyncIterator[Chunk]:
    for kind, path in parts:
        with open(path, "rb") as f:
            while data := await asyncio.to_thread(f.read, CHUNK):
                yield Chunk(kind, data)


async def install_model_dir(registry: Registry, folder: Path, name: str) -> int:
    """Register the folder's model as ``name`` unless its default version already is it;
    returns that version's number."""
    parts = find_model_files(Path(folder))
    declared = [DeclaredPart(kind, path.stat().st_size, await asyncio.to_thread(_sha256, path))
                for kind, path in parts]
    source = hashlib.sha256("".join(p.sha256 for p in declared).encode()).hexdigest()
    try:
        current = await registry.resolve(VersionRef(name))
    except NotFoundError:
        current = None
    if current is not None and current.tags.get(SOURCE_TAG) == source:
        log.info("model %s version %d is already %s", name, current.version, folder)
        return current.version
    info = await register_files(registry, name, parts, declared, description=f"from {folder}",
                                tags={SOURCE_TAG: source})
    log.info("registered %s from %s as version %d", name, folder, info.version)
    return info.version


async def register_files(registry: Registry, name: str, parts: list[tuple[str, Path]],
                         declared: list[DeclaredPart] | None = None, *,
                         aliases: list[str] = (), description: str = "",
                         tags: dict[str, str] | None = None):
    """Upload local files through the registry's one upload path (validated as any upload
    is), from inside the server: no client, so the server's access rules do not apply."""
    if declared is None:
        declared = [DeclaredPart(kind, path.stat().st_size,
                                 await asyncio.to_thread(_sha256, path))
                    for kind, path in parts]
    header = UploadHeader(name, declared, list(aliases), description=description,
                          tags=dict(tags or {}))
    return await registry.upload(header, _chunks(parts))
