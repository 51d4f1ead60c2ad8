"""How the console writes times, codes and people, the same on every page it draws.

Times: UTC with seconds and the zone (``2026-12-02 21:54:22 UTC``) in a ``<time>`` element the
page's script (``admin/audit/_local_time.html``) gives the viewer's local time as its tooltip;
the server cannot know the viewer's zone. Codes: their labels (``audit.labels``). People: the
agent's name and decoded e-mail beside Flex's identity (``audit.people``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.utils.html import format_html
from django.utils.safestring import SafeString

from audit.people import Person

UTC_FORMAT = "%Y-%m-%d %H:%M:%S UTC"


def utc_text(moment: datetime | None) -> str:
    """``moment`` as ``2026-12-02 21:54:22 UTC``; ``""`` for none."""
    if moment is None:
        return ""
    return moment.astimezone(UTC).strftime(UTC_FORMAT)


def utc_time(moment: object) -> SafeString:
    """``moment`` as a ``<time>`` element showing :func:`utc_text` (local time on hover);
    ``-`` for anything that is not a time (a template's missing value)."""
    if not isinstance(moment, datetime):
        return format_html("{}", "-")
    return format_html(
        '<time class="portal-time" datetime="{}">{}</time>',
        moment.astimezone(UTC).isoformat(),
        utc_text(moment),
    )


def person_html(person: Person | None) -> SafeString:
    """The agent's name and e-mail, small and quiet under an identity; nothing when unknown."""
    if person is None or not person.label:
        return SafeString("")
    return format_html('<br><small class="portal-person">{}</small>', person.label)


def plural(count: int, singular: str, plural_form: str = "") -> str:
    """``1 recording``, ``2 recordings`` (``plural_form`` for irregular words)."""
    word = singular if count == 1 else (plural_form or singular + "s")
    return f"{count} {word}"
