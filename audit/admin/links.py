"""Links between the audit admin's pages, built from values that came from outside.

A player may send anything as ``recording_sid`` and the access log keeps it as sent (an audit
row records the request, even a malformed one). The timeline page takes recording SIDs only, so
a value that is not one is shown as plain, escaped text instead of a link: a row of the log must
never stop a page from rendering.
"""

from __future__ import annotations

from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from portal.sids import RECORDING_SID, is_sid


def recording_timeline_link(sid: str) -> SafeString:
    """``sid`` linked to its timeline page when it is a recording SID, else ``sid`` as escaped
    text (whatever a caller sent is shown, never reversed into a URL)."""
    if not is_sid(RECORDING_SID, sid):
        return format_html("{}", sid)
    url = reverse("admin:audit_accesslog_recording", args=[sid])
    return format_html('<a href="{}">{}</a>', url, sid)
