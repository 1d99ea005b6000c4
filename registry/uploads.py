"""An upload as the registry receives it: the header's rules, and the parts streaming into
temporary files, hashed as they arrive.

Transport-free: the gRPC servicer turns its messages into an ``UploadHeader`` and an async
iterator of ``Chunk``; everything else happens here and in ``Registry.upload``. File writes
and hashing run in a worker thread, never on the event loop, one chunk at a time while the
next one is received, so the server holds at most two chunks of an upload in memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import tempfile
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator, BinaryIO

from kerve.registry.database import Blob
from kerve.registry.errors import (
    DataLossError,
    InvalidArgumentError,
    ResourceExhaustedError,
)
from kerve.registry.names import check_alias, check_model_name
from kerve.registry.provenance import check_client_producer
from kerve.registry.serving_options import check_serving_tags

ARCHITECTURE, WEIGHTS, KERAS_ARCHIVE = "architecture", "weights", "keras"
EXAMPLES = "examples"
"""The kinds of part an upload is made of; EXAMPLES (golden examples, .npz) may join any
accepted set."""

ACCEPTED_PART_SETS = ([ARCHITECTURE, WEIGHTS], [KERAS_ARCHIVE], [WEIGHTS])
MAX_TAGS, MAX_TAG_LEN, MAX_DESCRIPTION = 64, 256, 4096


@dataclass(frozen=True)
class DeclaredPart:
    kind: str
    size: int
    sha256: str


@dataclass(frozen=True)
class UploadHeader:
    """What an upload declares before its first byte."""

    name: str
    parts: list[DeclaredPart]
    aliases: list[str] = field(default_factory=list)
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    base: str = ""
    """For weights alone: the version (digits) or alias whose architecture they fit;
    empty: the model's default version."""
    producer: dict[str, str] = field(default_factory=dict)
    """What the client says of the environment it uploads from (keras_version,
    tensorflow_version, backend): the producer where the artifact itself does not say."""

    def check(self, max_bytes: int) -> None:
        """Refuse a bad name, alias, description, tag or part list before any byte arrives."""
        check_model_name(self.name)
        for alias in self.aliases:
            check_alias(alias)
        if len(self.tags) > MAX_TAGS:
            raise InvalidArgumentError(f"at most {MAX_TAGS} tags")
        for k, v in self.tags.items():
            if not k or len(k) > MAX_TAG_LEN or len(v) > MAX_TAG_LEN:
                raise InvalidArgumentError(f"tag {k!r}: keys must be 1-{MAX_TAG_LEN} "
                                           f"characters, values at most {MAX_TAG_LEN}")
        if len(self.description) > MAX_DESCRIPTION:
            raise InvalidArgumentError(
                f"description is longer than {MAX_DESCRIPTION} characters")
        check_serving_tags(self.tags)
        check_client_producer(self.producer)
        kinds = sorted(p.kind for p in self.parts)
        if self.base and WEIGHTS not in kinds or self.base and ARCHITECTURE in kinds:
            raise InvalidArgumentError(
                "a base version (--from) goes with weights alone, not with an architecture")
        if sorted(k for k in kinds if k != EXAMPLES) not in ACCEPTED_PART_SETS \
                or kinds.count(EXAMPLES) > 1:
            raise InvalidArgumentError(
                "an upload is an architecture and weights, one .keras archive, or weights "
                "alone (reusing the current architecture), each optionally with golden "
                f"examples; got parts: {kinds or 'none'}")
        for p in self.parts:
            if p.size < 0:
                raise InvalidArgumentError(f"part {p.kind}: negative size {p.size}")
            if len(p.sha256) != 64 or any(c not in "0123456789abcdef" for c in p.sha256):
                raise InvalidArgumentError(
                    f"part {p.kind}: sha256 must be 64 lowercase hex digits, got {p.sha256!r}")
        total = sum(p.size for p in self.parts)
        if total > max_bytes:
            raise ResourceExhaustedError(
                f"upload of {total} bytes is over the server's limit of {max_bytes}")


@dataclass(frozen=True)
class Chunk:
    kind: str
    data: bytes


class StagedUpload:
    """The parts of one upload in temporary files under ``dir``. Blocking: its methods run
    in a worker thread (see ``receive``)."""

    def __init__(self, tmp_root: Path, header: UploadHeader) -> None:
        self.parts = {p.kind: p for p in header.parts}
        self.dir = Path(tempfile.mkdtemp(prefix="upload-", dir=tmp_root))
        self.paths = {k: self.dir / f"part-{k}" for k in self.parts}
        self._files: dict[str, BinaryIO] = {k: open(p, "wb") for k, p in self.paths.items()}
        self._hashes = {k: hashlib.sha256() for k in self.parts}
        self._sizes = dict.fromkeys(self.parts, 0)

    def accept(self, chunk: Chunk) -> None:
        """Check a chunk against the header (cheap: on the event loop, before it is queued)."""
        part = self.parts.get(chunk.kind)
        if part is None:
            raise InvalidArgumentError(
                f"chunk for part {chunk.kind!r}, which the header did not declare")
        self._sizes[chunk.kind] += len(chunk.data)
        if self._sizes[chunk.kind] > part.size:
            raise InvalidArgumentError(
                f"part {chunk.kind} is longer than the {part.size} bytes declared")

    def write(self, chunk: Chunk) -> None:
        self._files[chunk.kind].write(chunk.data)
        self._hashes[chunk.kind].update(chunk.data)

    def finish(self) -> dict[str, Blob]:
        """Close the files and check every part arrived whole and matches its sha256 (else
        DATA_LOSS). Returns each part's verified blob: nothing needs hashing again."""
        for f in self._files.values():
            f.close()
        verified = {}
        for kind, part in self.parts.items():
            if self._sizes[kind] != part.size:
                raise DataLossError(
                    f"part {kind}: received {self._sizes[kind]} of {part.size} bytes declared")
            digest = self._hashes[kind].hexdigest()
            if digest != part.sha256:
                raise DataLossError(
                    f"part {kind}: sha256 mismatch (header {part.sha256}, received {digest})")
            verified[kind] = Blob(digest, part.size)
        return verified

    def discard(self) -> None:
        for f in self._files.values():
            f.close()
        shutil.rmtree(self.dir, ignore_errors=True)


async def receive(staged: StagedUpload, chunks: AsyncIterator[Chunk],
                  executor: Executor | None = None) -> dict[str, Blob]:
    """Stream ``chunks`` into ``staged``: each chunk is written and hashed in a worker thread
    (of ``executor``, else the loop's default) while the next one is received. Returns the
    verified blobs of every part."""
    loop = asyncio.get_running_loop()
    writing: asyncio.Future | None = None
    try:
        async for chunk in chunks:
            staged.accept(chunk)
            if writing is not None:
                await writing
            writing = loop.run_in_executor(executor, staged.write, chunk)
        if writing is not None:
            await writing
            writing = None
        return await loop.run_in_executor(executor, staged.finish)
    finally:
        if writing is not None:  # the stream failed: let the write end before cleanup
            await asyncio.wait([writing])
