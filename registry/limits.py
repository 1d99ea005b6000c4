"""Bounds on what one upload may hold, checked before Keras sees any of it.

An upload is untrusted: a 1 MB .keras can declare a config.json of gigabytes, an HDF5 file
can declare datasets far larger than itself, a config can nest deep enough to exhaust the
stack. Each bound below is a server setting (kerve.server.settings). Sizes are checked in
the server process before validation (the header, the archive's directory); the config's
shape and the weights file's declared datasets in the validation worker, before the config
is deserialized or any weight is read.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from kerve.registry.errors import InvalidArgumentError


@dataclass(frozen=True)
class UploadLimits:
    """Picklable: it travels to the validation worker."""

    architecture_bytes: int = 4 << 20
    archive_members: int = 64
    archive_member_bytes: int = 64 << 20
    config_depth: int = 100
    layers: int = 10_000
    weight_datasets: int = 100_000
    weight_dataset_bytes: int = 8 << 30


# What Keras 3 writes into a .keras archive (keras.src.saving.saving_lib): the config,
# metadata, the weights (.h5, .npz, or sharded as .json plus numbered .h5 files) and assets
# under assets/ (vocabularies and the like). Anything else, and any absolute path or ".."
# segment, is refused: such an archive did not come from Keras.
_KERAS_MEMBER = re.compile(
    r"config\.json|metadata\.json|model\.weights\.(?:h5|npz|json)|model_\d+\.weights\.h5"
    r"|assets/(?:[A-Za-z0-9_.@+-]+/)*(?:[A-Za-z0-9_.@+-]+)?")


def check_archive_members(infos, limits: UploadLimits, config_member: str,
                          weights_member: str, max_weights_bytes: int) -> None:
    """Refuse a .keras archive by its directory alone (nothing is decompressed): too many
    members, a name Keras never writes, or a declared size over its bound."""
    if len(infos) > limits.archive_members:
        raise InvalidArgumentError(
            f".keras archive has {len(infos)} members, over the limit of "
            f"{limits.archive_members}")
    for info in infos:
        name = info.filename
        if (not _KERAS_MEMBER.fullmatch(name) or ".." in name.split("/")
                or name.startswith("/")):
            raise InvalidArgumentError(
                f".keras archive member {name[:200]!r} is not one Keras writes (config.json, "
                "metadata.json, model.weights.h5, assets/...)")
        bound = (limits.architecture_bytes if name == config_member
                 else max_weights_bytes if name == weights_member
                 else limits.archive_member_bytes)
        if info.file_size > bound:
            raise InvalidArgumentError(
                f".keras archive member {name} expands to {info.file_size} bytes, over the "
                f"limit of {bound}")


def check_architecture_size(size: int, limits: UploadLimits) -> None:
    if size > limits.architecture_bytes:
        raise InvalidArgumentError(
            f"architecture is {size} bytes, over the limit of {limits.architecture_bytes} "
            "(a Keras config is kilobytes to a few megabytes)")


def read_architecture(path: Path, limits: UploadLimits) -> dict:
    """The config JSON of ``path``, refused if too large, too deep or with too many layers,
    before anything is deserialized."""
    size = Path(path).stat().st_size
    check_architecture_size(size, limits)
    try:
        config = json.loads(Path(path).read_bytes())
    except RecursionError:
        raise InvalidArgumentError(
            f"architecture nests deeper than the limit of {limits.config_depth}") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidArgumentError(f"architecture is not valid JSON: {exc}") from None
    if not isinstance(config, dict) or "class_name" not in config:
        raise InvalidArgumentError(
            "architecture is not a Keras model config (expected the JSON of model.to_json())")
    check_config_shape(config, limits)
    return config


def check_config_shape(config, limits: UploadLimits) -> None:
    """Nesting depth and layer count (every entry of every ``layers`` list, nested models'
    included), walked without recursion."""
    layers = 0
    stack = [(config, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limits.config_depth:
            raise InvalidArgumentError(
                f"architecture nests deeper than the limit of {limits.config_depth}")
        if isinstance(node, dict):
            inner = node.get("layers")
            if isinstance(inner, list):
                layers += len(inner)
                if layers > limits.layers:
                    raise InvalidArgumentError(
                        f"architecture has more than the limit of {limits.layers} layers")
            stack.extend((v, depth + 1) for v in node.values() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node if isinstance(v, (dict, list)))


def check_weights_file(path: Path, limits: UploadLimits) -> None:
    """Count the HDF5 file's datasets and add up their declared sizes, reading no data:
    Keras writes weights uncompressed, so a file that declares more bytes than it holds (or
    one dataset over the limit) is not a Keras weights file and is refused before Keras
    allocates what it declares."""
    import h5py

    size = Path(path).stat().st_size
    seen = declared = 0

    def visit(name: str, obj) -> None:
        nonlocal seen, declared
        if not isinstance(obj, h5py.Dataset):
            return
        seen += 1
        if seen > limits.weight_datasets:
            raise InvalidArgumentError(
                f"weights hold more than the limit of {limits.weight_datasets} datasets")
        shape = obj.shape or ()
        nbytes = obj.dtype.itemsize
        for dim in shape:  # Python ints: no overflow, whatever the file declares
            nbytes *= int(dim)
        if nbytes > limits.weight_dataset_bytes:
            raise InvalidArgumentError(
                f"weights dataset {name[:200]!r} declares shape {tuple(shape)} "
                f"({nbytes} bytes), over the limit of {limits.weight_dataset_bytes}")
        declared += nbytes

    try:
        with h5py.File(path, "r") as f:
            f.visititems(visit)
    except InvalidArgumentError:
        raise
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        raise InvalidArgumentError(
            f"weights are not an HDF5 file: {' '.join(str(exc).split())[:300]}") \
            from None
    if declared > size:
        raise InvalidArgumentError(
            f"weights datasets declare {declared} bytes in a file of {size} bytes "
            "(Keras writes weights uncompressed)")
