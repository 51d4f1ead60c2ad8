"""Template filters of the audit admin's pages (``{% load audit_admin %}``)."""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils.safestring import SafeString

from audit.admin.display import utc_time
from audit.admin.links import recording_timeline_link
from audit.labels import action_label, reason_label

register = template.Library()


@register.filter
def timeline_link(sid: str) -> SafeString:
    """A recording SID linked to its timeline, or shown as escaped text when it is not a SID
    (``audit.admin.links.recording_timeline_link``): a log row never breaks the page."""
    return recording_timeline_link(sid)


@register.filter
def utc(moment: datetime | None) -> SafeString:
    """A time as ``2026-12-02 21:54:22 UTC``, the viewer's local time on hover
    (``audit.admin.display.utc_time``)."""
    return utc_time(moment)


@register.filter
def action_name(code: str) -> str:
    """The label of an action code (``audit.labels``); an unknown code as itself."""
    return action_label(code)


@register.filter
def reason_name(code: str) -> str:
    """The label of a reason code (``audit.labels``); an unknown code as itself."""
    return reason_label(code)
