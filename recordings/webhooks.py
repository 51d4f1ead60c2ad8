"""``POST /twilio/recording-status``: Twilio's ``recordingStatusCallback``, and
``POST /twilio/taskrouter-events``: the TaskRouter Workspace's ``EventCallbackUrl``.

Both views are thin on purpose: check the signature, validate, store the raw event, queue the
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
from portal.sids import ACCOUNT_SID, RECORDING_SID, WORKSPACE_SID
from recordings import jobs
from recordings.flex import events as flex_events
from recordings.ingest import events
from recordings.ingest.signatures import CallbackRefused, callback_authenticate

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


class TwilioWebhookView(APIView):
    """A webhook Twilio posts to: the signature is the authentication (no session, no
    permission classes), answers in a fixed format, ``POST`` only."""

    authentication_classes: list = []
    permission_classes: list = []
    content_negotiation_class = FixedFormat
    # Form and JSON bodies are read raw, as they were signed; DRF parses only multipart ones.
    parser_classes = [MultiPartParser]
    http_method_names = ["post"]


class RecordingStatusView(TwilioWebhookView):
    """Twilio's ``recordingStatusCallback`` (``POST`` only)."""

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
    try:
        params = callback_authenticate(request)
    except CallbackRefused as exc:
        return _error(403, exc.code, exc.detail)
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


_TASKROUTER_EVENT = inline_serializer(
    "TaskRouterEventCallback",
    fields={
        "AccountSid": _sid_field(ACCOUNT_SID.pattern, "the configured account"),
        "WorkspaceSid": _sid_field(WORKSPACE_SID.pattern, "TWILIO_WORKSPACE_SID"),
        "EventType": serializers.CharField(help_text="e.g. task.created, reservation.accepted"),
        "Sid": serializers.CharField(required=False, help_text="the event (EV…)"),
        "ResourceType": serializers.CharField(required=False),
        "ResourceSid": serializers.CharField(required=False),
        "Timestamp": serializers.CharField(required=False, help_text="epoch seconds"),
        "TimestampMs": serializers.CharField(required=False, help_text="epoch milliseconds"),
        "TaskSid": serializers.CharField(required=False),
        "TaskAttributes": serializers.CharField(required=False, help_text="JSON object"),
        "TaskAssignmentStatus": serializers.CharField(required=False),
        "TaskChannelUniqueName": serializers.CharField(required=False),
        "TaskQueueSid": serializers.CharField(required=False),
        "TaskQueueName": serializers.CharField(required=False),
        "ReservationSid": serializers.CharField(required=False),
        "WorkerSid": serializers.CharField(required=False),
        "WorkerName": serializers.CharField(required=False),
        "WorkerAttributes": serializers.CharField(required=False, help_text="JSON object"),
    },
)


class TaskRouterEventsView(TwilioWebhookView):
    """TaskRouter's Workspace ``EventCallbackUrl`` (``POST`` only)."""

    @extend_schema(
        operation_id="taskrouter_event_callback",
        summary="TaskRouter's event callback: store the event and queue its processing",
        request={"application/x-www-form-urlencoded": _TASKROUTER_EVENT},
        parameters=[
            OpenApiParameter(
                "X-Twilio-Signature",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                required=True,
                description="Twilio's signature of the URL and form",
            ),
        ],
        responses={
            204: OpenApiResponse(description="stored (or a duplicate of one stored)"),
            400: OpenApiResponse(ERROR_SCHEMA, description="signed, but malformed"),
            403: OpenApiResponse(
                ERROR_SCHEMA,
                description="missing or bad signature, another account or workspace, or no "
                "workspace configured (TWILIO_WORKSPACE_SID)",
            ),
        },
    )
    def post(self, request: Request) -> HttpResponse:
        """Accept one TaskRouter event."""
        return taskrouter_event_accept(request)


taskrouter_events = TaskRouterEventsView.as_view()


def taskrouter_event_accept(request: HttpRequest) -> HttpResponse:
    """Accept one TaskRouter event callback: 204 stored, 403 unsigned or not the configured
    account and workspace (or no workspace configured), 400 malformed."""
    if not settings.TWILIO_WORKSPACE_SID:
        logger.warning("TaskRouter event refused: TWILIO_WORKSPACE_SID is not set")
        return _error(
            403, "flex_linkage_off", "No TaskRouter workspace is configured (TWILIO_WORKSPACE_SID)."
        )
    try:
        params = callback_authenticate(request, subaccounts=False)
    except CallbackRefused as exc:
        return _error(403, exc.code, exc.detail)
    try:
        fields = flex_events.taskrouter_event_validate(params)
    except flex_events.TaskRouterEventRejected as exc:
        return _error(400, "malformed_callback", str(exc))
    if fields.workspace_sid != settings.TWILIO_WORKSPACE_SID:
        logger.warning("TaskRouter event of workspace %s refused", fields.workspace_sid)
        return _error(403, "unknown_workspace", "This WorkspaceSid is not served here.")

    event_id, created = flex_events.taskrouter_event_record(fields=fields, params=params)
    if created:
        # Committed already; a broker that cannot take the message leaves the event pending
        # for the dispatcher, and TaskRouter still gets its 204.
        jobs.queue_taskrouter_events([event_id])
    else:
        logger.info("duplicate TaskRouter event %s ignored", fields.event_type)
    return HttpResponse(status=204)
