"""Certificate decisions from the web, each with a reason, through audits/certificates.py
(the same functions as the ``cert`` command). Evaluators may suspend and reinstate (urgent
and reversible); issuing, renewing and revoking are the administrators' decisions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, abort, flash, redirect, request, url_for
from flask_login import current_user

from audits.certificates import (
    LifecycleError,
    get_certificate,
    issue,
    reinstate,
    renew,
    revoke,
    suspend,
)
from ectrust.web.common import form_text, store, today

bp = Blueprint("certs", __name__)
MIN_REASON = 5
ADMIN_ONLY = {"renew", "revoke"}
ACTIONS: dict[str, Callable[..., Any]] = {
    "suspend": suspend,
    "reinstate": reinstate,
    "renew": renew,
    "revoke": revoke,
}


def _reason() -> str | None:
    reason = form_text(request.form, "reason")
    if len(reason) < MIN_REASON:
        flash("请填写理由 A reason is required (at least a few words).")
        return None
    return reason


@bp.post("/sites/<domain>/certificate")
def issue_certificate(domain: str) -> Any:
    if not current_user.is_admin:
        abort(403)
    back = redirect(url_for("sites.detail", domain=domain), 303)
    reason = _reason()
    if reason is None:
        return back
    try:
        years = int(request.form.get("years") or 1)
        with store().session() as session:
            cert = issue(
                session,
                domain,
                tier=request.form.get("tier", ""),
                reason=reason,
                actor=current_user.username,
                valid_from=today(),
                years=years,
            )
            flash(f"已颁发 Issued {cert.cert_id}")
    except (LifecycleError, ValueError) as exc:
        flash(f"未颁发 Not issued: {exc}")
    return back


@bp.post("/certs/<cert_id>/<action>")
def change(cert_id: str, action: str) -> Any:
    fn = ACTIONS.get(action)
    if fn is None:
        abort(404)
    if action in ADMIN_ONLY and not current_user.is_admin:
        abort(403)
    with store().session(readonly=True) as session:
        try:
            domain = get_certificate(session, cert_id).site.domain
        except LifecycleError:
            abort(404)
    back = redirect(url_for("sites.detail", domain=domain, _anchor="certificate"), 303)
    reason = _reason()
    if reason is None:
        return back
    try:
        extra: dict[str, Any] = {}
        if action == "renew":
            extra = {"today": today(), "years": int(request.form.get("years") or 1)}
        with store().session() as session:
            fn(session, cert_id, reason=reason, actor=current_user.username, **extra)
        flash(f"{cert_id}: {action} ✓")
    except (LifecycleError, ValueError) as exc:
        flash(f"{cert_id}: {exc}")
    return back
