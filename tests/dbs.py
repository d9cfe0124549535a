"""Which database the tests run on, and a private one per test.

``ECTRUST_TEST_DB`` picks the backend for the whole run: ``sqlite`` (default) gives each test
its own file; ``postgresql`` gives each test its own schema in the PostgreSQL test database
(``ECTRUST_TEST_PG``, default 127.0.0.1:5432/test), selected with ``search_path`` in the URL
so that every connection of the test (the CLI, the crawl child, the scheduler) sees only that
schema; it is dropped afterwards, so tests never see each other's data.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

PG_URL = os.environ.get("ECTRUST_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REQUIRE_SERVICES = os.environ.get("ECTRUST_REQUIRE_SERVICES") == "1"
BACKEND = (os.environ.get("ECTRUST_TEST_DB") or "sqlite").strip().lower()
if BACKEND in ("pg", "postgres"):
    BACKEND = "postgresql"
if BACKEND not in ("sqlite", "postgresql"):
    raise RuntimeError(f"ECTRUST_TEST_DB must be sqlite or postgresql, not {BACKEND!r}")
ON_POSTGRESQL = BACKEND == "postgresql"

#: Mark for tests about SQLite itself (file locks, WAL, pragmas, a corrupt file).
sqlite_only = pytest.mark.skipif(
    ON_POSTGRESQL, reason="SQLite-specific by nature (ECTRUST_TEST_DB=postgresql)"
)


def _pg_unavailable(exc: Exception) -> None:
    if REQUIRE_SERVICES or ON_POSTGRESQL:
        pytest.fail(f"PostgreSQL required but unusable: {exc}")
    pytest.skip(f"PostgreSQL not available: {exc}")


@contextmanager
def pg_schema_url() -> Iterator[str]:
    """A fresh schema in the PostgreSQL test database, dropped on exit; yields its URL."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = create_engine(PG_URL)
    try:
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:
        engine.dispose()
        _pg_unavailable(exc)
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        try:
            with engine.begin() as conn:
                # Connections a test left open (a killed child) must not keep the drop waiting.
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE pid <> pg_backend_pid() AND datname = current_database() "
                        "AND query ILIKE :q"
                    ),
                    {"q": f"%{schema}%"},
                )
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        finally:
            engine.dispose()


@contextmanager
def database_url(folder: Path, name: str = "ectrust.db") -> Iterator[str]:
    """A private, empty database for one test (or one module's shared world)."""
    if ON_POSTGRESQL:
        with pg_schema_url() as url:
            yield url
    else:
        yield f"sqlite:///{folder / name}"


def _as_sqlite_gives_it(value: Any) -> Any:
    # Raw SQL on SQLite returns JSON columns as text; psycopg decodes json/jsonb. Tests read
    # rows the same way on both: as the JSON text.
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return value


def query(url: str, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Rows of ``sql`` (named ``:params``) as dicts, read straight from the test's database
    (JSON columns as JSON text on both backends)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [
                {k: _as_sqlite_gives_it(v) for k, v in r._mapping.items()}
                for r in conn.execute(text(sql), params or {})
            ]
    finally:
        engine.dispose()


def execute(url: str, sql: str, params: dict[str, Any] | None = None) -> None:
    """Run one writing statement against the test's database (to set up a past state)."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(sql), params or {})
    finally:
        engine.dispose()
