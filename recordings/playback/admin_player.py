"""The player on a recording's admin page: its audio through a short-lived link and its
waveform, for a staff member, with one access-log row (``waveform_view``, identity
``admin:<username>``) naming the link, as url_provider's row names the player's.

Staff reach a recording's page through the admin's own permissions (``view_recording``), not
the Flex access rules, which describe Flex users; what they open is audited all the same, and
playing the link writes its ``media_fetch`` row like any other.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from audit.models import AccessAction, AccessOutcome
from audit.services import access_log_append
from recordings import jobs
from recordings.analysis import service
from recordings.analysis.peaks import peaks_reduce
from recordings.models import MediaLocation, Recording, RecordingAnalysis, RecordingStatus
from recordings.playback import links
from recordings.playback.player_requests import RequestContext

logger = logging.getLogger(__name__)

PAGE_PIXELS = 4000
"""Peaks sent to the admin page at most: wider than any screen, a small page for a long call."""


@dataclass(frozen=True)
class AdminPlayer:
    """What the admin page draws: the audio link (or none), the waveform (or none) and why
    not (``state``: ``ready``, ``not_analysed``, ``failed``, ``unavailable``, ``no_media``,
    ``deleted``)."""

    state: str
    media_url: str = ""
    waveform: dict[str, Any] | None = None
    error: str = ""


def admin_player_open(
    *, recording: Recording, identity: str, base_url: str, context: RequestContext
) -> AdminPlayer:
    """Open a recording for the admin page's player, and audit it (one row when anything is
    shown: the waveform, the audio link, or both)."""
    if recording.status == RecordingStatus.DELETED or recording.soft_deleted_at is not None:
        return AdminPlayer("deleted")
    if recording.media_location == MediaLocation.UNKNOWN:
        return AdminPlayer("no_media")
    try:
        waveform = service.waveform_read(recording=recording)
        if waveform is None and not RecordingAnalysis.objects.filter(recording=recording).exists():
            # Never analysed (made before the analysis existed): queue it; embedded mode runs
            # it here and now, so look again.
            jobs.queue_recording_analysis(recording.pk)
            waveform = service.waveform_read(recording=recording)
    except service.AnalysisUnavailable as exc:
        logger.warning("waveform of %s unavailable: %s", recording.sid, exc)
        return AdminPlayer("unavailable")
    state, error = "ready", ""
    if waveform is not None:
        waveform = {**waveform, "peaks": peaks_reduce(waveform["peaks"], max_length=PAGE_PIXELS)}
    else:
        failed = RecordingAnalysis.objects.filter(recording=recording, state="failed").first()
        state, error = ("failed", failed.error) if failed else ("not_analysed", "")
    # The link is made first and handed out only after its audit row is written.
    issued = links.media_link_issue(
        recording=recording, link_id=uuid.uuid4(), base_url=base_url, identity=identity
    )
    row = access_log_append(
        action=AccessAction.WAVEFORM_VIEW,
        outcome=AccessOutcome.ALLOWED,
        reason_code="admin_player",
        identity=identity,
        recording_sid=recording.sid,
        link_id=issued.link_id,
        client_ip=context.client_ip,
        user_agent=context.user_agent,
        request_id=context.request_id,
        detail={"waveform": waveform is not None},
    )
    if issued.kind == "portal":
        links.media_link_bind(link_id=issued.link_id, access_log_sequence=row.sequence)
    return AdminPlayer(state, media_url=issued.url, waveform=waveform, error=error)
