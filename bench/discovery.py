"""Privacy-policy discovery benchmark: does ectrust find the policy a customer would find?

What it measures
----------------
One run builds a farm of generated shop sites (the realistic Chinese shop markup of
``bench/crawl.py``: header, navigation, product pages, footer, 20-40 KB pages), and gives
each site one *scenario* that decides where its privacy policy is, if anywhere, and what
decoys surround it. The policy texts are real policies read at run time from the shared
corpora (CAPP-130 for Chinese, OPP-115 for English; nothing is copied into the project,
the farm lives in a temporary folder), so the detector reads texts it was not written
against. The farm is served on 127.0.0.1 by ``ectrust.sitefarm`` and audited with
``ectrust audit --all --json`` through ``--connect-to``.

Scenarios (ground truth = the URL a careful evaluator would record, or none):

* found by a click: footer link with each of the usual Chinese and English labels, header
  link, link on an image (alt text) or with a ``title``, help centre -> policy (two clicks),
  legal page -> policy (two clicks), GBK-encoded site, a policy beside privacy decoys;
* found only as a last resort (sitemap.xml, common path): expected URL, reported as ``warn``
  with no click count;
* no policy: none at all, a privacy-tips blog post, an article *about* privacy policies, a
  cookie notice, an account privacy-settings page, a terms page with a privacy paragraph,
  a policy link that answers 404.

Per site the audit's ``privacy_policy.url`` is compared with the truth: TP = the right URL;
FP = a URL where there is none or the wrong one; FN = a policy missed or the wrong one
reported (a wrong URL counts as both). Precision = TP/(TP+FP), recall = TP/(TP+FN). Click
counts are checked for the click scenarios. The issue's target is precision and recall
>= 0.95.

Usage::

    python bench/discovery.py [--sites-per-scenario 4] [--seed 1] [--keep]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import clauses as corpora  # noqa: E402  (bench/clauses.py: corpus loaders)
import crawl as shops  # noqa: E402  (bench/crawl.py: realistic shop generator)

from ectrust.sitefarm import SiteFarm  # noqa: E402

POLICY_LINK = '<a href="/privacy.html">隐私政策</a>'
ZH_LABELS = ("隐私政策", "隐私权政策", "个人信息保护政策", "法律声明及隐私权政策", "隐私声明")
EN_LABELS = ("Privacy Policy", "Privacy Notice", "Privacy Statement")
POLICY_PATHS = ("/privacy.html", "/help/yszc.html", "/legal/p-2024.html", "/article/88.html")

TIPS = (
    "网购时如何保护个人隐私？设置复杂的密码，不要在多个网站使用同一个密码。",
    "不要点击来历不明的短信链接，谨防冒充客服的诈骗电话。",
    "收到快递后，记得撕掉包裹上的面单，以免泄露姓名、电话和地址。",
    "在公共场所使用无线网络时，尽量不要登录网银或进行支付。",
    "定期检查手机应用的权限，关闭不必要的定位和通讯录权限。",
)
ABOUT_POLICIES = (
    "很多消费者从来不读网站的隐私政策，其实它值得花五分钟看一看。",
    "一份好的隐私政策会说明网站收集哪些个人信息、用于什么目的、是否与第三方共享。",
    "它还应当告诉您信息保存多久、采取了哪些安全措施，以及您如何查阅、更正和删除自己的信息。",
    "如果政策里没有写明联系方式，遇到问题时您将很难维权。",
    "下次注册新网站之前，不妨先看看它的隐私政策写得是否清楚。",
)
COOKIE_NOTICE = (
    "本网站使用 Cookie 来改善您的浏览体验。",
    "继续浏览即表示您同意我们使用 Cookie。",
    "您可以在浏览器设置中关闭 Cookie。",
)
SETTINGS = (
    "隐私设置",
    "请先登录后管理您的隐私设置。",
    "手机号",
    "密码",
    "是否允许他人通过手机号找到我",
)


@dataclass
class SiteCase:
    host: str
    scenario: str
    expected: str | None  # URL of the policy, None when there is none
    clicks: int | None  # expected clicks_from_home (None for last-resort finds)


@dataclass
class Texts:
    zh: list[list[str]]  # CAPP-130 policies, as sentences
    en: list[list[str]]  # OPP-115 policies, as segments

    def policy_html(self, rng: random.Random, lang: str, title: str) -> str:
        units = rng.choice(self.zh if lang == "zh" else self.en)
        body = "".join(f"<p>{escape(u)}</p>" for u in units)
        return f'<div class="policy"><h1>{escape(title)}</h1>{body}</div>'


def load_texts(root: Path) -> Texts:
    zh = [[u.text for u in units] for units in corpora.load_capp(root).policies().values() if units]
    en = [[u.text for u in units] for units in corpora.load_opp(root).policies().values() if units]
    return Texts(zh, en)


def _paragraphs(lines: tuple[str, ...], heading: str) -> str:
    return f"<h1>{heading}</h1>" + "".join(f"<p>{line}</p>" for line in lines)


class Builder:
    """One generated shop, rewritten for a scenario."""

    def __init__(self, index: int, texts: Texts, rng: random.Random) -> None:
        self.rng = rng
        self.texts = texts
        self.shop = shops._shop(index, 10, rng)
        self.host = self.shop.host
        self.pages: dict[str, str | bytes] = dict(shops.shop_pages(self.shop, rng))
        self.encoding = "utf-8"

    def page(self, title: str, main: str) -> str:
        return shops._page(self.shop, self.rng, title, main)

    def replace_everywhere(self, old: str, new: str) -> None:
        for path, html in self.pages.items():
            if isinstance(html, str):
                self.pages[path] = html.replace(old, new)

    def move_policy(self, path: str, label: str, lang: str = "zh", footer: bool = True) -> str:
        """The policy at ``path`` (a real policy text), linked from the footer as ``label``
        (or not linked from the footer at all)."""
        del self.pages["privacy.html"]
        self.pages[path.lstrip("/")] = self.page(
            label, self.texts.policy_html(self.rng, lang, label)
        )
        self.replace_everywhere(POLICY_LINK, f'<a href="{path}">{label}</a>' if footer else "")
        return f"http://{self.host}{path}"

    def unlink_policy(self) -> None:
        self.replace_everywhere(POLICY_LINK, "")

    def drop_policy(self) -> None:
        self.unlink_policy()
        del self.pages["privacy.html"]

    def add_footer_link(self, path: str, label: str) -> None:
        self.replace_everywhere(
            '<a href="/terms.html">', f'<a href="{path}">{label}</a><a href="/terms.html">'
        )

    def write(self, root: Path) -> None:
        site = root / self.host
        for rel, html in self.pages.items():
            path = site / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(html, str):
                if self.encoding != "utf-8":
                    html = html.replace('charset="utf-8"', f'charset="{self.encoding}"')
                data = html.encode(self.encoding, errors="xmlcharrefreplace")
            else:
                data = html
            path.write_bytes(data)
        (site / "robots.txt").write_text("User-agent: *\nAllow: /\n", encoding="ascii")


Scenario = Callable[[Builder], tuple[str | None, int | None]]


def footer_zh(b: Builder) -> tuple[str | None, int | None]:
    label = b.rng.choice(ZH_LABELS)
    return b.move_policy(b.rng.choice(POLICY_PATHS), label), 1


def footer_en(b: Builder) -> tuple[str | None, int | None]:
    label = b.rng.choice(EN_LABELS)
    return b.move_policy(b.rng.choice(POLICY_PATHS), label, lang="en"), 1


def header_link(b: Builder) -> tuple[str | None, int | None]:
    url = b.move_policy("/service/privacy-policy.html", "隐私权政策", footer=False)
    b.replace_everywhere(
        '<a href="/help/index.html">帮助中心</a></div>',
        '<a href="/help/index.html">帮助中心</a>'
        '<a href="/service/privacy-policy.html">隐私权政策</a></div>',
    )
    return url, 1


def image_link(b: Builder) -> tuple[str | None, int | None]:
    url = b.move_policy("/privacy.html", "隐私政策")
    b.replace_everywhere(
        '<a href="/privacy.html">隐私政策</a>',
        '<a href="/privacy.html" title="个人信息保护政策"><img src="/img/shield.png" alt=""></a>',
    )
    return url, 1


def help_centre(b: Builder) -> tuple[str | None, int | None]:
    url = b.move_policy("/help/privacy.html", "隐私政策", footer=False)
    b.replace_everywhere(
        "<p>更多问题请", '<p><a href="/help/privacy.html">隐私政策</a></p><p>更多问题请'
    )
    return url, 2


def legal_page(b: Builder) -> tuple[str | None, int | None]:
    url = b.move_policy("/legal/privacy-policy.html", "隐私权政策", footer=False)
    b.pages["legal/index.html"] = b.page(
        "法律声明",
        "<h1>法律声明</h1><p>本网站所有内容受著作权法保护。</p>"
        '<ul><li><a href="/terms.html">用户协议</a></li>'
        '<li><a href="/legal/privacy-policy.html">隐私权政策</a></li></ul>',
    )
    b.add_footer_link("/legal/index.html", "法律声明")
    return url, 2


def gbk_site(b: Builder) -> tuple[str | None, int | None]:
    b.encoding = "gbk"
    return b.move_policy("/privacy.html", "隐私政策"), 1


def with_decoys(b: Builder) -> tuple[str | None, int | None]:
    url = b.move_policy("/privacy.html", "隐私政策")
    _tips(b)
    _cookie_notice(b)
    return url, 1


def sitemap_only(b: Builder) -> tuple[str | None, int | None]:
    url = b.move_policy("/docs/yinsi-2025.html", "隐私政策", footer=False)
    locs = "".join(
        f"<url><loc>http://{b.host}/{path}</loc></url>"
        for path in sorted(b.pages)
        if path.endswith(".html")
    )
    b.pages["sitemap.xml"] = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{locs}</urlset>'
    )
    return url, None


def common_path(b: Builder) -> tuple[str | None, int | None]:
    b.unlink_policy()
    return f"http://{b.host}/privacy.html", None


def no_policy(b: Builder) -> tuple[str | None, int | None]:
    b.drop_policy()
    return None, None


def _tips(b: Builder) -> None:
    b.pages["blog/privacy-tips.html"] = b.page(
        "隐私小贴士", _paragraphs(TIPS, "网购隐私保护小贴士")
    )
    b.add_footer_link("/blog/privacy-tips.html", "隐私小贴士")


def _cookie_notice(b: Builder) -> None:
    b.pages["cookie.html"] = b.page("Cookie 政策", _paragraphs(COOKIE_NOTICE, "Cookie 政策"))
    b.add_footer_link("/cookie.html", "Cookie 政策")


def decoy_tips(b: Builder) -> tuple[str | None, int | None]:
    b.drop_policy()
    _tips(b)
    return None, None


def decoy_article(b: Builder) -> tuple[str | None, int | None]:
    b.drop_policy()
    b.pages["news/read-the-policy.html"] = b.page(
        "为什么要读隐私政策", _paragraphs(ABOUT_POLICIES, "为什么要读一读隐私政策")
    )
    b.add_footer_link("/news/read-the-policy.html", "读懂隐私政策")
    return None, None


def decoy_cookie(b: Builder) -> tuple[str | None, int | None]:
    b.drop_policy()
    _cookie_notice(b)
    return None, None


def decoy_settings(b: Builder) -> tuple[str | None, int | None]:
    b.drop_policy()
    b.pages["account/privacy.html"] = b.page("隐私设置", _paragraphs(SETTINGS, "账户隐私设置"))
    b.add_footer_link("/account/privacy.html", "隐私设置")
    return None, None


def decoy_terms(b: Builder) -> tuple[str | None, int | None]:
    b.drop_policy()
    b.replace_everywhere(
        "<h1>用户服务协议</h1>",
        "<h1>用户服务协议</h1><h2>隐私保护</h2><p>我们重视您的隐私，具体请以届时公布的"
        "隐私政策为准。</p>",
    )
    b.replace_everywhere(
        '<a href="/terms.html">用户协议</a>', '<a href="/terms.html">用户协议与隐私</a>'
    )
    return None, None


def dead_link(b: Builder) -> tuple[str | None, int | None]:
    del b.pages["privacy.html"]
    return None, None


SCENARIOS: dict[str, Scenario] = {
    "footer-zh": footer_zh,
    "footer-en": footer_en,
    "header": header_link,
    "image-link": image_link,
    "help-centre": help_centre,
    "legal-page": legal_page,
    "gbk": gbk_site,
    "with-decoys": with_decoys,
    "sitemap-only": sitemap_only,
    "common-path": common_path,
    "none": no_policy,
    "decoy-tips": decoy_tips,
    "decoy-article": decoy_article,
    "decoy-cookie": decoy_cookie,
    "decoy-settings": decoy_settings,
    "decoy-terms": decoy_terms,
    "dead-link": dead_link,
}


def build_farm(root: Path, texts: Texts, per_scenario: int, seed: int) -> list[SiteCase]:
    cases: list[SiteCase] = []
    index = 0
    for name, scenario in SCENARIOS.items():
        for _ in range(per_scenario):
            index += 1
            rng = random.Random(seed * 1_000_003 + index)
            builder = Builder(index, texts, rng)
            expected, clicks = scenario(builder)
            builder.write(root)
            cases.append(SiteCase(builder.host, name, expected, clicks))
    return cases


def run_audit(work: Path, cases: list[SiteCase], port: int) -> dict[str, dict[str, Any]]:
    env = shops.ectrust_env(work)
    csv_path = work / "sites.csv"
    shops.write_sites_csv(csv_path, [c.host for c in cases])
    subprocess.run(
        [*shops.ectrust_command(), "sites", "import", str(csv_path)],
        env=env,
        cwd=work,
        check=True,
        capture_output=True,
    )
    cmd = [
        *shops.ectrust_command(),
        "audit",
        "--all",
        "--json",
        "--render",
        "never",
        "--connect-to",
        f"::127.0.0.1:{port}",
    ]
    for key, value in shops.CONCURRENCY.items():
        cmd += ["-s", f"{key}={json.dumps(value)}"]
    done = subprocess.run(cmd, env=env, cwd=work, capture_output=True, text=True)
    try:
        audits = json.loads(done.stdout)["audits"]
    except (json.JSONDecodeError, KeyError) as exc:
        raise SystemExit(
            f"ectrust audit printed no audits document ({exc}):\n{done.stderr[-3000:]}"
        ) from exc
    return {a["domain"]: a for a in audits}


def score(cases: list[SiteCase], audits: dict[str, dict[str, Any]]) -> dict[str, Any]:
    tp = fp = fn = tn = 0
    clicks_wrong: list[str] = []
    per_scenario: dict[str, Counter[str]] = defaultdict(Counter)
    mistakes: list[str] = []
    for case in cases:
        doc = audits.get(case.host)
        if doc is None or not doc.get("reachable"):
            raise SystemExit(
                f"{case.host} was not audited or not reachable: the run measured nothing"
            )
        policy = doc.get("privacy_policy") or {}
        got = policy.get("url")
        if case.expected is not None and got == case.expected:
            tp += 1
            per_scenario[case.scenario]["right"] += 1
            if policy.get("clicks_from_home") != case.clicks:
                got_clicks = policy.get("clicks_from_home")
                clicks_wrong.append(
                    f"{case.host} ({case.scenario}): clicks {got_clicks} != {case.clicks}"
                )
            continue
        if got is None and case.expected is None:
            tn += 1
            per_scenario[case.scenario]["right"] += 1
            continue
        per_scenario[case.scenario]["wrong"] += 1
        if got is not None:
            fp += 1
        if case.expected is not None:
            fn += 1
        mistakes.append(f"{case.host} ({case.scenario}): expected {case.expected}, got {got}")
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    return {
        "sites": len(cases),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "precision": precision,
        "recall": recall,
        "clicks_wrong": clicks_wrong,
        "mistakes": mistakes,
        "per_scenario": {k: dict(v) for k, v in per_scenario.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpora", type=Path, default=corpora.DEFAULT_CORPORA)
    parser.add_argument("--sites-per-scenario", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the farm and database")
    args = parser.parse_args(argv)

    texts = load_texts(args.corpora.resolve())
    work = Path(tempfile.mkdtemp(prefix="ectrust-discovery-"))
    try:
        farm_root = work / "farm"
        cases = build_farm(farm_root, texts, args.sites_per_scenario, args.seed)
        print(
            f"farm: {len(cases)} sites, {len(SCENARIOS)} scenarios x {args.sites_per_scenario}; "
            f"policies from CAPP-130 ({len(texts.zh)}) and OPP-115 ({len(texts.en)})"
        )
        started = time.perf_counter()
        with SiteFarm(farm_root) as farm:
            audits = run_audit(work, cases, farm.port)
        seconds = time.perf_counter() - started
        result = score(cases, audits)
        print(f"audit: {seconds:.1f} s for {len(cases)} sites\n")
        print(f"  {'scenario':<16} {'right':>5} {'wrong':>5}")
        for name in SCENARIOS:
            counts = result["per_scenario"].get(name, {})
            print(f"  {name:<16} {counts.get('right', 0):>5} {counts.get('wrong', 0):>5}")
        print(f"\n  TP {result['tp']}  FP {result['fp']}  FN {result['fn']}  TN {result['tn']}")
        fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        p, r = result["precision"], result["recall"]
        for name, value in (("precision", p), ("recall   ", r)):
            met = "met" if value is not None and value >= 0.95 else "NOT met"
            print(f"  {name} {fmt(value)} (target >= 0.95: {met})")
        print(f"  click counts wrong on correctly found policies: {len(result['clicks_wrong'])}")
        for line in result["mistakes"] + result["clicks_wrong"]:
            print(f"    {line}")
        out = REPO / "bench" / "out"
        out.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        target = out / f"discovery-{stamp}.json"
        target.write_text(json.dumps({**result, "seconds": seconds, "seed": args.seed}, indent=2))
        print(f"\nfigures written to {target}")
        if args.keep:
            print(f"farm and database kept in {work}")
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
