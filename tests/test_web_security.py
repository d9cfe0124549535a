"""The evaluators' web application without a browser (Flask's test client, real SQLite):
every non-public route refuses anonymous requests (enumerated from ``app.url_map``, so a new
route cannot escape), every form refuses a missing or wrong CSRF token and cross-site
requests, evaluators cannot do administrators' actions, sessions, throttling, the users
command, the site filters and the dashboard."""

from __future__ import annotations

import json
import os
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from audits.account_models import LoginAttempt, User
from audits.accounts import MAX_FAILURES_PER_USER, disable_user, set_password
from audits.db import Store
from audits.evidence import BlobStore
from audits.models import Audit, Certificate, Crawl, Finding, Override, Site, Snapshot
from audits.registry import import_rows, read_csv
from audits.sightings import record_sighting
from ectrust.web import create_app
from ectrust.web.auth import PUBLIC_ENDPOINTS
from tests.web_support import ADMIN, CSRF, EVALUATOR, add_accounts, make_settings

TODAY = date(2026, 11, 29)
EXPECTED_PUBLIC = {
    "public.certificate_page",
    "public.badge_image",
    "public.certified_list",
    "static",
    "auth.login",
}
SAMPLE_ARGS = {
    "digest": "a" * 64,
    "cert_id": "ECT-2026-0001",
    "domain": "books.example",
    "action": "suspend",
    "filename": "site.css",
    "username": "eve",
}


@pytest.fixture
def app(tmp_path: Path, db_url: str) -> tuple[Flask, Store]:
    settings = make_settings(tmp_path, db_url)
    store = Store(settings.db_url)
    add_accounts(store)
    csv = tmp_path / "sites.csv"
    csv.write_text(
        "domain,name,start_url,industry,status,certificate_id,badge,valid_from,valid_until\n"
        "books.example,书香网上书城,http://books.example/,books,certified,ECT-2026-0001,red,"
        f"2026-01-01,{(TODAY + timedelta(days=10)).isoformat()}\n"
        "gadgets.example,数码,http://gadgets.example/,electronics,certified,ECT-2026-0002,"
        "blue,2026-01-01,2029-12-31\n"
        "new.example,新申请,http://new.example/,books,applicant,,,,\n",
        encoding="utf-8",
    )
    with store.session() as session:
        import_rows(session, read_csv(csv), "sites.csv")
    flask_app = create_app(settings, store, today=lambda: TODAY)
    flask_app.config["TESTING"] = False  # keep CSRF and every guard exactly as served
    return flask_app, store


def _url(rule: Any) -> str:
    values = {}
    for arg in rule.arguments:
        conv = rule._converters[arg].__class__.__name__
        values[arg] = 1 if conv == "IntegerConverter" else SAMPLE_ARGS.get(arg, "x")
    return rule.build(values)[1]


def _login(client: Any, who: tuple[str, str]) -> Any:
    token = CSRF.search(client.get("/login").text).group(1)
    return client.post("/login", data={"username": who[0], "password": who[1], "csrf_token": token})


def _token(client: Any, path: str = "/sites/new") -> str:
    return CSRF.search(client.get(path).text).group(1)


def test_public_endpoints_are_exactly_these(app: tuple[Flask, Store]) -> None:
    assert set(PUBLIC_ENDPOINTS) == EXPECTED_PUBLIC
    flask_app, _ = app
    assert {r.endpoint for r in flask_app.url_map.iter_rules()} >= EXPECTED_PUBLIC


def test_every_private_route_refuses_anonymous_requests(app: tuple[Flask, Store]) -> None:
    flask_app, _ = app
    client = flask_app.test_client()
    checked = 0
    for rule in flask_app.url_map.iter_rules():
        if rule.endpoint in PUBLIC_ENDPOINTS:
            continue
        url = _url(rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            resp = client.open(url, method=method)
            if method == "GET":
                assert resp.status_code == 302, (method, url)
                assert resp.headers["Location"].startswith("/login?next="), url
            else:
                assert resp.status_code == 401, (method, url, resp.status_code)
            checked += 1
    assert checked >= 20  # the enumeration did see the application's routes


def test_public_routes_need_no_login(app: tuple[Flask, Store]) -> None:
    client = app[0].test_client()
    assert client.get("/list").status_code == 200
    assert client.get("/cert/ECT-2026-0001").status_code == 200
    assert client.get("/badge/ECT-2026-0001.svg").mimetype == "image/svg+xml"


def test_every_form_refuses_missing_or_wrong_csrf_token(app: tuple[Flask, Store]) -> None:
    flask_app, store = app
    client = flask_app.test_client()
    assert _login(client, ADMIN).status_code == 302
    token = _token(client)
    posts = 0
    for rule in flask_app.url_map.iter_rules():
        if "POST" not in rule.methods or rule.endpoint == "auth.login":
            continue
        url = _url(rule)
        assert client.post(url, data={"reason": "some reason"}).status_code == 403, url
        wrong = {"csrf_token": token[:-4] + "AAAA", "reason": "some reason"}
        assert client.post(url, data=wrong).status_code == 403, url
        cross = client.post(
            url,
            data={"csrf_token": token, "reason": "some reason"},
            headers={"Sec-Fetch-Site": "cross-site"},
        )
        assert cross.status_code == 403, url
        posts += 1
    assert posts >= 10
    # Nothing happened: the certificate is still as imported.
    with store.session(readonly=True) as session:
        cert = session.scalar(select(Certificate).where(Certificate.cert_id == "ECT-2026-0001"))
        assert cert.status == "certified"
    # The login form is protected too.
    anon = flask_app.test_client()
    anon.get("/login")
    resp = anon.post("/login", data={"username": ADMIN[0], "password": ADMIN[1]})
    assert resp.status_code == 403


def test_same_origin_form_with_token_works(app: tuple[Flask, Store]) -> None:
    flask_app, store = app
    client = flask_app.test_client()
    _login(client, EVALUATOR)
    resp = client.post(
        "/certs/ECT-2026-0001/suspend",
        data={"csrf_token": _token(client), "reason": "complaints under review"},
        headers={"Sec-Fetch-Site": "same-origin"},
    )
    assert resp.status_code == 303
    with store.session(readonly=True) as session:
        cert = session.scalar(select(Certificate).where(Certificate.cert_id == "ECT-2026-0001"))
        assert cert.status == "suspended"
        assert cert.events[-1].actor == "eve" and "complaints" in cert.events[-1].reason


def test_evaluator_cannot_do_administrator_actions(app: tuple[Flask, Store]) -> None:
    flask_app, store = app
    client = flask_app.test_client()
    _login(client, EVALUATOR)
    token = _token(client)
    form = {"csrf_token": token, "reason": "trying my luck", "tier": "red"}
    assert client.get("/admin/users").status_code == 403
    assert (
        client.post(
            "/admin/users",
            data={**form, "username": "mallory", "password": "x" * 12, "role": "administrator"},
        ).status_code
        == 403
    )
    assert client.post("/admin/users/alice/disable", data=form).status_code == 403
    assert client.post("/certs/ECT-2026-0002/revoke", data=form).status_code == 403
    assert client.post("/certs/ECT-2026-0002/renew", data=form).status_code == 403
    assert client.post("/sites/new.example/certificate", data=form).status_code == 403
    with store.session(readonly=True) as session:
        assert session.scalar(select(func.count(User.id))) == 2
        assert session.get(User, 1).active
        cert = session.scalar(select(Certificate).where(Certificate.cert_id == "ECT-2026-0002"))
        assert cert.status == "certified"
        assert (
            session.scalar(
                select(func.count(Certificate.id)).join(Site).where(Site.domain == "new.example")
            )
            == 0
        )
    # The administrator may.
    admin = flask_app.test_client()
    _login(admin, ADMIN)
    token = _token(admin)
    resp = admin.post(
        "/certs/ECT-2026-0002/revoke", data={"csrf_token": token, "reason": "fraud confirmed"}
    )
    assert resp.status_code == 303
    with store.session(readonly=True) as session:
        cert = session.scalar(select(Certificate).where(Certificate.cert_id == "ECT-2026-0002"))
        assert cert.status == "revoked" and cert.events[-1].actor == "alice"


def test_session_cookie_flags_and_no_open_redirect(app: tuple[Flask, Store]) -> None:
    client = app[0].test_client()
    token = CSRF.search(client.get("/login").text).group(1)
    resp = client.post(
        "/login",
        data={
            "username": ADMIN[0],
            "password": ADMIN[1],
            "csrf_token": token,
            "next": "//evil.example/x",
        },
    )
    assert resp.status_code == 302 and resp.headers["Location"] == "/"
    cookie = next(c for c in resp.headers.getlist("Set-Cookie") if "ectrust_session=" in c)
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert "script-src" not in page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]


def test_login_throttling(app: tuple[Flask, Store]) -> None:
    flask_app, store = app
    client = flask_app.test_client()
    for _ in range(MAX_FAILURES_PER_USER):
        assert _login(client, (ADMIN[0], "wrong password!")).status_code == 401
    # The right password no longer helps for a while.
    assert _login(client, ADMIN).status_code == 429
    assert client.get("/").status_code == 302
    # Another account from the same address is not locked by those failures.
    assert _login(client, EVALUATOR).status_code == 302
    with store.session(readonly=True) as session:
        failures = session.scalar(
            select(func.count(LoginAttempt.id)).where(
                LoginAttempt.username == "alice", LoginAttempt.success.is_(False)
            )
        )
        assert failures == MAX_FAILURES_PER_USER + 1


def test_password_change_and_disable_end_sessions(app: tuple[Flask, Store]) -> None:
    flask_app, store = app
    alice, eve = flask_app.test_client(), flask_app.test_client()
    _login(alice, ADMIN)
    _login(eve, EVALUATOR)
    assert alice.get("/").status_code == 200 and eve.get("/").status_code == 200
    with store.session() as session:
        set_password(session, "alice", "a-new-password-9")
        disable_user(session, "eve")
    assert alice.get("/").status_code == 302
    assert eve.get("/").status_code == 302
    assert _login(flask_app.test_client(), ADMIN).status_code == 401
    assert _login(flask_app.test_client(), ("alice", "a-new-password-9")).status_code == 302
    assert _login(flask_app.test_client(), EVALUATOR).status_code == 401  # disabled


def _audit_with_finding(store: Store, domain: str, status: str) -> tuple[int, int]:
    with store.session() as session:
        site = session.scalar(select(Site).where(Site.domain == domain))
        crawl = Crawl(site_id=site.id, start_url=site.start_url, status="finished")
        session.add(crawl)
        session.flush()
        audit = Audit(crawl_id=crawl.id, site_id=site.id, reachable=True, score=40.0)
        session.add(audit)
        session.flush()
        f = Finding(
            audit_id=audit.id,
            rule_id="footer.privacy_link",
            pack="p",
            rule_sha256="0" * 64,
            status=status,
            severity="high",
            title={"en": "Privacy link", "zh": "隐私链接"},
            message="no link",
        )
        session.add(f)
        session.flush()
        return audit.id, f.id


def test_site_filters_and_overrides(app: tuple[Flask, Store]) -> None:
    flask_app, store = app
    _audit_with_finding(store, "books.example", "fail")
    _, gadget_finding = _audit_with_finding(store, "gadgets.example", "fail")
    client = flask_app.test_client()
    _login(client, EVALUATOR)

    def listed(query: str) -> set[str]:
        text = client.get(f"/sites?{query}").text
        return {
            d
            for d in ("books.example", "gadgets.example", "new.example")
            if f'href="/sites/{d}"' in text
        }

    assert listed("") == {"books.example", "gadgets.example", "new.example"}
    assert listed("status=applicant") == {"new.example"}
    assert listed("tier=blue") == {"gadgets.example"}
    assert listed("industry=books") == {"books.example", "new.example"}
    assert listed("failing=1") == {"books.example", "gadgets.example"}
    # An override without a reason is refused; with one it is recorded, the finding kept.
    token = _token(client)
    client.post(
        f"/findings/{gadget_finding}/override",
        data={"csrf_token": token, "status": "pass", "reason": " "},
    )
    with store.session(readonly=True) as session:
        assert session.scalar(select(func.count(Override.id))) == 0
    client.post(
        f"/findings/{gadget_finding}/override",
        data={
            "csrf_token": token,
            "status": "pass",
            "reason": "link present in the rendered footer",
        },
    )
    with store.session(readonly=True) as session:
        row = session.scalar(select(Override))
        assert (row.finding_id, row.status, row.actor) == (gadget_finding, "pass", "eve")
        assert session.get(Finding, gadget_finding).status == "fail"
    assert listed("failing=1") == {"books.example"}
    page = client.get("/sites/gadgets.example").text
    assert "link present in the rendered footer" in page and "st-fail" in page


def test_dashboard_shows_what_needs_attention(app: tuple[Flask, Store]) -> None:
    flask_app, store = app
    with store.session() as session:
        record_sighting(
            session,
            cert_id="ECT-2026-0001",
            domain="copycat.example",
            page="http://copycat.example/shop",
            source="badge",
            served="invalid",
        )
    client = flask_app.test_client()
    _login(client, EVALUATOR)
    text = client.get("/").text
    expiring = text.split('id="expiring"')[1]
    assert "ECT-2026-0001" in expiring and "ECT-2026-0002" not in expiring
    assert "copycat.example" in text.split('id="misuse"')[1]


def test_evidence_is_never_rendered(app: tuple[Flask, Store]) -> None:
    flask_app, store = app
    settings = flask_app.extensions["ectrust"]["settings"]
    body = b"<html><meta http-equiv=refresh content='0;url=/x'><script>alert(1)</script>"
    digest = BlobStore(settings.home).put(body)
    with store.session() as session:
        site = session.scalar(select(Site).where(Site.domain == "books.example"))
        crawl = Crawl(site_id=site.id, start_url=site.start_url, status="finished")
        session.add(crawl)
        session.flush()
        session.add(
            Snapshot(
                crawl_id=crawl.id,
                url="http://books.example/",
                status=200,
                final_url="http://books.example/",
                content_hash=digest,
            )
        )
    client = flask_app.test_client()
    assert client.get(f"/evidence/{digest}").status_code == 302  # anonymous
    _login(client, EVALUATOR)
    raw = client.get(f"/evidence/{digest}")
    assert raw.data == body
    assert raw.mimetype == "text/plain"
    assert raw.headers["X-Content-Type-Options"] == "nosniff"
    assert raw.headers["Content-Security-Policy"].startswith("sandbox")
    assert raw.headers["Content-Disposition"].startswith("attachment")
    view = client.get(f"/evidence/{digest}/view").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in view and "<script>" not in view
    assert client.get(f"/evidence/{'b' * 64}").status_code == 404  # not a stored page


def test_users_command(env: Path) -> None:
    from typer.testing import CliRunner

    from ectrust.cli import app as cli_app

    def cli(*args: str, input: str, expect: int = 0) -> None:
        result = CliRunner().invoke(cli_app, list(args), input=input)
        assert result.exit_code == expect, (args, result.stdout, result.stderr)

    cli("users", "add", "Carol", "--role", "administrator", input="pw-for-carol-1\n" * 2)
    cli("users", "add", "dave", input="short\nshort\n", expect=2)
    cli("users", "add", "carol", input="pw-for-carol-1\n" * 2, expect=2)  # exists
    cli("users", "passwd", "carol", input="pw-for-carol-2\n" * 2)
    cli("users", "disable", "carol", input="")
    cli("users", "disable", "nobody", input="", expect=2)
    store = Store(os.environ["ECTRUST_DB"])
    with store.session(readonly=True) as session:
        carol = session.scalar(select(User).where(User.username == "carol"))
        assert carol.role == "administrator" and not carol.active
        assert carol.session_epoch == 2
        assert "pw-for-carol" not in carol.password_hash
        assert session.scalar(select(func.count(User.id))) == 1
    store.dispose()


def test_behind_a_proxy_the_client_address_is_throttled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str
) -> None:
    settings = make_settings(tmp_path, db_url)
    store = Store(settings.db_url)
    add_accounts(store)
    for hops, expected in (("", "127.0.0.1"), ("1", "203.0.113.7")):
        monkeypatch.setenv("ECTRUST_PROXY_HOPS", hops)
        client = create_app(settings, store).test_client()
        token = CSRF.search(client.get("/login").text).group(1)
        client.post(
            "/login",
            data={"username": "eve", "password": "wrong-password", "csrf_token": token},
            headers={"X-Forwarded-For": "203.0.113.7"},
            environ_base={"REMOTE_ADDR": "127.0.0.1"},
        )
        with store.session(readonly=True) as session:
            last = session.scalar(select(LoginAttempt).order_by(LoginAttempt.id.desc()))
            assert last.address == expected


def test_administrator_renews_with_a_reason(app: tuple[Flask, Store]) -> None:
    flask_app, store = app
    client = flask_app.test_client()
    _login(client, ADMIN)
    token = _token(client)
    before = TODAY + timedelta(days=10)
    no_reason = client.post("/certs/ECT-2026-0001/renew", data={"csrf_token": token})
    assert no_reason.status_code == 303
    bad_years = client.post(
        "/certs/ECT-2026-0001/renew",
        data={"csrf_token": token, "reason": "annual review", "years": "two"},
    )
    assert bad_years.status_code == 303
    with store.session(readonly=True) as session:
        cert = session.scalar(select(Certificate).where(Certificate.cert_id == "ECT-2026-0001"))
        assert cert.valid_until == before and len(cert.events) == 1
    client.post(
        "/certs/ECT-2026-0001/renew",
        data={"csrf_token": token, "reason": "annual review passed", "years": "1"},
    )
    with store.session(readonly=True) as session:
        cert = session.scalar(select(Certificate).where(Certificate.cert_id == "ECT-2026-0001"))
        assert cert.valid_until > before
        assert (cert.events[-1].reason, cert.events[-1].actor) == ("annual review passed", "alice")


def test_pages_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    """Every page's queries on PostgreSQL too (the same flows as above, shorter)."""
    settings = make_settings(tmp_path, pg_url)
    store = Store(pg_url)
    add_accounts(store)
    with store.session() as session:
        session.add(Site(domain="books.example", start_url="http://books.example/", industry="b"))
    audit_id, finding_id = _audit_with_finding(store, "books.example", "fail")
    with store.session() as session:
        record_sighting(
            session,
            cert_id="ECT-2026-0001",
            domain="copycat.example",
            page="http://copycat.example/",
            source="badge",
            served="invalid",
        )
    client = create_app(settings, store, today=lambda: TODAY).test_client()
    _login(client, ADMIN)
    token = _token(client)
    client.post(
        f"/findings/{finding_id}/override",
        data={"csrf_token": token, "status": "pass", "reason": "checked by hand"},
    )
    for path in (
        "/",
        "/sites",
        "/sites?failing=1&due=1",
        "/sites/books.example",
        f"/audits/{audit_id}",
        "/findings",
        "/runs",
        "/reports",
        "/admin/users",
    ):
        resp = client.get(path)
        assert resp.status_code == 200, path
    assert "checked by hand" in client.get(f"/audits/{audit_id}").text
    assert "copycat.example" in client.get("/").text
    store.dispose()


def test_monitoring_report_is_generated_for_the_chosen_period(app: tuple[Flask, Store]) -> None:
    """The monitoring report from the web: the period and cohort given in the form, the
    certificate expiring ten days after it listed, a bad date refused with a message."""
    flask_app, _ = app
    client = flask_app.test_client()
    _login(client, EVALUATOR)
    token = _token(client, "/reports")
    form = {"kind": "monitoring", "format": "json", "lang": "zh", "csrf_token": token,
            "since": "2026-11-01", "until": TODAY.isoformat(), "industry": "books"}
    resp = client.post("/reports", data=form)
    assert resp.status_code == 200
    assert "attachment" in resp.headers["Content-Disposition"]
    doc = json.loads(resp.data)
    assert doc["period"]["since"] == "2026-11-01" and doc["period"]["industry"] == "books"
    assert [c["domain"] for c in doc["certificates"]["expiring"]] == ["books.example"]
    assert doc["totals"]["certificates_expiring"] == 1
    bad = client.post("/reports", data={**form, "since": "29/11/2026"})
    assert bad.status_code == 303
    assert "YYYY-MM-DD" in client.get("/reports").text
