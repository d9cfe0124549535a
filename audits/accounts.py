"""Local accounts: create, change password, disable, authenticate with login throttling.

Passwords are hashed with Werkzeug's ``generate_password_hash`` (scrypt, salted; Werkzeug is
already Flask's own dependency, so no extra package). Throttling is kept in the database
(``login_attempts``), not in process memory, so it holds across the server's threads and
processes and across restarts: after ``MAX_FAILURES_PER_USER`` failed attempts for one
account, or ``MAX_FAILURES_PER_ADDRESS`` from one client address, within ``WINDOW``, further
attempts are refused without looking at the password until the window has passed.
"""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from audits.account_models import ROLES, LoginAttempt, User
from audits.models import utcnow

MIN_PASSWORD = 10
MAX_FAILURES_PER_USER = 5
MAX_FAILURES_PER_ADDRESS = 20
WINDOW = timedelta(minutes=15)
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
# Checked against when the account does not exist, so a wrong name costs as much time as a
# wrong password (no account enumeration by timing).
_DUMMY_HASH = generate_password_hash("not a password of anyone")


class AccountError(ValueError):
    """Bad input for an account command (CLI exit status 2)."""


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"the password must have at least {MIN_PASSWORD} characters")


def get_user(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username.strip().lower()))


def add_user(session: Session, username: str, password: str, role: str) -> User:
    name = username.strip().lower()
    if not USERNAME.match(name):
        raise AccountError(
            f"user name {username!r}: 2-64 characters, lower-case letters, digits, . _ -"
        )
    if role not in ROLES:
        raise AccountError(f"role {role!r}: one of {', '.join(ROLES)}")
    if get_user(session, name) is not None:
        raise AccountError(f"user {name!r} exists (use `ectrust users passwd`)")
    _check_password(password)
    user = User(username=name, password_hash=generate_password_hash(password), role=role)
    session.add(user)
    session.flush()
    return user


def _existing(session: Session, username: str) -> User:
    user = get_user(session, username)
    if user is None:
        raise AccountError(f"no user {username!r}")
    return user


def set_password(session: Session, username: str, password: str) -> User:
    """New password; sessions opened with the old one end (and a disabled account stays
    disabled: re-enabling is a separate, deliberate step)."""
    _check_password(password)
    user = _existing(session, username)
    user.password_hash = generate_password_hash(password)
    user.session_epoch += 1
    user.updated_at = utcnow()
    return user


def disable_user(session: Session, username: str) -> User:
    user = _existing(session, username)
    user.active = False
    user.session_epoch += 1
    user.updated_at = utcnow()
    return user


def _recent_failures(session: Session, column: object, value: str) -> int:
    since = utcnow() - WINDOW
    return (
        session.scalar(
            select(func.count(LoginAttempt.id)).where(
                column == value, LoginAttempt.success.is_(False), LoginAttempt.at >= since
            )
        )
        or 0
    )


def authenticate(
    session: Session, username: str, password: str, address: str
) -> tuple[User | None, bool]:
    """(the active user with this name and password or None, throttled). When the account
    or the address has failed too often lately the password is not even checked; every
    attempt is recorded."""
    name = username.strip().lower()[:64]
    throttled = (
        _recent_failures(session, LoginAttempt.username, name) >= MAX_FAILURES_PER_USER
        or _recent_failures(session, LoginAttempt.address, address) >= MAX_FAILURES_PER_ADDRESS
    )
    user = get_user(session, name)
    ok = False
    if not throttled:
        digest = user.password_hash if user is not None else _DUMMY_HASH
        ok = check_password_hash(digest, password) and user is not None and user.active
    session.add(LoginAttempt(username=name, address=address[:64], success=ok))
    session.flush()
    return (user if ok else None), throttled
