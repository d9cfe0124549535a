"""Scrapy settings for ectrust crawls (RELIABILITY.md "Baseline settings").

The crawl runner (crawler/run.py) layers per-run values (page cap, --connect-to, time
budget) over these.
"""

BOT_NAME = "ectrust"
SPIDER_MODULES = ["crawler.spiders"]
NEWSPIDER_MODULE = "crawler.spiders"

USER_AGENT = "ectrust/0.1 (site-compliance audit; +https://github.com/ectrust)"
ROBOTSTXT_OBEY = True

# Politeness: one or two requests at a time per site, many sites in parallel.
CONCURRENT_REQUESTS = 64
CONCURRENT_REQUESTS_PER_DOMAIN = 2
DOWNLOAD_DELAY = 0.25
AUTOTHROTTLE_ENABLED = True
AUTOTHROTTLE_START_DELAY = 0.25
AUTOTHROTTLE_MAX_DELAY = 10
AUTOTHROTTLE_TARGET_CONCURRENCY = 1.5

# Limits: nothing a site sends may stall or swamp the run.
DOWNLOAD_TIMEOUT = 20
DOWNLOAD_MAXSIZE = 8 * 1024 * 1024
DOWNLOAD_WARNSIZE = 4 * 1024 * 1024
DOWNLOAD_FAIL_ON_DATALOSS = True
REDIRECT_MAX_TIMES = 10
METAREFRESH_MAXDELAY = 10
DEPTH_LIMIT = 4
RETRY_TIMES = 2
DNS_TIMEOUT = 10
REACTOR_THREADPOOL_MAXSIZE = 20
# Scrapy starts this many asyncio workers for the output of every response. Our item
# pipeline only hands items to the writer thread (crawler/pipelines.py) and requests only
# go to the scheduler, so nothing is gained from doing those in parallel: one worker keeps
# them in order and spares 7 task starts per page. Scrapy's _parallel_asyncio alone, per
# response, 1 worker against 8: 43 against 82 us at the 2 outputs of a typical page, 112
# against 117 at 12 and 190 against 140 at 25 (a homepage). Scrapy's default of 100
# measurably slowed crawls (bench/crawl.py).
CONCURRENT_ITEMS = 1
CLOSESPIDER_TIMEOUT = 45 * 60
# Sites crawled at once (crawler/spiders/site_audit.py); 0: twice what the downloader can
# serve at once, CONCURRENT_REQUESTS / CONCURRENT_REQUESTS_PER_DOMAIN.
ECTRUST_SITE_WINDOW = 0
URLLENGTH_LIMIT = 2000

# Only HTTP(S); no local files, data:, ftp or s3 (RELIABILITY.md T18).
DOWNLOAD_HANDLERS = {"file": None, "data": None, "ftp": None, "s3": None}

TWISTED_DNS_RESOLVER = "crawler.resolver.PolicyResolver"
ECTRUST_CONNECT_TO: list[str] = []
# Operator allowances beyond public unicast addresses (the test harness: ["127.0.0.2/32"]).
ECTRUST_ALLOW_NETWORKS: list[str] = []
# Ports an unmapped site may use; others are refused like private addresses (T15).
ECTRUST_ALLOWED_PORTS = [80, 443, 8080, 8443]
# Scripted DNS answers for drills and tests (crawler/stubdns.py); empty in production.
ECTRUST_DNS_STUB: dict[str, object] = {}
TELNETCONSOLE_ENABLED = False
REMOTE_CONTROL_ENABLED = False
# Scrapy's stats without its per-attribute deprecation shim (crawler/stats.py).
STATS_CLASS = "crawler.stats.PlainStatsCollector"

# Certificates are verified; failures are findings and the audit goes on unverified
# (crawler/middlewares/tls.py).
DOWNLOAD_VERIFY_CERTIFICATES = True
DOWNLOADER_CLIENTCONTEXTFACTORY = "crawler.middlewares.tls.PolicyContextFactory"
ECTRUST_TLS_CONTINUE = True

# Per-host pacing (crawler/middlewares/pacing.py).
ECTRUST_RETRY_AFTER_MAX = 120.0
ECTRUST_CRAWL_DELAY_MAX = 10.0
ECTRUST_BREAKER_ERRORS = 5
ECTRUST_BACKOFF_BASE = 0.5
ECTRUST_BACKOFF_MAX = 30.0
# Crawler traps (crawler/traps.py): a path segment repeated this often, a query with this
# many parameters, or this many URLs differing only in their query on one path.
ECTRUST_TRAP_REPEATS = 3
ECTRUST_TRAP_QUERY_PARAMS = 12
ECTRUST_TRAP_QUERY_VARIANTS = 8

DOWNLOADER_MIDDLEWARES = {
    "scrapy.downloadermiddlewares.robotstxt.RobotsTxtMiddleware": None,
    "crawler.robots.RFC9309RobotsMiddleware": 100,
    # Named redirect failures (redirect_loop, redirect_to_disallowed); same places as Scrapy's.
    "scrapy.downloadermiddlewares.redirect.MetaRefreshMiddleware": None,
    "crawler.middlewares.redirects.SafeMetaRefreshMiddleware": 580,
    "scrapy.downloadermiddlewares.redirect.RedirectMiddleware": None,
    "crawler.middlewares.redirects.SafeRedirectMiddleware": 600,
    # Downloader side of RetryMiddleware (550), so it sees TLS errors first.
    "crawler.middlewares.tls.TlsPolicyMiddleware": 570,
    # Last out, first back: sees every response and exception (crawler/middlewares/pacing.py).
    "crawler.middlewares.pacing.PacingMiddleware": 950,
    # Sites are filtered by the spider itself, before a request is scheduled.
    "scrapy.downloadermiddlewares.offsite.OffsiteMiddleware": None,
}
# Every response reaches the spider, so a 404 or 500 page is recorded as evidence.
HTTPERROR_ALLOW_ALL = True
COOKIES_ENABLED = False
LOG_LEVEL = "INFO"
REQUEST_FINGERPRINTER_IMPLEMENTATION = "2.7"
FEED_EXPORT_ENCODING = "utf-8"
