"""``GET /api/v1/recordings/RE…/waveform``: a recording's peaks, segments and summary for a
Flex plugin or another player, decided and audited exactly as url_provider decides and audits
the audio.

Waveform data is derived from the recording: it shows who spoke when and for how long, so it is
as sensitive as the recording's metadata and never more than its audio. The same Flex token,
the same rules (``audit.decisions.access_decide``) and one access-log row per request
(action ``waveform_view``), denials included.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from audit.models import AccessAction
from recordings import jobs
from recordings.analysis import service
from recordings.playback.player_requests import (
    Refusal,
    RequestContext,
    audited_sid,
    player_request_decide,
    request_audit,
)

logger = logging.getLogger(__name__)

ACTION = AccessAction.WAVEFORM_VIEW.value
ALLOWED_METHODS = ("GET", "HEAD", "OPTIONS")


@dataclass(frozen=True)
class WaveformAnswer:
    """The HTTP answer: status and JSON body (the waveform, or ``error`` and ``detail``)."""

    status: int
    body: dict[str, Any]


def _error(status: int, code: str, detail: str) -> WaveformAnswer:
    return WaveformAnswer(status, {"error": code, "detail": detail})


def waveform_provide(
    *,
    authorization: str | None,
    recording_sid: str,
    context: RequestContext,
    with_body: bool = True,
) -> WaveformAnswer:
    """Answer a player's request for a recording's waveform, and audit it (one row).

    200 with ``{"peaks", "segments", "summary"}``; 400 malformed SID; 401 missing, invalid or
    expired token; 403 no rule allows it; 404 no such recording, deleted, or no waveform yet
    (``waveform_not_ready``: the analysis is queued, ask again); 503 Twilio's token validation
    or the storage cannot be reached. ``with_body=False`` (``HEAD``) decides and audits the
    same way without reading the stored files.
    """
    sid = audited_sid(recording_sid)
    audit: dict[str, Any] = {"recording_sid": sid}

    def finish(answer: WaveformAnswer, outcome: str, reason: str, **fields: Any) -> WaveformAnswer:
        request_audit(ACTION, outcome, reason, context, **{**audit, **fields})
        return answer

    if not sid:  # the SID is part of the path: an empty or odd one is malformed, not missing
        return finish(
            _error(400, "malformed_recording_sid", "A recording SID is RE and 32 hex digits."),
            "error",
            "malformed_recording_sid",
        )
    checked = player_request_decide(authorization=authorization, recording_sid=sid)
    audit.update(checked.audit_fields)
    if isinstance(checked, Refusal):
        return finish(
            _error(checked.status, checked.code, checked.detail),
            checked.outcome,
            checked.reason,
            **checked.extra,
        )
    recording, decision = checked.recording, checked.decision
    rule = decision.rule_name or ""
    if not with_body:
        return finish(
            WaveformAnswer(200, {}),
            "allowed",
            decision.reason_code,
            rule_name=rule,
            detail={**audit.get("detail", {}), "method": "HEAD"},
        )
    try:
        waveform = service.waveform_read(recording=recording)
        if waveform is None and service.recording_analysable(recording):
            # Queued for a worker; in embedded mode it runs here and now, so look again.
            jobs.queue_recording_analysis(recording.pk)
            waveform = service.waveform_read(recording=recording)
    except service.AnalysisUnavailable as exc:
        logger.warning("waveform of %s unavailable: %s", sid, exc)
        return finish(
            _error(503, "storage_unavailable", "The waveform cannot be read now."),
            "error",
            "storage_unavailable",
            rule_name=rule,
        )
    if waveform is None:
        return finish(
            _error(404, "waveform_not_ready", "This recording has no waveform yet; ask again."),
            "error",
            "waveform_not_ready",
            rule_name=rule,
        )
    return finish(WaveformAnswer(200, waveform), "allowed", decision.reason_code, rule_name=rule)


def waveform_other_method(
    *, method: str, recording_sid: str, context: RequestContext
) -> WaveformAnswer:
    """Answer and audit a waveform request made with another method than ``GET``/``HEAD``
    (CORS preflights never get here): ``OPTIONS`` 204, anything else 405. Nothing is looked
    up and no token is checked."""
    if method == "OPTIONS":
        answer, reason = WaveformAnswer(204, {}), "not_a_preflight"
    else:
        answer = _error(405, "method_not_allowed", "Use GET or HEAD.")
        reason = "method_not_allowed"
    request_audit(
        ACTION,
        "error",
        reason,
        context,
        recording_sid=audited_sid(recording_sid),
        detail={"method": "".join(c for c in method if c.isalnum())[:16]},
    )
    return answer
