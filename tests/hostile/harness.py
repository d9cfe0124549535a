"""Hostile servers on 127.0.0.0/8 for tests/hostile (RELIABILITY.md "Harness").

- ``Server``: an aiohttp app on 127.0.0.2 (the "simulated public site") whose routes a test
  scripts; every request is logged with its time, Host header and path.
- ``Canary``: a TCP and UDP listener on 127.0.0.1 that counts every connection or datagram.
  It listens on the same port as the public server, so a connection that should have gone to
  127.0.0.2 but went to loopback is counted too. SSRF tests assert ``canary.hits == 0``.

The crawler reaches the public site the way it reaches the open web: through a name
(``public.test``) that a scripted resolver answers with 127.0.0.2, the address policy in force
with exactly one allowance, 127.0.0.2/32 (settings ECTRUST_DNS_STUB, ECTRUST_ALLOW_NETWORKS).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.dbs import query

PUBLIC_IP = "127.0.0.2"
CANARY_IP = "127.0.0.1"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 10) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class Server:
    """Routes: exact path (without query) -> handler; ``default`` for the rest (404)."""

    def __init__(self, host: str = PUBLIC_IP, port: int = 0, ssl_context: Any = None) -> None:
        self.host, self.port = host, port
        self.ssl_context = ssl_context
        self.routes: dict[str, Handler] = {}
        self.default: Handler | None = None
        self.log: list[tuple[float, str, str]] = []  # (monotonic time, host, path?query)
        self._lt: _LoopThread | None = None
        self._runner: web.AppRunner | None = None

    def route(self, path: str, handler: Handler) -> None:
        self.routes[path] = handler

    def html(self, path: str, body: str | bytes, status: int = 200, **headers: str) -> None:
        data = body.encode("utf-8") if isinstance(body, str) else body
        hdrs = {"Content-Type": "text/html; charset=utf-8",
                **{k.replace("_", "-"): v for k, v in headers.items()}}

        async def handler(_: web.Request) -> web.StreamResponse:
            return web.Response(body=data, status=status, headers=hdrs)

        self.route(path, handler)

    def paths(self) -> list[str]:
        return [p for _, _, p in self.log]

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        self.log.append((time.monotonic(), request.host, request.path_qs))
        handler = self.routes.get(request.path) or self.default
        if handler is None:
            return web.Response(status=404, text="not here")
        return await handler(request)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.ssl_context)
        await site.start()
        sock = site._server.sockets[0]  # type: ignore[union-attr]
        self.port = sock.getsockname()[1]

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def __enter__(self) -> Server:
        self._lt = _LoopThread()
        self._lt.run(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._lt is not None
        with contextlib.suppress(Exception):
            self._lt.run(self._stop(), timeout=10)
        self._lt.stop()

    def move(self) -> None:
        """Serve the same routes on a new port."""
        self.__exit__()
        self.port = 0
        self.__enter__()


class Canary:
    """Counts TCP connections and UDP datagrams on 127.0.0.1:port."""

    def __init__(self, port: int = 0, host: str = CANARY_IP) -> None:
        self.host = host
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind((host, port))
        self.port = self.tcp.getsockname()[1]
        self.tcp.listen(64)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind((host, self.port))
        self.tcp_hits = 0
        self.udp_hits = 0
        self._stop = False
        threading.Thread(target=self._tcp_loop, daemon=True).start()
        threading.Thread(target=self._udp_loop, daemon=True).start()

    @property
    def hits(self) -> int:
        return self.tcp_hits + self.udp_hits

    def _tcp_loop(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                return
            self.tcp_hits += 1
            with contextlib.suppress(OSError):
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\ncanary")
            conn.close()

    def _udp_loop(self) -> None:
        while not self._stop:
            try:
                self.udp.recvfrom(65536)
            except OSError:
                return
            self.udp_hits += 1

    def close(self) -> None:
        self._stop = True
        for s in (self.tcp, self.udp):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


def canary_beside(server: Server, attempts: int = 20) -> Canary:
    """A canary on 127.0.0.1 at ``server``'s port. The server's port was free on 127.0.0.2
    only: on 127.0.0.1 a client socket may hold it (open, or in TIME_WAIT after a crawl of
    thousands of pages has used up the even ports clients prefer). Then the server moves to
    another port, before the test has seen or used the first one."""
    for _ in range(attempts - 1):
        try:
            return Canary(server.port)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
        server.move()
    return Canary(server.port)


def crawl_settings(
    server: Server, stub: dict[str, Any] | None = None, **extra: Any
) -> list[str]:
    """``-s`` options putting the harness's network in force for one audit."""
    dns = {"public.test": [[PUBLIC_IP]], **(stub or {})}
    values: dict[str, Any] = {
        "ECTRUST_DNS_STUB": dns,
        "ECTRUST_ALLOW_NETWORKS": [f"{PUBLIC_IP}/32"],
        "ECTRUST_ALLOWED_PORTS": [80, 443, server.port],
        "DOWNLOAD_DELAY": 0,
        "AUTOTHROTTLE_START_DELAY": 0,
        "AUTOTHROTTLE_ENABLED": False,
        "DOWNLOAD_TIMEOUT": 5,
        **extra,
    }
    out: list[str] = []
    for key, value in values.items():
        out += ["-s", f"{key}={json.dumps(value)}"]
    return out


def db_rows(env: Path, sql: str, *args: Any) -> list[dict[str, Any]]:
    """Rows of ``sql`` (``?`` placeholders) from this test's database (ECTRUST_DB, which the
    ``env`` fixture points at a private SQLite file or PostgreSQL schema)."""
    parts = sql.split("?")
    named = parts[0] + "".join(f":p{i}{rest}" for i, rest in enumerate(parts[1:]))
    return query(os.environ["ECTRUST_DB"], named, {f"p{i}": a for i, a in enumerate(args)})


def snapshots(env: Path, domain: str) -> list[dict[str, Any]]:
    return db_rows(
        env,
        "select s.* from snapshots s join crawls c on c.id = s.crawl_id "
        "join sites t on t.id = c.site_id where t.domain = ? order by s.id",
        domain,
    )


def last_crawl(env: Path, domain: str) -> dict[str, Any]:
    row = db_rows(
        env,
        "select c.* from crawls c join sites t on t.id = c.site_id where t.domain = ? "
        "order by c.id desc limit 1",
        domain,
    )[0]
    row["stats"] = json.loads(row["stats"] or "{}")
    return row


RawHandler = Callable[[asyncio.StreamWriter], Awaitable[None]]


def http_response(body: bytes | str, status: str = "200 OK", **headers: str) -> bytes:
    data = body.encode("utf-8") if isinstance(body, str) else body
    hdrs = {"Content-Type": "text/html; charset=utf-8", "Content-Length": str(len(data)),
            "Connection": "close", **{k.replace("_", "-"): v for k, v in headers.items()}}
    head = f"HTTP/1.1 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
    return head.encode("latin-1") + b"\r\n" + data


class RawServer:
    """A socket-level server on 127.0.0.2 for faults aiohttp will not produce: never
    answering, trickling, lying about Content-Length, breaking chunked encoding, resetting.
    Routes: path -> coroutine(writer) that writes whatever it likes; unknown paths 404."""

    def __init__(self, host: str = PUBLIC_IP) -> None:
        self.host, self.port = host, 0
        self.routes: dict[str, RawHandler] = {}
        self.log: list[tuple[float, str, str]] = []
        self._lt: _LoopThread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def static(self, path: str, raw: bytes) -> None:
        async def handler(writer: asyncio.StreamWriter) -> None:
            writer.write(raw)
            await writer.drain()

        self.routes[path] = handler

    def paths(self) -> list[str]:
        return [p for _, _, p in self.log]

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            line, *rest = head.decode("latin-1").split("\r\n")
            path = line.split(" ")[1] if " " in line else "/"
            host = next((h.split(":", 1)[1].strip() for h in rest
                         if h.lower().startswith("host:")), "")
            self.log.append((time.monotonic(), host, path))
            handler = self.routes.get(path.split("?")[0])
            if handler is None:
                writer.write(http_response("not here", "404 Not Found"))
            else:
                await handler(writer)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._client, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for w in list(self._writers):
            w.close()

    def __enter__(self) -> RawServer:
        self._lt = _LoopThread()
        self._lt.run(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._lt is not None
        with contextlib.suppress(Exception):
            self._lt.run(self._stop(), timeout=5)
        self._lt.stop()


def home(*links: tuple[str, str], extra: str = "", charset: str = "utf-8") -> str:
    """A small shop homepage linking the given (href, text) pairs."""
    anchors = "".join(f'<li><a href="{h}">{t}</a></li>' for h, t in links)
    return (
        f'<!doctype html><html lang="zh-CN"><head><meta charset="{charset}"><title>店铺</title>'
        f"</head><body><nav><ul>{anchors}</ul></nav><p>欢迎光临本店，精选好物每日上新。</p>"
        f"{extra}</body></html>"
    )


def crawl_seconds(env: Path, domain: str) -> float:
    """How long the site's last crawl ran, from the store (start to finish), so time bounds
    measure the crawl, not process start-up on a loaded machine."""
    from datetime import datetime

    row = last_crawl(env, domain)
    start, end = (datetime.fromisoformat(str(row[k])) for k in ("started_at", "finished_at"))
    return (end - start).total_seconds()
