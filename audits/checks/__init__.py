"""Check types: the small set of Python functions that rule files name."""

from audits.checks.base import CHECKS, CheckType, Outcome


def load_check_types() -> None:
    """Import every check module so each registers itself."""
    from audits.checks import (  # noqa: F401
        badge,
        combinators,
        fetch,
        links,
        privacy,
        registration,
        text,
    )


__all__ = ["CHECKS", "CheckType", "Outcome", "load_check_types"]
