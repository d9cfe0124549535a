"""Small helpers the evaluators' blueprints share."""

from __future__ import annotations

from datetime import date
from typing import Any

from flask import current_app

from audits.db import Store
from ectrust.config import Settings
from ectrust.web import ectrust_state


def store() -> Store:
    return ectrust_state(current_app)["store"]


def settings() -> Settings:
    return ectrust_state(current_app)["settings"]


def today() -> date:
    return ectrust_state(current_app)["today"]()


def form_text(form: Any, name: str, limit: int = 2000) -> str:
    return (form.get(name) or "").strip()[:limit]
