"""``{% recording_waveform original %}``: the player and waveform on a recording's admin page
(``recordings.playback.admin_player``), drawn by ``recordings/waveform.js``."""

from __future__ import annotations

from typing import Any

from django import template
from django.conf import settings

from audit.staff_actions import staff_identity
from portal.http import request_audit_fields
from recordings.models import Recording
from recordings.playback.admin_player import admin_player_open
from recordings.playback.player_requests import RequestContext

register = template.Library()

COLOURS = {
    # Flex Insights' Conversation Screen convention: blue agent, green customer, red
    # cross-talk, orange silence.
    "agent": "#1f6fd1",
    "customer": "#2e9e4f",
    "cross_talk": "#d6312b",
    "silence": "#f29d38",
    "speech": "#1f6fd1",
}

LEGEND = (
    ("agent", "Agent"),
    ("customer", "Customer"),
    ("cross_talk", "Cross-talk (both)"),
    ("silence", "Silence"),
)


@register.inclusion_tag("admin/recordings/recording/_waveform_player.html", takes_context=True)
def recording_waveform(context: template.Context, recording: Recording | None) -> dict[str, Any]:
    """The player's context for ``recording`` (nothing on the add page, or without a request)."""
    request = context.get("request")
    if recording is None or request is None or not recording.pk:
        return {"player": None}
    base_url = settings.PUBLIC_BASE_URL or f"{request.scheme}://{request.get_host()}"
    player = admin_player_open(
        recording=recording,
        identity=staff_identity(request),
        base_url=base_url,
        context=RequestContext(**request_audit_fields(request)),
    )
    legend = [(label, COLOURS[kind]) for kind, label in LEGEND]
    return {"player": player, "recording": recording, "colours": COLOURS, "legend": legend}
