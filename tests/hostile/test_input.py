"""Hostile content and bad input: RELIABILITY.md T39 (rule YAML, runaway regexes, PDF) and
the issue's fuzzing of CSV imports and rule files (hypothesis): every bad input gets exit 2
and a message naming the problem, never a traceback. Also: crawled markup is inert in the
HTML report (the web UI's share of this, T37/T38, belongs to the web issue)."""

from __future__ import annotations

import re
import time
import uuid
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audits.engine import evaluate_rule
from audits.pages import Page, SiteView
from audits.rulepack import RULES_DIR, load_pack
from tests.hostile.harness import crawl_settings, home

HEADER = "domain,name,start_url,industry,status,certificate_id,badge,valid_from,valid_until"
TRICKY = [
    "", " ", "shop.example", "SHOP.EXAMPLE.", "xn--fiq228c.example", "店铺.example",
    "http://shop.example/", "https://shop.example:8443/a?b=c", "javascript:alert(1)",
    "file:///etc/passwd", "http://127.0.0.1/", "http://[::1]/", "127.1", "0x7f.1",
    "applicant", "certified", "suspended", "revoked", "expired", "CERTIFIED", "red", "blue",
    "green", "2026-01-01", "2026-02-30", "01/02/2026", "9999-12-31", "0000-00-00",
    "ECT-2026-0001", "ECT 2026", "=cmd|'/c calc'!A0", '"quoted, comma"', "a\nb", "\ufeff",
    "x" * 300, "\u202e", "'; drop table sites; --", "\x00", "\t", "-", "..",
]
cell = st.one_of(st.sampled_from(TRICKY), st.text(max_size=30))
row = st.lists(cell, min_size=0, max_size=11).map(
    lambda cells: ",".join('"' + c.replace('"', '""') + '"' if ("," in c or "\n" in c or '"' in c)
                           else c for c in cells))
csv_text = st.one_of(
    st.lists(row, max_size=6).map(lambda rows: "\n".join([HEADER, *rows]) + "\n"),
    st.text(max_size=300),
    st.lists(row, max_size=6).map(lambda rows: "\n".join(rows)),
)


def assert_clean_failure(result) -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code in (0, 2), (result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    if result.exit_code == 2:
        assert "error:" in result.stderr and len(result.stderr.strip()) > len("error:")


@pytest.mark.case("T39")
@pytest.mark.timeout(300)
@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(content=st.one_of(csv_text.map(lambda t: t.encode("utf-8")), st.binary(max_size=200)))
def test_fuzz_csv_import_never_crashes(env, cli, content):
    path = env / "sites.csv"
    path.write_bytes(content)
    result = cli("sites", "import", str(path), expect=None)
    assert_clean_failure(result)
    if result.exit_code == 2:
        assert "sites.csv" in result.stderr  # names the file (and line where there is one)


VALID_RULES = (RULES_DIR / "trust_norms.yaml").read_text(encoding="utf-8")
YAML_HOSTILE = [
    "!!python/object/apply:os.system ['true']", "!!binary AAAA", "&a [*a]", "*undefined",
    "{", "[" * 200, "'(a+)+$'", "'('", "null", "~", "- - -", "? complex\n: key", "1e9999",
    "'\\x00'", "!!set {a, b}", "<<: *x", "\t", "--- \n---", "%YAML 9.9",
]


def _mutate(text: str, data: st.DataObject) -> str:
    lines = text.splitlines()
    i = data.draw(st.integers(0, len(lines) - 1))
    choice = data.draw(st.sampled_from(["replace_value", "drop", "duplicate", "insert"]))
    junk = data.draw(st.one_of(st.sampled_from(YAML_HOSTILE), st.text(max_size=20)))
    if choice == "replace_value" and ":" in lines[i]:
        key = lines[i].split(":", 1)[0]
        lines[i] = f"{key}: {junk}"
    elif choice == "drop":
        del lines[i]
    elif choice == "duplicate":
        lines.insert(i, lines[i])
    else:
        lines.insert(i, junk)
    return "\n".join(lines) + "\n"


@pytest.mark.case("T39")
@pytest.mark.timeout(300)
@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_rule_files_never_crash(env, cli, data):
    kind = data.draw(st.sampled_from(["mutated", "mutated2", "random", "bytes"]))
    if kind == "random":
        content = data.draw(st.text(max_size=400)).encode("utf-8")
    elif kind == "bytes":
        content = data.draw(st.binary(max_size=300))
    else:
        text = _mutate(VALID_RULES, data)
        if kind == "mutated2":
            text = _mutate(text, data)
        content = text.encode("utf-8")
    path = env / "pack.yaml"
    path.write_bytes(content)
    result = cli("rules", "validate", str(path), expect=None)
    assert_clean_failure(result)
    if result.exit_code == 2:
        assert "pack.yaml" in result.stderr


@pytest.mark.case("T39")
@pytest.mark.timeout(60)
def test_t39_yaml_object_construction_is_refused(env, cli):
    marker = Path(f"/tmp/pwned-{uuid.uuid4().hex}")
    evil = VALID_RULES.replace(
        "pack: ectrust-norms", f'pack: !!python/object/apply:os.system ["touch {marker}"]'
    )
    (env / "evil.yaml").write_text(evil, encoding="utf-8")
    result = cli("rules", "validate", str(env / "evil.yaml"), expect=2)
    assert "evil.yaml:" in result.stderr and "not valid YAML" in result.stderr
    assert not marker.exists()
    # The bundled rule set is untouched and still loads.
    assert cli("rules", "validate").exit_code == 0


RUNAWAY_PACK = """
pack: redos
version: "1"
title: {zh: 测试, en: test}
rules:
  - id: redos.rule
    title: {zh: 测试, en: test}
    severity: minor
    references: [none]
    scope: homepage
    check:
      type: text_present
      patterns: ['(a+)+$']
    guidance: {zh: 无, en: none}
    examples:
      - expect: pass
        pages: [{url: "http://shop.example/", html: "<p>a</p>"}]
      - expect: fail
        pages: [{url: "http://shop.example/", html: "<p>b</p>"}]
"""


@pytest.mark.case("T39")
@pytest.mark.timeout(60)
def test_t39_runaway_regex_is_bounded_and_reported(tmp_path):
    path = tmp_path / "redos.yaml"
    path.write_text(RUNAWAY_PACK, encoding="utf-8")
    rule = load_pack(path).rules[0]
    hostile = "a" * 50_000 + "b"
    page = Page(url="http://shop.example/", final_url="http://shop.example/", status=200,
                depth=0, reason="start", link_text="", referrer=None, error=None,
                headers={"content-type": ["text/html; charset=utf-8"]},
                body=f"<html><body><p>{hostile}</p></body></html>".encode())
    site = SiteView(domain="shop.example", start_url="http://shop.example/", pages=[page],
                    crawl_date=date(2026, 1, 1))
    started = time.monotonic()
    outcome = evaluate_rule(site, rule)
    assert time.monotonic() - started < 20
    assert outcome.status == "error"
    assert "too slow" in outcome.message


@pytest.mark.case("T39")
@pytest.mark.timeout(60)
def test_t39_pdf_reports(env, cli, public, canary):
    """A crawled page full of references to local files and to the canary, through `audit`
    and `report site --format pdf`: the PDF renderer fetches none of them."""
    canary_url = f"http://127.0.0.1:{canary.port}"
    public.html("/", home(
        (f"{canary_url}/link", "隐私政策"), ("file:///etc/passwd", "关于我们"),
        extra=f'<footer>京ICP备12345678号 <img src="{canary_url}/img.png">'
        f'<img src="file:///etc/passwd"><link rel="stylesheet" href="{canary_url}/a.css">'
        "</footer>",
    ).replace("<title>店铺</title>", f'<title>店铺 <img src="{canary_url}/t.png"></title>'))
    cli("sites", "add", "public.test", "--url", f"http://public.test:{public.port}/")
    cli.json("audit", "public.test", "--json", "--render", "never", *crawl_settings(public))
    hits_after_audit = canary.hits
    result = cli("report", "site", "public.test", "--out", str(env / "r"), "--format", "pdf")
    pdfs = [Path(p) for p in result.stdout.split() if p.endswith(".pdf")]
    assert pdfs and all(p.read_bytes().startswith(b"%PDF") for p in pdfs)
    assert canary.hits == hits_after_audit == 0
    assert all(b"root:x:0:0" not in p.read_bytes() for p in pdfs)


def test_hostile_markup_is_inert_in_the_html_report(env, cli, public, canary):
    """The report share of hostile content: crawled title, excerpts and links are text."""
    public.html("/", home(
        ("javascript:alert(1)", "隐私政策"), ('/about"><script>alert(2)</script>', "关于我们"),
        extra="<footer>京ICP备12345678号 <img src=x onerror=alert(3)> {{7*7}} \u202e</footer>",
    ).replace("<title>店铺</title>", "<title></title><script>alert(1)</script></title>"))
    cli("sites", "add", "public.test", "--url", f"http://public.test:{public.port}/")
    cli.json("audit", "public.test", "--json", "--render", "never", *crawl_settings(public))
    result = cli("report", "site", "public.test", "--out", str(env / "r"), "--format", "html")
    html = "".join(Path(p).read_text(encoding="utf-8") for p in result.stdout.split()
                   if p.endswith(".html"))
    assert html
    assert "<script>alert" not in html
    assert not re.search(r"<img[^>]*onerror", html)
    assert not re.search(r"href\s*=\s*[\"']?\s*javascript:", html, re.IGNORECASE)
    assert "Content-Security-Policy" in html
    assert canary.hits == 0
