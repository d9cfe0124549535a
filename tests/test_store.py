"""The store: migrations, SQLite pragmas, append-only findings, evidence files — on SQLite and
on PostgreSQL."""

from __future__ import annotations

import gzip
import os

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DatabaseError as SADatabaseError

from audits.db import Store
from audits.evidence import BlobStore, EvidenceError, sha256_hex
from audits.models import Audit, Crawl, Finding, Override, Site
from tests.dbs import sqlite_only


def _seed(store: Store) -> int:
    with store.session() as s:
        site = Site(domain="shop.example", name="Shop", start_url="http://shop.example/")
        s.add(site)
        s.flush()
        crawl = Crawl(site_id=site.id, start_url=site.start_url, status="finished")
        s.add(crawl)
        s.flush()
        audit = Audit(crawl_id=crawl.id, site_id=site.id)
        s.add(audit)
        s.flush()
        finding = Finding(
            audit_id=audit.id,
            rule_id="x.y",
            pack="p",
            rule_sha256="0" * 64,
            status="fail",
            severity="major",
            title={"en": "t", "zh": "t"},
        )
        s.add(finding)
        s.flush()
        s.add(
            Override(finding_id=finding.id, status="pass", reason="seen by hand", actor="evaluator")
        )
        return finding.id


def _append_only(store: Store) -> None:
    finding_id = _seed(store)
    for sql in (
        f"UPDATE findings SET status = 'pass' WHERE id = {finding_id}",
        f"DELETE FROM findings WHERE id = {finding_id}",
        "UPDATE overrides SET reason = 'changed'",
        "DELETE FROM overrides",
    ):
        with pytest.raises(SADatabaseError, match="append-only"), store.engine.begin() as conn:
            conn.execute(text(sql))
    with pytest.raises(SADatabaseError, match="append-only"), store.session() as s:
        s.get(Finding, finding_id).status = "pass"
    with store.session() as s:
        assert s.get(Finding, finding_id).status == "fail"
        # A correction is a new row that points at the old one.
        s.add(
            Finding(
                audit_id=s.get(Finding, finding_id).audit_id,
                rule_id="x.y",
                pack="p",
                rule_sha256="0" * 64,
                status="pass",
                severity="major",
                title={},
                supersedes_id=finding_id,
            )
        )
    with store.session() as s:
        assert s.scalar(text("select count(*) from findings")) == 2


@sqlite_only
def test_findings_are_append_only_sqlite(tmp_path):
    """RELIABILITY.md T32, SQLite."""
    _append_only(Store(f"sqlite:///{tmp_path / 'a.db'}"))


def test_findings_are_append_only_postgresql(pg_url):
    """RELIABILITY.md T32, PostgreSQL."""
    store = Store(pg_url)
    try:
        _append_only(store)
    finally:
        store.dispose()


@sqlite_only
def test_sqlite_pragmas_on_every_connection(tmp_path):
    """RELIABILITY.md T34: foreign keys, WAL and a busy timeout on each pooled connection."""
    store = Store(f"sqlite:///{tmp_path / 'p.db'}")
    # Raw pooled connections: the connect hook has run, no transaction is open.
    conns = [store.engine.raw_connection() for _ in range(4)]
    try:
        for conn in conns:
            assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
    finally:
        for conn in conns:
            conn.close()


def test_migrations_are_idempotent(db_url):
    url = db_url
    Store(url)
    again = Store(url)  # second open: nothing to apply, data kept
    from alembic.script import ScriptDirectory

    from audits.db import MIGRATIONS

    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()  # whatever the latest is
    with again.engine.connect() as conn:
        assert conn.exec_driver_sql("select version_num from alembic_version").scalar() == head


def test_blob_store_is_content_addressed(tmp_path):
    blobs = BlobStore(tmp_path)
    digest = blobs.put("镕喆 page".encode())
    assert digest == sha256_hex("镕喆 page".encode())
    assert blobs.put("镕喆 page".encode()) == digest  # stored once
    path = blobs.path_for(digest)
    assert gzip.decompress(path.read_bytes()) == "镕喆 page".encode()
    assert blobs.get(digest) == "镕喆 page".encode()
    path.write_bytes(gzip.compress(b"tampered"))
    with pytest.raises(EvidenceError, match="does not match"):
        blobs.get(digest)
    path.unlink()
    with pytest.raises(EvidenceError, match="missing"):
        blobs.get(digest)
    (tmp_path / "blobs" / "x.gz.1.tmp").write_bytes(b"half")
    assert blobs.gc_orphans() == 1


def test_orphan_evidence_files_are_found_without_walking_the_store(tmp_path):
    """Writes are staged in blobs/tmp/; the sweep before every audit run lists that folder
    only (a *.tmp among the stored files is left to the full check), and keeps the files of
    writers that are still running."""
    from audits.recovery import gc_orphan_tmp

    blobs = BlobStore(tmp_path)
    blobs.put(b"stored")
    dead = blobs.tmp_dir / "aa.gz.4194303.tmp"  # above pid_max: its writer is gone
    live = blobs.tmp_dir / f"bb.gz.{os.getppid()}.tmp"  # the test runner's parent is alive
    elsewhere = blobs.root / "cc" / "dd" / "ccdd.gz.4194303.tmp"
    elsewhere.parent.mkdir(parents=True)
    for path in (dead, live, elsewhere):
        path.write_bytes(b"half")
    assert blobs.tmp_files() == sorted([dead, live])
    assert blobs.tmp_files(everywhere=True) == [*sorted([dead, live]), elsewhere]
    assert gc_orphan_tmp(blobs) == 1
    assert not dead.exists() and live.exists() and elsewhere.exists()
    assert blobs.gc_orphans() == 2  # the explicit sweep: everything, wherever it lies
    assert blobs.tmp_files(everywhere=True) == []


def test_migrations_down_to_base_and_up_again(db_url):
    """Every migration's downgrade runs on this backend (ECTRUST_TEST_DB), the chain comes
    back up to head, and the migrated schema is exactly what the models declare."""
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from audits.db import MIGRATIONS, _alembic_config
    from audits.models import Base

    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    store = Store(db_url)
    try:
        with store.engine.begin() as conn:
            command.downgrade(_alembic_config(conn), "base")
        with store.engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() is None
            left = set(conn.dialect.get_table_names(conn)) - {"alembic_version"}
        assert left == set()  # base means no ectrust table is left behind
        with store.engine.begin() as conn:
            command.upgrade(_alembic_config(conn), "head")
        with store.engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() == head
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == []  # models == migrations
    finally:
        store.dispose()


def test_blob_store_put_many_syncs_the_batch_before_naming_it(tmp_path, monkeypatch):
    """A batch is stored like ``put`` stores one body: same names and bytes, every file
    synced before any of them is renamed into place (one sync for the batch)."""
    import audits.evidence as evidence

    blobs = BlobStore(tmp_path)
    existing = blobs.put(b"stored earlier")
    bodies = [b"first", "第二".encode(), b"first", b"stored earlier", b""]
    synced: list[list[str]] = []
    real_sync = evidence._sync_all

    def watching_sync(root, paths):  # type: ignore[no-untyped-def]
        # At sync time only temporary files exist for the new bodies, staged in blobs/tmp/.
        assert all(p.name.endswith(".tmp") and p.exists() for p in paths)
        assert all(p.parent == blobs.tmp_dir for p in paths)
        assert not blobs.path_for(sha256_hex(b"first")).exists()
        synced.append([p.name for p in paths])
        real_sync(root, paths)

    monkeypatch.setattr(evidence, "_sync_all", watching_sync)
    digests = blobs.put_many(bodies)
    assert digests == [sha256_hex(b) for b in bodies]
    assert len(synced) == 1 and len(synced[0]) == 3  # first, 第二 and b"": new and distinct
    for body, digest in zip(bodies, digests, strict=True):
        assert blobs.get(digest) == body
        assert blobs.path_for(digest).read_bytes() == gzip.compress(body, 1, mtime=0)
    assert existing in digests
    assert not list((tmp_path / "blobs").rglob("*.tmp"))
    assert blobs.put_many([b"first"]) == [digests[0]]  # nothing new: no sync
    assert len(synced) == 1
