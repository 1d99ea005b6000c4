"""Migration 0002 (a version's warnings and golden examples) on SQLite and PostgreSQL: a
registry written at 0001 upgrades with its versions intact, and downgrades again."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from kerve.registry.database import Blob, Database, NewVersion
from kerve.registry.signature import Signature


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    return request.getfixturevalue("postgres_cluster").new_database()


def _alembic(url: str, command_name: str, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    from kerve.registry import database

    engine = create_engine(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(database.__file__).parent / "migrations"))
    cfg.attributes["engine"] = engine
    getattr(command, command_name)(cfg, revision)
    engine.dispose()


def store_one_version_at(url: str, revision: str, **columns: str) -> None:
    """Migrate to ``revision`` and store model 'old' with version 1 as that schema had it
    (``columns``: SQL literals for the columns added since 0001)."""
    _alembic(url, "upgrade", revision)
    engine = create_engine(url)
    now = datetime.now(UTC)
    names = "".join(f", {name}" for name in columns)
    values = "".join(f", {value}" for value in columns.values())
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO models (id, name, next_version, created) "
                          "VALUES (1, 'old', 2, :now)"), {"now": now})
        conn.execute(text(
            "INSERT INTO versions (model_id, version, architecture_sha256, architecture_size, "
            "weights_sha256, weights_size, weights_format, signature, layer_classes, "
            "custom_objects, keras_version, tensorflow_version, parameter_count, description, "
            f"tags, created{names}) VALUES (1, 1, :a, 1, :w, 2, 'keras', '{{}}', '[]', '[]', "
            f"'3', '2', 0, '', '{{}}', :now{values})"), {"a": "a" * 64, "w": "b" * 64, "now": now})
    engine.dispose()


def downgrade_keeps_both_versions(url: str, revision: str) -> None:
    """Downgrade to ``revision``: both versions stay; then migrate up again."""
    _alembic(url, "downgrade", revision)
    engine = create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM versions")).scalar() == 2
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == revision
    engine.dispose()
    Database(url).close()  # and up again


def test_0001_registry_upgrades_and_downgrades(db_url):
    store_one_version_at(db_url, "0001")

    db = Database(db_url)  # migrates to head
    _, (old,) = db.get_model("old")
    assert old.warnings == [] and old.examples is None
    new = db.add_version(NewVersion(
        name="old", architecture=Blob("a" * 64, 1), weights=Blob("b" * 64, 2),
        weights_format="keras", signature=Signature(), layer_classes=[], custom_objects=[],
        keras_version="3", tensorflow_version="2", parameter_count=0,
        warnings=["output 'y' was non-finite"], examples=Blob("c" * 64, 3)), [])
    assert new.version == 2 and new.examples == Blob("c" * 64, 3)
    _, versions = db.get_model("old")
    assert versions[1].warnings == ["output 'y' was non-finite"]
    assert db.blob_in_use("c" * 64)
    db.close()

    downgrade_keeps_both_versions(db_url, "0001")
