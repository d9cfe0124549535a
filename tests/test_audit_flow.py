"""Audit → findings → reaudit → report, on a local site; and the same on PostgreSQL."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import judge_slowly_here, write_site
from tests.dbs import query

HOSTILE = """<html lang="zh-CN"><head><meta charset="utf-8">
<title>&lt;/title&gt;&lt;script&gt;alert(1)&lt;/script&gt;</title></head><body>
<p>{{7*7}} 欢迎光临 &lt;script&gt;alert(1)&lt;/script&gt; 本店</p>
<footer>
 <a href="javascript:alert(1)">投诉举报 &quot;&gt;&lt;img src=x onerror=alert(1)&gt;</a>
 <a href="/privacy.html">隐私政策 &#x202E;gnp.exe</a>
 <p>客服与投诉热线：400-800-1234 &lt;script&gt;alert(2)&lt;/script&gt;</p>
 <p>京ICP备12345678号-1 {{7*7}}</p>
</footer></body></html>"""

POLICY = """<html><head><meta charset="utf-8"><title>隐私政策</title></head><body><h1>隐私政策</h1>
<p>我们会收集您在注册和下单时提供的姓名、手机号码、收货地址等个人信息。</p>
<p>我们收集这些信息的目的是为了向您提供商品配送、售后服务及订单查询服务。</p>
<p>除法律法规规定的情形外，我们不会与任何第三方共享、转让或公开披露您的个人信息。</p>
<p>我们采用加密传输、访问控制等安全措施保护您的个人信息，防止泄露、毁损或丢失。</p>
<p>您有权访问、更正、删除您的个人信息，也可以撤回同意或申请注销账户。</p>
<p>如您对本政策有任何疑问，可以通过电子邮件与我们的个人信息保护负责人联系。
&lt;img src=x onerror=alert(3)&gt;</p></body></html>"""


@pytest.fixture
def hostile_site(env, cli, site_farm):
    farm, root = site_farm
    write_site(root, "hostile.example", {"index.html": HOSTILE, "privacy.html": POLICY})
    cli("sites", "add", "hostile.example", "--url", "http://hostile.example/")
    return farm


def _audit(cli, farm) -> dict:
    return cli.json(
        "audit",
        "hostile.example",
        "--json",
        "--connect-to",
        f"::127.0.0.1:{farm.port}",
        "-s",
        "DOWNLOAD_DELAY=0",
    )["audits"][0]


def comparable(doc: dict) -> list[tuple]:
    return [
        (f["rule_id"], f["status"], f["message"], json.dumps(f["evidence"], sort_keys=True))
        for f in doc["findings"]
    ]


def test_reaudit_reproduces_audit_and_findings_command(env, cli, hostile_site):
    doc = _audit(cli, hostile_site)
    assert doc["privacy_policy"]["url"] == "http://hostile.example/privacy.html"
    assert doc["privacy_policy"]["clicks_from_home"] == 1
    again = cli.json("reaudit", str(doc["audit_id"]), "--json")["audits"][0]
    assert again["audit_id"] != doc["audit_id"] and again["kind"] == "reaudit"
    assert comparable(again) == comparable(doc)
    assert again["score"] == doc["score"] and again["privacy_policy"] == doc["privacy_policy"]
    shown = cli.json("findings", str(doc["audit_id"]), "--json")
    assert comparable(shown) == comparable(doc)
    # --rules narrows to one pack
    narrowed = cli.json("reaudit", "--all", "--rules", "privacy", "--json")["audits"][0]
    assert {f["pack"] for f in narrowed["findings"]} == {"privacy"}
    assert cli("findings", "999", expect=2).stderr.count("no audit 999") == 1


def test_fail_on_turns_failures_into_exit_1(env, cli, hostile_site):
    base = [
        "audit",
        "hostile.example",
        "--connect-to",
        f"::127.0.0.1:{hostile_site.port}",
        "-s",
        "DOWNLOAD_DELAY=0",
    ]
    cli(*base)  # failing findings are results: exit 0
    cli(*base, "--fail-on", "error", expect=1)


def test_report_shows_crawled_text_inert(env, cli, hostile_site):
    """RELIABILITY.md T37 (report part): hostile crawled text is escaped, javascript: links
    are shown as text, template syntax in crawled text is not evaluated."""
    doc = _audit(cli, hostile_site)
    complaint = next(f for f in doc["findings"] if f["rule_id"] == "complaint.channel_present")
    assert complaint["status"] == "pass"  # the hotline text, not the javascript: link
    paths = cli("report", "site", "--out", "out", "--format", "html,json,csv").stdout.split()
    html_path = next(p for p in paths if p.endswith(".html"))
    with open(html_path, encoding="utf-8") as fh:
        html = fh.read()
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in html
    assert not re.search(r"<img[^>]+onerror", html)
    assert 'href="javascript:' not in html
    assert "{{7*7}}" in html and ">49<" not in html
    json_path = next(p for p in paths if p.endswith(".json"))
    with open(json_path, encoding="utf-8") as fh:
        assert json.load(fh)["audits"][0]["domain"] == "hostile.example"


def test_report_rejects_unknown_format(env, cli, hostile_site):
    _audit(cli, hostile_site)
    assert (
        "supported formats"
        in cli("report", "site", "--out", "o", "--format", "html,docx", expect=2).stderr
    )


def test_audit_on_postgresql(pg_url, tmp_path, site_farm):
    """The same pipeline on PostgreSQL, through the real console command."""
    farm, root = site_farm
    write_site(root, "pg.example", {"index.html": HOSTILE, "privacy.html": POLICY})
    env = {
        "ECTRUST_DB": pg_url,
        "ECTRUST_HOME": str(tmp_path / "home"),
        "ECTRUST_BADGE_HOSTS": "verify.trust.example",
        "PATH": "/usr/bin:/bin",
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ectrust", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert run("sites", "add", "pg.example", "--url", "http://pg.example/").returncode == 0
    result = run("audit", "pg.example", "--json", "--connect-to", f"::127.0.0.1:{farm.port}")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)["audits"][0]
    assert doc["reachable"] and doc["pages_fetched"] == 2
    assert doc["privacy_policy"]["clicks_from_home"] == 1
    again = json.loads(run("reaudit", str(doc["audit_id"]), "--json").stdout)["audits"][0]
    assert comparable(again) == comparable(doc)


def test_judging_worker_gives_the_same_audits(env, cli, site_farm, monkeypatch):
    """Runs over many sites judge part of what is left when the crawl ends in a second
    process (ectrust/judgepool.py): every crawl still gets exactly one audit, with the
    findings the CLI process itself gives, its manifest, and a clean evidence check."""
    from ectrust import judgepool

    farm, root = site_farm
    domains = [f"shop{i}.example" for i in range(6)]
    for i, domain in enumerate(domains):
        policy = POLICY if i % 2 == 0 else POLICY.replace("隐私政策", "关于我们")
        write_site(root, domain, {"index.html": HOSTILE, "privacy.html": policy})
        cli("sites", "add", domain, "--url", f"http://{domain}/")
    connect = ["--connect-to", f"::127.0.0.1:{farm.port}", "-s", "DOWNLOAD_DELAY=0"]

    def audit_all() -> dict[str, list[tuple]]:
        docs = cli.json("audit", "--all", "--json", *connect)["audits"]
        return {d["domain"]: comparable(d) for d in docs}

    monkeypatch.setattr(judgepool, "MIN_SITES", 10_000)
    alone = audit_all()
    judge_slowly_here(monkeypatch, 2.0)
    by_worker: list[int] = []
    done = judgepool.JudgePool.done

    def spy(self, *, wait: bool = False):  # type: ignore[no-untyped-def]
        out = done(self, wait=wait)
        by_worker.extend(audit_id for _, audit_id in out if audit_id is not None)
        return out

    monkeypatch.setattr(judgepool.JudgePool, "done", spy)
    pooled = audit_all()
    assert sorted(alone) == sorted(pooled) == sorted(domains)
    for domain in domains:  # ids differ, judgements do not
        assert [f[:2] for f in pooled[domain]] == [f[:2] for f in alone[domain]], domain
    assert by_worker  # the worker process did judge some of them
    rows = query(
        os.environ["ECTRUST_DB"],
        "select c.id, count(a.id) n from crawls c left join audits a on a.crawl_id = c.id "
        "group by c.id",
    )
    assert len(rows) == 12 and {r["n"] for r in rows} == {1}
    verify = cli.json("evidence", "verify", "--json")
    assert len(verify["audits"]) == 12 and {a["status"] for a in verify["audits"]} == {"ok"}
