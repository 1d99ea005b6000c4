"""Migration 0004 (provenance and memory estimate) on SQLite and PostgreSQL: a registry
written at 0003 upgrades with its versions intact (no provenance, no estimate), stores both
for new versions, and downgrades again."""

from __future__ import annotations

from kerve.registry.database import Blob, Database, NewVersion
from kerve.registry.signature import Signature
from tests.registry.test_migrations import (  # noqa: F401 (db_url: a fixture)
    db_url,
    downgrade_keeps_both_versions,
    store_one_version_at,
)


def test_0003_registry_upgrades_and_downgrades(db_url):  # noqa: F811
    store_one_version_at(db_url, "0003", created_by="'ci'")

    db = Database(db_url)  # migrates to head
    _, (old,) = db.get_model("old")
    assert old.provenance == {} and old.memory_estimate is None and old.created_by == "ci"
    provenance = {"producer": {"keras": "3.15.1", "backend": "tensorflow"}}
    estimate = {"weights_bytes": 2, "activation_bytes": 8, "total_bytes": 10}
    new = db.add_version(NewVersion(
        name="old", architecture=Blob("a" * 64, 1), weights=Blob("b" * 64, 2),
        weights_format="keras", signature=Signature(), layer_classes=[], custom_objects=[],
        keras_version="3", tensorflow_version="2", parameter_count=0, provenance=provenance,
        memory_estimate=estimate), [])
    assert new.provenance == provenance and new.memory_estimate == estimate
    _, versions = db.get_model("old")
    assert versions[1].provenance == provenance and versions[1].memory_estimate == estimate
    db.close()

    downgrade_keeps_both_versions(db_url, "0003")
