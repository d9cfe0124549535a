"""Logging in and out, and who may see what.

Deny by default: ``require_login`` runs before every request and lets an anonymous request
through only to the endpoints in ``PUBLIC_ENDPOINTS``; a route added later is private
without anyone remembering to decorate it. Anonymous page requests (GET/HEAD) are sent to
the login page, anything else gets 401. ``admin_required`` marks the administrators'
actions. Sessions are Flask-Login's; the session id includes the account's
``session_epoch`` so a password change or a disabled account ends every open session.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user

from audits.account_models import User
from audits.accounts import authenticate
from ectrust.web import ectrust_state

bp = Blueprint("auth", __name__)
PUBLIC_ENDPOINTS = frozenset(
    {
        "public.certificate_page",
        "public.badge_image",
        "public.certified_list",
        "static",
        "auth.login",
    }
)
F = TypeVar("F", bound=Callable[..., Any])


class Account(UserMixin):
    """The logged-in user as the request sees it (a plain copy, no database session)."""

    def __init__(self, user: User) -> None:
        self.user_id = user.id
        self.username = user.username
        self.role = user.role
        self.epoch = user.session_epoch

    def get_id(self) -> str:
        return f"{self.user_id}.{self.epoch}"

    @property
    def is_admin(self) -> bool:
        return self.role == "administrator"


def _load(session_id: str) -> Account | None:
    user_id, _, epoch = session_id.partition(".")
    if not user_id.isdigit() or not epoch.isdigit():
        return None
    with ectrust_state(current_app)["store"].session(readonly=True) as session:
        user = session.get(User, int(user_id))
        if user is None or not user.active or user.session_epoch != int(epoch):
            return None
        return Account(user)


def install(app: Flask) -> None:
    manager = LoginManager()
    manager.user_loader(_load)
    manager.session_protection = "strong"
    manager.init_app(app)

    @app.before_request
    def require_login() -> Any:
        if request.endpoint in PUBLIC_ENDPOINTS or current_user.is_authenticated:
            return None
        if request.endpoint is None:  # no such route: 404, and nothing to learn from it
            return None
        if request.method in ("GET", "HEAD"):
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        return render_template("error.html.j2", code=401, message="log in first"), 401

    @app.context_processor
    def user_context() -> dict[str, Any]:
        return {"me": current_user}


def admin_required(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not current_user.is_authenticated or not current_user.is_admin:
            abort(403)
        return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _safe_next(target: str | None) -> str:
    """Only a path on this server: an open redirect would lend our name to phishing."""
    if not target:
        return url_for("dashboard.index")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return url_for("dashboard.index")
    return target


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    if request.method == "GET":
        return render_template("login.html.j2", next=request.args.get("next", ""))
    username = request.form.get("username", "")
    password = request.form.get("password", "")
    address = request.remote_addr or "unknown"
    with ectrust_state(current_app)["store"].session() as session:
        user, throttled = authenticate(session, username, password, address)
        account = Account(user) if user is not None else None
    if throttled:
        flash("登录失败次数过多，请稍后再试。Too many failed attempts: try again later.")
        return render_template("login.html.j2", next=request.form.get("next", "")), 429
    if account is None:
        flash("用户名或密码错误。Wrong user name or password.")
        return render_template("login.html.j2", next=request.form.get("next", "")), 401
    login_user(account)
    return redirect(_safe_next(request.form.get("next")))


@bp.post("/logout")
def logout() -> Any:
    logout_user()
    return redirect(url_for("auth.login"))
