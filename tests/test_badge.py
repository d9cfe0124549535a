"""Badge detection end to end on locally served shops: every CONTRACT verdict, copies of the
image with and without links, look-alike hosts, another domain's certificate, status changes
taking effect at once, and ``badge check`` of unregistered sites and sightings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from audits.vocabulary import BADGE_VERDICTS
from crawler.links import POLICY_PATHS
from ectrust.cli import app
from ectrust.sitefarm import SiteFarm
from tests import badge_sites
from tests.dbs import database_url


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The shops served on 127.0.0.1, registered, and audited once."""
    tmp = tmp_path_factory.mktemp("badge")
    root = tmp / "farm"
    csv = tmp / "sites.csv"
    csv.write_text(badge_sites.build(root), encoding="utf-8")
    with database_url(tmp) as db:
        env = {
            "ECTRUST_DB": db,
            "ECTRUST_HOME": str(tmp / "home"),
            "ECTRUST_BADGE_HOSTS": badge_sites.OFFICIAL,
            "ECTRUST_CONNECT_TO": "",
        }
        runner = CliRunner(env=env)

        def run(*args: str, expect: int = 0):  # type: ignore[no-untyped-def]
            result = runner.invoke(app, list(args), catch_exceptions=False)
            assert result.exit_code == expect, (args, result.stdout, result.stderr)
            return result

        run("sites", "import", str(csv))
        with SiteFarm(root) as farm:
            connect = ["--connect-to", f"::127.0.0.1:{farm.port}", "-s", "DOWNLOAD_DELAY=0"]
            result = run("audit", "--all", "--json", "--max-pages", "5", *connect)
            docs = {d["domain"]: d for d in json.loads(result.stdout)["audits"]}
            yield {
                "docs": docs,
                "run": run,
                "farm": farm,
                "connect": connect,
                "env": env,
                "tmp": tmp,
            }


def badge_finding(doc: dict) -> dict:
    return next(f for f in doc["findings"] if f["rule_id"] == "badge.valid")


@pytest.mark.parametrize("domain", sorted(badge_sites.EXPECTED))
def test_every_verdict(world, domain):
    doc = world["docs"][domain]
    expected = badge_sites.EXPECTED[domain]
    assert doc["badge"]["verdict"] == expected, badge_finding(doc)
    assert set(doc["badge"]) == {"verdict", "certificate_id", "pages"}
    finding = badge_finding(doc)
    if expected == "valid":
        assert finding["status"] == "pass"
    elif domain == "plain.example":
        assert finding["status"] == "not_applicable"
    else:
        assert finding["status"] == "fail", finding


def test_all_contract_verdicts_covered():
    assert set(badge_sites.EXPECTED.values()) == set(BADGE_VERDICTS)


def test_evidence_names_page_element_link_and_image(world):
    docs = world["docs"]
    ev = badge_finding(docs["wrongdomain.example"])["evidence"][0]
    assert ev["url"] == "http://wrongdomain.example/"
    assert ev["href"] == "http://verify.trust.example/cert/ECT-2026-0101"
    assert ev["image"] == "http://verify.trust.example/badge/ECT-2026-0101.svg"
    assert "footer" in ev["selector"]
    assert "belongs to valid.example" in ev["why"]
    assert docs["wrongdomain.example"]["badge"]["certificate_id"] == "ECT-2026-0101"

    ev = badge_finding(docs["lookalike.example"])["evidence"][0]
    assert "look-alike of the official host verify.trust.example" in ev["excerpt"]
    assert ev["image"] == "http://lookalike.example/i/a.gif"
    assert "pHash distance" in ev["excerpt"]  # the innocently named GIF is a copy

    ev = badge_finding(docs["forged.example"])["evidence"][0]
    assert ev["href"].startswith("http://trust-check.test/verify?cert=")
    assert "not an official verification host" in ev["why"]

    ev = badge_finding(docs["unlinked.example"])["evidence"][0]
    assert ev["href"] is None and ev["image"] == "http://unlinked.example/badge-copy.svg"
    assert "byte-identical copy" in ev["excerpt"] and ev["certificate_id"] == "ECT-2026-0109"

    ev = badge_finding(docs["copylink.example"])["evidence"][0]
    assert ev["href"] == "http://copylink.example/about.html"
    assert ev["image"] == "http://copylink.example/img/cert.webp"

    ev = badge_finding(docs["nocert.example"])["evidence"][0]
    assert ev["image"] == "http://nocert.example/img/s1.jpg" and ev["verdict"] == "no_certificate"
    assert badge_finding(docs["inline.example"])["evidence"][0]["image"] is None


def test_crawler_fetched_candidate_images_but_not_official_ones(world):
    paths = {(h, p) for h, p in world["farm"].requests}
    assert ("nocert.example", "/img/s1.jpg") in paths
    assert ("copylink.example", "/img/cert.webp") in paths
    assert not any(h == badge_sites.OFFICIAL for h, _p in paths)
    # The unrelated footer picture was looked at and not taken for a badge.
    assert ("absent.example", "/img/pattern.png") in paths
    # images are not pages (the policy last resort, sitemap.xml and common paths, is)
    last_resort = {"/sitemap.xml", *POLICY_PATHS}
    guesses = sum(1 for h, p in paths if h == "absent.example" and p in last_resort)
    assert world["docs"]["absent.example"]["pages_fetched"] == 2 + guesses


def test_status_changes_take_effect_on_next_audit_and_badge(world):
    run, connect = world["run"], world["connect"]
    from audits.db import Store
    from ectrust.config import Settings
    from ectrust.web import create_app

    settings = Settings.from_env(world["env"])
    client = create_app(settings, Store(settings.db_url)).test_client()
    assert "VERIFIED" in client.get("/badge/ECT-2026-0101.svg").get_data(as_text=True)

    run("cert", "suspend", "ECT-2026-0101", "--reason", "complaint 2026-118 under review")
    svg = client.get("/badge/ECT-2026-0101.svg").get_data(as_text=True)
    assert "SUSPENDED" in svg and "VERIFIED" not in svg
    doc = json.loads(run("audit", "valid.example", "--json", *connect).stdout)["audits"][0]
    assert doc["badge"]["verdict"] == "suspended"

    run("cert", "reinstate", "ECT-2026-0101", "--reason", "complaint resolved")
    doc = json.loads(run("audit", "valid.example", "--json", *connect).stdout)["audits"][0]
    assert doc["badge"]["verdict"] == "valid"
    run("cert", "revoke", "ECT-2026-0101", "--reason", "fraud confirmed", "--actor", "evaluator7")
    assert "REVOKED" in client.get("/badge/ECT-2026-0101.svg").get_data(as_text=True)
    doc = json.loads(run("audit", "valid.example", "--json", *connect).stdout)["audits"][0]
    assert doc["badge"]["verdict"] == "revoked"
    shown = json.loads(run("cert", "show", "ECT-2026-0101", "--json").stdout)
    assert [h["status"] for h in shown["history"]] == [
        "certified", "suspended", "certified", "revoked",
    ]  # fmt: skip
    assert shown["history"][-1]["actor"] == "evaluator7"
    # Renewing a revoked certificate is refused.
    result = run("cert", "renew", "ECT-2026-0101", "--reason", "x", expect=2)
    assert "revoked" in result.stderr


def test_badge_check_of_unregistered_site_and_sightings(world, tmp_path):
    run, connect, farm = world["run"], world["connect"], world["farm"]
    root = Path(farm.root)
    from tests.conftest import write_site

    # A site nobody registered, showing revoked.example's badge as its own.
    write_site(root, "copycat.test", {"index.html": badge_sites.page(
        badge_sites.official("ECT-2026-0104"), "山寨商城")})  # fmt: skip
    result = run("badge", "check", "http://copycat.test/", "--json", *connect)
    check = json.loads(result.stdout)["checks"][0]
    assert check["domain"] == "copycat.test" and check["registered"] is False
    assert check["verdict"] == "wrong_domain" and check["misuse"] is True
    assert check["sightings"][0]["page"] == "http://copycat.test/"
    assert "ECT-2026-0104" in check["notice"]["zh"] and "revoked.example" in check["notice"]["en"]
    assert check["references"] and check["guidance"]
    listed = json.loads(run("sites", "list", "--json").stdout)
    assert "copycat.test" not in {s["domain"] for s in listed}
    run("audit", "copycat.test", expect=2)  # not registered

    # The badge server sees the badge hot-linked from another page: a sighting is queued.
    from audits.db import Store
    from ectrust.config import Settings
    from ectrust.web import create_app

    write_site(root, "hotlink.test", {"shop/index.html": badge_sites.page(
        f'<img src="http://{badge_sites.OFFICIAL}/badge/ECT-2026-0107.svg">')})  # fmt: skip
    settings = Settings.from_env(world["env"])
    client = create_app(settings, Store(settings.db_url)).test_client()
    svg = client.get(
        "/badge/ECT-2026-0107.svg", headers={"Referer": "http://hotlink.test/shop/"}
    ).get_data(as_text=True)
    assert "NOT VALID HERE" in svg
    # Its own site sees it valid; a forged Referer naming a private address is not queued.
    ok = client.get("/badge/ECT-2026-0107.svg", headers={"Referer": "http://forged.example/x"})
    assert "VERIFIED" in ok.get_data(as_text=True)
    client.get("/badge/ECT-2026-0107.svg", headers={"Referer": "http://127.0.0.1:9/admin"})

    result = run("badge", "check", "--sightings", "--json", *connect)
    checks = json.loads(result.stdout)["checks"]
    assert [c["domain"] for c in checks] == ["hotlink.test"]
    assert checks[0]["url"] == "http://hotlink.test/shop/"
    assert checks[0]["trigger"] == "sighting"
    # No link on that page; the hot-linked badge names forged.example's certificate.
    assert checks[0]["verdict"] == "wrong_domain" and checks[0]["misuse"] is True
    assert checks[0]["sightings"][0]["link"] is None
    again = json.loads(run("badge", "check", "--sightings", "--json", *connect).stdout)
    assert again["checks"] == []


def test_badge_check_bad_input(world):
    run = world["run"]
    result = run("badge", "check", "file:///etc/passwd", expect=2)
    assert "http://" in result.stderr
    result = run("badge", "check", expect=2)
    assert "--sightings" in result.stderr
