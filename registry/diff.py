"""What changed between two versions of a model, read from what the registry keeps: their
architectures (layer by layer, config key by config key), their weights files (each
variable's shape, from HDF5 metadata: no tensor is read), parameter counts, custom objects
and signatures. Pure functions of stored data; no Keras, no TensorFlow."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kerve.registry.database import VersionInfo
from kerve.registry.signature import TensorSpec

# Config keys that name or number things rather than describe them.
_IGNORED_KEYS = {"name", "trainable", "dtype", "build_config", "inbound_nodes"}


@dataclass
class LayerChange:
    layer: str  # the layer's path: "dense", "encoder/dense_1"
    change: str  # "added", "removed" or "changed"
    class_a: str = ""
    class_b: str = ""
    config: dict[str, tuple[str, str]] = field(default_factory=dict)  # key: (a, b) as JSON


@dataclass
class WeightChange:
    variable: str
    shape_a: list[int] | None  # None: not in that version
    shape_b: list[int] | None


@dataclass
class SignatureChange:
    side: str  # "input" or "output"
    name: str
    a: str  # "float32[-1, 784]", or "" when absent
    b: str


@dataclass
class VersionDiff:
    name: str
    version_a: int
    version_b: int
    same_architecture: bool
    same_weights: bool
    layers: list[LayerChange]
    weights: list[WeightChange]
    parameters_a: int
    parameters_b: int
    custom_objects_added: list[str]
    custom_objects_removed: list[str]
    signature: list[SignatureChange]

    def to_json(self) -> dict:
        return asdict(self)


def diff_versions(a: VersionInfo, b: VersionInfo, architecture_a: bytes,
                  architecture_b: bytes, weights_a: Path, weights_b: Path) -> VersionDiff:
    same_architecture = a.architecture.sha256 == b.architecture.sha256
    layers = [] if same_architecture else diff_layers(json.loads(architecture_a),
                                                       json.loads(architecture_b))
    same_weights = a.weights.sha256 == b.weights.sha256
    weights = [] if same_weights else diff_weight_shapes(weight_shapes(weights_a),
                                                         weight_shapes(weights_b))
    return VersionDiff(
        name=a.name, version_a=a.version, version_b=b.version,
        same_architecture=same_architecture, same_weights=same_weights,
        layers=layers, weights=weights,
        parameters_a=a.parameter_count, parameters_b=b.parameter_count,
        custom_objects_added=sorted(set(b.custom_objects) - set(a.custom_objects)),
        custom_objects_removed=sorted(set(a.custom_objects) - set(b.custom_objects)),
        signature=diff_signatures(a, b))


def layers_of(config: dict, prefix: str = "") -> dict[str, tuple[str, dict]]:
    """Every layer of a model config, nested models' layers under their model's name:
    path -> (class name, config without the keys that only name things)."""
    found: dict[str, tuple[str, dict]] = {}
    for layer in (config.get("config") or {}).get("layers", []):
        inner = layer.get("config") or {}
        name = inner.get("name") or layer.get("name") or "?"
        path = f"{prefix}{name}"
        found[path] = (layer.get("class_name", "?"),
                       {k: v for k, v in inner.items() if k not in _IGNORED_KEYS})
        if isinstance(inner.get("layers"), list):  # a nested Sequential or functional model
            found.update(layers_of(layer, prefix=f"{path}/"))
    return found


def diff_layers(config_a: dict, config_b: dict) -> list[LayerChange]:
    a, b = layers_of(config_a), layers_of(config_b)
    changes = []
    for path in [p for p in a if p not in b]:
        changes.append(LayerChange(path, "removed", class_a=a[path][0]))
    for path in [p for p in b if p not in a]:
        changes.append(LayerChange(path, "added", class_b=b[path][0]))
    for path in [p for p in a if p in b]:
        (class_a, conf_a), (class_b, conf_b) = a[path], b[path]
        keys = sorted(set(conf_a) | set(conf_b))
        changed = {k: (_shown(conf_a.get(k)), _shown(conf_b.get(k))) for k in keys
                   if conf_a.get(k) != conf_b.get(k) and k != "layers"}
        if class_a != class_b or changed:
            changes.append(LayerChange(path, "changed", class_a, class_b, changed))
    return changes


def _shown(value) -> str:
    return "" if value is None else json.dumps(value, sort_keys=True)[:200]


def weight_shapes(path: Path) -> dict[str, list[int]]:
    """Each dataset of an HDF5 weights file, by path, with its shape (metadata only)."""
    import h5py

    shapes: dict[str, list[int]] = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                shapes[name] = [int(d) for d in obj.shape]
        f.visititems(visit)
    return shapes


def diff_weight_shapes(a: dict[str, list[int]], b: dict[str, list[int]]) -> list[WeightChange]:
    return [WeightChange(name, a.get(name), b.get(name)) for name in sorted(set(a) | set(b))
            if a.get(name) != b.get(name)]


def _spec(spec: TensorSpec | None) -> str:
    return "" if spec is None else f"{spec.dtype}{list(spec.shape)}"


def diff_signatures(a: VersionInfo, b: VersionInfo) -> list[SignatureChange]:
    changes = []
    for side, specs_a, specs_b in (("input", a.signature.inputs, b.signature.inputs),
                                   ("output", a.signature.outputs, b.signature.outputs)):
        by_a, by_b = {s.name: s for s in specs_a}, {s.name: s for s in specs_b}
        for name in sorted(set(by_a) | set(by_b)):
            shown_a, shown_b = _spec(by_a.get(name)), _spec(by_b.get(name))
            if shown_a != shown_b:
                changes.append(SignatureChange(side, name, shown_a, shown_b))
    return changes
