"""Storing snapshots: bodies into the content-addressed store, rows into the database.

Writes happen on one background thread in batches, so the crawl's reactor never waits on
fsync or SQLite locks. A site's "done" event is printed (stdout, one JSON line) only after
all its snapshots are committed: the parent may judge it at once.
"""

from __future__ import annotations

import json
import logging
import queue
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert, update

from audits.db import Store
from audits.evidence import BlobStore
from audits.models import Crawl, Screenshot, Snapshot

logger = logging.getLogger(__name__)

BATCH_SECONDS = 0.5
BATCH_ITEMS = 200
_STOP = object()


def _has_body(item: dict[str, Any]) -> bool:
    """Is there a body to store (an empty one too, when there was a response)?"""
    return bool(item["body"]) or item["status"] is not None


class SnapshotWriter(threading.Thread):
    def __init__(self, db_url: str, home: Path, events=sys.stdout) -> None:  # type: ignore[no-untyped-def]
        super().__init__(name="snapshot-writer", daemon=True)
        self.store = Store(db_url, migrate=False)
        self.blobs = BlobStore(home)
        self.events = events
        self.queue: queue.Queue[Any] = queue.Queue()
        self.failed: BaseException | None = None

    def submit(self, item: dict[str, Any]) -> None:
        if self.failed is not None:
            raise RuntimeError(f"snapshot writer failed: {self.failed}") from self.failed
        self.queue.put(item)

    def close(self) -> None:
        self.queue.put(_STOP)
        self.join()
        self.store.dispose()
        if self.failed is not None:
            raise RuntimeError(f"snapshot writer failed: {self.failed}") from self.failed

    def run(self) -> None:
        stopping = False
        while not stopping:
            batch: list[dict[str, Any]] = []
            try:
                item = self.queue.get(timeout=BATCH_SECONDS)
            except queue.Empty:
                continue
            while True:
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)
                if len(batch) >= BATCH_ITEMS:
                    break
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
            if batch and self.failed is None:
                try:
                    self._write(batch)
                except BaseException as exc:  # keep the crawl alive long enough to report
                    logger.exception("snapshot writer failed")
                    self.failed = exc

    def _write(self, batch: list[dict[str, Any]]) -> None:
        rows, done, shots = [], [], []
        snapshots = [item for item in batch if item["type"] == "snapshot"]
        # Bodies and screenshots first, all synced to disk before their rows are committed.
        files: list[bytes] = []
        for item in snapshots:
            files.extend(shot["png"] for shot in item.get("screenshots") or ())
            if _has_body(item):
                files.append(item["body"])
        digests = iter(self.blobs.put_many(files))
        for item in batch:
            if item["type"] == "snapshot":
                for shot in item.get("screenshots") or ():
                    shots.append(
                        {
                            "crawl_id": item["crawl_id"],
                            "url": item["url"][:2000],
                            "kind": shot["kind"],
                            "selector": shot["selector"][:200],
                            "content_hash": next(digests),
                            "width": shot["width"],
                            "height": shot["height"],
                            "taken_at": item["fetched_at"],
                        }
                    )
                body: bytes = item["body"]
                digest = next(digests) if _has_body(item) else None
                rows.append(
                    {
                        "crawl_id": item["crawl_id"],
                        "url": item["url"][:2000],
                        "final_url": item["final_url"][:2000],
                        "status": item["status"],
                        "headers": {
                            **item["headers"],
                            **(
                                {"x-ectrust-redirects": item["redirects"]}
                                if item["redirects"]
                                else {}
                            ),
                        },
                        "fetched_at": item["fetched_at"],
                        "content_hash": digest,
                        "size": len(body),
                        "depth": item["depth"],
                        "referrer": item["referrer"],
                        "link_text": item["link_text"],
                        "reason": item["reason"],
                        "error": item["error"],
                        "rendered": bool(item.get("rendered", False)),
                        "render_reason": item.get("render_reason", "")[:200],
                    }
                )
            else:
                done.append(item)
        with self.store.session() as session:
            if rows:
                session.execute(insert(Snapshot), rows)
            if shots:
                session.execute(insert(Screenshot), shots)
            for item in done:
                session.execute(
                    update(Crawl)
                    .where(Crawl.id == item["crawl_id"])
                    .values(
                        status=item["status"],
                        pages_fetched=item["pages"],
                        finished_at=datetime.now(UTC),
                        stats=item["stats"],
                    )
                )
        for item in done:
            event = {
                "event": "crawl_done",
                "crawl_id": item["crawl_id"],
                "status": item["status"],
                "pages": item["pages"],
            }
            self.events.write(json.dumps(event) + "\n")
            self.events.flush()


class StorePipeline:
    """Scrapy item pipeline in front of the writer thread. The crawl runner owns the writer
    (it outlives the spider, so sites still in flight at close can be recorded) and hands it
    to the spider as ``writer``."""

    def __init__(self, crawler) -> None:  # type: ignore[no-untyped-def]
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler):  # type: ignore[no-untyped-def]
        return cls(crawler)

    def process_item(self, item: dict[str, Any], spider=None) -> dict[str, Any]:  # type: ignore[no-untyped-def]
        self.crawler.spider.writer.submit(item)
        return item
