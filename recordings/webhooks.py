"""``POST /twilio/recording-status``: Twilio's ``recordingStatusCallback``.

The view is thin on purpose: check the signature, validate, store the raw event, queue the
sync, answer 204. No Twilio call happens here, so Twilio gets its answer fast, and an event is
never lost to a broker outage: it is in the database before the queue is touched.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.views import APIView

from portal.negotiation import FixedFormat
from portal.openapi import ERROR_SCHEMA
from portal.sids import ACCOUNT_SID, RECORDING_SID
from recordings import jobs
from recordings.ingest import events
from recordings.ingest.signatures import callback_params, signature_valid, signing_tokens

logger = logging.getLogger(__name__)


def _error(status: int, code: str, detail: str) -> JsonResponse:
    return JsonResponse({"error": code, "detail": detail}, status=status)


def _sid_field(pattern: str, help_text: str) -> serializers.CharField:
    return serializers.RegexField(f"^{pattern}$", help_text=help_text)


_CALLBACK = inline_serializer(
    "RecordingStatusCallback",
    fields={
        "AccountSid": _sid_field(ACCOUNT_SID.pattern, "the account (or a known subaccount)"),
        "RecordingSid": _sid_field(RECORDING_SID.pattern, "the recording"),
        "RecordingStatus": serializers.CharField(
            required=False, help_text="in-progress, completed, absent or failed"
        ),
        "CallSid": serializers.CharField(required=False),
        "ConferenceSid": serializers.CharField(required=False),
        "RecordingUrl": serializers.CharField(required=False),
        "RecordingChannels": serializers.CharField(required=False),
        "RecordingSource": serializers.CharField(required=False),
        "RecordingStartTime": serializers.CharField(required=False),
        "RecordingDuration": serializers.CharField(required=False),
        "ErrorCode": serializers.CharField(required=False),
    },
)


class RecordingStatusView(APIView):
    """Twilio's ``recordingStatusCallback`` (``POST`` only)."""

    authentication_classes: list = []
    permission_classes: list = []
    content_negotiation_class = FixedFormat
    # Form and JSON bodies are read raw, as they were signed; DRF parses only multipart ones.
    parser_classes = [MultiPartParser]
    http_method_names = ["post"]

    @extend_schema(
        operation_id="recording_status_callback",
        summary="Twilio's recordingStatusCallback: store the event and queue the sync",
        request={
            "application/x-www-form-urlencoded": _CALLBACK,
            "application/json": _CALLBACK,
        },
        parameters=[
            OpenApiParameter(
                "X-Twilio-Signature",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                required=True,
                description="Twilio's signature of the URL and form (or of the URL with "
                "bodySHA256 for a JSON body)",
            ),
            OpenApiParameter(
                "bodySHA256",
                OpenApiTypes.STR,
                description="JSON bodies only: the body's SHA-256, hex (covered by the signature)",
            ),
        ],
        responses={
            204: OpenApiResponse(description="stored (or a duplicate of one stored)"),
            400: OpenApiResponse(ERROR_SCHEMA, description="signed, without well-formed SIDs"),
            403: OpenApiResponse(
                ERROR_SCHEMA, description="missing or bad signature, or an unknown account"
            ),
        },
    )
    def post(self, request: Request) -> HttpResponse:
        """Accept one recording status callback."""
        return recording_status_accept(request)


recording_status = RecordingStatusView.as_view()


def recording_status_accept(request: HttpRequest) -> HttpResponse:
    """Accept one recording status callback: 204 stored, 403 unsigned or unknown account,
    400 malformed."""
    params, signed = callback_params(request)
    if params is None:
        # A JSON body we cannot parse, or one whose hash the signature does not cover: nothing
        # here is authenticated, so it is refused like any unsigned request.
        return _error(403, "invalid_signature", "The request is not signed by Twilio.")
    if not settings.TWILIO_AUTH_TOKEN:
        # An API key cannot check Twilio's signatures: only the auth token can.
        logger.error(
            "TWILIO_AUTH_TOKEN is not set: Twilio's callbacks cannot be checked and are refused "
            "(set it besides the API key; it is used for signatures only)"
        )
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
