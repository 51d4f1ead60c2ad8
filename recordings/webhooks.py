"""``POST /twilio/recording-status``: Twilio's ``recordingStatusCallback``.

The view is thin on purpose: check the signature, validate, store the raw event, queue the
sync, answer 204. No Twilio call happens here, so Twilio gets its answer fast, and an event is
never lost to a broker outage: it is in the database before the queue is touched.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from portal.sids import ACCOUNT_SID
from recordings import jobs
from recordings.ingest import events
from recordings.ingest.signatures import callback_params, signature_valid, signing_tokens

logger = logging.getLogger(__name__)


def _error(status: int, code: str, detail: str) -> JsonResponse:
    return JsonResponse({"error": code, "detail": detail}, status=status)


@csrf_exempt
@require_POST
def recording_status(request: HttpRequest) -> HttpResponse:
    """Accept one recording status callback: 204 stored, 403 unsigned or unknown account,
    400 malformed."""
    params, signed = callback_params(request)
    if params is None:
        # A JSON body we cannot parse, or one whose hash the signature does not cover: nothing
        # here is authenticated, so it is refused like any unsigned request.
        return _error(403, "invalid_signature", "The request is not signed by Twilio.")
    account_sid = str(params.get("AccountSid") or "")
    if ACCOUNT_SID.fullmatch(account_sid):
        tokens = signing_tokens(account_sid)
        if not tokens:
            logger.warning("callback for unknown account %s refused", account_sid)
            return _error(403, "unknown_account", "This AccountSid is not served here.")
    else:
        tokens = signing_tokens(settings.TWILIO_ACCOUNT_SID)
    if not signature_valid(request, signed, tokens):
        logger.warning("callback with a missing or bad X-Twilio-Signature refused")
        return _error(403, "invalid_signature", "The request is not signed by Twilio.")
    try:
        fields = events.callback_validate(params)
    except events.CallbackRejected as exc:
        return _error(400, "malformed_callback", str(exc))

    event_id, created = events.event_record(
        fields=fields,
        params=params,
        idempotency_token=request.headers.get("I-Twilio-Idempotency-Token", ""),
    )
    # The event row is the record of every accepted callback; the log line is for debugging.
    if created:
        # Committed already (the row is written in autocommit); a broker that cannot take the
        # message leaves the event pending for the dispatcher, and Twilio still gets its 204.
        jobs.queue_event_sync(event_id)
        logger.debug(
            "recording %s reported %s", fields.recording_sid, fields.status or "(no status)"
        )
    else:
        logger.info(
            "duplicate callback for recording %s %s ignored", fields.recording_sid, fields.status
        )
    return HttpResponse(status=204)
