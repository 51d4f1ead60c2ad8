"""``POST /twilio/recording-status``: Twilio's ``recordingStatusCallback``.

The view is thin on purpose: check the signature, validate, store the raw event, queue the
sync, answer 204. No Twilio call happens here, so Twilio gets its answer fast, and an event is
never lost to a broker outage: it is in the database before the queue is touched.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.request_validator import (
    SIGNATURE_SETTINGS_HEADER,
    RequestValidator,
    get_signature_algorithm,
)

from portal.sealing import SealingError, unseal
from recordings import services
from recordings.models import TwilioSubaccount
from recordings.tasks import queue_event_sync

logger = logging.getLogger(__name__)


def public_url(request: HttpRequest) -> str:
    """The URL Twilio called, as Twilio saw it: behind a proxy, ``PUBLIC_BASE_URL`` gives the
    public scheme and host, since the signature covers them."""
    if settings.PUBLIC_BASE_URL:
        return settings.PUBLIC_BASE_URL + request.get_full_path()
    return request.build_absolute_uri()


def signing_tokens(account_sid: str) -> list[str]:
    """Auth tokens that may sign callbacks for ``account_sid``; empty when the account is
    neither the configured one nor one of its known subaccounts."""
    main = settings.TWILIO_AUTH_TOKEN
    if not main or not settings.TWILIO_ACCOUNT_SID:
        return []
    if account_sid == settings.TWILIO_ACCOUNT_SID:
        return [main]
    subaccount = TwilioSubaccount.objects.filter(sid=account_sid).first()
    if subaccount is None:
        return []
    tokens = [main]
    if subaccount.sealed_auth_token:
        try:
            tokens.insert(
                0,
                unseal(
                    subaccount.sealed_auth_token, purpose=f"subaccount-token:{subaccount.sid}"
                ).decode(),
            )
        except SealingError:
            logger.error("stored auth token of subaccount %s cannot be opened", subaccount.sid)
    return tokens


def signature_valid(request: HttpRequest, signed: Any, tokens: list[str]) -> bool:
    """True when ``X-Twilio-Signature`` matches under one of ``tokens`` (twilio's own
    RequestValidator, which compares in constant time)."""
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature or not tokens:
        return False
    algorithm = get_signature_algorithm(request.headers.get(SIGNATURE_SETTINGS_HEADER))
    url = public_url(request)
    return any(
        RequestValidator(token).validate(url, signed, signature, algorithm) for token in tokens
    )


def _error(status: int, code: str, detail: str) -> JsonResponse:
    return JsonResponse({"error": code, "detail": detail}, status=status)


def _read_body(request: HttpRequest) -> tuple[dict[str, Any] | None, Any]:
    """The callback's parameters and what the signature covers (form fields, or the raw JSON
    body together with its ``bodySHA256`` query parameter)."""
    if request.content_type == "application/json":
        if "bodySHA256" not in request.GET:
            return None, None
        try:
            raw = request.body.decode("utf-8")
            params = json.loads(raw)
        except (UnicodeDecodeError, ValueError):
            return None, None
        if not isinstance(params, dict):
            return None, None
        return {k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items()}, raw
    form: QueryDict = request.POST
    return {key: form.get(key, "") for key in form}, form


@csrf_exempt
@require_POST
def recording_status(request: HttpRequest) -> HttpResponse:
    """Accept one recording status callback: 204 stored, 403 unsigned or unknown account,
    400 malformed."""
    params, signed = _read_body(request)
    if params is None:
        # A JSON body we cannot parse, or one whose hash the signature does not cover: nothing
        # here is authenticated, so it is refused like any unsigned request.
        return _error(403, "invalid_signature", "The request is not signed by Twilio.")
    account_sid = str(params.get("AccountSid") or "")
    if services.ACCOUNT_SID.match(account_sid):
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
        fields = services.callback_validate(params)
    except services.CallbackRejected as exc:
        return _error(400, "malformed_callback", str(exc))

    event_id, created = services.event_record(
        fields=fields,
        params=params,
        idempotency_token=request.headers.get("I-Twilio-Idempotency-Token", ""),
    )
    # The event row is the record of every accepted callback; the log line is for debugging.
    if created:
        transaction.on_commit(lambda: queue_event_sync(event_id))
        logger.debug(
            "recording %s reported %s", fields.recording_sid, fields.status or "(no status)"
        )
    else:
        logger.info(
            "duplicate callback for recording %s %s ignored", fields.recording_sid, fields.status
        )
    return HttpResponse(status=204)
