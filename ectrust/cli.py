"""The ``ectrust`` command (CONTRACT.md: Commands).

Exit status: 0 the command did its job (failing findings are results); 1 with ``--fail-on``
when findings reach that level, or when ``rules test`` finds disagreements; 2 bad usage or
bad input, with a message naming what is wrong; 3 the job could not be done.
"""

from __future__ import annotations

import functools
import json
import shlex
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from audits.db import DatabaseError, Store
from audits.evidence import BlobStore
from audits.judge import audit_document, judge_crawl
from audits.models import Audit, Crawl, Site
from audits.policy import PolicyInputError
from audits.registry import RegistryError, add_site, import_rows, read_csv, site_record
from audits.rulepack import RuleFileError, load_rules
from crawler.netpolicy import ConnectToError
from ectrust.config import BrokerConfig, BrokerConfigError, BrokerError, ConfigError, Settings
from ectrust.console import STATUS_STYLE, err, out, print_json, setup_logging
from ectrust.pipeline import Interrupted

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    help="ectrust: automated site-compliance audits for a trust-seal body.",
)
sites_app = typer.Typer(no_args_is_help=True, help="The site registry.")
rules_app = typer.Typer(no_args_is_help=True, help="Rule packs: validate, list, test.")
report_app = typer.Typer(no_args_is_help=True, help="Write reports.")
policy_app = typer.Typer(no_args_is_help=True, help="The privacy-policy detector, for analysts.")
app.add_typer(sites_app, name="sites")
app.add_typer(rules_app, name="rules")
app.add_typer(report_app, name="report")
app.add_typer(policy_app, name="policy")

F = TypeVar("F", bound=Callable[..., Any])


class BadInput(Exception):
    """Exit status 2."""


def fail(message: str, code: int) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def command(fn: F) -> F:
    """Map the domain's exceptions to CONTRACT.md's exit statuses and readable messages."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (RegistryError, RuleFileError) as exc:
            for problem in exc.problems:
                err.print(f"[bold red]error:[/] {problem}", highlight=False)
            raise typer.Exit(2) from exc
        except (BadInput, ConnectToError, PolicyInputError, BrokerConfigError, ConfigError) as exc:
            raise fail(str(exc), 2) from exc
        except BrokerError as exc:
            raise fail(str(exc), 3) from exc
        except DatabaseError as exc:
            raise fail(str(exc), 3) from exc
        except Interrupted as exc:
            raise fail(str(exc), 3) from exc

    return wrapper  # type: ignore[return-value]


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logs.")] = False,
) -> None:
    setup_logging(verbose)


def open_store(settings: Settings) -> Store:
    return Store(settings.db_url)


def today() -> Any:
    return datetime.now(UTC).date()


# -- init / sites -----------------------------------------------------------------------
@app.command()
@command
def init() -> None:
    """Create or upgrade the database."""
    settings = Settings.from_env()
    store = open_store(settings)
    settings.home.mkdir(parents=True, exist_ok=True)
    out.print(
        f"database ready: {store.engine.url.render_as_string(hide_password=True)}", highlight=False
    )


@sites_app.command("import")
@command
def sites_import(
    file: Annotated[Path, typer.Argument(help="CSV file (CONTRACT.md columns)")],
) -> None:
    """Add or update sites and certificates from a CSV file; all rows or none."""
    rows = read_csv(file)
    store = open_store(Settings.from_env())
    with store.session() as session:
        counts = import_rows(session, rows, file.name)
    out.print(
        f"{len(rows)} rows: {counts.sites_added} sites added, {counts.sites_updated} updated, "
        f"{counts.sites_unchanged} unchanged; {counts.certificates_added} certificates added, "
        f"{counts.certificates_changed} changed",
        highlight=False,
    )


@sites_app.command("add")
@command
def sites_add(
    domain: str,
    url: Annotated[str, typer.Option("--url", help="Start URL (homepage).")],
    name: Annotated[str, typer.Option("--name")] = "",
    industry: Annotated[str, typer.Option("--industry")] = "",
) -> None:
    """Register an applicant."""
    store = open_store(Settings.from_env())
    with store.session() as session:
        site = add_site(session, domain, url, name, industry)
    out.print(f"registered {site.domain} ({site.start_url})", highlight=False)


@sites_app.command("list")
@command
def sites_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The registry."""
    store = open_store(Settings.from_env())
    with store.session() as session:
        sites = session.scalars(
            select(Site)
            .where(Site.registered.is_(True))
            .options(selectinload(Site.certificates))
            .order_by(Site.domain)
        ).all()
        records = [site_record(s, today()) for s in sites]
    if as_json:
        print_json(records)
        return
    table = Table("domain", "name", "industry", "status", "certificate", "badge", "valid until")
    for r in records:
        table.add_row(
            r["domain"],
            r["name"],
            r["industry"],
            r["status"],
            r["certificate_id"] or "",
            r["badge"] or "",
            r["valid_until"] or "",
        )
    out.print(table)


# -- audits -----------------------------------------------------------------------------
class Render(StrEnum):
    auto = "auto"
    never = "never"
    always = "always"


class FailOn(StrEnum):
    error = "error"
    warning = "warning"


class Lang(StrEnum):
    en = "en"
    zh = "zh"


FAIL_LEVELS = {FailOn.error: {"fail", "error"}, FailOn.warning: {"fail", "error", "warn", "review"}}


def _progress_bar() -> Progress:
    """The progress bar of long runs (audits, distributed jobs), on stderr; gone when done."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )


def _scrapy_overrides(values: list[str]) -> dict[str, Any]:
    parsed = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.isupper():
            raise BadInput(
                f"--setting {item!r}: expected NAME=VALUE with an upper-case Scrapy setting name"
            )
        try:
            parsed[key] = json.loads(value)
        except json.JSONDecodeError:
            parsed[key] = value
    return parsed


def _print_audits(docs: list[dict[str, Any]]) -> None:
    table = Table(
        "audit",
        "domain",
        "reachable",
        "pages",
        "score",
        "pass",
        "fail",
        "other",
        "privacy policy",
        "badge",
    )
    for d in docs:
        statuses = [f["status"] for f in d["findings"]]
        policy = d["privacy_policy"]
        table.add_row(
            str(d["audit_id"]),
            d["domain"],
            "yes" if d["reachable"] else "[red]no[/]",
            str(d["pages_fetched"]),
            "—" if d["score"] is None else f"{d['score']:.1f}",
            str(statuses.count("pass")),
            f"[red]{statuses.count('fail')}[/]",
            str(len(statuses) - statuses.count("pass") - statuses.count("fail")),
            f"{policy['clicks_from_home']} click(s)" if policy else "[red]not found[/]",
            (d["badge"] or {}).get("verdict") or "—",
        )
    out.print(table)


def _exit_for(docs: list[dict[str, Any]], fail_on: FailOn | None) -> None:
    if fail_on is None:
        return
    bad = FAIL_LEVELS[fail_on]
    if any(f["status"] in bad for d in docs for f in d["findings"]):
        raise typer.Exit(1)


def _documents(store: Store, audit_ids: list[int], lang: str) -> list[dict[str, Any]]:
    with store.session(readonly=True) as session:
        # Audits with their crawls and sites in a few queries, not three per audit.
        loaded: dict[int, Audit] = {}
        for start in range(0, len(audit_ids), 500):
            chunk = audit_ids[start : start + 500]
            loaded.update(
                (a.id, a)
                for a in session.scalars(
                    select(Audit)
                    .where(Audit.id.in_(chunk))
                    .options(selectinload(Audit.crawl), selectinload(Audit.site))
                )
            )
        return [audit_document(session, loaded[i], lang) for i in audit_ids]


BrokerOption = Annotated[
    str | None,
    typer.Option("--broker", metavar="URL", help="Redis broker URL (default $ECTRUST_BROKER)."),
]


@app.command()
@command
def audit(
    domains: Annotated[list[str] | None, typer.Argument(help="Registered domains.")] = None,
    all_sites: Annotated[bool, typer.Option("--all", help="Every registered site.")] = False,
    due: Annotated[
        bool, typer.Option("--due", help="The sites whose scheduled re-check is due now.")
    ] = False,
    connect_to: Annotated[
        list[str] | None,
        typer.Option(
            "--connect-to",
            metavar="HOST1:PORT1:HOST2:PORT2",
            help="Connect to HOST2:PORT2 for HOST1:PORT1 (curl's meaning); repeatable.",
        ),
    ] = None,
    rules: Annotated[
        list[str] | None,
        typer.Option(
            "--rules", metavar="PACK", help="Rule pack id (repeatable); default all bundled."
        ),
    ] = None,
    render: Annotated[Render, typer.Option(help="JavaScript rendering.")] = Render.auto,
    max_pages: Annotated[int, typer.Option(min=1, max=500, help="Pages per site.")] = 30,
    as_json: Annotated[bool, typer.Option("--json", help="CONTRACT.md JSON on stdout.")] = False,
    fail_on: Annotated[
        FailOn | None, typer.Option(help="Exit 1 on findings of this level.")
    ] = None,
    lang: Annotated[Lang, typer.Option(help="Language of titles and guidance.")] = Lang.en,
    setting: Annotated[
        list[str] | None,
        typer.Option(
            "--setting",
            "-s",
            metavar="NAME=VALUE",
            help="Override a Scrapy setting for this run (advanced).",
        ),
    ] = None,
    time_limit: Annotated[
        float | None, typer.Option(help="Hard limit for the whole crawl, seconds.")
    ] = None,
    distributed: Annotated[
        bool,
        typer.Option(
            "--distributed", help="One job per site for `ectrust worker`s ($ECTRUST_BROKER)."
        ),
    ] = False,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="With --distributed: print the job ids and exit.")
    ] = False,
    broker: BrokerOption = None,
) -> None:
    """Crawl and audit sites."""
    from ectrust.pipeline import CrawlOptions, run_audits

    settings = Settings.from_env()
    if no_wait and not distributed:
        raise BadInput("--no-wait goes with --distributed")
    if distributed:
        if bool(domains) + all_sites + due != 1:
            raise BadInput("name the domains to audit, or give --all or --due (only one of them)")
        job_options = {
            "max_pages": max_pages,
            "connect_to": [*settings.connect_to, *(connect_to or [])],
            "render": render.value,
            "time_limit_s": time_limit,
            "scrapy_settings": _scrapy_overrides(setting or []),
        }
        _audit_distributed(
            settings, domains or [], all_sites, due, job_options, rules, broker,
            no_wait=no_wait, as_json=as_json, lang=lang.value, fail_on=fail_on,
        )
        return
    if render is not Render.never:
        from crawler.egress import browser_problem

        problem = browser_problem()
        if problem:
            # The job cannot be done as asked (exit 3), the input itself is fine.
            raise fail(f"--render {render.value}: {problem} (or use --render never)", 3)
    if bool(domains) + all_sites + due != 1:
        raise BadInput("name the domains to audit, or give --all or --due (only one of them)")
    specs = [*settings.connect_to, *(connect_to or [])]
    ruleset = load_rules(pack_ids=rules)
    store = open_store(settings)
    with store.session() as session:
        known = set(session.scalars(select(Site.domain).where(Site.registered.is_(True))))
    wanted = sorted(known) if all_sites else [d.strip().lower() for d in domains or []]
    unknown = [d for d in wanted if d not in known]
    if unknown:
        raise BadInput(f"not registered: {', '.join(unknown)} (add with `ectrust sites add`)")
    if due:
        _audit_due(
            store,
            settings,
            ruleset,
            as_json,
            lang.value,
            fail_on,
            max_pages,
            specs,
            render.value,
            time_limit,
            _scrapy_overrides(setting or []),
        )
        return
    if not wanted:
        raise BadInput("the registry is empty: add sites first (`ectrust sites import`)")
    options = CrawlOptions(
        max_pages=max_pages,
        connect_to=specs,
        render=render.value,
        time_limit_s=time_limit,
        scrapy_settings=_scrapy_overrides(setting or []),
    )
    with _progress_bar() as progress:
        task = progress.add_task("auditing", total=len(wanted))

        def on_progress(kind: str, info: dict[str, Any]) -> None:
            if kind == "audited":
                progress.advance(task)
                progress.update(task, description=f"audited {info['domain']}")

        result = run_audits(store, settings, wanted, ruleset, options, on_progress)
    docs = _documents(store, result.audit_ids, lang.value)
    if as_json:
        print_json({"audits": docs})
    else:
        _print_audits(docs)
        logs = result.crawl_logs or [result.crawl_log]
        label = "crawl log" if len(logs) == 1 else "crawl logs"
        err.print(f"{label}: {', '.join(map(str, logs))}", highlight=False)
    _exit_for(docs, fail_on)


@app.command()
@command
def reaudit(
    audit_ids: Annotated[list[int] | None, typer.Argument(help="Audits to re-judge.")] = None,
    all_sites: Annotated[bool, typer.Option("--all", help="Latest crawl of every site.")] = False,
    rules: Annotated[list[str] | None, typer.Option("--rules", metavar="PACK")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    lang: Annotated[Lang, typer.Option()] = Lang.en,
) -> None:
    """Re-evaluate rules on stored snapshots; no network."""
    if bool(audit_ids) == all_sites:
        raise BadInput("name the audits to re-judge, or give --all (not both)")
    settings = Settings.from_env()
    ruleset = load_rules(pack_ids=rules)
    store = open_store(settings)
    blobs = BlobStore(settings.home)
    with store.session() as session:
        if all_sites:
            latest = (
                select(func.max(Crawl.id)).where(Crawl.status != "running").group_by(Crawl.site_id)
            )
            crawl_ids = list(session.scalars(latest))
        else:
            crawl_ids = []
            for audit_id in audit_ids or []:
                found = session.get(Audit, audit_id)
                if found is None:
                    raise BadInput(f"no audit {audit_id}")
                crawl_ids.append(found.crawl_id)
    new_ids = [
        judge_crawl(store, crawl_id, ruleset, blobs, settings.badge_hosts, kind="reaudit")
        for crawl_id in crawl_ids
    ]
    docs = _documents(store, new_ids, lang.value)
    if as_json:
        print_json({"audits": docs})
    else:
        _print_audits(docs)


@app.command()
@command
def findings(
    audit_id: int,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    lang: Annotated[Lang, typer.Option()] = Lang.en,
) -> None:
    """One audit's findings."""
    store = open_store(Settings.from_env())
    with store.session() as session:
        found = session.get(Audit, audit_id)
        if found is None:
            raise BadInput(f"no audit {audit_id}")
        doc = audit_document(session, found, lang.value)
    if as_json:
        print_json(doc)
        return
    out.print(f"audit {doc['audit_id']} · {doc['domain']} · score {doc['score']}", highlight=False)
    table = Table("rule", "status", "severity", "message", "evidence")
    for f in doc["findings"]:
        first = f["evidence"][0] if f["evidence"] else {}
        table.add_row(
            f["rule_id"],
            f"[{STATUS_STYLE[f['status']]}]{f['status']}[/]",
            f["severity"],
            f["message"],
            " ".join(str(x) for x in (first.get("url"), first.get("excerpt")) if x),
        )
    out.print(table)


# -- rules ------------------------------------------------------------------------------
@rules_app.command("validate")
@command
def rules_validate(paths: Annotated[list[Path] | None, typer.Argument()] = None) -> None:
    """Check rule files (default: the bundled packs)."""
    ruleset = load_rules(paths)
    for pack in ruleset.packs:
        out.print(
            f"ok: {pack.path} ({pack.id} {pack.version}, {len(pack.rules)} rules)", highlight=False
        )


@rules_app.command("list")
@command
def rules_list(
    paths: Annotated[list[Path] | None, typer.Argument()] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List rules and packs."""
    ruleset = load_rules(paths)
    if as_json:
        print_json(
            [
                {
                    "id": r.id,
                    "pack": r.pack.id,
                    "pack_version": r.pack.version,
                    "severity": r.severity,
                    "scope": r.scope,
                    "check": r.check["type"],
                    "title": r.title,
                    "references": r.references,
                }
                for r in ruleset.rules
            ]
        )
        return
    for pack in ruleset.packs:
        out.print(
            f"[bold]{pack.id}[/] {pack.version} — {pack.title['en']} / {pack.title['zh']}"
            f" ({pack.path.name})",
            highlight=False,
        )
    table = Table("rule", "pack", "severity", "check", "title")
    for r in ruleset.rules:
        table.add_row(r.id, r.pack.id, r.severity, r.check["type"], r.title["en"])
    out.print(table)


@rules_app.command("test")
@command
def rules_test(paths: Annotated[list[Path] | None, typer.Argument()] = None) -> None:
    """Run every rule against the example pages in its file; exit 1 on any disagreement."""
    from audits.ruletest import run_examples

    results = run_examples(load_rules(paths))
    bad = [r for r in results if not r.ok]
    for r in bad:
        out.print(
            f"[red]DISAGREE[/] {r.rule.pack.path.name}:{r.rule.line} {r.rule.id} "
            f"example {r.index + 1}{' (' + r.note + ')' if r.note else ''}: expected "
            f"{r.expected}, got {r.got}: {r.message}",
            highlight=False,
        )
    out.print(f"{len(results) - len(bad)} passed, {len(bad)} failed", highlight=False)
    if bad:
        raise typer.Exit(1)


# -- policy ---------------------------------------------------------------------------
@policy_app.command("classify")
@command
def policy_classify(
    file: Annotated[
        Path | None, typer.Argument(help="JSON lines {id, text}; stdin if none.")
    ] = None,
    context: Annotated[
        bool,
        typer.Option(
            "--context/--no-context",
            help="Read the lines as one policy in order, each sentence under the latest "
            "section title above it (as audits read a page); --no-context reads each alone.",
        ),
    ] = True,
) -> None:
    """Clause categories of each sentence or paragraph, as JSON lines {id, categories}."""
    import sys

    from audits.checks.privacy import ClauseDetector
    from audits.policy import classify_lines, privacy_pack

    detector = ClauseDetector.for_pack(privacy_pack())
    try:
        source = sys.stdin if file is None else file.open(encoding="utf-8-sig")
    except OSError as exc:
        raise BadInput(f"{file}: cannot read: {exc.strerror}") from exc
    with source:
        for item in classify_lines(source, detector, context=context):
            sys.stdout.write(json.dumps(item, ensure_ascii=False) + "\n")


@policy_app.command("analyze")
@command
def policy_analyze(
    source: Annotated[str, typer.Argument(help="A file (HTML or text) or an http(s) URL.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
    connect_to: Annotated[
        list[str] | None,
        typer.Option(
            "--connect-to", metavar="HOST1:PORT1:HOST2:PORT2", help="For URLs (curl's meaning)."
        ),
    ] = None,
) -> None:
    """Judge one privacy-policy document: the ten clauses with evidence sentences."""
    from audits.policy import analyse_page, document_page, privacy_pack

    pack = privacy_pack()
    if source.startswith(("http://", "https://")):
        from ectrust.fetch import fetch_page

        settings = Settings.from_env()
        page = fetch_page(source, [*settings.connect_to, *(connect_to or [])])
    else:
        path = Path(source)
        try:
            body = path.read_bytes()
        except OSError as exc:
            raise BadInput(f"{source}: cannot read: {exc.strerror}") from exc
        ctype = "text/html" if path.suffix.lower() in (".html", ".htm") else None
        page = document_page(body, str(path), ctype)
    result = analyse_page(page, pack)
    if as_json:
        print_json(result)
        return
    verdict = (
        "reads as a privacy policy"
        if result["reads_as_policy"]
        else "does NOT read as a privacy policy"
    )
    out.print(
        f"{result['source']} — {result['title'] or '(no title)'}: {verdict} "
        f"({result['categories_covered']}/10 clauses, {result['characters']} characters)",
        highlight=False,
    )
    table = Table("clause", "covered", "evidence")
    for category, info in result["clauses"].items():
        table.add_row(
            category,
            "[green]yes[/]" if info["covered"] else "[red]no[/]",
            info["evidence"][0] if info["evidence"] else "",
        )
    out.print(table)


# -- reports (issue #8) -----------------------------------------------------------------
# One command per kind of report; each reads its numbers (reports/data.py) and hands them to
# reports.render.write_report through its writer, so every kind shares the layout, the
# formats and the PDF renderer. ``report monitoring`` (issue #7) plugs in the same way.
SUPPORTED_FORMATS = ("html", "pdf", "csv", "json")
COHORT_STATUSES = ("applicant", "certified", "suspended", "revoked", "expired")
FormatOption = Annotated[
    str, typer.Option("--format", help="Comma-separated: html, pdf, csv, json.")
]
OutOption = Annotated[Path, typer.Option("--out", help="Folder to write into.")]


def _formats(value: str) -> list[str]:
    formats = [f.strip().lower() for f in value.split(",") if f.strip()]
    unknown = [f for f in formats if f not in SUPPORTED_FORMATS]
    if unknown or not formats:
        raise BadInput(f"--format {value!r}: supported formats are {', '.join(SUPPORTED_FORMATS)}")
    return formats


def _period(value: str | None, option: str) -> tuple[Any, Any]:
    """``START..END`` (either side may be empty) as two dates."""
    if not value:
        return None, None
    start, sep, end = value.partition("..")
    if not sep:
        raise BadInput(f"{option} {value!r}: expected START..END (ISO dates, either may be empty)")
    return _iso_date(start or None, option), _iso_date(end or None, option)


def _print_written(paths: list[Path]) -> None:
    for path in paths:
        out.print(str(path), highlight=False)


@report_app.command("site")
@command
def report_site(
    domains: Annotated[
        list[str] | None, typer.Argument(help="Domains (default: all audited).")
    ] = None,
    audit_ids: Annotated[list[int] | None, typer.Option("--audit", help="Audit ids.")] = None,
    out_dir: OutOption = Path("."),
    fmt: FormatOption = "html",
    lang: Annotated[Lang, typer.Option()] = Lang.en,
) -> None:
    """Site audit report (达标指导): each site's latest audit (or the audits named), with a
    recommendation, evidence, guidance and what changed since the previous audit."""
    from reports.data import site_entries
    from reports.render import write_site_report

    formats = _formats(fmt)
    settings = Settings.from_env()
    store = open_store(settings)
    with store.session() as session:
        if audit_ids:
            ids = list(audit_ids)
            missing = [i for i in ids if session.get(Audit, i) is None]
            if missing:
                raise BadInput(f"no audit {', '.join(map(str, missing))}")
        else:
            query = (
                select(func.max(Audit.id))
                .join(Site)
                .where(Site.registered.is_(True))
                .group_by(Audit.site_id)
            )
            if domains:
                query = query.where(Site.domain.in_([d.lower() for d in domains]))
            ids = sorted(session.scalars(query))
            if not ids:
                raise BadInput(
                    "no audits to report on" + (f" for {', '.join(domains)}" if domains else "")
                )
        entries = site_entries(session, ids, lang.value, BlobStore(settings.home))
    docs = [e["doc"] for e in entries]
    _print_written(write_site_report(docs, out_dir, formats, lang.value, entries=entries))


@report_app.command("survey")
@command
def report_survey(
    industry: Annotated[str | None, typer.Option(help="Industry, as in the registry.")] = None,
    status: Annotated[
        str | None, typer.Option(help="Certificate status: " + ", ".join(COHORT_STATUSES))
    ] = None,
    since: Annotated[str | None, typer.Option(help="Audits from this date (YYYY-MM-DD).")] = None,
    until: Annotated[str | None, typer.Option(help="Audits up to this date, inclusive.")] = None,
    compare: Annotated[
        str | None,
        typer.Option(help="Earlier survey of the same cohort: its audit dates, START..END."),
    ] = None,
    anonymise: Annotated[
        bool, typer.Option("--anonymise", help="No site names or addresses in any output.")
    ] = False,
    out_dir: OutOption = Path("."),
    fmt: FormatOption = "html",
    lang: Annotated[Lang, typer.Option()] = Lang.en,
) -> None:
    """Privacy-protection survey of a cohort (industry, status, audit dates): policy found,
    clicks from the homepage, clause coverage, per-site table, change against an earlier
    survey."""
    from reports.data import Cohort, survey
    from reports.render import write_survey_report

    formats = _formats(fmt)
    if status is not None and status not in COHORT_STATUSES:
        raise BadInput(f"--status {status!r}: one of {', '.join(COHORT_STATUSES)}")
    cohort = Cohort(industry, status, _iso_date(since, "--since"), _iso_date(until, "--until"))
    if cohort.since and cohort.until and cohort.since > cohort.until:
        raise BadInput(f"--since {since} is after --until {until}")
    earlier = None
    if compare:
        c_since, c_until = _period(compare, "--compare")
        earlier = Cohort(industry, status, c_since, c_until)
    settings = Settings.from_env()
    store = open_store(settings)
    with store.session(readonly=True) as session:
        result = survey(
            session, cohort, compare=earlier, anonymous=anonymise, blobs=BlobStore(settings.home)
        )
    if not result["sites"]:
        raise BadInput("no audited sites in this cohort (check --industry, --status and dates)")
    err.print(f"survey of {result['totals']['sites']} sites", highlight=False)
    _print_written(write_survey_report(result, out_dir, formats, lang.value))


@report_app.command("monitoring")
@command
def report_monitoring(
    since: Annotated[
        str | None, typer.Option(help="First day of the period (YYYY-MM-DD; default 30 days ago).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Last day of the period, inclusive (default today).")
    ] = None,
    industry: Annotated[str | None, typer.Option(help="Industry, as in the registry.")] = None,
    status: Annotated[
        str | None,
        typer.Option(help="Certificate status at the end: " + ", ".join(COHORT_STATUSES)),
    ] = None,
    out_dir: OutOption = Path("."),
    fmt: FormatOption = "html",
    lang: Annotated[Lang, typer.Option()] = Lang.en,
) -> None:
    """Monitoring report for a period: sites re-checked, on-time and late re-checks,
    regressions with their evidence, certificates suspended or expiring, badge verdict
    changes, alerts sent."""
    from reports.monitoring import Period, monitoring_report
    from reports.render import write_monitoring_report

    formats = _formats(fmt)
    if status is not None and status not in COHORT_STATUSES:
        raise BadInput(f"--status {status!r}: one of {', '.join(COHORT_STATUSES)}")
    end = _iso_date(until, "--until") or datetime.now(UTC).date()
    start = _iso_date(since, "--since") or end - timedelta(days=30)
    if start > end:
        raise BadInput(f"--since {start} is after --until {end}")
    settings = Settings.from_env()
    policy, _ = _monitor_config(settings)
    store = open_store(settings)
    result = monitoring_report(
        store,
        Period(start, end, industry, status),
        policy=policy,
        blobs=BlobStore(settings.home),
        lang=lang.value,
    )
    t = result["totals"]
    err.print(
        f"{t['sites_rechecked']} site(s) re-checked, {t['regressions']} regression(s)",
        highlight=False,
    )
    _print_written(write_monitoring_report(result, out_dir, formats, lang.value))


@report_app.command("misuse")
@command
def report_misuse(
    domains: Annotated[list[str] | None, typer.Argument(help="Domains (default: all).")] = None,
    since: Annotated[str | None, typer.Option(help="Checks from this date (YYYY-MM-DD).")] = None,
    until: Annotated[str | None, typer.Option(help="Checks up to this date, inclusive.")] = None,
    out_dir: OutOption = Path("."),
    fmt: FormatOption = "html",
    lang: Annotated[Lang, typer.Option()] = Lang.en,
) -> None:
    """Badge misuse report: each site's latest misuse case (from ``badge check`` and audits)
    with its evidence, and a draft notice letter per site."""
    from reports.data import misuse_cases
    from reports.render import write_misuse_report

    formats = _formats(fmt)
    start, end = _iso_date(since, "--since"), _iso_date(until, "--until")
    settings = Settings.from_env()
    store = open_store(settings)
    with store.session(readonly=True) as session:
        cases = misuse_cases(
            session,
            since=start,
            until=end,
            domains=domains,
            lang=lang.value,
            blobs=BlobStore(settings.home),
        )
    err.print(f"{len(cases)} misuse case(s)", highlight=False)
    selection = {"since": since, "until": until, "domains": domains or []}
    _print_written(write_misuse_report(cases, out_dir, formats, lang.value, selection=selection))


# -- certificates, badge checks, web server (issue #4) ----------------------------------
cert_app = typer.Typer(
    no_args_is_help=True,
    help="Certificates: issue, renew, suspend, reinstate, revoke, show (a reason each time).",
)
badge_app = typer.Typer(no_args_is_help=True, help="Badge misuse checks.")
app.add_typer(cert_app, name="cert")
app.add_typer(badge_app, name="badge")


class Tier(StrEnum):
    red = "red"
    blue = "blue"


def _iso_date(value: str | None, option: str) -> Any:
    if value is None:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError as exc:
        raise BadInput(f"{option} {value!r} is not an ISO date (YYYY-MM-DD)") from exc


def _actor(value: str | None) -> str:
    import getpass

    if value:
        return value
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


ReasonOpt = Annotated[str, typer.Option("--reason", help="Why (kept in the history).")]
ActorOpt = Annotated[
    str | None, typer.Option("--actor", help="Who decided (default: the login name).")
]


def _print_certificate(record: dict[str, Any]) -> None:
    out.print(
        f"{record['certificate_id']} · {record['domain']} ({record['holder'] or '—'}) · "
        f"{record['tier']} · {record['effective_status']} · "
        f"{record['valid_from'] or '—'} – {record['valid_until'] or '—'}",
        highlight=False,
    )
    table = Table("when", "status", "tier", "valid until", "reason", "by")
    for ev in record["history"]:
        table.add_row(
            ev["at"][:19].replace("T", " "),
            ev["status"],
            ev["tier"],
            ev["valid_until"] or "",
            ev["reason"],
            ev["actor"],
        )
    out.print(table)


def _cert_change(fn: Callable[..., Any], cert_id: str, as_json: bool, **kwargs: Any) -> None:
    from audits.certificates import certificate_record, get_certificate

    store = open_store(Settings.from_env())
    with store.session() as session:
        fn(session, cert_id, **kwargs)
    with store.session(readonly=True) as session:
        record = certificate_record(get_certificate(session, cert_id), today())
    if as_json:
        print_json(record)
    else:
        _print_certificate(record)


@cert_app.command("issue")
@command
def cert_issue(
    domain: Annotated[str, typer.Argument(help="A registered site.")],
    tier: Annotated[Tier, typer.Option("--tier", help="red (红标) or blue (蓝标).")],
    reason: ReasonOpt = "",
    valid_from: Annotated[
        str | None, typer.Option("--from", help="First valid day (default today).")
    ] = None,
    valid_until: Annotated[
        str | None, typer.Option("--until", help="Last valid day (default: --years).")
    ] = None,
    years: Annotated[int, typer.Option(min=1, max=10, help="Validity in years.")] = 1,
    cert_id: Annotated[
        str | None, typer.Option("--id", help="Certificate id (default ECT-<year>-<serial>).")
    ] = None,
    actor: ActorOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Issue a certificate to a registered site."""
    from audits.certificates import issue

    start = _iso_date(valid_from, "--from") or today()
    store = open_store(Settings.from_env())
    with store.session() as session:
        cert = issue(
            session,
            domain,
            tier=tier.value,
            reason=reason,
            actor=_actor(actor),
            valid_from=start,
            valid_until=_iso_date(valid_until, "--until"),
            years=years,
            cert_id=cert_id,
        )
        new_id = cert.cert_id
    _cert_change(lambda *_a, **_k: None, new_id, as_json)


@cert_app.command("renew")
@command
def cert_renew(
    cert_id: str,
    reason: ReasonOpt = "",
    valid_until: Annotated[
        str | None, typer.Option("--until", help="New last valid day (default: +--years).")
    ] = None,
    years: Annotated[int, typer.Option(min=1, max=10)] = 1,
    tier: Annotated[Tier | None, typer.Option("--tier", help="Change the tier.")] = None,
    actor: ActorOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Extend a certificate's validity (also one that has expired)."""
    from audits.certificates import renew

    _cert_change(
        renew,
        cert_id,
        as_json,
        reason=reason,
        actor=_actor(actor),
        today=today(),
        valid_until=_iso_date(valid_until, "--until"),
        years=years,
        tier=tier.value if tier else None,
    )


@cert_app.command("suspend")
@command
def cert_suspend(
    cert_id: str,
    reason: ReasonOpt = "",
    actor: ActorOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Suspend a certificate (the badge shows it at once)."""
    from audits.certificates import suspend

    _cert_change(suspend, cert_id, as_json, reason=reason, actor=_actor(actor))


@cert_app.command("reinstate")
@command
def cert_reinstate(
    cert_id: str,
    reason: ReasonOpt = "",
    actor: ActorOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Lift a suspension."""
    from audits.certificates import reinstate

    _cert_change(reinstate, cert_id, as_json, reason=reason, actor=_actor(actor))


@cert_app.command("revoke")
@command
def cert_revoke(
    cert_id: str,
    reason: ReasonOpt = "",
    actor: ActorOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Revoke a certificate for good."""
    from audits.certificates import revoke

    _cert_change(revoke, cert_id, as_json, reason=reason, actor=_actor(actor))


@cert_app.command("show")
@command
def cert_show(cert_id: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """A certificate now, and its whole history."""
    _cert_change(lambda *_a, **_k: None, cert_id, as_json)


@badge_app.command("check")
@command
def badge_check(
    urls: Annotated[list[str] | None, typer.Argument(help="Pages to start from.")] = None,
    sightings: Annotated[
        bool,
        typer.Option("--sightings", help="Check the sites the badge server saw the badge on."),
    ] = False,
    connect_to: Annotated[
        list[str] | None,
        typer.Option("--connect-to", metavar="HOST1:PORT1:HOST2:PORT2", help="curl's meaning."),
    ] = None,
    max_pages: Annotated[int, typer.Option(min=1, max=500, help="Pages per site.")] = 15,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    setting: Annotated[
        list[str] | None,
        typer.Option("--setting", "-s", metavar="NAME=VALUE", help="Scrapy setting (advanced)."),
    ] = None,
) -> None:
    """Crawl any sites (registered or not) and judge the badge they show."""
    from ectrust.badgecheck import parse_targets, queued_targets, run_checks
    from ectrust.pipeline import CrawlOptions

    settings = Settings.from_env()
    if not settings.badge_hosts:
        raise BadInput(
            "ECTRUST_BADGE_HOSTS is not set: name the official verification host(s), "
            "or no badge can be verified"
        )
    if not urls and not sightings:
        raise BadInput("give the URLs to check, or --sightings")
    targets = parse_targets(urls or [])
    store = open_store(settings)
    trigger = "manual"
    if sightings:
        queued, _certs = queued_targets(store)
        known = {t.domain for t in targets}
        targets += [t for t in queued if t.domain not in known]
        trigger = "sighting" if not urls else "manual"
        if not targets:
            err.print("no sighted site is waiting for a check", highlight=False)
            if as_json:
                print_json({"checks": []})
            return
    options = CrawlOptions(
        max_pages=max_pages,
        connect_to=[*settings.connect_to, *(connect_to or [])],
        render="never",
        scrapy_settings=_scrapy_overrides(setting or []),
    )

    def on_progress(kind: str, info: dict[str, Any]) -> None:
        if kind == "audited":
            err.print(f"checked {info['domain']}", highlight=False)

    err.print(f"checking {len(targets)} site(s) …", highlight=False)
    docs = run_checks(store, settings, targets, options, trigger=trigger, on_progress=on_progress)
    if as_json:
        print_json({"checks": docs})
        return
    table = Table("check", "site", "registered", "verdict", "misuse", "what was seen")
    for d in docs:
        first = d["sightings"][0] if d["sightings"] else {}
        table.add_row(
            str(d["check_id"]),
            d["domain"],
            "yes" if d["registered"] else "no",
            d["verdict"] or ("unreachable" if not d["reachable"] else "—"),
            "[bold red]yes[/]" if d["misuse"] else ("review" if d["suspected"] else "no"),
            " — ".join(x for x in (first.get("page"), first.get("seen")) if x),
        )
    out.print(table)


@app.command()
@command
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port.")] = 8000,
) -> None:
    """The web application: the evaluators' pages (login required; accounts with
    `ectrust users add`) and the public verification pages (/cert/<id>, /badge/<id>.svg,
    /list)."""
    from audits.account_models import User
    from ectrust.web import serve as run_server

    settings = Settings.from_env()
    store = open_store(settings)  # create or migrate the schema before serving
    with store.session(readonly=True) as session:
        accounts = session.scalar(select(func.count(User.id)).where(User.active.is_(True)))
    store.dispose()
    if not accounts:
        err.print(
            "note: no accounts yet: create one with `ectrust users add NAME --role "
            "administrator` to log in",
            highlight=False,
        )
    if not settings.badge_hosts:
        err.print(
            "note: ECTRUST_BADGE_HOSTS is not set; the audits will not recognise this "
            "server's host as official",
            highlight=False,
        )
    err.print(
        f"serving on http://{host}:{port}/ (evaluators: log in at /login; public: "
        "/cert/<id>, /badge/<id>.svg, /list); Ctrl-C stops",
        highlight=False,
    )
    try:
        run_server(host, port, settings)
    except OSError as exc:
        raise fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}", 3) from exc


# -- demo -------------------------------------------------------------------------------
@app.command()
@command
def demo(
    workdir: Annotated[
        Path, typer.Option(help="Where the demo database, evidence and report go.")
    ] = Path("ectrust-demo"),
    lang: Annotated[Lang, typer.Option()] = Lang.en,
) -> None:
    """Audit the bundled demo shops (served locally on 127.0.0.1) and write a report."""
    from ectrust.demo.run import run_demo

    paths = run_demo(workdir, lang.value)
    out.print("report: " + "  ".join(str(p) for p in paths), highlight=False)
    err.print(
        "re-run any step by hand with: "
        + shlex.join(
            [
                "env",
                f"ECTRUST_DB=sqlite:///{workdir / 'ectrust.db'}",
                f"ECTRUST_HOME={workdir / 'home'}",
                "ectrust",
                "sites",
                "list",
            ]
        ),
        highlight=False,
    )


# -- evidence and backup (issue #6) --------------------------------------------------------
evidence_app = typer.Typer(no_args_is_help=True, help="Tamper-evident evidence: verify, export.")
app.add_typer(evidence_app, name="evidence")


@evidence_app.command("verify")
@command
def evidence_verify(
    audit_ids: Annotated[list[int] | None, typer.Argument(help="Audits (default: all).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Recompute every audit's evidence manifest from the database and the evidence files;
    exit 1 when anything changed since it was recorded."""
    from audits.manifest import verify

    settings = Settings.from_env()
    store = open_store(settings)
    blobs = BlobStore(settings.home)
    with store.session(readonly=True) as session:
        if audit_ids:
            missing = [i for i in audit_ids if session.get(Audit, i) is None]
            if missing:
                raise BadInput(f"no audit {', '.join(map(str, missing))}")
        verdicts = verify(session, blobs, list(audit_ids or []))
    orphans = len(blobs.tmp_files(everywhere=True))
    if as_json:
        print_json({"audits": [v.as_dict() for v in verdicts], "orphan_tmp_files": orphans})
    else:
        table = Table("audit", "domain", "status", "manifest sha256", "problems")
        for v in verdicts:
            style = {"ok": "green", "integrity_failed": "bold red"}.get(v.status, "dim")
            table.add_row(str(v.audit_id), v.domain, f"[{style}]{v.status}[/]",
                          (v.sha256 or "")[:16], "; ".join(v.problems[:5]))
        out.print(table)
        failed = sum(v.status == "integrity_failed" for v in verdicts)
        err.print(f"{len(verdicts)} audit(s) checked, {failed} with integrity failures"
                  + (f"; {orphans} unfinished *.tmp evidence file(s)" if orphans else ""),
                  highlight=False)
    if any(v.status == "integrity_failed" for v in verdicts):
        raise typer.Exit(1)


@evidence_app.command("export")
@command
def evidence_export(
    audit_id: int,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write into.")] = Path("."),
    lang: Annotated[Lang, typer.Option()] = Lang.en,
) -> None:
    """Write one audit as a self-contained evidence package (manifest, chain, snapshots,
    screenshots, findings JSON, SHA256SUMS). Exit 1 when its verification fails (the
    package is written anyway, with the failures in verification.json)."""
    from audits.manifest import export

    settings = Settings.from_env()
    store = open_store(settings)
    blobs = BlobStore(settings.home)
    with store.session(readonly=True) as session:
        found = session.get(Audit, audit_id)
        if found is None:
            raise BadInput(f"no audit {audit_id}")
        doc = audit_document(session, found, lang.value)
        target, verdict = export(session, found, blobs, out_dir, doc)
    if verdict.status == "no_manifest":
        raise BadInput(f"audit {audit_id} has no evidence manifest (recorded before manifests "
                       "existed); re-judge it with `ectrust reaudit` for a manifested audit")
    out.print(str(target), highlight=False)
    if verdict.status != "ok":
        err.print("[bold red]integrity failed:[/] " + "; ".join(verdict.problems),
                  highlight=False)
        raise typer.Exit(1)


@app.command()
@command
def backup(
    target: Annotated[Path, typer.Argument(help="New SQLite file to write the copy to.")],
) -> None:
    """Online copy of the SQLite database while other commands keep writing (SQLite's
    backup API); the copy is checked with PRAGMA integrity_check."""
    import sqlite3

    from sqlalchemy.engine import make_url

    settings = Settings.from_env()
    url = make_url(settings.db_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        raise BadInput("backup copies SQLite databases; for PostgreSQL use pg_dump")
    if target.exists():
        raise BadInput(f"{target} exists; name a new file")
    open_store(settings).dispose()  # migrates if needed, fails clearly if unreadable
    source = sqlite3.connect(url.database, timeout=30)
    dest = sqlite3.connect(target)
    try:
        source.backup(dest, pages=256)  # in steps, so writers are not held up for long
        status = dest.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        dest.close()
        source.close()
    if status != "ok":
        raise DatabaseError(f"backup written to {target} fails integrity_check: {status}")
    out.print(f"backup written: {target} (integrity_check ok)", highlight=False)


# -- scheduled re-checks and monitoring (issue #7) ---------------------------------------
schedule_app = typer.Typer(no_args_is_help=True, help="Scheduled re-checks of certified sites.")
app.add_typer(schedule_app, name="schedule")


def _monitor_config(settings: Settings) -> tuple[Any, Any]:
    from audits.cadence import CadenceConfigError, Policy
    from ectrust.alerts import AlertConfigError, AlertSettings

    try:
        return Policy.from_env(settings.home), AlertSettings.from_env()
    except (CadenceConfigError, AlertConfigError) as exc:
        raise BadInput(str(exc)) from exc


def _audit_due(
    store: Store,
    settings: Settings,
    ruleset: Any,
    as_json: bool,
    lang: str,
    fail_on: FailOn | None,
    max_pages: int,
    specs: list[str],
    render: str,
    time_limit: float | None,
    scrapy_settings: dict[str, Any],
) -> None:
    """``audit --due``: what the scheduler would run now, in this process."""
    from ectrust.pipeline import CrawlOptions, run_audits

    options = CrawlOptions(
        max_pages=max_pages,
        connect_to=specs,
        render=render,
        time_limit_s=time_limit,
        scrapy_settings=scrapy_settings,
    )

    def audit_sites(domains: list[str]) -> list[int]:
        err.print(f"due now: {', '.join(domains)}", highlight=False)

        def on_progress(kind: str, info: dict[str, Any]) -> None:
            if kind == "audited":
                err.print(f"audited {info['domain']} (audit {info['audit_id']})", highlight=False)

        return run_audits(store, settings, domains, ruleset, options, on_progress).audit_ids

    _run_due(store, settings, as_json, lang, fail_on, audit_sites)


def _run_due(
    store: Store,
    settings: Settings,
    as_json: bool,
    lang: str,
    fail_on: FailOn | None,
    audit_sites: Callable[[list[str]], list[int]],
) -> None:
    """Claim the due checks, audit them with ``audit_sites`` (here or on the workers), store
    the changes, send the digest, print the audits."""
    from ectrust.scheduler import run_due, utcnow

    policy, alerts = _monitor_config(settings)
    audit_ids, outcomes, sent = run_due(store, settings, policy, alerts, audit_sites, utcnow())
    if not audit_ids:
        err.print("nothing is due", highlight=False)
    changes = sum(o.changes for o in outcomes)
    if sent["digest_id"] or sent["failed"] or changes:
        err.print(
            f"{changes} change(s); alert digest {sent['digest_id'] or '—'}: "
            f"{sent['sent']} delivered, {sent['failed']} failed (kept for retry)",
            highlight=False,
        )
    docs = _documents(store, audit_ids, lang)
    if as_json:
        print_json({"audits": docs})
    elif docs:
        _print_audits(docs)
    _exit_for(docs, fail_on)


@schedule_app.command("run")
@command
def schedule_run() -> None:
    """Run the re-check scheduler in the foreground (Ctrl-C or SIGTERM stops it)."""
    import signal

    from ectrust.scheduler import Monitor, SchedulerBusy

    settings = Settings.from_env()
    policy, alerts = _monitor_config(settings)
    store = open_store(settings)
    from ectrust.distributed import scheduler_runner

    runner = scheduler_runner(settings, policy)
    monitor = Monitor(store, settings, policy, alerts, runner=runner)
    if runner is not None:
        err.print(
            f"checks go to the workers on {runner.cfg.url} (queue {runner.cfg.namespace})",
            highlight=False,
        )
    try:
        monitor.start()
    except SchedulerBusy as exc:
        raise fail(str(exc), 3) from exc

    def stop(signum: int, _frame: Any) -> None:
        err.print(f"stopping (signal {signum}) …", highlight=False)
        monitor.shutdown(wait=False)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    channels = ", ".join(c for c, _ in alerts.channels()) or "none configured"
    err.print(
        f"scheduler running ({monitor.owner}); red every {policy.red_days:g} days, blue "
        f"{policy.blue_days:g}, suspended {policy.suspended_days:g}; alerts: {channels}",
        highlight=False,
    )
    monitor.wait()
    if monitor.lost_lease:
        raise fail("the scheduler lost its lease to another scheduler and stopped", 3)


@schedule_app.command("list")
@command
def schedule_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Due, overdue and planned re-checks (and the sites checked on demand only)."""
    from ectrust.scheduler import schedule_listing, utcnow

    settings = Settings.from_env()
    policy, _alerts = _monitor_config(settings)
    rows = schedule_listing(open_store(settings), policy, utcnow())
    if as_json:
        print_json({"checks": rows})
        return
    table = Table("domain", "certificate", "state", "due", "why", "last check", "last run")
    style = {"overdue": "bold red", "due": "yellow", "planned": "green", "on_demand": "dim"}
    for r in rows:
        last = r["last_scheduled_check"]
        table.add_row(
            r["domain"],
            f"{r['certificate_status']} {r['tier'] or ''}".strip(),
            f"[{style[r['state']]}]{r['state'].replace('_', ' ')}[/]",
            (r["due_at"] or "—").replace("T", " "),
            r["reason"] or "",
            (r["last_check"] or "never").replace("T", " "),
            f"{last['status']} (audit {last['audit_id'] or '—'})" if last else "—",
        )
    out.print(table)


# -- accounts of the web application (issue #9) -----------------------------------------
users_app = typer.Typer(no_args_is_help=True, help="Accounts of the web application.")
app.add_typer(users_app, name="users")


class Role(StrEnum):
    evaluator = "evaluator"
    administrator = "administrator"


def _new_password() -> str:
    """Prompted twice, never echoed (or one line on standard input when not a terminal)."""
    return typer.prompt("password", hide_input=True, confirmation_prompt=True)


def _account_change(fn: Callable[..., Any], *args: Any) -> Any:
    from audits.accounts import AccountError

    store = open_store(Settings.from_env())
    try:
        with store.session() as session:
            user = fn(session, *args)
            return user.username, user.role
    except AccountError as exc:
        raise BadInput(str(exc)) from exc


@users_app.command("add")
@command
def users_add(
    username: str,
    role: Annotated[Role, typer.Option("--role", help="evaluator or administrator.")] = (
        Role.evaluator
    ),
) -> None:
    """Create an account (asks for the password)."""
    from audits.accounts import add_user

    name, role_name = _account_change(add_user, username, _new_password(), role.value)
    out.print(f"added {name} ({role_name})", highlight=False)


@users_app.command("passwd")
@command
def users_passwd(username: str) -> None:
    """Set a new password (asks for it); the account's open sessions end."""
    from audits.accounts import set_password

    name, _ = _account_change(set_password, username, _new_password())
    out.print(f"password changed for {name}; open sessions ended", highlight=False)


@users_app.command("disable")
@command
def users_disable(username: str) -> None:
    """Disable an account; its open sessions end at once."""
    from audits.accounts import disable_user

    name, _ = _account_change(disable_user, username)
    out.print(f"disabled {name}", highlight=False)


# -- distributed audits (issue #10) --------------------------------------------------------
class JobsFailed(Exception):
    """Some distributed jobs ended without an audit (exit status 3)."""


def _run_jobs(
    app_: Any,
    domains: list[str],
    job_options: dict[str, Any],
    rules: list[str] | None,
    timeout_s: float | None = None,
) -> tuple[list[int | None], list[str]]:
    """Enqueue one job per site and wait, showing progress on stderr. Returns the audit ids
    in the order given (None for a failed job) and the failures' messages."""
    from ectrust.distributed import enqueue, wait_for, workers_answering

    jobs = enqueue(app_, domains, job_options, rules)
    if not workers_answering(app_):
        err.print(
            f"no worker answered: the {len(jobs)} job(s) wait in the queue until one runs "
            "(`ectrust worker`)",
            highlight=False,
        )
    with _progress_bar() as progress:
        task = progress.add_task(f"{len(jobs)} job(s) queued", total=len(jobs))

        def on_done(outcome: Any) -> None:
            progress.advance(task)
            progress.update(task, description=f"audited {outcome.domain}")

        try:
            outcomes = wait_for(app_, jobs, on_done, timeout_s)
        except KeyboardInterrupt as exc:
            raise Interrupted(
                f"stopped waiting; the job(s) stay queued and will run: "
                f"{' '.join(j.job_id for j in jobs)}"
            ) from exc
    for o in outcomes:
        if o.interrupted:
            err.print(
                f"warning: {o.domain}: its worker was stopped mid-audit; audit {o.audit_id} "
                "is partial (crawl interrupted)",
                highlight=False,
            )
    failures = [f"{o.domain} (job {o.job_id}): {o.error}" for o in outcomes if o.audit_id is None]
    return [o.audit_id for o in outcomes], failures


def _audit_distributed(
    settings: Settings,
    domains: list[str],
    all_sites: bool,
    due: bool,
    job_options: dict[str, Any],
    rules: list[str] | None,
    broker: str | None,
    *,
    no_wait: bool,
    as_json: bool,
    lang: str,
    fail_on: FailOn | None,
) -> None:
    """``audit --distributed``: the same selection and output as a local audit; the crawling
    and judging happen on the workers (ectrust/distributed.py)."""
    from crawler.netpolicy import parse_connect_to
    from ectrust.distributed import check_broker, enqueue, make_app

    if due and no_wait:
        raise BadInput("--due waits for its audits (the scheduled checks record them)")
    cfg = BrokerConfig.from_env(broker)
    parse_connect_to(job_options["connect_to"])  # bad input fails here, not on every worker
    load_rules(pack_ids=rules)
    store = open_store(settings)
    with store.session() as session:
        known = set(session.scalars(select(Site.domain).where(Site.registered.is_(True))))
    wanted = sorted(known) if all_sites else [d.strip().lower() for d in domains]
    unknown = [d for d in wanted if d not in known]
    if unknown:
        raise BadInput(f"not registered: {', '.join(unknown)} (add with `ectrust sites add`)")
    if not wanted and not due:
        raise BadInput("the registry is empty: add sites first (`ectrust sites import`)")
    check_broker(cfg)
    app_ = make_app(cfg)
    if no_wait:
        jobs = enqueue(app_, wanted, job_options, rules)
        if as_json:
            print_json({"jobs": [{"job_id": j.job_id, "domain": j.domain} for j in jobs]})
        else:
            for j in jobs:
                out.print(f"{j.job_id} {j.domain}", highlight=False)
        return

    if due:
        def audit_sites(due_domains: list[str]) -> list[int]:
            err.print(f"due now: {', '.join(due_domains)}", highlight=False)
            ids, failures = _run_jobs(app_, due_domains, job_options, rules)
            if failures:
                raise JobsFailed("; ".join(failures))
            return [i for i in ids if i is not None]

        try:
            _run_due(store, settings, as_json, lang, fail_on, audit_sites)
        except JobsFailed as exc:
            raise fail(f"distributed audit failed: {exc}", 3) from exc
        return

    ids, failures = _run_jobs(app_, wanted, job_options, rules)
    docs = _documents(store, [i for i in ids if i is not None], lang)
    if as_json:
        print_json({"audits": docs})
    else:
        _print_audits(docs)
    for problem in failures:
        err.print(f"[bold red]error:[/] {problem}", highlight=False)
    if failures:
        raise typer.Exit(3)
    _exit_for(docs, fail_on)


@app.command()
@command
def worker(
    concurrency: Annotated[
        int, typer.Option(min=1, max=64, help="Sites audited at once by this worker.")
    ] = 2,
    broker: BrokerOption = None,
) -> None:
    """Run a distributed audit worker in the foreground (SIGTERM: finish the jobs in hand
    and stop)."""
    import os
    import sys

    from ectrust.distributed import check_broker, run_worker

    settings = Settings.from_env()
    cfg = BrokerConfig.from_env(broker)
    check_broker(cfg)
    open_store(settings).dispose()  # migrate once here, before the pool processes start
    # Celery prints its banner on stdout; a worker's stdout carries nothing else, so all of
    # its progress goes to stderr.
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    err.print(
        f"worker: broker {cfg.url} queue {cfg.namespace}, {concurrency} at once, "
        f"database {settings.db_url}",
        highlight=False,
    )
    run_worker(cfg, concurrency)
