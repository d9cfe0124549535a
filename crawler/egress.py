"""The browser's only way out: a small HTTP proxy applying ``--connect-to`` and the address policy.

Chromium resolves host names itself, so a check done in Python before a page loads is a
time-of-check/time-of-use race (RELIABILITY.md decision 4), and a page may load anything: images,
``fetch()``, iframes, WebSockets, redirects. Instead every browser connection goes through this
proxy, which resolves the name once, applies the same rules as the Scrapy resolver
(crawler/netpolicy.py: the operator's ``--connect-to`` mappings first, then only globally
routable addresses) and connects to exactly the address it checked, so DNS rebinding gains
nothing. Chromium itself resolves nothing but the proxy's own loopback address
(``--host-resolver-rules``, see ``chromium_args``), and Playwright forces loopback destinations
through the proxy too (``<-loopback>``).

HTTP requests are forwarded one per connection (``Connection: close`` both ways) so a reused
browser connection can never carry a request to a host that was not checked; HTTPS and
WebSockets arrive as ``CONNECT`` tunnels. Each connection's download is capped (the size
limit of the Playwright path, RELIABILITY.md T03).

The proxy runs its own asyncio loop on a daemon thread: it does not depend on the crawler's
reactor and keeps serving while the crawl's loop is busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import os
import secrets
import socket
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from crawler.netpolicy import (
    ConnectTo,
    address_allowed,
    map_connection,
    parse_connect_to,
    parse_networks,
)
from crawler.stubdns import DnsScript

logger = logging.getLogger(__name__)

HEAD_LIMIT = 64 * 1024
IDLE_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 10.0
HOP_BY_HOP = frozenset(
    (
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"upgrade",
    )
)


class EgressRefused(Exception):
    """The destination is not allowed (or cannot be resolved)."""


@dataclass
class EgressStats:
    allowed: int = 0
    refused: list[tuple[str, int, str]] = field(default_factory=list)
    truncated: int = 0


def chromium_args(rules: list[ConnectTo]) -> list[str]:
    """Launch switches that keep Chromium on the proxy and on this machine.

    ``MAP * ~NOTFOUND`` makes every name Chromium might resolve on its own fail; the
    operator's mappings come first (first match wins) so a bypass of the proxy could still only
    reach mapped addresses; 127.0.0.1 (the proxy) and localhost are left alone."""
    resolver = []
    for rule in rules:
        if rule.host2 is None and rule.port2 is None:
            continue
        pattern = rule.host1 or "*"
        if rule.port1 is not None:
            pattern = f"{pattern}:{rule.port1}"
        target = rule.host2 or (rule.host1 or "")
        if not target:
            continue  # ":PORT::PORT2" keeps the host: nothing for a resolver rule to say
        if ":" in target:
            target = f"[{target}]"
        if rule.port2 is not None:
            target = f"{target}:{rule.port2}"
        resolver.append(f"MAP {pattern} {target}")
    resolver += ["MAP * ~NOTFOUND", "EXCLUDE 127.0.0.1", "EXCLUDE localhost"]
    return [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-quic",
        "--disable-features=DnsOverHttps,AsyncDns",
        "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
        "--webrtc-ip-handling-policy=disable_non_proxied_udp",
        # a page's script heap is bounded: hostile JavaScript that allocates without end
        # (RELIABILITY.md T22) runs out of heap in its own renderer, not the machine's memory
        "--js-flags=--max-old-space-size=512",
        f"--host-resolver-rules={' , '.join(resolver)}",
    ]


CHROMIUM = "/usr/bin/chromium"


def browser_problem() -> str | None:
    """Why a rendering crawl cannot start here, or None. Here, not in crawler/render.py,
    because the CLI asks before every audit and that module imports Scrapy (0.2 s of the
    CLI's start-up, for a process that never crawls)."""
    import importlib.util

    if importlib.util.find_spec("scrapy_playwright") is None:
        return "scrapy-playwright is not installed (pip install scrapy-playwright)"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no browser at {CHROMIUM} (apt-get install chromium)"
    try:
        check_launch_environment()
    except RuntimeError as exc:
        return str(exc)
    return None


def check_launch_environment() -> None:
    """Refuse to start a browser that would reach loopback without the proxy (T20)."""
    if os.environ.get("PLAYWRIGHT_DISABLE_FORCED_CHROMIUM_PROXIED_LOOPBACK"):
        raise RuntimeError(
            "PLAYWRIGHT_DISABLE_FORCED_CHROMIUM_PROXIED_LOOPBACK is set: the browser would "
            "reach loopback addresses without the egress proxy; unset it"
        )


def _split_authority(authority: str, default_port: int) -> tuple[str, int]:
    if authority.startswith("["):
        host, _, rest = authority[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = authority.rpartition(":") if ":" in authority else (authority, "", "")
    if port and not port.isdigit():
        raise EgressRefused(f"bad port in {authority!r}")
    return host.lower(), int(port) if port else default_port


class EgressProxy:
    """``with EgressProxy(connect_to, max_bytes) as proxy:`` … ``proxy.url`` …"""

    def __init__(
        self,
        connect_to: list[str],
        max_bytes: int = 16 * 1024 * 1024,
        allow_networks: list[str] | tuple[str, ...] = (),
        dns_stub: dict[str, Any] | None = None,
    ) -> None:
        self.rules = parse_connect_to(connect_to)
        # the same operator allowances and scripted answers as the Scrapy resolver
        # (crawler/resolver.py), so a drill sees one policy for both paths
        self.networks = parse_networks(allow_networks)
        self.dns_stub = DnsScript(dns_stub or {})
        self.max_bytes = max_bytes
        self.stats = EgressStats()
        # Marks our refusal pages, so a refused navigation is told apart from a site's own
        # 403 page; random per run, so no site can fake it.
        self.token = secrets.token_hex(12)
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> EgressProxy:
        self._thread = threading.Thread(target=self._run, name="egress-proxy", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None or not self.port:
            raise RuntimeError(f"egress proxy did not start: {self._error}")
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(self._handle, "127.0.0.1", 0, limit=HEAD_LIMIT)
            )
            self.port = self._server.sockets[0].getsockname()[1]
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    def stop(self) -> None:
        loop = self._loop
        if loop is None or not loop.is_running():
            return

        async def _shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(_shutdown(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> EgressProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- policy ---------------------------------------------------------------------------
    async def _open(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Connect where the policy says host:port may go, or raise EgressRefused."""
        target, target_port, mapped = map_connection(self.rules, host, port)
        addresses = self._scripted(target)
        if addresses is None:
            loop = asyncio.get_running_loop()
            try:
                infos = await asyncio.wait_for(
                    loop.getaddrinfo(target, target_port, type=socket.SOCK_STREAM),
                    CONNECT_TIMEOUT_S,
                )
            except (OSError, TimeoutError) as exc:
                raise EgressRefused(f"cannot resolve {target}: {exc}") from exc
            addresses = [info[4][0] for info in infos]
        allowed = (
            addresses if mapped else [a for a in addresses if address_allowed(a, self.networks)]
        )
        if not allowed:
            raise EgressRefused(f"address not allowed: {', '.join(sorted(set(addresses)))}")
        last: Exception | None = None
        for ip in dict.fromkeys(allowed):
            try:
                return await asyncio.wait_for(
                    asyncio.open_connection(ip, target_port, limit=HEAD_LIMIT), CONNECT_TIMEOUT_S
                )
            except (OSError, TimeoutError) as exc:
                last = exc
        raise ConnectionError(f"cannot connect to {target}:{target_port}: {last}")

    def _scripted(self, name: str) -> list[str] | None:
        """ECTRUST_DNS_STUB's answer for ``name``, or None for names it does not list."""
        if name not in self.dns_stub:
            return None
        answer = self.dns_stub.answer(name)
        if isinstance(answer, str):  # "nxdomain" or "hang"
            raise EgressRefused(f"cannot resolve {name}: scripted {answer}")
        return answer

    def _refuse(self, host: str, port: int, why: str) -> None:
        self.stats.refused.append((host, port, why))
        logger.warning("browser connection to %s:%s refused: %s", host, port, why)

    # -- connections ----------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: asyncio.StreamWriter | None = None
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IDLE_TIMEOUT_S)
            line, *header_lines = head[:-4].split(b"\r\n")
            method, target, _version = line.decode("latin-1").split(" ", 2)
            if method == "CONNECT":
                host, port = _split_authority(target, 443)
            else:
                parts = urlsplit(target)
                if parts.scheme != "http" or not parts.netloc:
                    raise EgressRefused(f"only http:// URLs may be proxied, not {target[:80]!r}")
                host, port = _split_authority(parts.netloc.rpartition("@")[2], 80)
            try:
                up_reader, upstream = await self._open(host, port)
            except EgressRefused as exc:
                self._refuse(host, port, str(exc))
                await self._reply(writer, 403, f"ectrust egress policy: {exc}")
                return
            except (ConnectionError, OSError) as exc:
                await self._reply(writer, 502, str(exc))
                return
            self.stats.allowed += 1
            if method == "CONNECT":
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await writer.drain()
                await self._tunnel(reader, writer, up_reader, upstream)
            else:
                await self._forward(
                    method, parts, header_lines, reader, writer, up_reader, upstream
                )
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            with contextlib.suppress(Exception):
                await self._reply(writer, 400, f"bad proxy request: {exc}")
        except EgressRefused as exc:
            self._refuse("?", 0, str(exc))
            with contextlib.suppress(Exception):
                await self._reply(writer, 403, f"ectrust egress policy: {exc}")
        except (TimeoutError, ConnectionError, OSError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            for w in (writer, upstream):
                if w is not None:
                    with contextlib.suppress(Exception):
                        w.close()

    async def _reply(self, writer: asyncio.StreamWriter, status: int, text: str) -> None:
        body = (
            f"<!doctype html><title>ectrust egress {status}</title>"
            f"<p>{html.escape(text)}</p><!-- {self.token} -->"
        ).encode("utf-8", "replace")
        reason = {400: "Bad Request", 403: "Forbidden", 502: "Bad Gateway"}.get(status, "Error")
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode("latin-1")
            + body
        )
        await writer.drain()

    async def _pipe(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, cap: int | None
    ) -> None:
        sent = 0
        while True:
            chunk = await asyncio.wait_for(src.read(65536), IDLE_TIMEOUT_S)
            if not chunk:
                break
            sent += len(chunk)
            if cap is not None and sent > cap:
                self.stats.truncated += 1
                logger.warning("browser download cut off at %d bytes", cap)
                break
            dst.write(chunk)
            await dst.drain()
        with contextlib.suppress(Exception):
            if dst.can_write_eof():
                dst.write_eof()

    async def _tunnel(self, reader, writer, up_reader, upstream) -> None:  # type: ignore[no-untyped-def]
        down = asyncio.ensure_future(self._pipe(up_reader, writer, self.max_bytes))
        up = asyncio.ensure_future(self._pipe(reader, upstream, None))
        try:
            await asyncio.wait({down, up}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (down, up):
                task.cancel()
            await asyncio.gather(down, up, return_exceptions=True)

    async def _forward(
        self, method, parts, header_lines, reader, writer, up_reader, upstream
    ) -> None:  # type: ignore[no-untyped-def]
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        headers = [h for h in header_lines if h.split(b":", 1)[0].strip().lower() not in HOP_BY_HOP]
        length = 0
        for h in headers:
            name, _, value = h.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip() or 0)
            elif name.strip().lower() == b"transfer-encoding":
                raise ValueError("chunked request bodies are not proxied")
        upstream.write(
            f"{method} {path} HTTP/1.1\r\n".encode("latin-1")
            + b"".join(h + b"\r\n" for h in headers)
            + b"Connection: close\r\n\r\n"
        )
        if length:
            upstream.write(await asyncio.wait_for(reader.readexactly(length), IDLE_TIMEOUT_S))
        await upstream.drain()
        head = await asyncio.wait_for(up_reader.readuntil(b"\r\n\r\n"), IDLE_TIMEOUT_S)
        status_line, *response_headers = head[:-4].split(b"\r\n")
        kept = [
            h for h in response_headers if h.split(b":", 1)[0].strip().lower() not in HOP_BY_HOP
        ]
        writer.write(
            status_line
            + b"\r\n"
            + b"".join(h + b"\r\n" for h in kept)
            + b"Connection: close\r\nProxy-Connection: close\r\n\r\n"
        )
        await writer.drain()
        await self._pipe(up_reader, writer, self.max_bytes)
