"""Deployment configuration read from the environment (CONTRACT.md: Install and configuration)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_DB = "sqlite:///ectrust.db"
DEFAULT_HOME = "./.ectrust"


@dataclass(frozen=True)
class Settings:
    """Everything ectrust reads from its environment, resolved once per command."""

    db_url: str = DEFAULT_DB
    home: Path = field(default_factory=lambda: Path(DEFAULT_HOME))
    badge_hosts: tuple[str, ...] = ()
    connect_to: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        return cls(
            db_url=env.get("ECTRUST_DB") or DEFAULT_DB,
            home=Path(env.get("ECTRUST_HOME") or DEFAULT_HOME),
            badge_hosts=tuple(h.lower() for h in (env.get("ECTRUST_BADGE_HOSTS") or "").split()),
            connect_to=tuple((env.get("ECTRUST_CONNECT_TO") or "").split()),
        )
