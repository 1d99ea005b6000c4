"""Splitting a .keras archive into the registry's two parts: architecture and weights."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

from kerve.registry.errors import InvalidArgumentError

CONFIG = "config.json"
WEIGHTS = "model.weights.h5"


def split_keras_archive(archive: Path, architecture_out: Path, weights_out: Path,
                        max_bytes: int) -> None:
    """Extract config.json and model.weights.h5, streaming, refusing archives whose
    declared sizes exceed ``max_bytes`` (zip bombs) or that lack either part."""
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidArgumentError(f"not a .keras archive (zip): {exc}") from None
    with zf:
        names = set(zf.namelist())
        missing = [n for n in (CONFIG, WEIGHTS) if n not in names]
        if missing:
            hint = " (sharded weights are not supported)" if "model.weights.json" in names else ""
            raise InvalidArgumentError(
                f".keras archive lacks {', '.join(missing)}{hint}; it holds: "
                f"{', '.join(sorted(names)) or 'nothing'}")
        total = sum(zf.getinfo(n).file_size for n in (CONFIG, WEIGHTS))
        if total > max_bytes:
            raise InvalidArgumentError(
                f".keras archive expands to {total} bytes, over the limit of {max_bytes}")
        for member, out in ((CONFIG, architecture_out), (WEIGHTS, weights_out)):
            try:
                with zf.open(member) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise InvalidArgumentError(f"corrupt .keras archive ({member}): {exc}") from None
