"""A small multi-host static web server for the demo, the tests and the benchmarks.

Serves ``ROOT/<host>/<path>`` chosen by the request's Host header, on loopback only.
``/`` maps to ``index.html`` (also for sub-folders). A file ``<name>.headers.json`` beside a
file sets its status and headers (e.g. ``{"status": 500}`` or a charset), so test sites can
reproduce real servers' quirks.
"""

from __future__ import annotations

import json
import mimetypes
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


class _Handler(BaseHTTPRequestHandler):
    server: SiteFarm
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._serve(send_body=True)

    def do_HEAD(self) -> None:
        self._serve(send_body=False)

    def _serve(self, *, send_body: bool) -> None:
        host = (self.headers.get("Host") or "").split(":")[0].lower()
        path = unquote(urlsplit(self.path).path)
        self.server.record(host, self.path)
        file = self.server.resolve(host, path)
        status, headers, body = 404, {"Content-Type": "text/html; charset=utf-8"}, b"<h1>404</h1>"
        if file is not None:
            status, body = 200, file.read_bytes()
            ctype = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
            headers = {"Content-Type": ctype}
            extra = file.with_name(file.name + ".headers.json")
            if extra.exists():
                spec = json.loads(extra.read_text(encoding="utf-8"))
                status = int(spec.get("status", status))
                headers.update(spec.get("headers", {}))
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            self.wfile.write(body)


class SiteFarm(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        root: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        on_request: Callable[[str, str], None] | None = None,
    ) -> None:
        self.root = Path(root).resolve()
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._on_request = on_request
        super().__init__((host, port), _Handler)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def record(self, host: str, path: str) -> None:
        with self._lock:
            self.requests.append((host, path))
        if self._on_request is not None:
            self._on_request(host, path)

    def resolve(self, host: str, path: str) -> Path | None:
        site = (self.root / host).resolve()
        if not host or site.parent != self.root or not site.is_dir():
            return None
        target = (site / path.lstrip("/")).resolve()
        if target != site and site not in target.parents:
            return None  # ../ escapes
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file() or target.name.endswith(".headers.json"):
            return None
        return target

    def start(self) -> SiteFarm:
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def __enter__(self) -> SiteFarm:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
