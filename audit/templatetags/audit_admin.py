"""Template filters of the audit admin's pages (``{% load audit_admin %}``)."""

from __future__ import annotations

from django import template
from django.utils.safestring import SafeString

from audit.admin.links import recording_timeline_link

register = template.Library()


@register.filter
def timeline_link(sid: str) -> SafeString:
    """A recording SID linked to its timeline, or shown as escaped text when it is not a SID
    (``audit.admin.links.recording_timeline_link``): a log row never breaks the page."""
    return recording_timeline_link(sid)
