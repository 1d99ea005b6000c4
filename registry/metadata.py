"""The metadata store: models, versions and aliases in SQL (SQLite or PostgreSQL) through
SQLAlchemy, its schema kept by Alembic migrations. Synchronous; callers on the event loop
use asyncio.to_thread."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import (JSON, BigInteger, DateTime, ForeignKey, Integer, String, Text,
                        UniqueConstraint, create_engine, event, func, select)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from kerve.registry.errors import (AlreadyExistsError, FailedPreconditionError,
                                   NotFoundError)
from kerve.registry.names import DEFAULT_ALIAS, VersionRef, check_alias
from kerve.registry.signature import Signature

log = logging.getLogger(__name__)


class Base(DeclarativeBase):
    pass


class ModelRow(Base):
    __tablename__ = "models"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True, nullable=False)
    # Versions are never reused: the next number survives deletions.
    next_version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    versions: Mapped[list["VersionRow"]] = relationship(back_populates="model")
    aliases: Mapped[list["AliasRow"]] = relationship(back_populates="model")


class VersionRow(Base):
    __tablename__ = "versions"
    __table_args__ = (UniqueConstraint("model_id", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), nullable=False, index=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    architecture_sha256: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    architecture_size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    weights_sha256: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    weights_size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    weights_format: Mapped[str] = mapped_column(String(32), nullable=False)
    signature: Mapped[dict] = mapped_column(JSON, nullable=False)
    layer_classes: Mapped[list] = mapped_column(JSON, nullable=False)
    custom_objects: Mapped[list] = mapped_column(JSON, nullable=False)
    keras_version: Mapped[str] = mapped_column(String(32), nullable=False)
    tensorflow_version: Mapped[str] = mapped_column(String(32), nullable=False)
    parameter_count: Mapped[int] = mapped_column(BigInteger, nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    tags: Mapped[dict] = mapped_column(JSON, nullable=False)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    model: Mapped[ModelRow] = relationship(back_populates="versions")


class AliasRow(Base):
    __tablename__ = "aliases"
    __table_args__ = (UniqueConstraint("model_id", "alias"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), nullable=False, index=True)
    alias: Mapped[str] = mapped_column(String(64), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    model: Mapped[ModelRow] = relationship(back_populates="aliases")


@dataclass(frozen=True)
class Blob:
    sha256: str
    size: int


@dataclass
class VersionInfo:
    """One stored version, as the rest of kerve sees it."""

    name: str
    version: int
    architecture: Blob
    weights: Blob
    weights_format: str
    signature: Signature
    layer_classes: list[str]
    custom_objects: list[str]
    keras_version: str
    tensorflow_version: str
    parameter_count: int
    description: str
    tags: dict[str, str]
    created: datetime
    aliases: list[str] = field(default_factory=list)


@dataclass
class ModelInfo:
    name: str
    versions: list[int]
    aliases: dict[str, int]

    @property
    def default_version(self) -> int:
        """The version the alias `production` points at, else the newest."""
        return self.aliases.get(DEFAULT_ALIAS) or (max(self.versions) if self.versions else 0)


@dataclass
class NewVersion:
    """Everything but the number, which the store assigns."""

    name: str
    architecture: Blob
    weights: Blob
    weights_format: str
    signature: Signature
    layer_classes: list[str]
    custom_objects: list[str]
    keras_version: str
    tensorflow_version: str
    parameter_count: int
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)


def _utc(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


class MetadataStore:
    """Models, versions and aliases behind a SQLAlchemy URL; migrated on open."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        self.engine = create_engine(url, future=True, pool_pre_ping=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        if migrate:
            self.migrate()

    def migrate(self) -> None:
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        cfg.attributes["engine"] = self.engine
        command.upgrade(cfg, "head")

    def close(self) -> None:
        self.engine.dispose()

    # --- queries ----------------------------------------------------------------------

    def _model(self, s: Session, name: str, *, lock: bool = False) -> ModelRow:
        stmt = select(ModelRow).where(ModelRow.name == name)
        if lock:
            stmt = stmt.with_for_update()
        row = s.scalars(stmt).one_or_none()
        if row is None:
            raise NotFoundError(f"model {name!r} not found")
        return row

    @staticmethod
    def _info(row: ModelRow) -> ModelInfo:
        return ModelInfo(row.name, sorted(v.version for v in row.versions),
                         {a.alias: a.version for a in row.aliases})

    @staticmethod
    def _version_info(row: VersionRow, aliases: dict[str, int]) -> VersionInfo:
        return VersionInfo(
            name=row.model.name, version=row.version,
            architecture=Blob(row.architecture_sha256, row.architecture_size),
            weights=Blob(row.weights_sha256, row.weights_size),
            weights_format=row.weights_format,
            signature=Signature.from_json(row.signature),
            layer_classes=list(row.layer_classes), custom_objects=list(row.custom_objects),
            keras_version=row.keras_version, tensorflow_version=row.tensorflow_version,
            parameter_count=row.parameter_count, description=row.description,
            tags=dict(row.tags), created=_utc(row.created),
            aliases=sorted(a for a, v in aliases.items() if v == row.version))

    def list_models(self) -> list[ModelInfo]:
        with Session(self.engine) as s:
            rows = s.scalars(select(ModelRow).order_by(ModelRow.name)).all()
            return [info for info in map(self._info, rows) if info.versions]

    def get_model(self, name: str) -> tuple[ModelInfo, list[VersionInfo]]:
        with Session(self.engine) as s:
            row = self._model(s, name)
            info = self._info(row)
            if not info.versions:
                raise NotFoundError(f"model {name!r} not found")
            versions = sorted(row.versions, key=lambda v: v.version)
            return info, [self._version_info(v, info.aliases) for v in versions]

    def resolve(self, ref: VersionRef) -> VersionInfo:
        """The version a reference means: its number, its alias, or the default."""
        with Session(self.engine) as s:
            row = self._model(s, ref.name)
            info = self._info(row)
            if ref.alias is not None:
                if ref.alias not in info.aliases:
                    raise NotFoundError(f"model {ref.name!r} has no alias {ref.alias!r}")
                number = info.aliases[ref.alias]
            elif ref.version is not None:
                number = ref.version
            else:
                number = info.default_version
            for v in row.versions:
                if v.version == number:
                    return self._version_info(v, info.aliases)
            raise NotFoundError(f"model {ref.name!r} has no version {number}"
                                if number else f"model {ref.name!r} not found")

    # --- changes ----------------------------------------------------------------------

    def add_version(self, new: NewVersion, aliases: list[str]) -> VersionInfo:
        """Insert a version with the next number, and point ``aliases`` at it, atomically."""
        for alias in aliases:
            check_alias(alias)
        for attempt in range(5):
            try:
                with Session(self.engine) as s, s.begin():
                    model = s.scalars(select(ModelRow).where(ModelRow.name == new.name)
                                      .with_for_update()).one_or_none()
                    now = datetime.now(timezone.utc)
                    if model is None:
                        model = ModelRow(name=new.name, next_version=1, created=now)
                        s.add(model)
                        s.flush()
                    number = model.next_version
                    model.next_version = number + 1
                    row = VersionRow(
                        model_id=model.id, version=number,
                        architecture_sha256=new.architecture.sha256,
                        architecture_size=new.architecture.size,
                        weights_sha256=new.weights.sha256, weights_size=new.weights.size,
                        weights_format=new.weights_format,
                        signature=new.signature.to_json(), layer_classes=new.layer_classes,
                        custom_objects=new.custom_objects, keras_version=new.keras_version,
                        tensorflow_version=new.tensorflow_version,
                        parameter_count=new.parameter_count, description=new.description,
                        tags=dict(new.tags), created=now)
                    s.add(row)
                    s.flush()
                    for alias in aliases:
                        self._point_alias(s, model, alias, number)
                    s.flush()
                    s.refresh(model)
                    return self._version_info(row, self._info(model).aliases)
            except IntegrityError:
                # Another writer created the model or took the number first: try again.
                log.info("version number race on %s, retrying (%d)", new.name, attempt + 1)
        raise AlreadyExistsError(f"could not allocate a version of {new.name!r}; try again")

    @staticmethod
    def _point_alias(s: Session, model: ModelRow, alias: str, version: int) -> None:
        row = s.scalars(select(AliasRow).where(AliasRow.model_id == model.id,
                                               AliasRow.alias == alias)).one_or_none()
        if row is None:
            s.add(AliasRow(model_id=model.id, alias=alias, version=version))
        else:
            row.version = version

    def set_alias(self, name: str, alias: str, version: int) -> ModelInfo:
        check_alias(alias)
        with Session(self.engine) as s, s.begin():
            model = self._model(s, name, lock=True)
            if version not in {v.version for v in model.versions}:
                raise NotFoundError(f"model {name!r} has no version {version}")
            self._point_alias(s, model, alias, version)
            s.flush()
            s.refresh(model)
            return self._info(model)

    def delete_alias(self, name: str, alias: str) -> ModelInfo:
        with Session(self.engine) as s, s.begin():
            model = self._model(s, name, lock=True)
            row = next((a for a in model.aliases if a.alias == alias), None)
            if row is None:
                raise NotFoundError(f"model {name!r} has no alias {alias!r}")
            s.delete(row)
            s.flush()
            s.refresh(model)
            return self._info(model)

    def delete_version(self, name: str, version: int) -> VersionInfo:
        """Delete a version; refused while an alias points at it."""
        with Session(self.engine) as s, s.begin():
            model = self._model(s, name, lock=True)
            row = next((v for v in model.versions if v.version == version), None)
            if row is None:
                raise NotFoundError(f"model {name!r} has no version {version}")
            pointing = sorted(a.alias for a in model.aliases if a.version == version)
            if pointing:
                raise FailedPreconditionError(
                    f"version {version} of {name!r} is the target of alias(es) "
                    f"{', '.join(pointing)}; move or delete them first")
            info = self._version_info(row, {})
            s.delete(row)
            return info

    def blob_in_use(self, sha256: str) -> bool:
        with Session(self.engine) as s:
            stmt = select(func.count()).select_from(VersionRow).where(
                (VersionRow.architecture_sha256 == sha256) | (VersionRow.weights_sha256 == sha256))
            return s.scalar(stmt) > 0


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()
