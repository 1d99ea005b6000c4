"""Each upload bound at its edge: the limit itself passes, one more is refused
(kerve.registry.limits; the server-level refusals are in tests/server/test_upload_bounds.py)."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from kerve.registry.archive import split_keras_archive
from kerve.registry.errors import InvalidArgumentError
from kerve.registry.limits import (
    UploadLimits,
    check_architecture_size,
    check_config_shape,
    check_weights_file,
    read_architecture,
)
from kerve.server.settings import Settings


def test_defaults_are_documented_settings():
    fields = Settings.model_fields
    limits = Settings().upload_limits()
    assert limits == UploadLimits()  # the settings' defaults are the limits' defaults
    for name in ("max_architecture_kb", "max_archive_members", "max_archive_member_mb",
                 "max_config_depth", "max_layers", "max_weight_datasets",
                 "max_weight_dataset_mb", "orphan_grace"):
        assert fields[name].description, name


def test_architecture_size_edge():
    limits = UploadLimits(architecture_bytes=1000)
    check_architecture_size(1000, limits)
    with pytest.raises(InvalidArgumentError, match="over the limit of 1000"):
        check_architecture_size(1001, limits)


def _nested(depth: int) -> dict:
    """A config whose deepest container sits at ``depth`` (the top object is depth 1)."""
    node: object = []
    for _ in range(depth - 2):
        node = [node]
    return {"class_name": "Sequential", "config": node}


def test_config_depth_edge(tmp_path):
    limits = UploadLimits(config_depth=50)
    check_config_shape(_nested(50), limits)
    with pytest.raises(InvalidArgumentError, match="deeper than the limit of 50"):
        check_config_shape(_nested(51), limits)
    deep = tmp_path / "deep.json"  # deeper than Python's own recursion limit: still a status
    deep.write_text('{"class_name": "x", "config": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(InvalidArgumentError, match="deeper than the limit"):
        read_architecture(deep, limits)


def _layers(n: int, nested: int = 0) -> dict:
    inner = {"class_name": "Functional", "config": {"layers": [{}] * nested}}
    return {"class_name": "Sequential", "config": {"layers": [{}] * (n - nested - 1) + [inner]}}


def test_layer_count_edge():
    limits = UploadLimits(layers=10)
    check_config_shape(_layers(9), limits)  # 9 + the nested model's 0
    check_config_shape(_layers(10, nested=1), limits)  # nested layers count too
    with pytest.raises(InvalidArgumentError, match="more than the limit of 10 layers"):
        check_config_shape(_layers(11, nested=1), limits)


def test_architecture_file_refusals(tmp_path):
    limits = UploadLimits(architecture_bytes=100)
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"class_name": "Sequential", "config": {"x": "y" * 40}}))
    read_architecture(path, limits)
    path.write_text(json.dumps({"class_name": "Sequential", "config": {"x": "y" * 100}}))
    with pytest.raises(InvalidArgumentError, match="over the limit of 100"):
        read_architecture(path, limits)
    path.write_text("[1, 2]")
    with pytest.raises(InvalidArgumentError, match="not a Keras model config"):
        read_architecture(path, limits)


def _h5(path, shapes, **create):
    import h5py

    with h5py.File(path, "w") as f:
        for i, shape in enumerate(shapes):
            f.create_dataset(f"vars/{i}", shape=shape, dtype="float32", **create)
    return path


def test_weight_dataset_count_edge(tmp_path):
    limits = UploadLimits(weight_datasets=5)
    check_weights_file(_h5(tmp_path / "five.h5", [(2,)] * 5), limits)
    with pytest.raises(InvalidArgumentError, match="more than the limit of 5 datasets"):
        check_weights_file(_h5(tmp_path / "six.h5", [(2,)] * 6), limits)


def test_weight_dataset_declared_shape(tmp_path):
    import h5py

    limits = UploadLimits(weight_dataset_bytes=4096)
    path = tmp_path / "w.h5"
    with h5py.File(path, "w") as f:
        f["vars/0"] = np.zeros((32, 32), "float32")  # exactly 4096 bytes, stored
    check_weights_file(path, limits)
    with pytest.raises(InvalidArgumentError, match=r"declares shape \(32, 33\)"):
        with h5py.File(path, "w") as f:
            f["vars/0"] = np.zeros((32, 33), "float32")
        check_weights_file(path, limits)
    # Huge declared shapes, allocated lazily and compressed: a few KiB on disk.
    huge = _h5(tmp_path / "huge.h5", [(1 << 20, 1 << 20)], chunks=(1, 16), compression="gzip")
    with pytest.raises(InvalidArgumentError, match="over the limit"):
        check_weights_file(huge, UploadLimits())
    lying = _h5(tmp_path / "lying.h5", [(1 << 16, 1 << 10)], chunks=(1, 16),
                compression="gzip")  # 256 MiB declared, under the per-dataset limit
    with pytest.raises(InvalidArgumentError, match="Keras writes weights uncompressed"):
        check_weights_file(lying, UploadLimits())
    zero = _h5(tmp_path / "zero.h5", [(0, 1 << 40)])  # zero among huge dims: 0 bytes
    check_weights_file(zero, UploadLimits())


def _archive(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


KERAS_MEMBERS = {"config.json": b"{}", "metadata.json": b"{}", "model.weights.h5": b"w"}


def _split(path, tmp_path, limits=None, max_bytes=1 << 20):
    return split_keras_archive(path, tmp_path / "c", tmp_path / "w", max_bytes,
                               limits or UploadLimits())


def test_archive_members_keras_writes(tmp_path):
    _split(_archive(tmp_path / "ok.keras", KERAS_MEMBERS | {"assets/vocab/0.txt": b"a"}),
           tmp_path)
    for bad in ("../x", "../../x", "/abs/x", "assets/../../x", "evil.py", "config.json/../x"):
        path = _archive(tmp_path / "bad.keras", KERAS_MEMBERS | {bad: b"x"})
        with pytest.raises(InvalidArgumentError, match="not one Keras writes"):
            _split(path, tmp_path)


def test_archive_member_count_edge(tmp_path):
    limits = UploadLimits(archive_members=5)
    assets = {f"assets/{i}": b"a" for i in range(2)}
    _split(_archive(tmp_path / "five.keras", KERAS_MEMBERS | assets), tmp_path, limits)
    assets["assets/2"] = b"a"
    with pytest.raises(InvalidArgumentError, match="6 members, over the limit of 5"):
        _split(_archive(tmp_path / "six.keras", KERAS_MEMBERS | assets), tmp_path, limits)


def test_archive_member_sizes_edge(tmp_path):
    limits = UploadLimits(architecture_bytes=10, archive_member_bytes=20)
    ok = {"config.json": b"c" * 10, "metadata.json": b"m" * 20, "model.weights.h5": b"w" * 30}
    _split(_archive(tmp_path / "ok.keras", ok), tmp_path, limits, max_bytes=30)
    for name, limit in (("config.json", 10), ("metadata.json", 20), ("model.weights.h5", 30)):
        bigger = dict(ok, **{name: ok[name] + b"!"})
        with pytest.raises(InvalidArgumentError, match=f"{name} expands to {limit + 1} bytes"):
            _split(_archive(tmp_path / "big.keras", bigger), tmp_path, limits, max_bytes=30)
