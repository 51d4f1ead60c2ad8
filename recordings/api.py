"""``GET /api/v1/url-provider``: the Flex Insights Player's endpoint (see docs/contract.md).

Thin: reads the request, calls ``recordings.playback.player_requests.url_provide``, writes the
answer.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.http import request_audit_fields
from portal.negotiation import FixedFormat
from portal.openapi import ERROR_SCHEMA
from portal.sids import RECORDING_SID
from recordings.playback import player_requests, waveform_requests


def public_base_url(request) -> str:
    """The portal's public origin for links: ``PUBLIC_BASE_URL`` behind a proxy."""
    return settings.PUBLIC_BASE_URL or f"{request.scheme}://{request.get_host()}"


def _recording_sid(request: HttpRequest) -> str | None:
    return request.GET.get("recording_sid") or request.GET.get("recording")


def _answered(answer: player_requests.Answer) -> Response:
    headers = {"Cache-Control": "no-store"}
    if answer.status in (204, 405):
        headers["Allow"] = ", ".join(player_requests.ALLOWED_METHODS)
    return Response(answer.body or None, status=answer.status, headers=headers)


# What every player endpoint documents alike: the Flex token header.
FLEX_AUTHORIZATION = OpenApiParameter(
    "Authorization",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=True,
    description='Basic base64("token:" + Flex token), or Bearer <Flex token>',
)


class UrlProviderView(APIView):
    """Validate the Flex token, authorize, audit, and answer a short-lived ``media_url``.

    Every answer is JSON and audited, whatever the method or ``Accept`` header: only the CORS
    preflight (answered by django-cors-headers before any view) writes no row.
    """

    authentication_classes: list = []
    permission_classes: list = []
    content_negotiation_class = FixedFormat

    @extend_schema(
        operation_id="url_provider",
        summary="A short-lived link to a recording, for the Flex Insights Player",
        parameters=[
            OpenApiParameter(
                "recording_sid",
                OpenApiTypes.STR,
                required=True,
                pattern=f"^{RECORDING_SID.pattern}$",
                description="The recording: RE + 32 hex digits",
            ),
            OpenApiParameter(
                "recording",
                OpenApiTypes.STR,
                pattern=f"^{RECORDING_SID.pattern}$",
                deprecated=True,
                description="Alias of recording_sid, read when recording_sid is absent",
            ),
            FLEX_AUTHORIZATION,
        ],
        responses={
            200: inline_serializer("MediaUrl", fields={"media_url": serializers.URLField()}),
            400: OpenApiResponse(ERROR_SCHEMA, description="missing or malformed recording SID"),
            401: OpenApiResponse(
                ERROR_SCHEMA, description="missing, invalid or expired Flex token"
            ),
            403: OpenApiResponse(ERROR_SCHEMA, description="no access rule allows this caller"),
            404: OpenApiResponse(ERROR_SCHEMA, description="no such recording, or deleted"),
            503: OpenApiResponse(
                ERROR_SCHEMA, description="Twilio or the storage cannot be reached"
            ),
        },
    )
    def get(self, request: Request) -> Response:
        """Answer one player request (always JSON, never cached)."""
        return self._provide(request, issue_link=True)

    def head(self, request: Request) -> Response:
        """Answer as ``GET`` would, without a body and so without issuing a link."""
        return self._provide(request, issue_link=False)

    def _provide(self, request: Request, *, issue_link: bool) -> Response:
        answer = player_requests.url_provide(
            authorization=request.headers.get("Authorization"),
            recording_sid=_recording_sid(request),
            base_url=public_base_url(request),
            context=player_requests.RequestContext(**request_audit_fields(request)),
            issue_link=issue_link,
        )
        return _answered(answer)

    def options(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Response:
        """An ``OPTIONS`` that is not a CORS preflight: 204 with ``Allow``, audited."""
        return self._other_method(request)

    def http_method_not_allowed(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Response:
        """Any other method: 405 with ``Allow``, audited (DRF's own 405 would not be)."""
        return self._other_method(request)

    def _other_method(self, request: HttpRequest) -> Response:
        answer = player_requests.url_provide_other_method(
            method=request.method or "",
            recording_sid=_recording_sid(request),
            context=player_requests.RequestContext(**request_audit_fields(request)),
        )
        return _answered(answer)


url_provider = UrlProviderView.as_view()


# --- GET /api/v1/recordings/RE…/waveform ---------------------------------------------------

_SEGMENT = inline_serializer(
    "SpeechSegment",
    fields={
        "start": serializers.FloatField(help_text="seconds from the start"),
        "end": serializers.FloatField(),
        "kind": serializers.ChoiceField(
            choices=["agent", "customer", "cross_talk", "silence", "speech"],
            help_text="speech: someone spoke on a mono recording (no parties)",
        ),
    },
)
_PEAKS = inline_serializer(
    "AudiowaveformV2",
    fields={
        "version": serializers.IntegerField(),
        "channels": serializers.IntegerField(),
        "sample_rate": serializers.IntegerField(),
        "samples_per_pixel": serializers.IntegerField(),
        "bits": serializers.IntegerField(),
        "length": serializers.IntegerField(help_text="pixels"),
        "data": serializers.ListField(
            child=serializers.IntegerField(),
            help_text="per pixel, min and max of each channel in turn",
        ),
    },
)


def _figure(help_text: str = "") -> serializers.FloatField:
    return serializers.FloatField(allow_null=True, help_text=help_text)


_SUMMARY = inline_serializer(
    "SpeechSummary",
    fields={
        "duration_seconds": serializers.FloatField(),
        "channels": serializers.IntegerField(),
        "channel_roles": serializers.ListField(child=serializers.CharField()),
        "silence_seconds": serializers.FloatField(),
        "silence_ratio": _figure("share of the recording nobody spoke"),
        "longest_silence_seconds": serializers.FloatField(),
        "agent_talk_seconds": _figure(),
        "customer_talk_seconds": _figure(),
        "agent_talk_ratio": _figure("agent's share of the time anyone spoke"),
        "customer_talk_ratio": _figure(),
        "cross_talk_seconds": _figure(),
        "cross_talk_ratio": _figure("share of the recording both spoke"),
        "interruptions": serializers.IntegerField(allow_null=True),
        "interruptions_by_agent": serializers.IntegerField(allow_null=True),
        "interruptions_by_customer": serializers.IntegerField(allow_null=True),
    },
)


def _waveform_answered(answer: waveform_requests.WaveformAnswer) -> Response:
    headers = {"Cache-Control": "no-store"}
    if answer.status in (204, 405):
        headers["Allow"] = ", ".join(waveform_requests.ALLOWED_METHODS)
    return Response(answer.body or None, status=answer.status, headers=headers)


class WaveformView(APIView):
    """A recording's peaks (audiowaveform v2), speech segments and summary, for a Flex plugin
    or another player: the same token, CORS, rules and audit as url_provider."""

    authentication_classes: list = []
    permission_classes: list = []
    content_negotiation_class = FixedFormat

    @extend_schema(
        operation_id="recording_waveform",
        summary="A recording's waveform and speech activity",
        parameters=[
            OpenApiParameter(
                "recording_sid",
                OpenApiTypes.STR,
                OpenApiParameter.PATH,
                pattern=f"^{RECORDING_SID.pattern}$",
                description="The recording: RE + 32 hex digits",
            ),
            FLEX_AUTHORIZATION,
        ],
        responses={
            200: inline_serializer(
                "Waveform",
                fields={
                    "peaks": _PEAKS,
                    "segments": serializers.ListField(child=_SEGMENT),
                    "summary": _SUMMARY,
                },
            ),
            400: OpenApiResponse(ERROR_SCHEMA, description="malformed recording SID"),
            401: OpenApiResponse(
                ERROR_SCHEMA, description="missing, invalid or expired Flex token"
            ),
            403: OpenApiResponse(ERROR_SCHEMA, description="no access rule allows this caller"),
            404: OpenApiResponse(
                ERROR_SCHEMA,
                description="no such recording, deleted, or no waveform yet (waveform_not_ready)",
            ),
            503: OpenApiResponse(
                ERROR_SCHEMA, description="Twilio or the storage cannot be reached"
            ),
        },
    )
    def get(self, request: Request, recording_sid: str) -> Response:
        """Answer one waveform request (always JSON, never cached)."""
        return self._provide(request, recording_sid, with_body=True)

    def head(self, request: Request, recording_sid: str) -> Response:
        """Decide and audit as ``GET`` would, without a body."""
        return self._provide(request, recording_sid, with_body=False)

    def _provide(self, request: Request, recording_sid: str, *, with_body: bool) -> Response:
        answer = waveform_requests.waveform_provide(
            authorization=request.headers.get("Authorization"),
            recording_sid=recording_sid,
            context=player_requests.RequestContext(**request_audit_fields(request)),
            with_body=with_body,
        )
        return _waveform_answered(answer)

    def options(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Response:
        """An ``OPTIONS`` that is not a CORS preflight: 204 with ``Allow``, audited."""
        return self._other_method(request, kwargs.get("recording_sid", ""))

    def http_method_not_allowed(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Response:
        """Any other method: 405 with ``Allow``, audited."""
        return self._other_method(request, kwargs.get("recording_sid", ""))

    def _other_method(self, request: HttpRequest, recording_sid: str) -> Response:
        answer = waveform_requests.waveform_other_method(
            method=request.method or "",
            recording_sid=recording_sid,
            context=player_requests.RequestContext(**request_audit_fields(request)),
        )
        return _waveform_answered(answer)


recording_waveform = WaveformView.as_view()
