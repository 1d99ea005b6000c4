"""Splitting a .keras archive into the registry's two parts: architecture and weights."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

from kerve.registry.database import Blob
from kerve.registry.errors import InvalidArgumentError
from kerve.registry.limits import UploadLimits, check_archive_members

CONFIG_MEMBER = "config.json"
WEIGHTS_MEMBER = "model.weights.h5"


def split_keras_archive(archive: Path, architecture_out: Path, weights_out: Path,
                        max_bytes: int, limits: UploadLimits | None = None) -> tuple[Blob, Blob]:
    """Extract config.json and model.weights.h5, streaming and hashing them, refusing
    archives whose directory breaks ``limits`` (zip bombs, names Keras never writes) or
    whose weights declare more than ``max_bytes``, or that lack either part, before anything
    is decompressed. zipfile stops each member at its declared size, so the directory's
    sizes bound what extraction writes. Returns the two extracted files' blobs."""
    limits = limits or UploadLimits()
    _check_entry_count(archive, limits)
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidArgumentError(f"not a .keras archive (zip): {exc}") from None
    with zf:
        check_archive_members(zf.infolist(), limits, CONFIG_MEMBER, WEIGHTS_MEMBER, max_bytes)
        names = set(zf.namelist())
        missing = [n for n in (CONFIG_MEMBER, WEIGHTS_MEMBER) if n not in names]
        if missing:
            hint = " (sharded weights are not supported)" if "model.weights.json" in names else ""
            raise InvalidArgumentError(
                f".keras archive lacks {', '.join(missing)}{hint}; it holds: "
                f"{', '.join(sorted(names)) or 'nothing'}")
        return tuple(_extract(zf, member, out) for member, out in
                     ((CONFIG_MEMBER, architecture_out), (WEIGHTS_MEMBER, weights_out)))


def _check_entry_count(archive: Path, limits: UploadLimits) -> None:
    """Read the entry count from the end record before ZipFile builds an object per entry:
    a large upload could otherwise hold a central directory of millions of entries."""
    try:
        with open(archive, "rb") as f:
            end = zipfile._EndRecData(f)  # stable since Python 2; the count ZipFile trusts
    except (OSError, AttributeError):
        return  # ZipFile itself says what is wrong
    if end and end[zipfile._ECD_ENTRIES_TOTAL] > limits.archive_members:
        raise InvalidArgumentError(
            f".keras archive has {end[zipfile._ECD_ENTRIES_TOTAL]} members, over the limit "
            f"of {limits.archive_members}")


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
