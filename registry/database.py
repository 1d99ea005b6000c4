"""The metadata store: models, versions and aliases in SQL (SQLite or PostgreSQL) through
SQLAlchemy, its schema kept by Alembic migrations. Synchronous; callers on the event loop
use asyncio.to_thread.

Several servers may share one PostgreSQL database: every write locks its model's row, so two
uploads of the same model never get the same number, and announces itself with
``NOTIFY kerve_changes, '<model name>'`` in its transaction, which ``Database.watch`` hears."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship
from sqlalchemy.pool import NullPool

from kerve.registry.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    NotFoundError,
    UnavailableError,
)
from kerve.registry.memory import load_bytes, need_bytes
from kerve.registry.names import DEFAULT_ALIAS, VersionRef, check_alias
from kerve.registry.signature import Signature

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "kerve_changes"


class DatabaseUnavailableError(UnavailableError):
    """The registry database cannot be used (unreachable, wrong password, no such database);
    the message is one line that says which."""


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
    # Added by migration 0002.
    warnings: Mapped[list] = mapped_column(JSON, nullable=False, default=list)
    examples_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    examples_size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # Added by migration 0003: the name of the token that uploaded it.
    created_by: Mapped[str] = mapped_column(String(160), nullable=False, default="")
    # Added by migration 0004: see VersionInfo.provenance and VersionInfo.memory_estimate.
    provenance: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    memory_estimate: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    model: Mapped[ModelRow] = relationship(back_populates="versions")


class AliasRow(Base):
    __tablename__ = "aliases"
    __table_args__ = (UniqueConstraint("model_id", "alias"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), nullable=False, index=True)
    alias: Mapped[str] = mapped_column(String(64), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    model: Mapped[ModelRow] = relationship(back_populates="aliases")


class WriteRow(Base):
    """One write and who made it (migration 0003); kept by model name, so that it outlives
    what it changed."""

    __tablename__ = "writes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    model: Mapped[str] = mapped_column(String(128), nullable=False, index=True)
    action: Mapped[str] = mapped_column(String(32), nullable=False)
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    alias: Mapped[str | None] = mapped_column(String(64), nullable=True)
    actor: Mapped[str] = mapped_column(String(160), nullable=False)


@dataclass(frozen=True)
class Write:
    at: datetime
    model: str
    action: str
    version: int | None
    alias: str | None
    actor: str


@dataclass(frozen=True)
class AliasMove:
    at: datetime
    alias: str
    from_version: int | None  # None: the alias did not exist
    to_version: int | None  # None: the alias was deleted
    actor: str


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
    warnings: list[str] = field(default_factory=list)
    """What validation noticed but did not refuse (non-finite outputs on made-up data)."""
    examples: Blob | None = None
    """The golden examples (.npz) the version must reproduce at load, if uploaded with any."""
    created_by: str = ""
    """The name of the token that uploaded it ("" before this was recorded)."""
    provenance: dict = field(default_factory=dict)
    """What produced the artifact and what validated it ({} before this was recorded)."""
    memory_estimate: dict | None = None
    """The memory a loaded version is estimated to need, by part, in bytes (None before
    this was recorded)."""

    def blobs(self) -> list[Blob]:
        return [self.architecture, self.weights] + ([self.examples] if self.examples else [])


@dataclass
class ModelInfo:
    name: str
    versions: list[int]
    aliases: dict[str, int]
    memory_bytes: dict[int, int] = field(default_factory=dict)
    """What each version is counted for when loaded (kerve.registry.memory.memory_need)."""
    load_bytes: dict[int, int] = field(default_factory=dict)
    """What each version is counted for besides that while it loads."""

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
    warnings: list[str] = field(default_factory=list)
    examples: Blob | None = None
    created_by: str = ""
    provenance: dict = field(default_factory=dict)
    memory_estimate: dict | None = None


def _utc(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


class Database:
    """Models, versions and aliases behind a SQLAlchemy URL; migrated on open."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        kwargs: dict = {}
        if make_url(url).get_backend_name() == "postgresql":
            kwargs["connect_args"] = {"connect_timeout": 10}
        self.engine = create_engine(url, future=True, pool_pre_ping=True, **kwargs)
        self.dialect = self.engine.dialect.name
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        if migrate:
            self.check()
            self.migrate()

    def check(self) -> None:
        """Raise DatabaseUnavailableError, with one line saying why, unless the database
        answers (a short connect timeout: an unreachable host fails in seconds)."""
        url = self.engine.url
        connect_args = {"connect_timeout": 3} if self.dialect == "postgresql" else {}
        probe = create_engine(url, poolclass=NullPool, connect_args=connect_args)
        try:
            with probe.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except Exception as e:  # noqa: BLE001 - any driver error becomes one line
            raise DatabaseUnavailableError(f"{_describe(url)}: {_reason(e)}") from None
        finally:
            probe.dispose()

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
                         {a.alias: a.version for a in row.aliases},
                         {v.version: need_bytes(v.memory_estimate, v.weights_size)
                          for v in row.versions},
                         {v.version: load_bytes(v.memory_estimate, v.weights_size)
                          for v in row.versions})

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
            aliases=sorted(a for a, v in aliases.items() if v == row.version),
            warnings=list(row.warnings or []),
            examples=(Blob(row.examples_sha256, row.examples_size or 0)
                      if row.examples_sha256 else None),
            created_by=row.created_by or "",
            provenance=dict(row.provenance or {}),
            memory_estimate=dict(row.memory_estimate) if row.memory_estimate else None)

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

    def search(self, *, tags: dict[str, str], layer_classes: list[str],
               custom_objects: list[str]) -> list[VersionInfo]:
        """Every version with all these tags, layer classes and custom objects, by model
        and number. Filtered here, not in SQL: the lists are JSON columns, which SQLite and
        PostgreSQL query differently, and a registry holds thousands of versions, not
        millions."""
        with Session(self.engine) as s:
            found = []
            for model in s.scalars(select(ModelRow).order_by(ModelRow.name)).all():
                aliases = self._info(model).aliases
                for row in sorted(model.versions, key=lambda v: v.version):
                    if (all(row.tags.get(k) == v for k, v in tags.items())
                            and set(layer_classes) <= set(row.layer_classes)
                            and set(custom_objects) <= set(row.custom_objects)):
                        found.append(self._version_info(row, aliases))
            return found

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
                    now = datetime.now(timezone.utc)
                    # Create the model row if it is new, without a race between writers (a
                    # write first also takes SQLite's write lock before anything is read),
                    # then lock it: writers of one model take numbers one at a time.
                    s.execute(self._insert(ModelRow).values(name=new.name, next_version=1,
                                                            created=now)
                              .on_conflict_do_nothing(index_elements=["name"]))
                    model = s.scalars(select(ModelRow).where(ModelRow.name == new.name)
                                      .with_for_update()).one()
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
                        tags=dict(new.tags), created=now, warnings=list(new.warnings),
                        examples_sha256=new.examples.sha256 if new.examples else None,
                        examples_size=new.examples.size if new.examples else None,
                        created_by=new.created_by, provenance=dict(new.provenance),
                        memory_estimate=new.memory_estimate)
                    s.add(row)
                    s.flush()
                    self._record(s, new.name, "upload", new.created_by, version=number)
                    for alias in aliases:
                        self._point_alias(s, model, alias, number)
                        self._record(s, new.name, "set_alias", new.created_by, number, alias)
                    s.flush()
                    s.refresh(model)
                    self._notify(s, new.name)
                    return self._version_info(row, self._info(model).aliases)
            except IntegrityError:
                # Another writer created the model or took the number first: try again.
                log.info("version number race on %s, retrying (%d)", new.name, attempt + 1)
        raise AlreadyExistsError(f"could not allocate a version of {new.name!r}; try again")

    def _insert(self, table):
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        elif self.dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:  # pragma: no cover - kerve supports SQLite and PostgreSQL
            raise NotImplementedError(f"unsupported database {self.dialect}")
        return insert(table)

    def _lock(self, s: Session, name: str) -> ModelRow:
        """The model's row, locked for this transaction. A no-op UPDATE comes first: it
        locks the row on PostgreSQL and takes the write lock on SQLite before anything is
        read (so that a concurrent writer cannot make this transaction's reads stale)."""
        s.execute(update(ModelRow).where(ModelRow.name == name)
                  .values(next_version=ModelRow.next_version))
        return self._model(s, name, lock=True)

    def _notify(self, s: Session, name: str) -> None:
        """Announce a change to ``name`` to every watcher, when this transaction commits."""
        if self.dialect == "postgresql":
            s.execute(select(func.pg_notify(NOTIFY_CHANNEL, name)))

    @staticmethod
    def _point_alias(s: Session, model: ModelRow, alias: str, version: int) -> None:
        row = s.scalars(select(AliasRow).where(AliasRow.model_id == model.id,
                                               AliasRow.alias == alias)).one_or_none()
        if row is None:
            s.add(AliasRow(model_id=model.id, alias=alias, version=version))
        else:
            row.version = version

    def set_alias(self, name: str, alias: str, version: int, actor: str = "") -> ModelInfo:
        check_alias(alias)
        with Session(self.engine) as s, s.begin():
            model = self._lock(s, name)
            if version not in {v.version for v in model.versions}:
                raise NotFoundError(f"model {name!r} has no version {version}")
            if any(a.alias == alias and a.version == version for a in model.aliases):
                return self._info(model)  # already there: not a move, so not in the history
            self._point_alias(s, model, alias, version)
            self._record(s, name, "set_alias", actor, version, alias)
            s.flush()
            s.refresh(model)
            self._notify(s, name)
            return self._info(model)

    def delete_alias(self, name: str, alias: str, actor: str = "") -> ModelInfo:
        with Session(self.engine) as s, s.begin():
            model = self._lock(s, name)
            row = next((a for a in model.aliases if a.alias == alias), None)
            if row is None:
                raise NotFoundError(f"model {name!r} has no alias {alias!r}")
            s.delete(row)
            self._record(s, name, "delete_alias", actor, row.version, alias)
            s.flush()
            s.refresh(model)
            self._notify(s, name)
            return self._info(model)

    def delete_version(self, name: str, version: int, actor: str = "") -> VersionInfo:
        """Delete a version; refused while an alias points at it."""
        with Session(self.engine) as s, s.begin():
            model = self._lock(s, name)
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
            self._record(s, name, "delete_version", actor, version)
            self._notify(s, name)
            return info

    def blob_in_use(self, sha256: str) -> bool:
        with Session(self.engine) as s:
            stmt = select(func.count()).select_from(VersionRow).where(
                (VersionRow.architecture_sha256 == sha256) | (VersionRow.weights_sha256 == sha256)
                | (VersionRow.examples_sha256 == sha256))
            return s.scalar(stmt) > 0

    @staticmethod
    def _record(s: Session, model: str, action: str, actor: str, version: int | None = None,
                alias: str | None = None) -> None:
        """Log a write in the transaction that makes it: no write without its record."""
        s.add(WriteRow(at=datetime.now(timezone.utc), model=model, action=action,
                       version=version, alias=alias, actor=actor[:160]))

    def record_write(self, model: str, action: str, actor: str,
                     version: int | None = None) -> None:
        """Log a write the registry does not make (a load or unload on a server)."""
        with Session(self.engine) as s, s.begin():
            self._record(s, model, action, actor, version)

    def alias_history(self, model: str, alias: str) -> list[AliasMove]:
        """Every move of one alias, oldest first, read from the writes log: each move's
        "from" is the version the move before it left the alias on."""
        with Session(self.engine) as s:
            rows = s.scalars(select(WriteRow).where(
                WriteRow.model == model, WriteRow.alias == alias,
                WriteRow.action.in_(("set_alias", "delete_alias"))).order_by(WriteRow.id)).all()
            moves, current = [], None
            for row in rows:
                to = row.version if row.action == "set_alias" else None
                if to == current:
                    continue  # a no-op move recorded by an older kerve
                moves.append(AliasMove(_utc(row.at), alias, current, to, row.actor))
                current = to
            return moves

    def recent_writes(self, model: str, limit: int = 20) -> list[Write]:
        """A model's latest writes, newest first."""
        with Session(self.engine) as s:
            rows = s.scalars(select(WriteRow).where(WriteRow.model == model)
                             .order_by(WriteRow.id.desc()).limit(limit)).all()
            return [Write(_utc(r.at), r.model, r.action, r.version, r.alias, r.actor)
                    for r in rows]

    def referenced_blobs(self) -> set[str]:
        """The sha256 of every blob some version references."""
        with Session(self.engine) as s:
            rows = s.execute(select(VersionRow.architecture_sha256, VersionRow.weights_sha256,
                                    VersionRow.examples_sha256)).all()
        return {sha for row in rows for sha in row if sha}

    # --- change notification ----------------------------------------------------------

    def watch(self, on_change: Callable[[str], None]) -> Callable[[], None] | None:
        """On PostgreSQL, call ``on_change(model_name)`` (from a daemon thread) after every
        write any server makes to that model, and return a function that stops watching; it
        returns once listening, so writes after it are heard. On SQLite, None: poll."""
        if self.dialect != "postgresql":
            return None
        watcher = _Watcher(self, on_change)
        watcher.start()
        return watcher.stop


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


class _Watcher:
    """LISTENs on the change channel in a daemon thread and calls ``on_change(model_name)``
    for each notification; reconnects with backoff when the connection drops, then calls
    ``on_change`` for every model (notifications sent meanwhile are lost)."""

    HEARTBEAT_S = 15.0

    def __init__(self, database: Database, on_change: Callable[[str], None]) -> None:
        self.database = database
        self.on_change = on_change
        url = database.engine.url.set(drivername="postgresql")
        self.conninfo = url.render_as_string(hide_password=False)
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kerve-db-watch", daemon=True)

    def start(self, wait_s: float = 10.0) -> None:
        self._thread.start()
        if not self._listening.wait(wait_s):
            log.warning("not yet listening for registry changes; retrying in the background")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        import psycopg

        backoff, first = 0.1, True
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5,
                                     keepalives=1, keepalives_idle=10,
                                     keepalives_interval=5, keepalives_count=3) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    if not first:
                        log.info("listening for registry changes again")
                        self._everything_changed()
                    first, backoff = False, 0.1
                    self._listening.set()
                    self._listen(conn)
            except Exception as e:  # noqa: BLE001 - keep watching whatever happened
                if self._stop.is_set():
                    break
                log.warning("registry change listener: %s; reconnecting in %.1fs",
                            _reason(e), backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def _listen(self, conn) -> None:
        import time

        beat = time.monotonic()
        while not self._stop.is_set():
            for notify in conn.notifies(timeout=0.5):
                self._call(notify.payload)
            if time.monotonic() - beat > self.HEARTBEAT_S:
                conn.execute("SELECT 1")  # a dead connection raises here
                beat = time.monotonic()

    def _everything_changed(self) -> None:
        with Session(self.database.engine) as s:
            names = s.scalars(select(ModelRow.name)).all()
        for name in names:
            self._call(name)

    def _call(self, name: str) -> None:
        try:
            self.on_change(name)
        except Exception:  # a listener's bug must not stop the watch
            log.exception("registry change listener failed for %s", name)


def _describe(url) -> str:
    if url.get_backend_name() == "sqlite":
        return f"cannot open SQLite database {url.database or ':memory:'}"
    host = url.host or url.query.get("host") or "localhost"
    return (f"cannot reach PostgreSQL database {url.database!r} at {host}:{url.port or 5432} "
            f"as {url.username!r}")


def _reason(e: BaseException) -> str:
    """One line from a driver error: the server's own words where it said something."""
    orig = getattr(e, "orig", None) or e
    text = str(orig)
    fatal = re.findall(r"FATAL:\s+(.*)", text)
    line = fatal[-1] if fatal else text.strip().splitlines()[0] if text.strip() else ""
    line = re.sub(r"^.*?failed:\s+", "", " ".join(line.split())) or type(orig).__name__
    lowered = line.lower()
    if "password authentication failed" in lowered:
        return f"{line} (check the user and password in the registry URL)"
    if "connection refused" in lowered:
        return "connection refused (is PostgreSQL running and listening there?)"
    if "timeout expired" in lowered or "timed out" in lowered:
        return "connection timed out (host unreachable?)"
    return line
