"""The alert outbox: one digest per run, a failed delivery kept and retried with a pause,
never lost, never sent twice; webhook signature; bad settings named."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from audits.db import Store
from audits.models import Audit, Crawl, Site
from audits.monitoring_models import AlertDelivery, AlertDigest, Change
from ectrust.alerts import AlertConfigError, AlertSettings, flush_alerts
from tests.alert_receivers import SmtpReceiver, WebhookReceiver, free_port

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def store(env, db_url):
    store = Store(db_url)
    with store.session() as s:
        site = Site(domain="shop.example", start_url="http://shop.example/", name="Shop")
        s.add(site)
        s.flush()
        crawls = [Crawl(site_id=site.id, start_url=site.start_url, status="finished") for _ in "ab"]
        s.add_all(crawls)
        s.flush()
        audits = [Audit(crawl_id=c.id, site_id=site.id, reachable=True) for c in crawls]
        s.add_all(audits)
        s.flush()
        s.add(
            Change(
                site_id=site.id,
                audit_id=audits[1].id,
                previous_audit_id=audits[0].id,
                kind="regression",
                rule_id="complaint.channel_present",
                detail={
                    "title": "Complaint channel",
                    "severity": "major",
                    "before": {
                        "audit_id": audits[0].id,
                        "status": "pass",
                        "message": "found",
                        "evidence": [{"url": "http://shop.example/complaints", "excerpt": "投诉"}],
                    },
                    "after": {
                        "audit_id": audits[1].id,
                        "status": "fail",
                        "message": "no complaint channel",
                        "evidence": [],
                    },
                },
            )
        )
    yield store
    store.dispose()


def deliveries(store: Store) -> list[AlertDelivery]:
    with store.session(readonly=True) as s:
        return list(s.scalars(select(AlertDelivery).order_by(AlertDelivery.id)))


def test_failed_webhook_is_kept_and_retried_after_a_pause(store):
    with WebhookReceiver(fail_first=1) as hook:
        settings = AlertSettings(webhook=hook.url, webhook_secret="s3cret")
        first = flush_alerts(store, settings, NOW)
        assert first["digest_id"] is not None and first == {**first, "sent": 0, "failed": 1}
        (d,) = deliveries(store)
        assert d.status == "pending" and d.attempts == 1 and "503" in d.last_error
        # Not before its pause is over; no second digest for the same changes.
        assert flush_alerts(store, settings, NOW + timedelta(seconds=30)) == {
            "digest_id": None,
            "sent": 0,
            "failed": 0,
        }
        assert len(hook.requests) == 1
        later = flush_alerts(store, settings, NOW + timedelta(minutes=2))
        assert later["sent"] == 1
        (d,) = deliveries(store)
        assert d.status == "sent" and d.attempts == 2
        assert flush_alerts(store, settings, NOW + timedelta(hours=1))["sent"] == 0
    assert len(hook.requests) == 2
    bodies = hook.payloads()
    assert bodies[0] == bodies[1] and bodies[0]["digest_id"] == first["digest_id"]
    request = hook.requests[1]
    expected = hmac.new(b"s3cret", request["body"], hashlib.sha256).hexdigest()
    assert request["headers"]["X-Ectrust-Signature"] == f"sha256={expected}"
    change = bodies[0]["sites"][0]["changes"][0]
    assert change["links"] == ["http://shop.example/complaints"]


def test_mail_server_down_then_up_delivers_the_same_digest(store):
    port = free_port()  # nothing listens there yet
    settings = AlertSettings(
        to=("a@trust.example", "b@trust.example"), smtp_host="127.0.0.1", smtp_port=port
    )
    assert flush_alerts(store, settings, NOW)["failed"] == 1
    (d,) = deliveries(store)
    assert d.status == "pending" and "Connection refused" in d.last_error
    with SmtpReceiver(port) as smtp:
        assert flush_alerts(store, settings, NOW + timedelta(minutes=1))["sent"] == 1
    ((rcpts, mail),) = smtp.messages
    assert sorted(rcpts) == ["a@trust.example", "b@trust.example"]
    body = mail.get_body(("plain",)).get_content()
    assert "complaint.channel_present" in body and "no complaint channel" in body
    assert "http://shop.example/complaints" in body
    with store.session(readonly=True) as s:
        assert len(s.scalars(select(AlertDigest)).all()) == 1


def test_no_channel_keeps_the_digest(store, caplog):
    result = flush_alerts(store, AlertSettings(), NOW)
    assert result["digest_id"] is not None and deliveries(store) == []
    assert "no alert channel is configured" in caplog.text
    with store.session(readonly=True) as s:
        assert s.scalars(select(Change)).one().digest_id == result["digest_id"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"ECTRUST_SMTP_TLS": "maybe"}, "ECTRUST_SMTP_TLS"),
        ({"ECTRUST_SMTP_PORT": "smtp"}, "ECTRUST_SMTP_PORT"),
        ({"ECTRUST_ALERT_WEBHOOK": "ftp://x"}, "ECTRUST_ALERT_WEBHOOK"),
    ],
)
def test_bad_settings_are_named(values, message):
    with pytest.raises(AlertConfigError, match=message):
        AlertSettings.from_env(values)


def test_settings_from_env():
    s = AlertSettings.from_env(
        {"ECTRUST_ALERT_TO": "a@x, b@x", "ECTRUST_ALERT_WEBHOOK": "https://hooks.example/x"}
    )
    assert s.to == ("a@x", "b@x") and s.smtp_port == 25
    assert s.channels() == [("email", "a@x, b@x"), ("webhook", "https://hooks.example/x")]
