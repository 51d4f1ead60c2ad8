"""What the portal's management commands share when they read their arguments."""

from __future__ import annotations

from datetime import date

from django.core.management.base import CommandError


def since_date(value: str) -> date:
    """The ``--since YYYY-MM-DD`` of a command, or a ``CommandError`` that says the format."""
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"--since must be YYYY-MM-DD, not {value!r}") from None
