"""Provenance: what produced a version's artifact, and the plugin modules its custom objects
came from; the known boundaries across which a load is refused or warned.

Stored as ``VersionInfo.provenance``::

    {"producer": {"keras_version": "3.15.1", "tensorflow_version": "2.21.0",
                  "backend": "tensorflow", "date_saved": "2025-01-31@12:00:00"},
     "sources": {"keras_version": "keras_archive", "tensorflow_version": "client", ...},
     "plugins": [{"module": "acme.layers", "version": "1.2.0",
                  "version_source": "distribution acme", "sha256": "...",
                  "custom_objects": ["acme>Scale"]}]}

Each producer value is read from the first source that has it, most trusted first: the
``.keras`` archive's metadata.json (``keras_archive``: Keras writes keras_version and
date_saved), the architecture JSON's top level (``architecture``: Keras 2's ``to_json``
wrote keras_version and backend), the legacy HDF5 weights' attributes (``weights``: the
same two), and last what the uploading client says of its own environment (``client``: the
Python client sends its installed keras and tensorflow versions and its backend).

Boundaries (each is named in its message), judged against the Keras version that validates
or loads the version:

- ``newer Keras major``: an artifact from Keras 4 on a Keras 3 server is refused
  (FAILED_PRECONDITION), at upload and at load. Keras promises no forward compatibility, and
  a new major is where it changes its formats (Keras 2 to 3 did).
- ``Keras 2 to Keras 3`` (any older major): warned. Keras 3 reads tf.keras's legacy HDF5
  and Keras 2's .keras through compatibility paths that Keras does not guarantee
  (keras-team/keras#20081): layer defaults and numerics may differ; golden examples check it.
- ``newer Keras minor`` (3.16 on 3.15): warned. An older Keras may ignore or misread what a
  newer one writes (new layer arguments and defaults).
- ``Theano/CNTK weights``: legacy HDF5 weights saved under the Theano or CNTK backend hold
  convolution kernels that Keras 2 flipped on load and Keras 3 no longer does: refused when
  the model has convolution layers (its results would be silently wrong), warned otherwise.

The backend of a Keras 3 artifact is recorded, not judged: the .keras format and its weights
are backend-agnostic. TensorFlow's version is recorded too: for Keras 3 artifacts it says
where the model was trained, not how it loads.

A plugin module is recorded with its version (the installed distribution's, else the
module's ``__version__``, else ``sha256:`` and the start of its source file's digest) and the
sha256 of its file. A server whose plugin module differs from the one a version was
validated with says so when it loads that version (a warning in the log and in the
version's ``load_warnings``), and keeps loading it.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import re
import sys
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, packages_distributions, version
from pathlib import Path
from typing import Any

from kerve.registry.errors import FailedPreconditionError, InvalidArgumentError

log = logging.getLogger(__name__)

KERAS_ARCHIVE, ARCHITECTURE, WEIGHTS, CLIENT = "keras_archive", "architecture", "weights", "client"
SOURCE_ORDER = (KERAS_ARCHIVE, ARCHITECTURE, WEIGHTS, CLIENT)
"""Where a producer value may come from, most trusted first."""

PRODUCER_KEYS = ("keras_version", "tensorflow_version", "backend", "date_saved")
CLIENT_KEYS = ("keras_version", "tensorflow_version", "backend")
"""What an upload header's ``producer`` may say; other keys are ignored (a newer client
may send more)."""
MAX_CLIENT_KEYS, MAX_KEY_LEN, MAX_VALUE_LEN = 16, 64, 128
METADATA_MEMBER = "metadata.json"
MAX_METADATA_BYTES = 64 << 10

NEWER_MAJOR = "newer Keras major"
NEWER_MINOR = "newer Keras minor"
OLDER_MAJOR = "Keras {old} to Keras {new}"
THEANO_WEIGHTS = "Theano/CNTK weights"
_FLIPPED_KERNEL_BACKENDS = ("theano", "cntk")


# --- the producer -----------------------------------------------------------------------

def check_client_producer(producer: dict[str, str]) -> dict[str, str]:
    """Bound what a client declares (INVALID_ARGUMENT beyond); returns the keys kerve
    records."""
    if len(producer) > MAX_CLIENT_KEYS:
        raise InvalidArgumentError(f"producer: at most {MAX_CLIENT_KEYS} keys")
    for key, value in producer.items():
        if not key or len(key) > MAX_KEY_LEN or len(value) > MAX_VALUE_LEN \
                or not value.isprintable():
            raise InvalidArgumentError(
                f"producer {key[:MAX_KEY_LEN]!r}: keys must be 1-{MAX_KEY_LEN} characters, "
                f"values at most {MAX_VALUE_LEN} printable characters")
    return {k: v for k, v in producer.items() if k in CLIENT_KEYS and v}


def _short_text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value[:MAX_VALUE_LEN] if value and value.isprintable() else None


def read_archive_metadata(archive: Path) -> dict[str, str]:
    """keras_version and date_saved from a .keras archive's metadata.json (blocking; after
    ``split_keras_archive`` has checked the archive). An archive without it, or with one
    that is not a small JSON object, tells nothing: that is not a refusal."""
    try:
        with zipfile.ZipFile(archive) as zf:
            info = zf.getinfo(METADATA_MEMBER)
            if info.file_size > MAX_METADATA_BYTES:
                return {}
            with zf.open(info) as f:
                data = json.loads(f.read(MAX_METADATA_BYTES + 1))
    except (KeyError, OSError, zipfile.BadZipFile, ValueError, EOFError):
        return {}
    if not isinstance(data, dict):
        return {}
    found = {k: _short_text(data.get(k)) for k in ("keras_version", "date_saved")}
    return {k: v for k, v in found.items() if v}


def architecture_producer(config: dict) -> dict[str, str]:
    """What a config's top level says of its producer (Keras 2's to_json wrote both;
    Keras 3's writes neither)."""
    found = {k: _short_text(config.get(k)) for k in ("keras_version", "backend")}
    return {k: v for k, v in found.items() if v}


def weights_producer(path: str | os.PathLike) -> dict[str, str]:
    """keras_version and backend from legacy HDF5 weights' attributes (at the root, or on
    model_weights in a whole-model .h5), as Keras 2 (and Keras 3's legacy writer) store
    them. Keras 3's .weights.h5 holds neither."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            for group in (f, f.get("model_weights")):
                if group is not None and "keras_version" in group.attrs:
                    found = {k: _short_text(group.attrs.get(k))
                             for k in ("keras_version", "backend")}
                    return {k: v for k, v in found.items() if v}
    except (OSError, ValueError, TypeError):
        pass
    return {}


def merge_producer(by_source: dict[str, dict[str, str]]) -> tuple[dict[str, str],
                                                                dict[str, str]]:
    """Each producer key from the most trusted source that has it: (values, sources)."""
    values, sources = {}, {}
    for source in SOURCE_ORDER:
        for key, value in by_source.get(source, {}).items():
            if key in PRODUCER_KEYS and value and key not in values:
                values[key], sources[key] = value, source
    return values, sources


# --- plugin modules -----------------------------------------------------------------------

@lru_cache(maxsize=1)
def _distributions() -> dict[str, list[str]]:
    return packages_distributions()


def _file_sha256(module) -> str:
    path = getattr(module, "__file__", None)
    if not path:
        return ""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return ""


def describe_module(name: str) -> dict[str, str] | None:
    """A module's version and where it came from, and its file's sha256; None where the
    module cannot be imported here."""
    module = sys.modules.get(name)
    if module is None:
        try:
            module = importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a module this process lacks describes nothing
            return None
    sha = _file_sha256(module)
    top = name.split(".")[0]
    for dist in _distributions().get(top, []):
        try:
            return {"module": name, "version": version(dist),
                    "version_source": f"distribution {dist}", "sha256": sha}
        except PackageNotFoundError:
            continue
    for owner in (module, sys.modules.get(top)):
        declared = _short_text(getattr(owner, "__version__", None))
        if declared:
            return {"module": name, "version": declared, "version_source": "__version__",
                    "sha256": sha}
    return {"module": name, "version": f"sha256:{sha[:12]}" if sha else "unknown",
            "version_source": "source sha256", "sha256": sha}


def plugin_modules(custom_objects: list[str], plugins) -> list[dict]:
    """The module each custom object is defined in, described, with the objects it gives;
    sorted by module. ``plugins`` is a kerve.registry.plugins.Plugins."""
    by_module: dict[str, list[str]] = {}
    for name in sorted(custom_objects):
        obj = plugins.lookup(name)
        module = getattr(obj, "__module__", None) if obj is not None else None
        if module:
            by_module.setdefault(module, []).append(name)
    described = []
    for module, names in sorted(by_module.items()):
        entry = describe_module(module)
        if entry is not None:
            described.append(entry | {"custom_objects": names})
    return described


# --- boundaries ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Crossing:
    """A known boundary between the producer and the Keras that reads the artifact."""

    boundary: str
    message: str
    refused: bool


def _major_minor(text: str | None) -> tuple[int, int] | None:
    match = re.match(r"\s*(\d+)\.(\d+)", text or "")
    return (int(match[1]), int(match[2])) if match else None


_SOURCE_WORDS = {KERAS_ARCHIVE: "per its metadata.json", ARCHITECTURE: "per its architecture JSON",
                 WEIGHTS: "per its weights file", CLIENT: "per the uploading client"}


def crossings(producer: dict[str, str], keras_version: str, *, sources=None, layer_classes=(),
              weights_format: str = "") -> list[Crossing]:
    """The boundaries crossed from ``producer`` (whose values came from ``sources``) to a
    reader running ``keras_version``."""
    found = []
    reader = keras_version
    made = producer.get("keras_version")
    where = _SOURCE_WORDS.get((sources or {}).get("keras_version", ""))
    if made and where:
        made = f"{made} ({where})"
    made_v, reader_v = _major_minor(producer.get("keras_version")), _major_minor(reader)
    if made_v and reader_v:
        if made_v[0] > reader_v[0]:
            found.append(Crossing(NEWER_MAJOR, (
                f"{NEWER_MAJOR}: the artifact was saved by Keras {made} and this server runs "
                f"Keras {reader}; Keras does not promise that an older major reads a newer "
                f"one's files. Serve it from a server with Keras {made_v[0]}"), True))
        elif made_v[0] < reader_v[0]:
            name = OLDER_MAJOR.format(old=made_v[0], new=reader_v[0])
            found.append(Crossing(name, (
                f"{name}: the artifact was saved by Keras {made} and is read by Keras "
                f"{reader} through its compatibility path, which Keras does not guarantee; "
                "check its outputs (upload golden examples)"), False))
        elif made_v[1] > reader_v[1]:
            found.append(Crossing(NEWER_MINOR, (
                f"{NEWER_MINOR}: the artifact was saved by Keras {made} and is read by the "
                f"older Keras {reader}, which may ignore or misread what is new"), False))
    backend = (producer.get("backend") or "").lower()
    if weights_format == "legacy_h5" and backend in _FLIPPED_KERNEL_BACKENDS:
        convolutions = sorted(c for c in layer_classes if "Conv" in c)
        if convolutions:
            found.append(Crossing(THEANO_WEIGHTS, (
                f"{THEANO_WEIGHTS}: legacy weights saved under the {backend} backend hold "
                "convolution kernels that Keras 2 flipped on load and Keras 3 does not; "
                f"{', '.join(convolutions)} would compute wrong results. Load them in Keras 2 "
                "with the tensorflow backend and save them again"), True))
        else:
            found.append(Crossing(THEANO_WEIGHTS, (
                f"{THEANO_WEIGHTS}: legacy weights saved under the {backend} backend; Keras 3 "
                "converts nothing from it (there are no convolutions here, which need it "
                "most)"), False))
    return found


def judge(producer: dict[str, str], keras_version: str, *, sources=None, layer_classes=(),
          weights_format: str = "") -> list[str]:
    """FAILED_PRECONDITION naming each refused boundary crossed; else the warnings."""
    found = crossings(producer, keras_version, sources=sources, layer_classes=layer_classes,
                      weights_format=weights_format)
    refused = [c.message for c in found if c.refused]
    if refused:
        raise FailedPreconditionError("; ".join(refused))
    return [c.message for c in found]


def provenance(by_source: dict[str, dict[str, str]], plugins: list[dict]) -> dict:
    """The dict a version stores (see the module's docstring)."""
    values, sources = merge_producer(by_source)
    return {"producer": values, "sources": sources, "plugins": list(plugins)}


# --- at load ------------------------------------------------------------------------------

_load_warnings: dict[tuple[str, int], list[str]] = {}


def load_warnings(name: str, version_number: int) -> list[str]:
    """What this server noticed the last time it loaded the version (none if it never
    did)."""
    return list(_load_warnings.get((name, version_number), ()))


def check_at_load(info) -> list[str]:
    """Before a version (a VersionInfo) loads on this server: refuse a refused boundary
    (FAILED_PRECONDITION: the version is FAILED with why), and say, in the log and in
    ``load_warnings``, which warned boundaries it crosses here and which recorded plugin
    modules differ from this server's. Blocking; the loader calls it."""
    import keras

    recorded = info.provenance or {}
    notes = [w for w in judge(recorded.get("producer", {}), keras.__version__,
                              sources=recorded.get("sources"),
                              layer_classes=info.layer_classes,
                              weights_format=info.weights_format)
             if w not in info.warnings]
    for entry in recorded.get("plugins", []):
        note = _plugin_difference(entry)
        if note:
            notes.append(note)
    for note in notes:
        log.warning("version %s:%d: %s", info.name, info.version, note)
    _load_warnings[(info.name, info.version)] = notes
    return notes


def _plugin_difference(entry: dict) -> str | None:
    module = entry.get("module")
    if not module:
        return None
    running = describe_module(module)
    if running is None:
        return None  # building the model says which custom object is missing
    was, now = entry.get("version", ""), running["version"]
    if was != now:
        return (f"plugin module {module} differs: the version was validated with {module} "
                f"{was} ({entry.get('version_source', '?')}), this server runs {now} "
                f"({running['version_source']})")
    if entry.get("sha256") and running["sha256"] and entry["sha256"] != running["sha256"]:
        return (f"plugin module {module} differs: same version {now}, but its source file "
                f"changed (sha256 {entry['sha256'][:12]} when validated, "
                f"{running['sha256'][:12]} here)")
    return None
