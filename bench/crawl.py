"""Crawl throughput benchmark: ``ectrust audit --all`` against a bare Scrapy spider.

What it measures
----------------
One run builds a farm of N generated Chinese shop sites (``site0001.example`` …, about 18
pages of 20-40 KB each, robots.txt allowing all) in a temporary folder, serves it on
127.0.0.1 (nginx when ``/usr/sbin/nginx`` exists, else a small aiohttp server; the line
``server:`` says which), and then, against that same farm:

a) ``ectrust audit --all --json`` on a fresh SQLite database after ``ectrust sites import``,
   with ``--connect-to ::127.0.0.1:PORT`` and politeness switched off
   (``DOWNLOAD_DELAY=0``, no AutoThrottle, 64 requests at a time, 2 per site). Timed from
   start to exit of the command: start-up, crawl, storage, judging and the JSON document.
b) A bare Scrapy spider (this file, ``--bare-spider``) in its own process that fetches
   exactly the URLs ectrust stored as snapshots, obeying robots.txt, with the same
   concurrency and the same connection mapping (ectrust's resolver), and throws the bodies
   away: no parsing, no storage, no judging.

Both runs must succeed completely (every site reachable, every page 200), or the script
stops with an error: a benchmark that measured failures is worthless.

How to read it
--------------
``pages`` excludes robots.txt on both sides. ``seconds`` is the wall time of the whole
command (process start-up included), and pages/s and sites/min derive from it; ``crawl s``
is Scrapy's own ``elapsed_time_seconds`` (spider open to close) inside it. ``peak RSS MB``
is the largest sum of the resident memory of the measured process and all its descendants,
sampled every 0.1 s (for ectrust: the CLI process plus its ``crawler.run`` child). ``CPU s``
is user+system time of the measured process tree; CPU s close to cores x seconds means the
CPUs, not the network, were the limit. ``server CPU s`` shows the farm server was not the
bottleneck. The figures only mean something on an otherwise idle machine: the line "other
CPU on the machine" says how much CPU the rest of the system used meanwhile (rerun if it
is more than a few seconds).

The headline is ``ectrust/bare pages/s``: the share of raw Scrapy throughput ectrust keeps
once it does its actual work (link selection, storing snapshots and bodies, judging). 1.0
would mean ectrust costs nothing over fetching; the lower it is, the more time goes into
ectrust's own processing. Figures are also written to ``bench/out/crawl-<timestamp>.json``.

Usage::

    python bench/crawl.py --sites 200 [--pages-per-site 18] [--max-pages 30] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import http.client
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import psutil

REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / "bench" / "out"
NGINX = Path("/usr/sbin/nginx")
BADGE_HOSTS = "verify.trust.example"
MB = 1024 * 1024

# Identical on both sides: no politeness delays, 64 requests in flight, 2 per site.
CONCURRENCY: dict[str, Any] = {
    "DOWNLOAD_DELAY": 0,
    "AUTOTHROTTLE_ENABLED": False,
    "CONCURRENT_REQUESTS": 64,
    "CONCURRENT_REQUESTS_PER_DOMAIN": 2,
}

# Pages every generated site has besides its catalogue (path, footer link text).
FIXED_PAGES = (
    ("/about.html", "关于我们"),
    ("/contact.html", "联系我们"),
    ("/privacy.html", "隐私政策"),
    ("/terms.html", "用户协议"),
    ("/complaints.html", "投诉举报"),
    ("/licence.html", "营业执照"),
    ("/help/index.html", "帮助中心"),
)


class BenchError(RuntimeError):
    """The run cannot produce meaningful figures."""


# ---------------------------------------------------------------------------------------
# The farm: generated shop sites
# ---------------------------------------------------------------------------------------

_ADJECTIVES = (
    "经典",
    "轻奢",
    "北欧风",
    "加厚",
    "便携式",
    "智能",
    "纯棉",
    "原木",
    "复古",
    "简约",
    "大容量",
    "静音",
    "防水",
    "手工",
    "有机",
    "进口",
)
_NOUNS = (
    "保温杯",
    "双肩包",
    "蓝牙耳机",
    "台灯",
    "茶具套装",
    "羊毛围巾",
    "电饭煲",
    "收纳箱",
    "运动鞋",
    "机械键盘",
    "绿茶礼盒",
    "儿童绘本",
    "瑜伽垫",
    "陶瓷餐具",
    "床上四件套",
    "空气净化器",
)
_CATEGORIES = ("家居生活", "数码电器", "服饰鞋包", "食品茶饮", "图书文具", "运动户外", "母婴用品")
_INDUSTRIES = ("books", "electronics", "apparel", "food", "home", "sports")
_SENTENCES = (
    "本商品采用优质原材料精心制作，经过多道质检工序，品质有保障。",
    "下单后四十八小时内发货，全国大部分地区三到五天送达。",
    "支持七天无理由退换货，商品完好不影响二次销售即可办理。",
    "产品尺寸为手工测量，可能存在一到二厘米的误差，敬请谅解。",
    "由于显示器设置不同，实物颜色可能与图片略有差异。",
    "我们坚持正品行货，所有商品均可提供正规发票。",
    "会员购物满一百元即可享受包邮服务，偏远地区除外。",
    "收到商品后请及时验货，如有破损请在二十四小时内联系客服。",
    "本店所有商品均由品牌方直接供货，假一赔十。",
    "节假日期间订单较多，发货时间可能顺延，请耐心等待。",
    "材质柔软亲肤，透气性好，适合一年四季使用。",
    "设计简洁大方，既适合日常使用，也适合作为礼物赠送亲友。",
    "使用前请仔细阅读说明书，并按照说明正确操作。",
    "如需开具增值税专用发票，请在下单时备注公司名称和税号。",
    "客服在线时间为每天上午九点至晚上十点，欢迎随时咨询。",
    "商品包装采用环保材料，减少对环境的影响。",
    "该款式为本店热销爆款，累计销量已突破十万件。",
    "清洗时请使用中性洗涤剂，避免长时间浸泡和暴晒。",
    "购买后可在个人中心查看物流信息和订单状态。",
    "如遇质量问题，本店承担来回运费并优先为您处理。",
)
_REVIEWS = (
    "质量很好，和描述的一样，物流也很快，好评！",
    "包装很用心，送给朋友的，朋友很喜欢。",
    "性价比很高，已经是第二次购买了，会继续支持。",
    "客服态度很好，耐心解答了我的问题。",
    "颜色比图片稍微深一点，不过整体还是满意的。",
    "用了一个星期，感觉不错，值得推荐。",
    "发货速度快，第二天就收到了，点赞。",
    "做工精细，没有异味，孩子很喜欢。",
)
_PRIVACY_SECTIONS = (
    (
        "一、我们如何收集和使用您的个人信息",
        "在您注册账号、浏览商品、提交订单时，我们会收集您的姓名、手机号码、收货地址、"
        "订单信息和设备信息。我们收集这些个人信息的目的是为您提供商品交付、售后服务、"
        "账号安全保障以及改进我们的产品和服务。",
    ),
    (
        "二、我们如何共享、转让和公开披露您的个人信息",
        "为完成订单配送，我们会向物流服务商共享您的收货信息；为完成支付，我们会向支付机构"
        "共享必要的订单信息。除法律法规另有规定外，未经您的单独同意，我们不会向第三方提供、"
        "转让或公开披露您的个人信息。",
    ),
    (
        "三、我们如何使用 Cookie 和同类技术",
        "为确保网站正常运转，我们会在您的设备上存储名为 Cookie 的小数据文件。您可以通过浏览器"
        "设置管理或删除 Cookie，但这可能影响您使用部分功能。",
    ),
    (
        "四、我们如何保存您的个人信息",
        "我们在中华人民共和国境内收集和产生的个人信息将存储在境内。我们仅在实现本政策所述目的"
        "所必需的期限内保存您的个人信息，超出保存期限后将删除或匿名化处理。",
    ),
    (
        "五、我们如何保护您的个人信息安全",
        "我们采用加密传输、访问控制、安全审计等技术措施和管理措施保护您的个人信息，防止数据"
        "遭到未经授权的访问、公开披露、使用、修改、损坏或丢失。",
    ),
    (
        "六、您的权利",
        "您有权查阅、复制、更正、补充、删除您的个人信息，有权撤回同意、注销账号，并有权要求"
        "我们对个人信息处理规则进行解释说明。",
    ),
    (
        "七、我们如何处理未成年人的个人信息",
        "我们的服务主要面向成年人。如您是不满十四周岁的儿童，请在父母或其他监护人的指导下"
        "使用我们的服务，我们将根据法律规定保护儿童个人信息。",
    ),
    (
        "八、本政策如何更新",
        "我们可能适时修订本隐私政策。政策发生重大变更时，我们将通过网站公告或站内信等方式"
        "通知您，并在生效前取得您的同意。",
    ),
    (
        "九、如何联系我们",
        "如您对本政策有任何疑问、意见或建议，或需要行使您的个人信息权利，可以通过客服电话"
        "或个人信息保护专用邮箱与我们联系，我们将在十五个工作日内回复。",
    ),
)
_STYLE = (
    "body{margin:0;font-family:'PingFang SC','Microsoft YaHei',sans-serif;color:#333}"
    ".header{background:#c81623;color:#fff;padding:10px 0}.nav a{color:#fff;margin:0 12px}"
    ".container{width:1190px;margin:0 auto}.goods-list{display:flex;flex-wrap:wrap}"
    ".goods-item{width:230px;margin:0 10px 20px 0;border:1px solid #eee;padding:10px}"
    ".goods-item .price{color:#e4393c;font-size:18px}.footer{background:#f5f5f5;"
    "padding:20px 0;font-size:12px;color:#666}.footer a{color:#666;margin:0 8px}"
    ".breadcrumb{margin:10px 0;font-size:12px}.detail-param td{border:1px solid #ddd;"
    "padding:4px 8px}.review{border-bottom:1px dashed #ddd;padding:8px 0}"
)
_CODE_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_CODE_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def credit_code(rng: random.Random) -> str:
    """A unified social credit code (GB 32100-2015) with a valid check character."""
    body = "91" + rng.choice(("110105", "310115", "440305", "330106", "350100"))
    body += "".join(rng.choice(_CODE_CHARS) for _ in range(9))
    total = sum(_CODE_CHARS.index(c) * w for c, w in zip(body, _CODE_WEIGHTS, strict=True))
    return body + _CODE_CHARS[(31 - total % 31) % 31]


@dataclass
class Product:
    pid: int
    name: str
    price: str
    category: int


@dataclass
class Shop:
    index: int
    host: str
    name: str
    company: str
    icp: str
    code: str
    phone: str
    categories: list[str]
    products: list[Product]
    page_bytes: tuple[int, int] = (20_000, 40_000)  # each page's size is drawn from this range


@dataclass
class Farm:
    root: Path
    hosts: list[str]
    pages: int
    bytes: int
    seconds: float


def _shop(
    index: int, catalogue_pages: int, rng: random.Random, page_bytes: tuple[int, int]
) -> Shop:
    n_categories = max(1, catalogue_pages // 4)
    n_products = max(1, catalogue_pages - n_categories)
    categories = rng.sample(_CATEGORIES, min(n_categories, len(_CATEGORIES)))
    while len(categories) < n_categories:
        categories.append(f"{rng.choice(_CATEGORIES)}{len(categories) + 1}")
    products = [
        Product(
            pid=1000 + i + 1,
            name=f"{rng.choice(_ADJECTIVES)}{rng.choice(_NOUNS)}",
            price=f"{rng.randint(19, 2999)}.{rng.choice(('00', '90', '99'))}",
            category=i % n_categories + 1,
        )
        for i in range(n_products)
    ]
    province = rng.choice("京沪粤浙苏闽川鄂")
    city = rng.choice(("杭州", "深圳", "北京", "上海", "福州"))
    return Shop(
        index=index,
        host=f"site{index:04d}.example",
        name=f"{rng.choice(('优品', '乐购', '惠选', '臻品', '好物'))}商城{index}号店",
        company=f"{city}某某{index}网络科技有限公司",
        icp=f"{province}ICP备{rng.randint(10_000_000, 99_999_999)}号-1",
        code=credit_code(rng),
        phone=f"400-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}",
        categories=categories,
        products=products,
        page_bytes=page_bytes,
    )


def _padding(rng: random.Random, target: int, used: int) -> str:
    """Product-description and review paragraphs until the page reaches ``target`` bytes."""
    parts: list[str] = ['<section class="more"><h2>商品详情与用户评价</h2>']
    size = used + 60
    n = 0
    while size < target:
        n += 1
        if n % 3:
            text = "".join(rng.choice(_SENTENCES) for _ in range(6))
            chunk = f'<p class="desc">{text}</p>\n'
        else:
            chunk = (
                f'<div class="review"><span class="user">用户{rng.randint(100, 999)}***</span>'
                f'<span class="stars">{"★" * rng.randint(3, 5)}</span>'
                f"<p>{rng.choice(_REVIEWS)}{rng.choice(_SENTENCES)}</p>"
                f'<span class="date">2026-{rng.randint(1, 11):02d}-{rng.randint(1, 28):02d}'
                "</span></div>\n"
            )
        parts.append(chunk)
        size += len(chunk.encode("utf-8"))
    parts.append("</section>")
    return "".join(parts)


def _page(shop: Shop, rng: random.Random, title: str, main: str, crumbs: str = "") -> str:
    nav = "".join(
        f'<a href="/category/{i + 1}.html">{c}</a>' for i, c in enumerate(shop.categories)
    )
    footer = "".join(f'<a href="{path}">{text}</a>' for path, text in FIXED_PAGES)
    state = json.dumps(
        {
            "shop": shop.host,
            "cart": {"count": 0},
            "products": [{"id": p.pid, "price": p.price} for p in shop.products],
        },
        ensure_ascii=False,
    )
    head = (
        '<!DOCTYPE html>\n<html lang="zh-CN">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{title} - {shop.name}</title>\n"
        f'<meta name="keywords" content="{shop.name},网上购物,{",".join(shop.categories)}">\n'
        f'<meta name="description" content="{shop.name}：正品保障，{_SENTENCES[1]}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<style>{_STYLE}</style>\n</head>\n<body>\n"
        '<div class="header"><div class="container">'
        f'<a class="logo" href="/">{shop.name}</a>'
        '<form class="search" action="/search" method="get"><input name="q" placeholder="搜索商品">'
        "<button>搜索</button></form>"
        f'<div class="nav"><a href="/">首页</a>{nav}<a href="/help/index.html">帮助中心</a></div>'
        f'</div></div>\n<div class="container">{crumbs}\n'
    )
    tail = (
        '</div>\n<div class="footer"><div class="container">'
        f'<p class="links">{footer}</p>'
        f"<p>客服热线：{shop.phone}（9:00-22:00）　邮箱：service@{shop.host}</p>"
        f"<p>© 2026 {shop.company} 版权所有　"
        f'<a href="https://beian.miit.gov.cn/" rel="nofollow">{shop.icp}</a></p>'
        f"</div></div>\n<script>window.__INITIAL_STATE__ = {state};</script>\n"
        "</body>\n</html>\n"
    )
    target = rng.randint(*shop.page_bytes)
    used = len(head.encode()) + len(main.encode()) + len(tail.encode())
    return head + main + _padding(rng, target, used) + tail


def _card(p: Product, rng: random.Random) -> str:
    return (
        f'<div class="goods-item"><a href="/product/{p.pid}.html">'
        f'<img src="/img/p{p.pid}.jpg" alt="{p.name}"><p class="name">{p.name}</p></a>'
        f'<p class="price">¥{p.price}</p><p class="sales">已售{rng.randint(10, 9999)}件</p>'
        f"<p>{rng.choice(_SENTENCES)}</p></div>"
    )


def _crumbs(*items: tuple[str, str]) -> str:
    links = "".join(f' &gt; <a href="{href}">{text}</a>' for href, text in items)
    return f'<div class="breadcrumb"><a href="/">首页</a>{links}</div>'


def _sections(pairs: Sequence[tuple[str, str]]) -> str:
    return "".join(f"<h2>{h}</h2><p>{t}</p>" for h, t in pairs)


def shop_pages(shop: Shop, rng: random.Random) -> dict[str, str]:
    """Path (under the site's folder) -> HTML, for every page of one shop."""
    pages: dict[str, str] = {}
    cards = "".join(_card(p, rng) for p in shop.products)
    pages["index.html"] = _page(
        shop,
        rng,
        "首页",
        f'<div class="banner"><h1>欢迎光临{shop.name}</h1><p>{_SENTENCES[6]}</p></div>'
        f'<h2>热销推荐</h2><div class="goods-list">{cards}</div>',
    )
    for i, cat in enumerate(shop.categories, start=1):
        items = "".join(_card(p, rng) for p in shop.products if p.category == i)
        pages[f"category/{i}.html"] = _page(
            shop,
            rng,
            cat,
            f'<h1>{cat}</h1><div class="goods-list">{items}</div>',
            _crumbs((f"/category/{i}.html", cat)),
        )
    for p in shop.products:
        cat = shop.categories[p.category - 1]
        related = "".join(
            f'<li><a href="/product/{q.pid}.html">{q.name}</a></li>'
            for q in shop.products
            if q.pid != p.pid
        )[:2000]
        pages[f"product/{p.pid}.html"] = _page(
            shop,
            rng,
            p.name,
            f'<h1>{p.name}</h1><p class="price">¥{p.price}</p>'
            '<table class="detail-param">'
            f"<tr><td>商品编号</td><td>{p.pid}</td></tr><tr><td>品牌</td><td>{shop.name}</td></tr>"
            f"<tr><td>产地</td><td>中国</td></tr><tr><td>分类</td><td>{cat}</td></tr></table>"
            f'<button class="buy">加入购物车</button><ul class="related">{related}</ul>',
            _crumbs((f"/category/{p.category}.html", cat), (f"/product/{p.pid}.html", p.name)),
        )
    pages["about.html"] = _page(
        shop,
        rng,
        "关于我们",
        f"<h1>关于我们</h1><p>{shop.name}由{shop.company}运营，致力于为消费者提供正品、"
        f"实惠的商品和贴心的服务。</p><p>{''.join(rng.sample(_SENTENCES, 5))}</p>",
    )
    pages["contact.html"] = _page(
        shop,
        rng,
        "联系我们",
        f"<h1>联系我们</h1><p>客服电话：{shop.phone}</p><p>客服邮箱：service@{shop.host}</p>"
        f"<p>公司地址：{shop.company[:2]}市某某区某某路{shop.index}号</p>",
    )
    pages["privacy.html"] = _page(
        shop,
        rng,
        "隐私政策",
        f"<h1>{shop.name}隐私政策</h1><p>更新日期：2026年1月1日　生效日期：2026年1月8日</p>"
        f"<p>{shop.company}（以下简称“我们”）深知个人信息对您的重要性，"
        "我们将按照法律法规要求，采取相应安全保护措施保护您的个人信息。</p>"
        + _sections(_PRIVACY_SECTIONS)
        + f"<p>个人信息保护联系邮箱：privacy@{shop.host}，电话：{shop.phone}。</p>",
    )
    pages["terms.html"] = _page(
        shop,
        rng,
        "用户协议",
        "<h1>用户服务协议</h1>"
        + _sections(
            [(f"第{n}条", "".join(rng.sample(_SENTENCES, 3))) for n in "一二三四五六七八九十"]
        ),
    )
    pages["complaints.html"] = _page(
        shop,
        rng,
        "投诉举报",
        f"<h1>投诉举报</h1><p>投诉电话：{shop.phone}　投诉邮箱：complaints@{shop.host}</p>"
        "<p>我们将在收到投诉后两个工作日内与您联系，并在七个工作日内给出处理结果。</p>",
    )
    pages["licence.html"] = _page(
        shop,
        rng,
        "营业执照",
        f"<h1>营业执照信息</h1><p>统一社会信用代码：{shop.code}</p>"
        f"<table><tr><td>名称</td><td>{shop.company}</td></tr>"
        "<tr><td>类型</td><td>有限责任公司</td></tr><tr><td>法定代表人</td><td>张某某</td></tr>"
        "<tr><td>注册资本</td><td>伍佰万元整</td></tr>"
        "<tr><td>经营范围</td><td>网络技术服务；日用百货、电子产品销售</td></tr></table>",
    )
    faq = [(f"{q}？", rng.choice(_SENTENCES)) for q in ("如何下单", "如何退换货", "多久发货")]
    pages["help/index.html"] = _page(
        shop,
        rng,
        "帮助中心",
        "<h1>帮助中心</h1>"
        + _sections(faq)
        + '<p>更多问题请<a href="/contact.html">联系客服</a>。</p>',
    )
    return pages


def generate_farm(
    root: Path,
    sites: int,
    pages_per_site: int,
    seed: int = 1,
    page_bytes: tuple[int, int] = (20_000, 40_000),
) -> Farm:
    started = time.perf_counter()
    catalogue = max(2, pages_per_site - 1 - len(FIXED_PAGES))
    hosts: list[str] = []
    pages = total = 0
    for index in range(1, sites + 1):
        rng = random.Random(seed * 1_000_003 + index)
        shop = _shop(index, catalogue, rng, page_bytes)
        site_dir = root / shop.host
        for rel, html in shop_pages(shop, rng).items():
            data = html.encode("utf-8")
            path = site_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            pages += 1
            total += len(data)
        (site_dir / "robots.txt").write_text("User-agent: *\nAllow: /\n", encoding="ascii")
        hosts.append(shop.host)
    return Farm(root, hosts, pages, total, time.perf_counter() - started)


def write_sites_csv(path: Path, hosts: Sequence[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            [
                "domain",
                "name",
                "start_url",
                "industry",
                "status",
                "certificate_id",
                "badge",
                "valid_from",
                "valid_until",
            ]
        )
        for i, host in enumerate(hosts, start=1):
            industry = _INDUSTRIES[i % len(_INDUSTRIES)]
            writer.writerow(
                [host, f"Shop {i}", f"http://{host}/", industry, "applicant", "", "", "", ""]
            )


# ---------------------------------------------------------------------------------------
# Serving the farm on 127.0.0.1
# ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop_process(proc: subprocess.Popen[bytes], *, group: bool = False) -> None:
    """Stop a process we started (and, with ``group``, the session it leads). SIGINT first:
    ``ectrust audit`` then runs its own clean-up (kills its crawl child, removes its job
    file), which it does not do on SIGTERM."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGINT, 3.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait)
            return


def _tree_cpu(pid: int) -> float:
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system
    return total


class Server(Protocol):
    name: str
    port: int

    def cpu_seconds(self) -> float: ...

    def stop(self) -> None: ...


class _ChildServer:
    name = "?"

    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc, self.port, self.log = proc, port, log

    def cpu_seconds(self) -> float:
        return _tree_cpu(self.proc.pid)

    def stop(self) -> None:
        _stop_process(self.proc)

    def wait_ready(self, host: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
                raise BenchError(f"{self.name} exited with {self.proc.returncode}:\n{tail}")
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            try:
                conn.request("GET", "/robots.txt", headers={"Host": host})
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass
            finally:
                conn.close()
            time.sleep(0.1)
        raise BenchError(f"{self.name} did not answer on 127.0.0.1:{self.port}")


class NginxServer(_ChildServer):
    @classmethod
    def start(cls, farm: Path, work: Path, probe_host: str) -> NginxServer:
        work.mkdir(parents=True, exist_ok=True)
        port = free_port()
        temp = {name: work / name for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
        for d in temp.values():
            d.mkdir(exist_ok=True)
        user = "user nobody nogroup;\n" if os.geteuid() == 0 else ""
        conf = work / "nginx.conf"
        conf.write_text(
            f"{user}worker_processes 2;\ndaemon off;\npid {work / 'nginx.pid'};\n"
            f"error_log {work / 'error.log'} warn;\n"
            "events { worker_connections 4096; }\n"
            "http {\n"
            "  access_log off;\n"
            "  types { text/html html; text/plain txt; }\n"
            "  default_type application/octet-stream;\n"
            "  charset utf-8;\n  charset_types text/html text/plain;\n"
            "  sendfile on;\n  tcp_nopush on;\n  keepalive_timeout 65;\n"
            "  keepalive_requests 100000;\n  open_file_cache max=20000 inactive=60s;\n"
            f"  client_body_temp_path {temp['client_body']};\n"
            f"  proxy_temp_path {temp['proxy']};\n  fastcgi_temp_path {temp['fastcgi']};\n"
            f"  uwsgi_temp_path {temp['uwsgi']};\n  scgi_temp_path {temp['scgi']};\n"
            "  server {\n"
            f"    listen 127.0.0.1:{port} default_server;\n"
            "    server_name _ ~^.+$;\n"
            f"    root {farm}/$host;\n"
            "    index index.html;\n"
            "    location / { try_files $uri $uri/ =404; }\n"
            "  }\n"
            "}\n",
            encoding="utf-8",
        )
        log = work / "stderr.log"
        with log.open("wb") as fh:
            proc = subprocess.Popen(
                [str(NGINX), "-e", str(work / "error.log"), "-p", str(work), "-c", str(conf)],
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = cls(proc, port, work / "error.log")
        version = subprocess.run([str(NGINX), "-v"], capture_output=True, text=True)
        server.name = f"nginx ({(version.stderr or version.stdout).strip()}, 2 workers)"
        try:
            server.wait_ready(probe_host)
        except BaseException:
            server.stop()
            raise
        return server


class AiohttpServer(_ChildServer):
    name = "aiohttp (python, files preloaded in memory)"

    @classmethod
    def start(cls, farm: Path, work: Path, probe_host: str) -> AiohttpServer:
        work.mkdir(parents=True, exist_ok=True)
        port = free_port()
        log = work / "aiohttp.log"
        with log.open("wb") as fh:
            proc = subprocess.Popen(
                [sys.executable, __file__, "--serve", str(farm), str(port)],
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = cls(proc, port, log)
        try:
            server.wait_ready(probe_host, timeout=60)
        except BaseException:
            server.stop()
            raise
        return server


def serve_main(root: Path, port: int) -> int:
    """``--serve ROOT PORT``: the fallback farm server (files by Host header, loopback only)."""
    from aiohttp import web

    files: dict[tuple[str, str], bytes] = {}
    for path in root.rglob("*"):
        if path.is_file():
            rel = path.relative_to(root)
            files[(rel.parts[0], "/" + "/".join(rel.parts[1:]))] = path.read_bytes()
    not_found = b"<h1>404</h1>"

    async def handle(request: web.Request) -> web.Response:
        host = (request.host or "").split(":")[0].lower()
        path = request.path
        if path.endswith("/"):
            path += "index.html"
        body = files.get((host, path))
        if body is None:
            return web.Response(status=404, body=not_found, content_type="text/html")
        ctype = "text/plain" if path.endswith(".txt") else "text/html"
        return web.Response(body=body, content_type=ctype, charset="utf-8")

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", handle)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)
    return 0


def start_server(farm: Path, work: Path, probe_host: str, choice: str) -> Server:
    if choice in ("auto", "nginx") and NGINX.exists():
        try:
            return NginxServer.start(farm, work / "nginx", probe_host)
        except BenchError as exc:
            if choice == "nginx":
                raise
            print(f"nginx failed to start, falling back to aiohttp: {exc}", file=sys.stderr)
    elif choice == "nginx":
        raise BenchError(f"{NGINX} not found (apt-get install -y nginx-light)")
    return AiohttpServer.start(farm, work / "aiohttp", probe_host)


# ---------------------------------------------------------------------------------------
# Measuring a command: wall time, peak RSS of its process tree, CPU time
# ---------------------------------------------------------------------------------------


class TreeSampler(threading.Thread):
    """Samples the summed RSS of a process and all its descendants every ``interval`` s, and
    when descendants were first and last seen (seconds after ``started``)."""

    def __init__(
        self,
        pid: int,
        started: float,
        interval: float = 0.1,
        progress: Callable[[], int] | None = None,
    ) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.pid, self.started, self.interval = pid, started, interval
        # Optional: how far the measured command is (e.g. sites audited), read about once a
        # second; ``series`` then holds (seconds, tree RSS bytes, progress) per reading.
        self.progress = progress
        self.series: list[tuple[float, int, int]] = []
        self._samples = 0
        self.peak_tree = 0
        self.peak_single = 0
        self.max_procs = 0
        self.children_first: float | None = None
        self.children_last: float | None = None
        # pid -> [command line (short), CPU seconds at the last sample]
        self.cpu: dict[int, list[Any]] = {}
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while True:
            self.sample(root)
            if self._stop_event.wait(self.interval):
                return

    def sample(self, root: psutil.Process) -> None:
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return
        total = 0
        for p in procs:
            with contextlib.suppress(psutil.Error):
                rss = int(p.memory_info().rss)
                total += rss
                self.peak_single = max(self.peak_single, rss)
                if p.pid not in self.cpu:
                    args = p.cmdline()[1:3]
                    if args and "/" in args[0]:
                        args[0] = Path(args[0]).name
                    self.cpu[p.pid] = [" ".join(args)[:60], 0.0]
                t = p.cpu_times()
                self.cpu[p.pid][1] = t.user + t.system
        self.peak_tree = max(self.peak_tree, total)
        self.max_procs = max(self.max_procs, len(procs))
        self._samples += 1
        if self.progress is not None and self._samples % 10 == 1:
            with contextlib.suppress(Exception):  # not there yet (database being created)
                done = self.progress()
                self.series.append((time.perf_counter() - self.started, total, done))
        if len(procs) > 1:
            now = time.perf_counter() - self.started
            if self.children_first is None:
                self.children_first = now
            self.children_last = now

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


@dataclass
class Measured:
    returncode: int
    seconds: float
    peak_rss_mb: float
    peak_rss_largest_process_mb: float
    processes: int
    cpu_seconds: float
    server_cpu_seconds: float
    other_cpu_seconds: float  # everything else on the machine (this script included)
    child_seen_from_s: float | None
    child_seen_until_s: float | None
    cpu_seconds_by_process: dict[str, float]
    # (seconds, tree RSS bytes, progress) about once a second, when a progress probe was given
    series: list[tuple[float, int, int]] = field(default_factory=list)


def run_measured(
    cmd: Sequence[str],
    *,
    env: dict[str, str],
    cwd: Path,
    stdout: Path,
    stderr: Path,
    server: Server,
    progress: Callable[[], int] | None = None,
) -> Measured:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before = server.cpu_seconds()
    system_before = _busy_cpu()
    with stdout.open("wb") as out, stderr.open("wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            list(cmd), env=env, cwd=cwd, stdout=out, stderr=err, start_new_session=True
        )
        sampler = TreeSampler(proc.pid, started, progress=progress)
        sampler.start()
        try:
            returncode = proc.wait()
        finally:
            seconds = time.perf_counter() - started
            sampler.stop()
            _stop_process(proc, group=True)  # also on Ctrl-C: the whole session we started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    server_cpu = server.cpu_seconds() - server_before
    other_cpu = _busy_cpu() - system_before - cpu - server_cpu
    return Measured(
        returncode=returncode,
        seconds=seconds,
        peak_rss_mb=sampler.peak_tree / MB,
        peak_rss_largest_process_mb=sampler.peak_single / MB,
        processes=sampler.max_procs,
        cpu_seconds=cpu,
        server_cpu_seconds=server_cpu,
        other_cpu_seconds=max(0.0, other_cpu),
        child_seen_from_s=sampler.children_first,
        child_seen_until_s=sampler.children_last,
        cpu_seconds_by_process={
            f"{pid} {cmd}": round(cpu, 1) for pid, (cmd, cpu) in sampler.cpu.items()
        },
        series=sampler.series,
    )


def _busy_cpu() -> float:
    """CPU seconds the whole machine spent busy since boot (all cores)."""
    t = psutil.cpu_times()
    extra = ("nice", "irq", "softirq")  # Linux; guest time is already inside user
    return float(t.user + t.system + sum(getattr(t, name, 0.0) for name in extra))


def _tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(encoding="utf-8", errors="replace")[-chars:] if path.exists() else ""


_ELAPSED = re.compile(r"'elapsed_time_seconds':\s*([0-9.]+)")


def scrapy_elapsed(log: Path) -> float | None:
    """The crawl's own duration from Scrapy's closing stats dump, if logged."""
    found = _ELAPSED.findall(_tail(log, 20_000))
    return float(found[-1]) if found else None


# ---------------------------------------------------------------------------------------
# a) ectrust audit --all --json
# ---------------------------------------------------------------------------------------


@dataclass
class Result:
    label: str
    pages: int
    sites: int
    measured: Measured
    crawl_seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pages_per_s(self) -> float:
        return self.pages / self.measured.seconds

    @property
    def sites_per_min(self) -> float:
        return self.sites / self.measured.seconds * 60


def ectrust_command() -> list[str]:
    beside = Path(sys.executable).with_name("ectrust")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("ectrust")
    return [found] if found else [sys.executable, "-m", "ectrust"]


def ectrust_env(work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECTRUST_")}
    env.update(
        ECTRUST_DB=f"sqlite:///{work / 'b.db'}",
        ECTRUST_HOME=str(work / "home"),
        ECTRUST_BADGE_HOSTS=BADGE_HOSTS,
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p),
    )
    return env


def crawls_done(db: Path) -> Callable[[], int]:
    """A probe for the sampler: how many sites the run has finished crawling (read-only;
    judging follows each one as soon as it is stored)."""

    def probe() -> int:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)) as c:
            sql = "SELECT count(*) FROM crawls WHERE status <> 'running'"
            return int(c.execute(sql).fetchone()[0])

    return probe


def run_ectrust(
    work: Path, farm: Farm, server: Server, max_pages: int, *, track_progress: bool = False
) -> tuple[Result, list[str]]:
    env = ectrust_env(work)
    csv_path = work / "sites.csv"
    write_sites_csv(csv_path, farm.hosts)
    imported = subprocess.run(
        [*ectrust_command(), "sites", "import", str(csv_path)],
        env=env,
        cwd=work,
        capture_output=True,
        text=True,
    )
    if imported.returncode != 0:
        raise BenchError(f"ectrust sites import failed:\n{imported.stdout}\n{imported.stderr}")
    cmd = [
        *ectrust_command(),
        "audit",
        "--all",
        "--json",
        "--max-pages",
        str(max_pages),
        "--connect-to",
        f"::127.0.0.1:{server.port}",
    ]
    for key, value in CONCURRENCY.items():
        cmd += ["-s", f"{key}={json.dumps(value)}"]
    stdout, stderr = work / "ectrust-audit.json", work / "ectrust-audit.stderr"
    measured = run_measured(
        cmd,
        env=env,
        cwd=work,
        stdout=stdout,
        stderr=stderr,
        server=server,
        progress=crawls_done(work / "b.db") if track_progress else None,
    )
    if measured.returncode != 0:
        raise BenchError(f"ectrust audit exited with {measured.returncode}:\n{_tail(stderr)}")
    try:
        audits = json.loads(stdout.read_text(encoding="utf-8"))["audits"]
    except (json.JSONDecodeError, KeyError) as exc:
        raise BenchError(f"ectrust audit --json printed no audits document: {exc}") from exc
    if len(audits) != len(farm.hosts):
        raise BenchError(f"ectrust audited {len(audits)} sites, expected {len(farm.hosts)}")
    unreachable = [a["domain"] for a in audits if not a.get("reachable")]
    if unreachable:
        raise BenchError(
            f"{len(unreachable)} site(s) not reachable, e.g. {unreachable[:5]}; "
            f"the figures would measure failures. stderr:\n{_tail(stderr)}"
        )
    pages = sum(int(a["pages_fetched"]) for a in audits)

    with contextlib.closing(sqlite3.connect(work / "b.db")) as db:
        rows = db.execute(
            "SELECT s.url, s.status, s.error FROM snapshots s JOIN crawls c ON c.id = s.crawl_id"
            " ORDER BY c.id, s.id"
        ).fetchall()
    failed = [(u, st, e) for u, st, e in rows if st != 200 or e is not None]
    if failed:
        raise BenchError(f"{len(failed)} snapshot(s) not a 200 response, e.g. {failed[:5]}")
    urls = [u for u, _, _ in rows]
    if len(urls) != pages:
        raise BenchError(f"pages_fetched sums to {pages} but the database has {len(urls)}")
    logs = sorted((work / "home" / "logs").glob("crawl-*.log"))
    scores = [a["score"] for a in audits if a.get("score") is not None]
    result = Result(
        label="ectrust audit --all",
        pages=pages,
        sites=len(audits),
        measured=measured,
        crawl_seconds=scrapy_elapsed(logs[-1]) if logs else None,
        extra={
            "findings": sum(len(a["findings"]) for a in audits),
            "mean_score": round(sum(scores) / len(scores), 1) if scores else None,
            "blob_store_mb": round(_du(work / "home") / MB, 1),
            "database_mb": round((work / "b.db").stat().st_size / MB, 1),
        },
    )
    return result, urls


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# ---------------------------------------------------------------------------------------
# b) the bare Scrapy spider
# ---------------------------------------------------------------------------------------


def _interleave(urls: Sequence[str]) -> list[str]:
    """Round-robin over sites (page 1 of every site, then page 2 …), so no site's slot
    holds the whole request budget."""
    by_host: dict[str, list[str]] = {}
    for url in urls:
        by_host.setdefault(url.split("/")[2], []).append(url)
    lists = list(by_host.values())
    return [lst[i] for i in range(max(map(len, lists), default=0)) for lst in lists if i < len(lst)]


def run_bare(work: Path, urls: list[str], server: Server, sites: int) -> Result:
    urls_file = work / "urls.txt"
    urls_file.write_text("\n".join(_interleave(urls)) + "\n", encoding="utf-8")
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--bare-spider",
        str(urls_file),
        "--connect-to",
        f"::127.0.0.1:{server.port}",
    ]
    env = ectrust_env(work)
    stdout, stderr = work / "bare.json", work / "bare.stderr"
    measured = run_measured(cmd, env=env, cwd=work, stdout=stdout, stderr=stderr, server=server)
    if measured.returncode != 0:
        raise BenchError(f"bare spider exited with {measured.returncode}:\n{_tail(stderr)}")
    report = json.loads(stdout.read_text(encoding="utf-8").strip().splitlines()[-1])
    if report["failed"] or report["non_200"] or report["ok"] != len(urls):
        raise BenchError(
            f"bare spider: {report['ok']} of {len(urls)} fetched, failures {report['failed'][:5]}"
            f", non-200 {report['non_200'][:5]}"
        )
    return Result(
        label="bare scrapy spider",
        pages=report["ok"],
        sites=sites,
        measured=measured,
        crawl_seconds=report.get("elapsed_time_seconds"),
        extra={"robots_txt_requests": report.get("robots_txt_requests")},
    )


def bare_spider_main(urls_file: Path, connect_to: str) -> int:
    """``--bare-spider URLS_FILE --connect-to SPEC``: fetch the URLs, keep nothing."""
    import scrapy
    from scrapy.crawler import CrawlerProcess
    from twisted.python.failure import Failure

    from crawler import settings as ectrust_settings

    urls = urls_file.read_text(encoding="utf-8").split()

    class BareSpider(scrapy.Spider):
        name = "bare"

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.ok = 0
            self.failed: list[str] = []
            self.non_200: list[str] = []

        async def start(self) -> Any:
            for url in urls:
                yield scrapy.Request(
                    url, callback=self.parse, errback=self.on_error, dont_filter=True
                )

        def parse(self, response: Any, **kwargs: Any) -> None:
            self.ok += 1  # the body is dropped with the response
            if response.status != 200:
                self.non_200.append(f"{response.status} {response.url}")

        def on_error(self, failure: Failure) -> None:
            self.failed.append(f"{failure.request.url}: {failure.value!r}")

    process = CrawlerProcess(
        {
            **CONCURRENCY,
            "ROBOTSTXT_OBEY": True,
            "USER_AGENT": ectrust_settings.USER_AGENT,
            # Connection-layer mapping only: siteNNNN.example:80 -> 127.0.0.1:PORT.
            "TWISTED_DNS_RESOLVER": "crawler.resolver.PolicyResolver",
            "ECTRUST_CONNECT_TO": [connect_to],
            "COOKIES_ENABLED": False,
            "HTTPERROR_ALLOW_ALL": True,
            "TELNETCONSOLE_ENABLED": False,
            "DOWNLOAD_TIMEOUT": ectrust_settings.DOWNLOAD_TIMEOUT,
            "RETRY_TIMES": ectrust_settings.RETRY_TIMES,
            "LOG_LEVEL": "INFO",
        }
    )
    crawler = process.create_crawler(BareSpider)
    process.crawl(crawler)
    process.start()
    spider = crawler.spider
    stats = crawler.stats.get_stats() if crawler.stats else {}
    assert isinstance(spider, BareSpider)
    print(
        json.dumps(
            {
                "ok": spider.ok,
                "failed": spider.failed,
                "non_200": spider.non_200,
                "robots_txt_requests": stats.get("robotstxt/request_count"),
                "elapsed_time_seconds": stats.get("elapsed_time_seconds"),
            }
        ),
        flush=True,
    )
    return 0


# ---------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------


def print_cpu_summary(ectrust: Result, bare: Result, cpus: int) -> bool:
    """Print ectrust's CPU by process, and how busy the rest of the machine was during both
    runs; returns whether it was too busy for the figures to mean much."""
    by_process = ", ".join(
        f"{name.split(' ', 1)[1] or name} {cpu:.1f} s"
        for name, cpu in ectrust.measured.cpu_seconds_by_process.items()
    )
    print(f"ectrust CPU by process (at the last 0.1 s sample): {by_process}")
    busy = [
        r.measured.other_cpu_seconds > max(2.0, 0.05 * cpus * r.measured.seconds)
        for r in (ectrust, bare)
    ]
    print(
        "other CPU on the machine during the runs: "
        f"ectrust {ectrust.measured.other_cpu_seconds:.1f} s, "
        f"bare {bare.measured.other_cpu_seconds:.1f} s "
        + (
            "(WARNING: the machine was busy with other work; the figures are skewed, rerun)"
            if any(busy)
            else "(machine otherwise idle)"
        ),
        flush=True,
    )
    return any(busy)


def print_table(results: Sequence[Result]) -> None:
    header = (
        f"{'':22}{'pages':>7}{'seconds':>9}{'pages/s':>9}{'sites/min':>11}"
        f"{'peak RSS MB':>13}{'CPU s':>8}{'server CPU s':>14}{'crawl s':>9}"
    )
    print(header)
    for r in results:
        m = r.measured
        crawl = "-" if r.crawl_seconds is None else f"{r.crawl_seconds:.1f}"
        print(
            f"{r.label:22}{r.pages:>7}{m.seconds:>9.1f}{r.pages_per_s:>9.1f}"
            f"{r.sites_per_min:>11.0f}{m.peak_rss_mb:>13.0f}{m.cpu_seconds:>8.1f}"
            f"{m.server_cpu_seconds:>14.1f}{crawl:>9}"
        )


def _results_json(r: Result) -> dict[str, Any]:
    return {
        "pages": r.pages,
        "sites": r.sites,
        "pages_per_s": round(r.pages_per_s, 2),
        "sites_per_min": round(r.sites_per_min, 1),
        "scrapy_elapsed_seconds": r.crawl_seconds,
        **{k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(r.measured).items()},
        **r.extra,
    }


def benchmark(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="ectrust-bench-"))
    server: Server | None = None
    try:
        work.chmod(0o711)  # nginx workers (nobody) must reach farm/; nothing else is shared
        farm_root = work / "farm"
        farm_root.mkdir()
        farm_root.chmod(0o755)
        farm = generate_farm(farm_root, args.sites, args.pages_per_site)
        print(
            f"farm: {args.sites} sites, {farm.pages} pages + robots.txt, "
            f"{farm.bytes / MB:.1f} MB (avg {farm.bytes / farm.pages / 1024:.1f} KB/page), "
            f"generated in {farm.seconds:.1f} s",
            flush=True,
        )
        server = start_server(farm_root, work, farm.hosts[0], args.server)
        print(f"server: {server.name} on 127.0.0.1:{server.port}", flush=True)
        cpus = os.cpu_count() or 1
        print(
            f"settings (both): {', '.join(f'{k}={v}' for k, v in CONCURRENCY.items())}; "
            f"ectrust --max-pages {args.max_pages}; {cpus} CPU(s)",
            flush=True,
        )

        print("running ectrust audit --all --json …", flush=True)
        ectrust, urls = run_ectrust(work, farm, server, args.max_pages)
        print(f"running bare scrapy spider over the same {len(urls)} URLs …", flush=True)
        bare = run_bare(work, urls, server, ectrust.sites)

        print()
        print_table([ectrust, bare])
        ratio = ectrust.pages_per_s / bare.pages_per_s
        print()
        print(
            f"ectrust/bare pages/s: {ratio:.2f}  "
            f"(bare spider is {1 / ratio:.1f}x faster; 1.00 = ectrust costs nothing over fetching)"
        )
        m = ectrust.measured
        print(
            f"ectrust peak RSS: {m.peak_rss_mb:.0f} MB over {m.processes} processes "
            f"(largest single process {m.peak_rss_largest_process_mb:.0f} MB); "
            f"bare spider {bare.measured.peak_rss_mb:.0f} MB"
        )
        if m.child_seen_from_s is not None and m.child_seen_until_s is not None:
            alive = m.child_seen_until_s - m.child_seen_from_s
            inside = (
                ""
                if ectrust.crawl_seconds is None
                else f"; {ectrust.crawl_seconds:.1f} s of it in Scrapy's crawl, spider open to "
                "close; the rest start-up and shut-down"
            )
            print(
                f"ectrust timeline: crawl child process alive from {m.child_seen_from_s:.1f} s to "
                f"{m.child_seen_until_s:.1f} s ({alive:.1f} s{inside}); command ended "
                f"{m.seconds - m.child_seen_until_s:.1f} s after the child"
            )
        busy = print_cpu_summary(ectrust, bare, cpus)
        print(
            f"ectrust stored {ectrust.extra['findings']} findings; evidence "
            f"{ectrust.extra['blob_store_mb']} MB, database {ectrust.extra['database_mb']} MB"
        )

        OUT_DIR.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        out = OUT_DIR / f"crawl-{stamp}.json"
        doc = {
            "timestamp": stamp,
            "sites": args.sites,
            "pages_per_site": args.pages_per_site,
            "max_pages": args.max_pages,
            "farm_pages": farm.pages,
            "farm_mb": round(farm.bytes / MB, 1),
            "server": server.name,
            "cpus": cpus,
            "settings": CONCURRENCY,
            "ectrust": _results_json(ectrust),
            "bare": _results_json(bare),
            "ratio_pages_per_s": round(ratio, 3),
            "machine_busy_with_other_work": busy,
        }
        out.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"figures written to {out.relative_to(REPO)}")
        return 0
    finally:
        if server is not None:
            server.stop()
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    p.add_argument("--sites", type=int, default=200, help="generated shops (default 200)")
    p.add_argument(
        "--pages-per-site", type=int, default=18, help="pages per shop, min 10 (default 18)"
    )
    p.add_argument("--max-pages", type=int, default=30, help="ectrust --max-pages (default 30)")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    p.add_argument(
        "--server", choices=("auto", "nginx", "aiohttp"), default="auto", help=argparse.SUPPRESS
    )
    # Internal modes: the bare spider and the fallback server run in their own processes.
    p.add_argument("--bare-spider", type=Path, metavar="URLS_FILE", help=argparse.SUPPRESS)
    p.add_argument("--connect-to", default="", help=argparse.SUPPRESS)
    p.add_argument("--serve", nargs=2, metavar=("ROOT", "PORT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.sites < 1 or args.pages_per_site < 10:
        p.error("--sites must be >= 1 and --pages-per-site >= 10")
    return args


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.bare_spider is not None:
        return bare_spider_main(args.bare_spider, args.connect_to)
    if args.serve is not None:
        return serve_main(Path(args.serve[0]), int(args.serve[1]))
    with _sigterm_as_interrupt():
        try:
            return benchmark(args)
        except BenchError as exc:
            print(f"\nBENCHMARK FAILED: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("\ninterrupted; servers stopped", file=sys.stderr)
            return 130


if __name__ == "__main__":
    sys.exit(main())
