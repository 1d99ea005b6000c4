"""Migration 0003 (who made each write) on SQLite and PostgreSQL: a registry written at
0002 upgrades with its versions intact (created by nobody recorded), records writes, and
downgrades again."""

from __future__ import annotations

from kerve.registry.database import Blob, Database, NewVersion
from kerve.registry.signature import Signature
from tests.registry.test_migrations import (  # noqa: F401 (db_url: a fixture)
    db_url,
    downgrade_keeps_both_versions,
    store_one_version_at,
)


def test_0002_registry_upgrades_and_downgrades(db_url):  # noqa: F811
    store_one_version_at(db_url, "0002")

    db = Database(db_url)  # migrates to head
    _, (old,) = db.get_model("old")
    assert old.created_by == ""
    new = db.add_version(NewVersion(
        name="old", architecture=Blob("a" * 64, 1), weights=Blob("b" * 64, 2),
        weights_format="keras", signature=Signature(), layer_classes=[], custom_objects=[],
        keras_version="3", tensorflow_version="2", parameter_count=0, created_by="ci"),
        ["staging"])
    assert new.created_by == "ci"
    db.set_alias("old", "production", 1, actor="ops")
    db.delete_alias("old", "staging", actor="ops")
    db.record_write("old", "unload", "ops")
    assert [(w.action, w.version, w.alias, w.actor) for w in db.recent_writes("old")] == [
        ("unload", None, None, "ops"), ("delete_alias", 2, "staging", "ops"),
        ("set_alias", 1, "production", "ops"), ("set_alias", 2, "staging", "ci"),
        ("upload", 2, None, "ci")]
    db.close()

    downgrade_keeps_both_versions(db_url, "0002")
