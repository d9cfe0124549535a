"""A certified site regresses between two audits (privacy policy removed, badge link
broken): `audit --due` finds it due, the changes are stored, and ONE digest reaches a real
SMTP server and a webhook receiver with both audits' evidence; the monitoring data of the
period counts it."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta

import time_machine

from audits.db import Store
from audits.monitoring import monitoring_data
from ectrust.config import Settings
from tests.alert_receivers import SmtpReceiver, WebhookReceiver
from tests.conftest import DEMO_SITES

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
CSV = (
    "domain,name,start_url,industry,status,certificate_id,badge,valid_from,valid_until\n"
    "books.example,书香网上书城,http://books.example/,books,certified,ECT-2024-0001,red,"
    "2024-03-01,2027-02-28\n"
)
BADGE = (
    '<a href="http://verify.trust.example/cert/ECT-2024-0001"><img '
    'src="http://verify.trust.example/badge/ECT-2024-0001.svg" alt="诚信认证标识"></a>'
)


def test_regression_on_certified_site_sends_one_digest(env, cli, site_farm, monkeypatch):
    farm, root = site_farm
    shutil.copytree(DEMO_SITES / "books.example", root / "books.example")
    shutil.copytree(DEMO_SITES / "verify.trust.example", root / "verify.trust.example")
    (env / "sites.csv").write_text(CSV, encoding="utf-8")
    monkeypatch.setenv("ECTRUST_CONNECT_TO", f"::127.0.0.1:{farm.port}")
    with SmtpReceiver() as smtp, WebhookReceiver() as hook:
        monkeypatch.setenv("ECTRUST_ALERT_TO", "evaluator@trust.example")
        monkeypatch.setenv("ECTRUST_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("ECTRUST_SMTP_PORT", str(smtp.port))
        monkeypatch.setenv("ECTRUST_ALERT_WEBHOOK", hook.url)
        fast = ["-s", "DOWNLOAD_DELAY=0", "--max-pages", "12"]
        with time_machine.travel(T0, tick=False) as clock:
            cli("sites", "import", "sites.csv")
            first = cli.json("audit", "books.example", "--json", *fast)["audits"][0]
            assert first["badge"]["verdict"] == "valid"
            assert first["privacy_policy"]["url"] == "http://books.example/privacy.html"

            # Not due the next day; due after its 30-day interval.
            clock.shift(timedelta(days=1))
            listed = cli.json("schedule", "list", "--json")["checks"]
            assert listed[0]["domain"] == "books.example" and listed[0]["state"] == "planned"
            assert cli.json("audit", "--due", "--json", *fast) == {"audits": []}

            # The shop removes its policy and unlinks the badge.
            index = root / "books.example" / "index.html"
            html = index.read_text(encoding="utf-8")
            assert BADGE in html
            html = html.replace(BADGE, BADGE[BADGE.index("<img") : BADGE.index("</a>")])
            html = html.replace('|<a href="/privacy.html">隐私政策</a>', "")
            index.write_text(html, encoding="utf-8")
            (root / "books.example" / "privacy.html").unlink()

            clock.shift(timedelta(days=31))
            listed = cli.json("schedule", "list", "--json")["checks"]
            assert listed[0]["state"] in ("due", "overdue")
            second = cli.json("audit", "--due", "--json", *fast)["audits"]
            assert [a["domain"] for a in second] == ["books.example"]
            second = second[0]
            assert second["badge"]["verdict"] == "unlinked"
            assert second["privacy_policy"] is None

            # Exactly one digest, on both channels.
            assert len(smtp.messages) == 1 and len(hook.requests) == 1
            payload = hook.payloads()[0]
            (site,) = payload["sites"]
            assert site["domain"] == "books.example"
            assert [a["audit_id"] for a in site["audits"]] == [second["audit_id"]]
            assert [a["audit_id"] for a in site["previous_audits"]] == [first["audit_id"]]
            kinds = {(c["kind"], c["rule_id"]): c for c in site["changes"]}
            policy = kinds[("regression", "privacy.policy_present")]
            assert policy["detail"]["before"]["audit_id"] == first["audit_id"]
            assert policy["detail"]["before"]["status"] == "pass"
            before_urls = {e["url"] for e in policy["detail"]["before"]["evidence"]}
            assert "http://books.example/privacy.html" in before_urls
            assert policy["detail"]["after"]["audit_id"] == second["audit_id"]
            # The page is gone; links to it remain: "found a link, could not read it".
            assert policy["detail"]["after"]["status"] in ("fail", "review")
            assert "http://books.example/privacy.html" in policy["links"]
            badge = kinds[("regression", "badge.valid")]
            assert badge["detail"]["before"]["evidence"][0]["href"].endswith("ECT-2024-0001")
            assert badge["detail"]["after"]["status"] == "fail"
            assert kinds[("badge_changed", "badge.valid")]["detail"]["before"] == "valid"
            assert kinds[("badge_changed", "badge.valid")]["detail"]["after"] == "unlinked"
            removed = kinds[("policy_changed", None)]["detail"]
            assert removed["removed_policy"] and removed["significant"]
            assert removed["sentences_before"] > 10 and removed["sentences_after"] == 0
            assert payload["alerts"] >= 3

            rcpts, mail = smtp.messages[0]
            assert rcpts == ["evaluator@trust.example"]
            assert str(mail["Subject"]).strip().startswith("[ectrust] ALERT 1 site(s)")
            text = mail.get_body(("plain",)).get_content()
            assert "privacy.policy_present" in text and "badge valid → unlinked" in text
            assert f"before (audit {first['audit_id']}): pass" in text
            assert f"now (audit {second['audit_id']}): " in text
            assert "http://books.example/privacy.html" in text
            attached = [p for p in mail.iter_attachments() if p.get_filename().endswith(".json")]
            assert json.loads(attached[0].get_content())["digest_id"] == payload["digest_id"]

            # Nothing more is due, and nothing is sent twice.
            assert cli.json("audit", "--due", "--json", *fast) == {"audits": []}
            assert len(smtp.messages) == 1 and len(hook.requests) == 1

            store = Store(Settings.from_env().db_url)
            data = monitoring_data(store, T0, datetime.now(UTC) + timedelta(hours=1))
            store.dispose()
    totals = data["totals"]
    assert totals["sites_checked"] == 1 and totals["audits"] == 2
    assert totals["checks_scheduled"] == 1 and totals["checks_failed"] == 0
    assert totals["badge_changes"] == 1 and totals["policy_changes"] == 1
    assert totals["regressions"] >= 2 and totals["overdue"] == 0
    rules = {c["rule_id"] for c in data["regressions"]}
    assert {"privacy.policy_present", "badge.valid"} <= rules
    (row,) = [s for s in data["sites"] if s["domain"] == "books.example"]
    assert row["badge"] == "unlinked" and row["state"] == "planned"
    assert [a["audit_id"] for a in row["audits"]] == [first["audit_id"], second["audit_id"]]
    json.dumps(data)  # plain data, ready for any renderer
