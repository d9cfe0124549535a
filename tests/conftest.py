"""Shared fixtures: a private database and evidence folder per test, local test sites.

All traffic stays on 127.0.0.1: test sites use reserved names (*.example, *.test) mapped to
a local server with --connect-to.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ectrust.cli import app
from ectrust.sitefarm import SiteFarm
from tests.dbs import database_url, pg_schema_url

DEMO_SITES = Path(__file__).resolve().parent.parent / "ectrust" / "demo" / "sites"
DEMO_CSV = DEMO_SITES.parent / "sites.csv"
TEST_SITES = Path(__file__).resolve().parent / "sites"


@pytest.fixture
def db_url(tmp_path: Path) -> Iterator[str]:
    """This test's private database on the backend ECTRUST_TEST_DB picks (tests/dbs.py)."""
    with database_url(tmp_path) as url:
        yield url


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str) -> Path:
    """A fresh ECTRUST_DB / ECTRUST_HOME in a temporary folder (also the working dir)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ECTRUST_DB", db_url)
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
    """A private schema in the local PostgreSQL test database (whatever ECTRUST_TEST_DB says)."""
    with pg_schema_url() as url:
        yield url


def judge_slowly_here(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Make the CLI process judge slowly (the judging worker of ectrust/judgepool.py keeps
    full speed), so crawls are still waiting to be judged when a crawl process exits and the
    worker starts."""
    import time

    from ectrust import judgepool, pipeline

    real_judge = pipeline.judge_crawl

    def slow_judge(*args: Any, **kwargs: Any) -> int:
        time.sleep(seconds)
        return real_judge(*args, **kwargs)

    monkeypatch.setattr(pipeline, "judge_crawl", slow_judge)
    monkeypatch.setattr(judgepool, "MIN_SITES", 2)
    monkeypatch.setattr(judgepool, "MIN_BACKLOG", 1)
