"""Splitting a .keras archive into the registry's two parts: architecture and weights."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

from kerve.registry.database import Blob
from kerve.registry.errors import InvalidArgumentError

CONFIG_MEMBER = "config.json"
WEIGHTS_MEMBER = "model.weights.h5"


def split_keras_archive(archive: Path, architecture_out: Path, weights_out: Path,
                        max_bytes: int) -> tuple[Blob, Blob]:
    """Extract config.json and model.weights.h5, streaming and hashing them, refusing
    archives whose declared sizes exceed ``max_bytes`` (zip bombs) or that lack either part.
    Returns the two extracted files' blobs."""
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidArgumentError(f"not a .keras archive (zip): {exc}") from None
    with zf:
        names = set(zf.namelist())
        missing = [n for n in (CONFIG_MEMBER, WEIGHTS_MEMBER) if n not in names]
        if missing:
            hint = " (sharded weights are not supported)" if "model.weights.json" in names else ""
            raise InvalidArgumentError(
                f".keras archive lacks {', '.join(missing)}{hint}; it holds: "
                f"{', '.join(sorted(names)) or 'nothing'}")
        total = sum(zf.getinfo(n).file_size for n in (CONFIG_MEMBER, WEIGHTS_MEMBER))
        if total > max_bytes:
            raise InvalidArgumentError(
                f".keras archive expands to {total} bytes, over the limit of {max_bytes}")
        return tuple(_extract(zf, member, out) for member, out in
                     ((CONFIG_MEMBER, architecture_out), (WEIGHTS_MEMBER, weights_out)))


def _extract(zf: zipfile.ZipFile, member: str, out: Path) -> Blob:
    digest, size = hashlib.sha256(), 0
    try:
        with zf.open(member) as src, open(out, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
                digest.update(chunk)
                size += len(chunk)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise InvalidArgumentError(f"corrupt .keras archive ({member}): {exc}") from None
    return Blob(digest.hexdigest(), size)
