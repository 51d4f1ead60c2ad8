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
from recordings.playback import player_requests


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
            OpenApiParameter(
                "Authorization",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                required=True,
                description='Basic base64("token:" + Flex token), or Bearer <Flex token>',
            ),
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

    def http_method_not_allowed(
        self, request: HttpRequest, *args: Any, **kwargs: Any
    ) -> Response:
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
