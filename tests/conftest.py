"""Shared fixtures: a private database and evidence folder per test, local test sites.

All traffic stays on 127.0.0.1: test sites use reserved names (*.example, *.test) mapped to
a local server with --connect-to.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ectrust.cli import app
from ectrust.sitefarm import SiteFarm

DEMO_SITES = Path(__file__).resolve().parent.parent / "ectrust" / "demo" / "sites"
DEMO_CSV = DEMO_SITES.parent / "sites.csv"
TEST_SITES = Path(__file__).resolve().parent / "sites"
PG_URL = os.environ.get("ECTRUST_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REQUIRE_SERVICES = os.environ.get("ECTRUST_REQUIRE_SERVICES") == "1"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh ECTRUST_DB / ECTRUST_HOME in a temporary folder (also the working dir)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ECTRUST_DB", f"sqlite:///{tmp_path / 'ectrust.db'}")
    monkeypatch.setenv("ECTRUST_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ECTRUST_BADGE_HOSTS", "verify.trust.example")
    monkeypatch.delenv("ECTRUST_CONNECT_TO", raising=False)
    return tmp_path


class Cli:
    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: str, expect: int | None = 0) -> Any:
        result = self.runner.invoke(app, list(args), catch_exceptions=False)
        if expect is not None and result.exit_code != expect:
            raise AssertionError(
                f"ectrust {' '.join(args)} exited {result.exit_code}, expected {expect}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self(*args).stdout)


@pytest.fixture
def cli() -> Cli:
    return Cli()


@pytest.fixture
def demo_farm() -> Iterator[SiteFarm]:
    with SiteFarm(DEMO_SITES) as farm:
        yield farm


@pytest.fixture
def site_farm(tmp_path: Path) -> Iterator[tuple[SiteFarm, Path]]:
    """An empty farm whose sites a test writes into ``root/<host>/``."""
    root = tmp_path / "farm"
    root.mkdir()
    with SiteFarm(root) as farm:
        yield farm, root


def write_site(root: Path, host: str, files: dict[str, str | bytes]) -> None:
    for rel, content in files.items():
        path = root / host / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            content = content.encode("utf-8")
        path.write_bytes(content)


def copy_test_site(root: Path, name: str, host: str | None = None) -> None:
    shutil.copytree(TEST_SITES / name, root / (host or name))


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A private schema in the local PostgreSQL test database."""
    from sqlalchemy import create_engine, text

    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = create_engine(PG_URL)
    try:
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:
        engine.dispose()
        if REQUIRE_SERVICES:
            pytest.fail(f"PostgreSQL required (ECTRUST_REQUIRE_SERVICES=1) but unusable: {exc}")
        pytest.skip(f"PostgreSQL not available: {exc}")
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()
