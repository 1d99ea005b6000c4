"""Migration 0004 (provenance and memory estimate) on SQLite and PostgreSQL: a registry
written at 0003 upgrades with its versions intact (no provenance, no estimate), stores both
for new versions, and downgrades again."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import create_engine, text

from kerve.registry.database import Blob, Database, NewVersion
from kerve.registry.signature import Signature
from tests.registry.test_migrations import _alembic, db_url  # noqa: F401 (fixture)


def test_0003_registry_upgrades_and_downgrades(db_url):  # noqa: F811
    _alembic(db_url, "upgrade", "0003")
    engine = create_engine(db_url)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO models (id, name, next_version, created) "
                          "VALUES (1, 'old', 2, :now)"), {"now": now})
        conn.execute(text(
            "INSERT INTO versions (model_id, version, architecture_sha256, architecture_size, "
            "weights_sha256, weights_size, weights_format, signature, layer_classes, "
            "custom_objects, keras_version, tensorflow_version, parameter_count, description, "
            "tags, created, created_by) VALUES (1, 1, :a, 1, :w, 2, 'keras', '{}', '[]', '[]', "
            "'3', '2', 0, '', '{}', :now, 'ci')"), {"a": "a" * 64, "w": "b" * 64, "now": now})
    engine.dispose()

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

    _alembic(db_url, "downgrade", "0003")
    engine = create_engine(db_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM versions")).scalar() == 2
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0003"
    engine.dispose()
    Database(db_url).close()  # and up again
