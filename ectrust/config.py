"""Deployment configuration read from the environment (CONTRACT.md: Install and configuration)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_DB = "sqlite:///ectrust.db"
DEFAULT_HOME = "./.ectrust"
DEFAULT_BROKER = "redis://127.0.0.1:6379/0"


@dataclass(frozen=True)
class Settings:
    """Everything ectrust reads from its environment, resolved once per command."""

    db_url: str = DEFAULT_DB
    home: Path = field(default_factory=lambda: Path(DEFAULT_HOME))
    badge_hosts: tuple[str, ...] = ()
    connect_to: tuple[str, ...] = ()
    # Crawl processes of one run (ectrust/pipeline.py); 0: chosen from the sites and cores.
    crawlers: int = 0

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        return cls(
            db_url=env.get("ECTRUST_DB") or DEFAULT_DB,
            home=Path(env.get("ECTRUST_HOME") or DEFAULT_HOME),
            badge_hosts=tuple(h.lower() for h in (env.get("ECTRUST_BADGE_HOSTS") or "").split()),
            connect_to=tuple((env.get("ECTRUST_CONNECT_TO") or "").split()),
            crawlers=_count(env, "ECTRUST_CRAWLERS"),
        )


class ConfigError(ValueError):
    """A setting in the environment has a value ectrust cannot use."""


def _count(env: Mapping[str, str], name: str) -> int:
    raw = (env.get(name) or "").strip()
    if not raw or raw == "auto":
        return 0
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a whole number or 'auto'") from None
    if value < 0:
        raise ConfigError(f"{name}={raw!r}: expected a whole number >= 0 or 'auto'")
    return value


class BrokerError(Exception):
    """The broker cannot be reached (CLI exit status 3)."""


class BrokerConfigError(BrokerError):
    """No broker, or a bad broker setting (CLI exit status 2)."""


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise BrokerConfigError(f"{name}={raw!r}: expected a number of seconds") from None
    if value <= 0:
        raise BrokerConfigError(f"{name}={raw!r}: expected a number of seconds > 0")
    return value


@dataclass(frozen=True)
class BrokerConfig:
    """Where the distributed audit jobs go (ectrust/distributed.py lists the variables)."""

    url: str
    namespace: str = "ectrust"
    visibility_timeout_s: float = 3600.0
    host_lock_ttl_s: float = 120.0
    lock_retry_s: float = 2.0

    @classmethod
    def from_env(
        cls, url: str | None = None, environ: Mapping[str, str] | None = None,
        default: str | None = None,
    ) -> BrokerConfig:
        """``url`` (``--broker``) wins over ``$ECTRUST_BROKER``, which wins over ``default``
        (the scheduler's, when its configuration says ``distributed = true``)."""
        env = os.environ if environ is None else environ
        url = url or env.get("ECTRUST_BROKER") or default or ""
        if not url:
            raise BrokerConfigError("no broker configured: set ECTRUST_BROKER or give --broker URL")
        if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
            raise BrokerConfigError(
                f"broker {url!r}: expected a Redis URL (redis://HOST:PORT/DB); the per-host "
                "politeness locks live in Redis too"
            )
        return cls(
            url=url,
            namespace=env.get("ECTRUST_BROKER_NAMESPACE") or "ectrust",
            visibility_timeout_s=_number(env, "ECTRUST_BROKER_VISIBILITY_TIMEOUT", 3600.0),
            host_lock_ttl_s=_number(env, "ECTRUST_HOST_LOCK_TTL", 120.0),
            lock_retry_s=_number(env, "ECTRUST_HOST_LOCK_RETRY", 2.0),
        )

    @property
    def key_prefix(self) -> str:
        return f"{self.namespace}:"
