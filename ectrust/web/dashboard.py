"""The evaluators' start page: what needs attention today."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template

from ectrust.web import queries
from ectrust.web.common import settings, store, today

bp = Blueprint("dashboard", __name__)


@bp.get("/")
def index() -> Any:
    data = queries.dashboard(store(), settings(), today())
    return render_template("dashboard.html.j2", d=data, today=today())
