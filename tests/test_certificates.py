"""Certificate lifecycle (issue, renew, suspend, reinstate, revoke, show), its append-only
history, expiry from dates, the public pages' escaping and headers, and the migration."""

from __future__ import annotations

import io
import os
from datetime import date

import pytest
from PIL import Image
from sqlalchemy import text

from audits.badgeart import match_image, phash_distance, render_svg
from audits.certificates import add_years
from tests.conftest import DEMO_CSV


def test_lifecycle_through_the_cli(env, cli):
    cli("sites", "add", "shop.example", "--url", "http://shop.example/", "--name", "小店")
    result = cli("cert", "issue", "shop.example", "--tier", "red", expect=2)
    assert "reason" in result.stderr  # every change needs a reason
    issued = cli.json(
        "cert", "issue", "shop.example", "--tier", "red", "--from", "2026-03-01",
        "--reason", "audit 12 passed", "--actor", "li", "--json",
    )  # fmt: skip
    cert_id = issued["certificate_id"]
    assert cert_id == "ECT-2026-0001"
    assert (issued["valid_from"], issued["valid_until"]) == ("2026-03-01", "2027-02-28")
    again = cli("cert", "issue", "shop.example", "--tier", "blue", "--reason", "x", expect=2)
    assert "already holds certificate ECT-2026-0001" in again.stderr

    renewed = cli.json("cert", "renew", cert_id, "--reason", "annual review", "--json")
    assert renewed["valid_until"] == "2028-02-29"  # a year from 2027-03-01; 2028 is leap
    cli.json("cert", "suspend", cert_id, "--reason", "complaint", "--json")
    assert "reinstate" in cli("cert", "renew", cert_id, "--reason", "x", expect=2).stderr
    cli("cert", "reinstate", cert_id, "--reason", "resolved")
    shown = cli.json("cert", "revoke", cert_id, "--reason", "fraud", "--json")
    assert shown["status"] == "revoked" and shown["effective_status"] == "revoked"
    assert [(h["status"], h["reason"]) for h in shown["history"]] == [
        ("certified", "audit 12 passed"), ("certified", "annual review"),
        ("suspended", "complaint"), ("certified", "resolved"), ("revoked", "fraud"),
    ]  # fmt: skip
    assert shown["history"][0]["actor"] == "li"
    assert (
        "cannot make it suspended"
        in cli("cert", "suspend", cert_id, "--reason", "x", expect=2).stderr
    )
    # After revocation a new certificate (a new id) may be issued; the old one stays.
    new = cli.json("cert", "issue", "shop.example", "--tier", "blue", "--reason", "re-certified",
                   "--json")  # fmt: skip
    year = date.today().year
    assert new["certificate_id"] == (f"ECT-{year}-0002" if year == 2026 else f"ECT-{year}-0001")
    assert cli.json("cert", "show", cert_id, "--json")["status"] == "revoked"
    assert "no certificate 'NOPE-1'" in cli("cert", "show", "NOPE-1", expect=2).stderr
    assert (
        "not registered"
        in cli("cert", "issue", "other.example", "--tier", "red", "--reason", "x", expect=2).stderr
    )


def test_expiry_is_computed_from_dates_and_history_is_append_only(env, cli):
    cli("sites", "import", str(DEMO_CSV))
    market = cli.json("cert", "show", "ECT-2022-0003", "--json")
    assert market["status"] == "certified" and market["effective_status"] == "expired"
    renewed = cli.json("cert", "renew", "ECT-2022-0003", "--reason", "re-audited", "--json")
    assert renewed["effective_status"] == "certified"
    assert date.fromisoformat(renewed["valid_until"]) > date.today()

    from audits.db import Store
    from audits.sightings import record_sighting

    store = Store(os.environ["ECTRUST_DB"])
    with store.session() as session:
        assert record_sighting(
            session,
            cert_id="ECT-1",
            domain="x.example",
            page="http://x.example/",
            source="badge",
            served="invalid",
        )
        # The same page again within minutes is not recorded twice.
        assert not record_sighting(
            session,
            cert_id="ECT-1",
            domain="x.example",
            page="http://x.example/",
            source="badge",
            served="invalid",
        )
    for sql in (
        "UPDATE certificate_events SET reason = 'x'",
        "DELETE FROM certificate_events",
        "DELETE FROM badge_sightings",
        "UPDATE badge_sightings SET domain = 'y'",
    ):
        with pytest.raises(Exception, match="append-only"), store.engine.begin() as conn:
            conn.execute(text(sql))
    store.dispose()


def test_add_years():
    assert add_years(date(2026, 3, 1), 1) == date(2027, 2, 28)
    assert add_years(date(2024, 2, 29), 1) == date(2025, 2, 27)


def test_public_pages_escape_and_headers(env, cli):
    from ectrust.web import create_app

    cli("sites", "add", "shop.example", "--url", "http://shop.example/",
        "--name", '"><img src=x onerror=alert(1)>{{7*7}}')  # fmt: skip
    cert_id = cli.json("cert", "issue", "shop.example", "--tier", "blue", "--reason", "ok",
                       "--json")["certificate_id"]  # fmt: skip
    client = create_app().test_client()
    page = client.get(f"/cert/{cert_id}")
    html = page.get_data(as_text=True)
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "{{7*7}}" in html  # shown, not evaluated
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    badge = client.get("/badge/ECT-9999-0001.svg")
    assert badge.mimetype == "image/svg+xml" and "NOT VALID HERE" in badge.get_data(as_text=True)
    assert badge.headers["Cache-Control"] == "no-store"
    assert badge.headers["Cross-Origin-Resource-Policy"] == "cross-origin"
    assert client.get("/cert/ECT-9999-0001").status_code == 404
    bad = client.get("/badge/..%2Fetc.svg")
    assert bad.status_code in (200, 404) and b"etc" not in bad.data
    # A verification page opened from a foreign page warns (SAMR-style) and is recorded.
    warned = client.get("/cert/ECT-9999-0001", headers={"Referer": "http://fake.example/"})
    assert "fake.example" in warned.get_data(as_text=True)


def test_svg_copies_are_recognised():
    svg = render_svg("ECT-2026-0042", "red", "valid").encode()
    assert match_image(svg).how == "svg_exact" and match_image(svg).cert_id == "ECT-2026-0042"
    reformatted = svg.replace(b"\n", b"\r\n  ")
    found = match_image(reformatted)
    assert found.how == "svg_marker" and found.cert_id == "ECT-2026-0042"
    assert match_image(b"<svg xmlns='http://www.w3.org/2000/svg'><rect/></svg>") is None


@pytest.mark.parametrize(
    ("fmt", "scale", "quality"),
    [("JPEG", 0.5, 40), ("PNG", 1.3, 95), ("WEBP", 0.7, 30), ("GIF", 0.4, 0)],
)
def test_raster_copies_match_and_unrelated_images_do_not(fmt, scale, quality):
    from tests.badge_sites import product_photo, raster_copy

    copy = raster_copy(fmt, scale, quality or 75)
    found = match_image(copy)
    assert found is not None and found.how == "phash", phash_distance(copy)
    assert match_image(product_photo()) is None
    for colour in ((200, 20, 30), (20, 80, 180), (255, 255, 255)):
        buf = io.BytesIO()
        Image.new("RGB", (160, 52), colour).save(buf, "PNG")
        assert match_image(buf.getvalue()) is None
    assert match_image(b"not an image") is None


def test_migration_keeps_existing_data(db_url):
    """0001 database with data, upgraded: rows kept, observed-site flag defaults to true."""
    from alembic import command
    from sqlalchemy import create_engine

    from audits.db import _alembic_config, upgrade_schema

    url = db_url
    engine = create_engine(url)
    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), "0001")
        conn.execute(text(
            "INSERT INTO sites (domain, name, start_url, industry, created_at, updated_at) "
            "VALUES ('a.example', 'A', 'http://a.example/', '', '2026-01-01', '2026-01-01')"
        ))  # fmt: skip
    assert upgrade_schema(engine) is True
    with engine.connect() as conn:
        assert conn.execute(text("SELECT domain, registered FROM sites")).all() == [
            ("a.example", 1)
        ]
    engine.dispose()


def test_serve_command_serves_the_public_pages(env, cli):
    """``ectrust serve`` as CONTRACT.md names it, in its own process."""
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    cli("sites", "import", str(DEMO_CSV))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = str(Path(__file__).resolve().parent.parent)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ectrust", "serve", "--port", str(port)],
        env={**os.environ, "PYTHONPATH": root},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        body = b""
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/list", timeout=2) as r:
                    body = r.read()
                    break
            except OSError:
                time.sleep(0.1)
        html = body.decode("utf-8")
        assert "诚信企业榜" in html and "书香网上书城" in html and "ECT-2022-0003" not in html
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/badge/ECT-2022-0003.svg") as r:
            assert "EXPIRED" in r.read().decode("utf-8")
        # A second server on the same port cannot start: exit 3 with a message.
        busy = subprocess.run(
            [sys.executable, "-m", "ectrust", "serve", "--port", str(port)],
            env={**os.environ, "PYTHONPATH": root},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert busy.returncode == 3 and f"cannot listen on 127.0.0.1:{port}" in busy.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_sightings_queue_and_append_only_on_postgresql(pg_url):
    from audits.certificates import suspend
    from audits.db import Store
    from audits.registry import import_rows, read_csv
    from audits.sightings import record_sighting, sighting_queue

    store = Store(pg_url)
    with store.session() as session:
        import_rows(session, read_csv(DEMO_CSV), "sites.csv")
        suspend(session, "ECT-2024-0001", reason="complaint", actor="t")
        record_sighting(session, cert_id="ECT-2024-0001", domain="copy.example",
                        page="http://copy.example", source="badge", served="invalid")  # fmt: skip
        record_sighting(session, cert_id="X", domain="books.example",
                        page="http://books.example/", source="badge", served="invalid")  # fmt: skip
    with store.session(readonly=True) as session:
        queue = sighting_queue(session)
    # Registered sites are audited, not queued; the page gets a path to start from.
    assert [(q.domain, q.url, q.cert_ids) for q in queue] == [
        ("copy.example", "http://copy.example/", ["ECT-2024-0001"])
    ]
    for sql in ("UPDATE badge_sightings SET domain = 'y'", "DELETE FROM certificate_events"):
        with pytest.raises(Exception, match="append-only"), store.engine.begin() as conn:
            conn.execute(text(sql))
    store.dispose()
