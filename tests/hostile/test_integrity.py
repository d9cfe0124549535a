"""Crashes, concurrency and integrity, RELIABILITY.md T24–T26 and T30–T36: kill anything at
any moment, write from several processes at once, tamper with evidence; the store stays
consistent, nothing recorded is lost or duplicated, and tampering is found."""

from __future__ import annotations

import gzip
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.exc import DatabaseError, IntegrityError

from audits.db import Store
from audits.evidence import BlobStore
from audits.models import Finding
from tests.dbs import ON_POSTGRESQL, sqlite_only
from tests.hostile.harness import PUBLIC_IP, Server, crawl_settings, db_rows, home, last_crawl

ROOT = Path(__file__).resolve().parents[2]
PRIVACY = ("<html><body><h1>隐私政策</h1><p>我们收集您的姓名、电话和收货地址，用于配送订单。"
           "我们不会向第三方出售您的个人信息。您可以联系 privacy@shop.test 查询、更正或删除"
           "您的信息。</p></body></html>")


def shop(server: Server, pages: int = 3, delay: float = 0.0) -> None:
    import asyncio

    from aiohttp import web

    links = [("/privacy", "隐私政策"), ("/contact", "联系我们")] + [
        (f"/help/{i}", f"帮助 {i}") for i in range(pages)
    ]
    server.html("/", home(*links, extra="<footer>京ICP备12345678号</footer>"))
    server.html("/privacy", PRIVACY)
    server.html("/contact", home(extra="<p>投诉电话 400-123-4567</p>"))

    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(delay)
        return web.Response(text=home(), content_type="text/html")

    server.default = slow


def env_vars(env: Path) -> dict[str, str]:
    return {**os.environ, "ECTRUST_DB": os.environ["ECTRUST_DB"],
            "ECTRUST_HOME": str(env / "home"), "PYTHONPATH": str(ROOT)}


def ectrust(env: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ectrust", *args], cwd=env,
                            env=env_vars(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def crawler_children(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return [c for c in proc.children(recursive=True) if "crawler.run" in " ".join(c.cmdline())]
    except psutil.Error:
        return []


@contextmanager
def tamper(env: Path) -> Iterator[Connection]:
    """A plain connection to the test's database, as an attacker holding it would use."""
    engine = create_engine(os.environ["ECTRUST_DB"])
    try:
        with engine.begin() as conn:
            yield conn
    finally:
        engine.dispose()


def integrity_ok(env: Path) -> bool:
    """SQLite's own check of the file; PostgreSQL has no torn-file state to check."""
    if ON_POSTGRESQL:
        return True
    with sqlite3.connect(env / "ectrust.db") as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


# -- T24: a whole run that hangs -------------------------------------------------------------
@pytest.mark.case("T24")
@pytest.mark.timeout(90)
def test_t24_hung_run_is_killed_and_the_next_run_is_unaffected(env, cli, public, canary):
    import socket

    hold = socket.socket()
    hold.bind((PUBLIC_IP, 0))
    hold.listen(16)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(hold.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    shop(public)
    cli("sites", "add", "hang.test", "--url", f"http://hang.test:{hold.getsockname()[1]}/")
    cli("sites", "add", "public.test", "--url", f"http://public.test:{public.port}/")
    try:
        started = time.monotonic()
        doc = cli.json("audit", "hang.test", "--json", "--time-limit", "4",
                       *crawl_settings(public, {"hang.test": [[PUBLIC_IP]]},
                                       ECTRUST_ALLOWED_PORTS=[hold.getsockname()[1]],
                                       DOWNLOAD_TIMEOUT=600))["audits"][0]
        assert time.monotonic() - started < 60  # --time-limit 4 plus start-up and judging
    finally:
        hold.close()
        for c in held:
            c.close()
    assert doc["crawl_status"] == "timed_out"
    assert {f["status"] for f in doc["findings"]} == {"error"}
    nxt = cli.json("audit", "public.test", "--json", *crawl_settings(public))["audits"][0]
    assert nxt["reachable"] is True and nxt["crawl_status"] == "finished"
    assert db_rows(env, "select count(*) n from crawls where status = 'running'")[0]["n"] == 0
    assert canary.hits == 0


# -- T25: SIGTERM, then SIGKILL, during a crawl -------------------------------------------------
@pytest.mark.case("T25")
@pytest.mark.timeout(120)
def test_t25_sigterm_interrupts_gracefully(env, cli, public, canary):
    shop(public, pages=20, delay=1.0)
    cli("sites", "add", "public.test", "--url", f"http://public.test:{public.port}/")
    proc = ectrust(env, "audit", "public.test", "--json", "--max-pages", "25",
                   *crawl_settings(public, CONCURRENT_REQUESTS_PER_DOMAIN=1))
    deadline = time.monotonic() + 30
    while sum(p.startswith("/help/") for p in public.paths()) < 2:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 3, stderr
    assert b"stopped by a signal" in stderr
    crawl = last_crawl(env, "public.test")
    assert crawl["status"] == "interrupted"
    audits = db_rows(env, "select * from audits where crawl_id = ?", crawl["id"])
    assert len(audits) == 1  # judged as interrupted: what was seen is kept
    findings = db_rows(env, "select status, message from findings where audit_id = ?",
                       audits[0]["id"])
    assert not [f for f in findings if f["status"] == "fail"]  # absences are not evidence
    assert sum(p.startswith("/help/") for p in public.paths()) < 20
    assert canary.hits == 0


@pytest.mark.case("T25")
@pytest.mark.timeout(120)
def test_t25_sigterm_stops_every_crawl_process_of_a_split_run(env, cli, public, canary):
    """A run split between two crawl processes (ECTRUST_CRAWLERS=2) stops as one: both
    crawls interrupted and judged once, no crawl process left behind."""
    shop(public, pages=20, delay=1.0)
    domains = ("public.test", "second.test")
    for domain in domains:
        cli("sites", "add", domain, "--url", f"http://{domain}:{public.port}/")
    stub = {"second.test": [[PUBLIC_IP]]}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ectrust", "audit", "--all", "--json", "--max-pages", "25",
         *crawl_settings(public, stub, CONCURRENT_REQUESTS_PER_DOMAIN=1)],
        cwd=env, env={**env_vars(env), "ECTRUST_CRAWLERS": "2"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while len(crawler_children(psutil.Process(proc.pid))) < 2 or sum(
        p.startswith("/help/") for p in public.paths()
    ) < 4:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    children = crawler_children(psutil.Process(proc.pid))
    assert len(children) == 2
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 3, stderr
    assert b"stopped by a signal" in stderr
    _gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive
    for domain in domains:
        crawl = last_crawl(env, domain)
        assert crawl["status"] == "interrupted"
        assert len(db_rows(env, "select id from audits where crawl_id = ?", crawl["id"])) == 1
    assert canary.hits == 0


@pytest.mark.case("T25", "T31")
@pytest.mark.timeout(180)
def test_t25_sigkill_mid_crawl_then_the_next_run_completes_the_work(env, cli, public, canary):
    shop(public, pages=20, delay=0.5)
    cli("sites", "add", "public.test", "--url", f"http://public.test:{public.port}/")
    blobs = BlobStore(env / "home")
    orphan = blobs.tmp_dir / "abcd.gz.4194303.tmp"  # its writer pid is long gone
    proc = ectrust(env, "audit", "public.test", "--max-pages", "25",
                   *crawl_settings(public, CONCURRENT_REQUESTS_PER_DOMAIN=1))
    deadline = time.monotonic() + 30
    while sum(p.startswith("/help/") for p in public.paths()) < 3:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    children = crawler_children(psutil.Process(proc.pid))
    assert children
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"half a blob")
    proc.kill()
    proc.wait(10)
    _gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive  # the crawl child died with its parent (no orphan crawler)
    killed = last_crawl(env, "public.test")
    assert killed["status"] == "running"
    stored = db_rows(env, "select count(*) n from snapshots where crawl_id = ?", killed["id"])
    assert integrity_ok(env)
    # The next run: the killed crawl is marked crashed and judged, the orphan removed, and
    # the site audited afresh.
    doc = cli.json("audit", "public.test", "--json", "--max-pages", "25",
                   *crawl_settings(public))["audits"][0]
    assert doc["crawl_status"] == "finished"
    crawls = {c["id"]: c for c in db_rows(env, "select * from crawls")}
    assert crawls[killed["id"]]["status"] == "crashed"
    assert crawls[killed["id"]]["pages_fetched"] == stored[0]["n"]
    assert not orphan.exists()
    assert len(db_rows(env, "select id from audits where crawl_id = ?", killed["id"])) == 1
    # Idempotent: another run judges nothing twice and duplicates nothing.
    cli.json("audit", "public.test", "--json", *crawl_settings(public))
    assert len(db_rows(env, "select id from audits where crawl_id = ?", killed["id"])) == 1
    assert db_rows(env, "select count(*) n from snapshots where crawl_id = ?",
                   killed["id"])[0]["n"] == stored[0]["n"]
    verify = json.loads(cli("evidence", "verify", "--json").stdout)
    assert {a["status"] for a in verify["audits"]} == {"ok"}
    assert canary.hits == 0


# -- T26: consecutive runs in one long-lived process -------------------------------------------
@pytest.mark.case("T26")
@pytest.mark.timeout(180)
def test_t26_consecutive_runs_in_one_process(env, cli, public, canary):
    shop(public)
    cli("sites", "add", "public.test", "--url", f"http://public.test:{public.port}/")
    me = psutil.Process()
    rss = []
    for _ in range(5):
        doc = cli.json("audit", "public.test", "--json", *crawl_settings(public))["audits"][0]
        assert doc["crawl_status"] == "finished"  # a fresh reactor each time
        rss.append(me.memory_info().rss)
    assert rss[-1] - rss[1] < 40 * 2**20, [r // 2**20 for r in rss]
    assert len(db_rows(env, "select id from audits")) == 5
    assert canary.hits == 0


# -- T30: concurrent writers and readers --------------------------------------------------------
WRITER = r"""
import sys, time, json
from audits.db import Store
from audits.models import Finding, Override
store = Store(sys.argv[1], migrate=False)
kind, n, audit_id = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
lat = []
for i in range(n):
    t = time.monotonic()
    with store.session() as s:
        if kind == "findings":
            s.add_all(Finding(audit_id=audit_id, rule_id=f"load.{i}.{j}", pack="load",
                              rule_sha256="0"*64, status="pass", severity="info")
                      for j in range(100))
        else:
            s.add(Override(finding_id=1, status="pass", reason=f"note {i}", actor="admin"))
    lat.append(time.monotonic() - t)
lat.sort()
print(json.dumps({"p99": lat[int(len(lat) * 0.99) - 1], "n": n}))
"""


@pytest.mark.case("T30")
@pytest.mark.timeout(180)
def test_t30_writers_and_readers_at_once_never_see_database_locked(env, cli, public, canary):
    shop(public)
    cli("sites", "add", "public.test", "--url", f"http://public.test:{public.port}/")
    audit_id = cli.json("audit", "public.test", "--json",
                        *crawl_settings(public))["audits"][0]["audit_id"]
    url = os.environ["ECTRUST_DB"]
    script = env / "writer.py"
    script.write_text(WRITER)
    procs = [
        subprocess.Popen([sys.executable, str(script), url, "findings", "100", str(audit_id)],
                         env=env_vars(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE),
        subprocess.Popen([sys.executable, str(script), url, "overrides", "300", str(audit_id)],
                         env=env_vars(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE),
    ]
    errors: list[str] = []
    pages_read = [0]

    def reader() -> None:
        store = Store(url, migrate=False)
        while any(p.poll() is None for p in procs):
            try:
                with store.session(readonly=True) as s:
                    for offset in range(0, 2000, 200):
                        s.execute(text("select * from findings order by id limit 200 offset :o"),
                                  {"o": offset}).all()
                        pages_read[0] += 1
            except Exception as exc:  # any error counts, "database is locked" above all
                errors.append(repr(exc))
        store.dispose()

    readers = [threading.Thread(target=reader) for _ in range(3)]
    for r in readers:
        r.start()
    # Meanwhile two ectrust commands write to the same database.
    cmds = [ectrust(env, "reaudit", str(audit_id)), ectrust(env, "reaudit", str(audit_id))]
    results = [p.communicate(timeout=120) for p in procs + cmds]
    for r in readers:
        r.join()
    for p, (_out, err) in zip(procs + cmds, results, strict=True):
        assert p.returncode == 0, err.decode()
        assert b"database is locked" not in err
    assert errors == []
    assert pages_read[0] > 0
    p99 = max(json.loads(out)["p99"] for out, _ in results[:2])
    assert p99 < 10.0, p99  # bounded by busy_timeout, in practice far below
    n = db_rows(env, "select count(*) n from findings where pack = 'load'")[0]["n"]
    assert n == 10_000
    assert len(db_rows(env, "select id from audits")) == 3  # both reaudits recorded
    assert canary.hits == 0


# -- T31: kill -9 while an audit's findings are written ------------------------------------------
JUDGE_LOOP = r"""
import sys
from audits.db import Store
from audits.evidence import BlobStore
from audits.judge import judge_crawl
from audits.rulepack import load_rules
from pathlib import Path
store = Store(sys.argv[1], migrate=False)
rules = load_rules()
print("ready", flush=True)
while True:
    judge_crawl(store, int(sys.argv[2]), rules, BlobStore(Path(sys.argv[3])), ())
    print("judged", flush=True)
"""


@pytest.mark.case("T31")
@pytest.mark.timeout(240)
def test_t31_kill_9_during_judging_leaves_all_or_nothing(env, cli, public, canary):
    shop(public)
    cli("sites", "add", "public.test", "--url", f"http://public.test:{public.port}/")
    doc = cli.json("audit", "public.test", "--json", *crawl_settings(public))["audits"][0]
    per_audit = len(doc["findings"])
    script = env / "judge.py"
    script.write_text(JUDGE_LOOP)
    rng = random.Random(31)
    for _ in range(20):
        proc = subprocess.Popen(
            [sys.executable, str(script), os.environ["ECTRUST_DB"],
             str(doc["crawl_id"]), str(env / "home")],
            env=env_vars(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        # One whole round first (it takes longer on PostgreSQL or a busy machine), then a
        # kill at a random moment of the rounds after it.
        assert proc.stdout.readline() == b"judged\n"
        time.sleep(rng.uniform(0.0, 0.8))
        proc.kill()
        proc.wait()
    assert integrity_ok(env)
    counts = db_rows(env, "select a.id, count(f.id) n, count(distinct m.id) m from audits a "
                          "left join findings f on f.audit_id = a.id "
                          "left join evidence_manifests m on m.audit_id = a.id group by a.id")
    assert len(counts) > 5  # some rounds got to write
    assert {(c["n"], c["m"]) for c in counts} == {(per_audit, 1)}  # all or nothing
    verify = json.loads(cli("evidence", "verify", "--json").stdout)
    assert {a["status"] for a in verify["audits"]} == {"ok"}
    assert canary.hits == 0


# -- T32: append-only --------------------------------------------------------------------------
@pytest.mark.case("T32")
@pytest.mark.timeout(120)
def test_t32_findings_and_manifests_refuse_update_and_delete(env, cli, public, canary):
    shop(public)
    cli("sites", "add", "public.test", "--url", f"http://public.test:{public.port}/")
    cli.json("audit", "public.test", "--json", *crawl_settings(public))
    store = Store(os.environ["ECTRUST_DB"], migrate=False)
    refused = pytest.raises((IntegrityError, DatabaseError), match="append-only")
    with refused, store.session() as s:  # through the ORM
        f = s.get(Finding, 1)
        f.status = "pass" if f.status != "pass" else "fail"
    with pytest.raises((IntegrityError, DatabaseError), match="append-only"), \
            store.session() as s:
        s.delete(s.get(Finding, 1))
    for sql in ("update findings set status = 'pass'", "delete from findings",
                "update evidence_manifests set sha256 = 'x'", "delete from evidence_manifests"):
        with pytest.raises((IntegrityError, DatabaseError), match="append-only"), \
                store.session() as s:
            s.execute(text(sql))
    with store.session() as s:  # a correction is a new row pointing at the old one
        old = s.get(Finding, 1)
        s.add(Finding(audit_id=old.audit_id, rule_id=old.rule_id, pack=old.pack,
                      rule_sha256=old.rule_sha256, status="review", severity=old.severity,
                      message="corrected", supersedes_id=old.id))
    assert db_rows(env, "select count(*) n from findings where supersedes_id = 1")[0]["n"] == 1
    store.dispose()
    assert canary.hits == 0


# -- T33: tampering with evidence ----------------------------------------------------------------
@pytest.mark.case("T33")
@pytest.mark.timeout(180)
def test_t33_tampering_is_found_and_exports_are_self_contained(env, cli, public, canary):
    shop(public)
    cli("sites", "add", "public.test", "--url", f"http://public.test:{public.port}/")
    first = cli.json("audit", "public.test", "--json", *crawl_settings(public))["audits"][0]
    public.html("/contact", home(extra="<p>投诉电话 400-765-4321（已更新）</p>"))
    second = cli.json("audit", "public.test", "--json", *crawl_settings(public))["audits"][0]
    verify = json.loads(cli("evidence", "verify", "--json").stdout)
    assert [a["status"] for a in verify["audits"]] == ["ok", "ok"]
    manifests = db_rows(env, "select * from evidence_manifests order by id")
    assert manifests[1]["previous_sha256"] == manifests[0]["sha256"]  # chained
    # A clean export checks out with sha256sum alone.
    out = env / "export"
    result = cli("evidence", "export", str(second["audit_id"]), "--out", str(out))
    package = Path(result.stdout.strip())
    check = subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=package,
                           capture_output=True)
    assert check.returncode == 0, check.stdout + check.stderr
    body = json.loads((package / "manifest.json").read_bytes())
    digest = subprocess.run(["sha256sum", "manifest.json"], cwd=package, capture_output=True,
                            text=True).stdout.split()[0]
    assert digest == (package / "manifest.sha256").read_text().strip()
    for entry in body["files"]:
        assert list((package / "snapshots").glob(entry["sha256"] + ".*"))
    assert len(json.loads((package / "findings.json").read_text())) == len(second["findings"])
    assert [c["sha256"] for c in json.loads((package / "chain.json").read_text())] == [
        m["sha256"] for m in manifests]
    assert json.loads((package / "verification.json").read_text())["status"] == "ok"

    # Now tamper: replace one evidence file's content, delete another, edit a snapshot row,
    # and (triggers dropped, as an attacker with the database file could) rewrite a finding.
    blobs = BlobStore(env / "home")
    files = [e["sha256"] for e in body["files"]]
    victim, gone = files[0], files[1]
    original = blobs.get(victim)
    blobs.path_for(victim).write_bytes(gzip.compress(original.replace(b"<", b"[", 1)))
    blobs.path_for(gone).unlink()
    on = " on findings" if ON_POSTGRESQL else ""
    with tamper(env) as conn:
        conn.execute(text("update snapshots set status = 404 where id = "
                          "(select min(id) from snapshots where crawl_id = :c)"),
                     {"c": first["crawl_id"]})
        conn.execute(text(f"drop trigger findings_no_update{on}"))
        conn.execute(text("update findings set message = message || ' (edited)' where "
                          "audit_id = :a and id = (select min(id) from findings where "
                          "audit_id = :a)"), {"a": first["audit_id"]})
    result = cli("evidence", "verify", "--json", expect=1)
    verdicts = {a["audit_id"]: a for a in json.loads(result.stdout)["audits"]}
    problems = " | ".join(verdicts[first["audit_id"]]["problems"])
    assert verdicts[first["audit_id"]]["status"] == "integrity_failed"
    assert "snapshot" in problems and "changed" in problems
    assert "finding" in problems
    everything = " | ".join(p for v in verdicts.values() for p in v["problems"])
    assert f"{victim[:16]}… does not match its hash" in everything
    assert f"{gone[:16]}… missing" in everything
    # A rewritten manifest breaks the chain for its successor.
    on = " on evidence_manifests" if ON_POSTGRESQL else ""
    with tamper(env) as conn:
        conn.execute(text(f"drop trigger evidence_manifests_no_update{on}"))
        conn.execute(text("update evidence_manifests set body = replace(body, 'public.test', "
                          "'evil.test'), sha256 = 'x' where id = :m"), {"m": manifests[0]["id"]})
    verdicts = {a["audit_id"]: a for a in json.loads(
        cli("evidence", "verify", "--json", expect=1).stdout)["audits"]}
    assert any("chain broken" in p for p in verdicts[second["audit_id"]]["problems"])
    # The export of a tampered audit says so and exits 1.
    cli("evidence", "export", str(first["audit_id"]), "--out", str(out), expect=1)
    assert json.loads((out / f"ectrust-audit-{first['audit_id']}" / "verification.json")
                      .read_text())["status"] == "integrity_failed"
    assert canary.hits == 0


# -- T34: foreign keys on every pooled connection --------------------------------------------------
@pytest.mark.case("T34")
@pytest.mark.timeout(30)
@sqlite_only
def test_t34_foreign_keys_on_every_pooled_connection(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'fk.db'}")
    conns = [store.engine.raw_connection() for _ in range(8)]  # 8 distinct pooled connections

    def pragma(c, name: str):  # type: ignore[no-untyped-def]
        cur = c.cursor()
        try:
            return cur.execute(f"PRAGMA {name}").fetchone()[0]
        finally:
            cur.close()

    try:
        assert [pragma(c, "foreign_keys") for c in conns] == [1] * 8
        assert {pragma(c, "journal_mode") for c in conns} == {"wal"}
        assert {pragma(c, "busy_timeout") for c in conns} == {30000}
    finally:
        for c in conns:
            c.close()
    with pytest.raises(IntegrityError), store.session() as s:
        s.execute(text("insert into crawls (site_id, start_url, status, started_at, "
                       "pages_fetched, options, stats) values (999, 'x', 'running', "
                       "'2026-01-01', 0, '{}', '{}')"))
    store.dispose()


# -- T35: migrations down and up on a populated database ------------------------------------
@pytest.mark.case("T35")
@pytest.mark.timeout(120)
def test_t35_downgrade_and_upgrade_keep_data_and_triggers(env, cli, public, canary):
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from audits.db import _alembic_config
    from audits.models import Base

    shop(public)
    cli("sites", "add", "public.test", "--url", f"http://public.test:{public.port}/")
    cli.json("audit", "public.test", "--json", *crawl_settings(public))
    tables = ("sites", "crawls", "snapshots", "audits", "findings")

    def counts() -> dict:
        return {t: db_rows(env, f"select count(*) n from {t}")[0]["n"] for t in tables}

    def hashes() -> list:
        return [r["content_hash"] for r in db_rows(env, "select content_hash from snapshots")]

    def triggers() -> set:
        if ON_POSTGRESQL:
            return {r["name"] for r in db_rows(env, "select distinct trigger_name as name from "
                                                    "information_schema.triggers where "
                                                    "trigger_schema = current_schema()")}
        return {r["name"] for r in db_rows(env, "select name from sqlite_master "
                                                "where type = 'trigger'")}

    before, before_hashes, before_triggers = counts(), hashes(), triggers()
    assert "evidence_manifests_no_update" in before_triggers
    store = Store(os.environ["ECTRUST_DB"], migrate=False)
    with store.engine.begin() as conn:
        # below the evidence migration (and any that came after it)
        command.downgrade(_alembic_config(conn), "0003_render")
    assert counts() == before and hashes() == before_hashes
    assert "evidence_manifests_no_update" not in triggers()
    assert triggers() <= before_triggers - {"evidence_manifests_no_update",
                                            "evidence_manifests_no_delete"}
    with store.engine.begin() as conn:
        command.upgrade(_alembic_config(conn), "head")
    assert counts() == before and hashes() == before_hashes and triggers() == before_triggers
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []  # no drift between the models and the migrated schema
    store.dispose()
    # Audits from before the manifests existed are reported as such, not as tampered.
    verify = json.loads(cli("evidence", "verify", "--json").stdout)
    assert {a["status"] for a in verify["audits"]} == {"no_manifest"}
    assert canary.hits == 0


# -- T36: online backup during writes --------------------------------------------------------------
@pytest.mark.case("T36")
@pytest.mark.timeout(120)
@sqlite_only
def test_t36_online_backup_while_writing(env, cli):
    cli("init")
    url = f"sqlite:///{env / 'ectrust.db'}"
    store = Store(url, migrate=False)
    stop = threading.Event()
    written = [0]
    errors: list[str] = []

    def writer() -> None:
        from audits.registry import add_site

        while not stop.is_set():
            try:
                with store.session() as s:
                    add_site(s, f"s{written[0]}.example", f"http://s{written[0]}.example/")
                written[0] += 1
            except Exception as exc:
                errors.append(repr(exc))

    thread = threading.Thread(target=writer)
    thread.start()
    while written[0] < 50:
        time.sleep(0.05)
    committed_before = written[0]
    try:
        result = cli("backup", str(env / "copy.db"))
    finally:
        stop.set()
        thread.join()
    store.dispose()
    assert "integrity_check ok" in result.stdout
    assert errors == []
    with sqlite3.connect(env / "copy.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        copied = conn.execute("select count(*) from sites").fetchone()[0]
    assert committed_before <= copied <= written[0]
    # The copy is a working ectrust database.
    restored = Store(f"sqlite:///{env / 'copy.db'}")
    with restored.session(readonly=True) as s:
        assert s.execute(text("select count(*) from sites")).scalar() == copied
    restored.dispose()
    assert cli("backup", str(env / "copy.db"), expect=2).stderr  # refuses to overwrite
