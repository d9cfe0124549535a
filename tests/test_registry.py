"""Registry: CSV import (idempotent, all-or-nothing, line numbers), sites add/list."""

from __future__ import annotations

import os

from tests.dbs import query

HEADER = "domain,name,start_url,industry,status,certificate_id,badge,valid_from,valid_until\n"
GOOD = (
    HEADER + "books.example,书香网上书城,http://books.example/,books,certified,ECT-2024-0001,red,"
    "2024-03-01,2027-02-28\n"
    + "old.example,Old Shop,http://www.old.example/,books,certified,ECT-2020-0001,blue,"
    "2020-01-01,2021-01-01\n" + "new.example,New Shop,,apparel,applicant,,,,\n"
)


def rows(sql: str) -> list[tuple]:
    """``sql``'s rows as tuples, read from this test's database (ECTRUST_DB)."""
    return [tuple(r.values()) for r in query(os.environ["ECTRUST_DB"], sql)]


def test_import_is_idempotent_and_lists_sites(env, cli):
    (env / "sites.csv").write_text(GOOD, encoding="utf-8")
    first = cli("sites", "import", "sites.csv").stdout
    assert "3 sites added" in first and "2 certificates added" in first
    again = cli("sites", "import", "sites.csv").stdout
    assert "0 sites added" in again and "3 unchanged" in again and "0 changed" in again
    assert rows("select count(*) from sites") == [(3,)]
    assert rows("select count(*) from certificate_events") == [(2,)]

    listed = {s["domain"]: s for s in cli.json("sites", "list", "--json")}
    assert listed["books.example"]["status"] == "certified"
    assert listed["books.example"]["badge"] == "red"
    # CONTRACT.md: a certificate whose valid_until has passed is expired whatever its status.
    assert listed["old.example"]["status"] == "expired"
    assert listed["new.example"] == {
        "domain": "new.example",
        "name": "New Shop",
        "start_url": "http://new.example/",
        "industry": "apparel",
        "status": "applicant",
        "certificate_id": None,
        "badge": None,
        "valid_from": None,
        "valid_until": None,
    }


def test_changed_certificate_appends_history(env, cli):
    (env / "sites.csv").write_text(GOOD, encoding="utf-8")
    cli("sites", "import", "sites.csv")
    suspended = GOOD.replace("certified,ECT-2024-0001", "suspended,ECT-2024-0001")
    (env / "sites.csv").write_text(suspended, encoding="utf-8")
    assert "1 changed" in cli("sites", "import", "sites.csv").stdout
    history = rows(
        "select e.status from certificate_events e join "
        "certificates c on c.id = e.certificate_id where c.cert_id = 'ECT-2024-0001' "
        "order by e.id",
    )
    assert history == [("certified",), ("suspended",)]


def test_bad_row_names_its_line_and_writes_nothing(env, cli):
    bad = (
        GOOD
        + "shop.example,Shop,http://shop.example/,x,certified,ECT-1,purple,2024-01-01,2025-01-01\n"
    )
    (env / "sites.csv").write_text(bad, encoding="utf-8")
    cli("init")
    result = cli("sites", "import", "sites.csv", expect=2)
    assert "sites.csv:5:" in result.stderr and "badge 'purple'" in result.stderr
    assert rows("select count(*) from sites") == [(0,)]


def test_every_problem_is_reported(env, cli):
    bad = (
        HEADER
        + "not a domain,x,,x,applicant,,,,\n"
        + "ok.example,x,http://127.0.0.1/,x,applicant,,,,\n"
        + "ok2.example,x,,x,certified,,red,2024-01-01,2025-01-01\n"
        + "ok3.example,x,,x,certified,C-1,red,2024-13-01,2025-01-01\n"
    )
    (env / "sites.csv").write_text(bad, encoding="utf-8")
    err = cli("sites", "import", "sites.csv", expect=2).stderr
    for line in (2, 3, 4, 5):
        assert f"sites.csv:{line}:" in err
    assert "needs certificate_id" in err and "ISO date" in err


def test_missing_column(env, cli):
    (env / "sites.csv").write_text("domain,name\nx.example,X\n", encoding="utf-8")
    err = cli("sites", "import", "sites.csv", expect=2).stderr
    assert "sites.csv:1:" in err and "start_url" in err


def test_sites_add_refuses_local_targets(env, cli):
    cli("sites", "add", "shop.example", "--url", "https://shop.example/")
    assert (
        "already registered"
        in cli("sites", "add", "shop.example", "--url", "https://shop.example/", expect=2).stderr
    )
    for domain, url in [
        ("localhost", "http://localhost/"),
        ("127.0.0.1", "http://127.0.0.1/"),
        ("evil.example", "http://127.0.0.1:6379/"),
        ("evil.example", "file:///etc/passwd"),
        ("evil.example", "http://user:pw@evil.example/"),
    ]:
        cli("sites", "add", domain, "--url", url, expect=2)
    assert [s["domain"] for s in cli.json("sites", "list", "--json")] == ["shop.example"]
