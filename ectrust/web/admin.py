"""The administrators' page: the accounts (create and disable are also ``ectrust users``)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from audits.account_models import ROLES, User
from audits.accounts import AccountError, add_user, disable_user
from ectrust.web.auth import admin_required
from ectrust.web.common import form_text, store

bp = Blueprint("admin", __name__)


@bp.get("/admin/users")
@admin_required
def users() -> Any:
    with store().session(readonly=True) as session:
        rows = [
            {"username": u.username, "role": u.role, "active": u.active,
             "created_at": u.created_at}
            for u in session.scalars(select(User).order_by(User.username))
        ]  # fmt: skip
    return render_template("users.html.j2", users=rows, roles=ROLES)


@bp.post("/admin/users")
@admin_required
def add() -> Any:
    try:
        with store().session() as session:
            add_user(
                session,
                form_text(request.form, "username", 64),
                request.form.get("password", ""),
                request.form.get("role", ""),
            )
        flash("已添加 Account added")
    except AccountError as exc:
        flash(str(exc))
    return redirect(url_for("admin.users"), 303)


@bp.post("/admin/users/<username>/disable")
@admin_required
def disable(username: str) -> Any:
    if username == current_user.username:
        flash("不能停用自己的账户 You cannot disable your own account.")
        return redirect(url_for("admin.users"), 303)
    try:
        with store().session() as session:
            disable_user(session, username)
        flash(f"已停用 Disabled {username}")
    except AccountError as exc:
        flash(str(exc))
    return redirect(url_for("admin.users"), 303)
