"""Engine, sessions and schema migration for SQLite (default) and PostgreSQL.

SQLite is configured the way RELIABILITY.md decision 8 asks: WAL, a busy timeout, foreign
keys on every pooled connection, and ``BEGIN IMMEDIATE`` so a writer waits for the lock
instead of failing on a read-to-write upgrade.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from alembic.config import Config

# Alembic is imported where a schema is checked or upgraded, not with this module: the crawl
# processes open the database without migrating, and importing Alembic cost each of them
# about 0.2 s of CPU at start-up.
MIGRATIONS = Path(__file__).with_name("migrations")
SQLITE_BUSY_TIMEOUT_MS = 30_000


class DatabaseError(Exception):
    """The database cannot be reached or upgraded (CLI exit status 3)."""


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin
        # (the "serializable isolation / savepoints" recipe in SQLAlchemy's SQLite docs).
        dbapi_connection.isolation_level = None
        cur = dbapi_connection.cursor()
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=FULL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:  # type: ignore[no-untyped-def]
        # Readers take no write lock, so judging a site never holds up the crawl's writer.
        readonly = conn.get_execution_options().get("ectrust_readonly", False)
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    """An engine for ``url``; raises DatabaseError with a readable message."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatabaseError(f"ECTRUST_DB is not a database URL: {url!r}") from exc
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        _configure_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _alembic_config(connection) -> Config:  # type: ignore[no-untyped-def]
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def upgrade_schema(engine: Engine) -> bool:
    """Bring the schema to the newest revision. Returns True when something was applied."""
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
        if current == head:
            return False
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Two commands starting at once must not both run the migration.
                conn.execute(text("SELECT pg_advisory_xact_lock(726173)"))
            command.upgrade(_alembic_config(conn), "head")
    except OperationalError as exc:
        raise DatabaseError(f"cannot open the database {engine.url!r}: {exc.orig}") from exc
    return True


class Store:
    """The database of one deployment: an engine plus a session factory."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        self.engine = make_engine(url)
        if migrate:
            upgrade_schema(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(
            self.engine.execution_options(ectrust_readonly=True), expire_on_commit=False
        )

    @contextmanager
    def session(self, *, readonly: bool = False) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on error. On
        SQLite a writing session takes the write lock at its start (BEGIN IMMEDIATE); a
        ``readonly`` one does not, and must not write."""
        factory = self._read_sessions if readonly else self._sessions
        with factory() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
