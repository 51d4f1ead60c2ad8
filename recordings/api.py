"""``GET /api/v1/url-provider``: the Flex Insights Player's endpoint (see docs/contract.md).

Thin: reads the request, calls ``recordings.playback.player_requests.url_provide``, writes the
answer.
"""

from __future__ import annotations

from django.conf import settings
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
from recordings.playback import player_requests

_ERROR = inline_serializer(
    "Error", fields={"error": serializers.CharField(), "detail": serializers.CharField()}
)


def public_base_url(request) -> str:
    """The portal's public origin for links: ``PUBLIC_BASE_URL`` behind a proxy."""
    return settings.PUBLIC_BASE_URL or f"{request.scheme}://{request.get_host()}"


class UrlProviderView(APIView):
    """Validate the Flex token, authorize, audit, and answer a short-lived ``media_url``."""

    authentication_classes: list = []
    permission_classes: list = []

    @extend_schema(
        operation_id="url_provider",
        summary="A short-lived link to a recording, for the Flex Insights Player",
        parameters=[
            OpenApiParameter("recording_sid", OpenApiTypes.STR, description="RE + 32 hex digits"),
            OpenApiParameter("recording", OpenApiTypes.STR, description="alias of recording_sid"),
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
            400: OpenApiResponse(_ERROR, description="missing or malformed recording SID"),
            401: OpenApiResponse(_ERROR, description="missing, invalid or expired Flex token"),
            403: OpenApiResponse(_ERROR, description="no access rule allows this caller"),
            404: OpenApiResponse(_ERROR, description="no such recording, or deleted"),
            503: OpenApiResponse(_ERROR, description="Twilio or the storage cannot be reached"),
        },
    )
    def get(self, request: Request) -> Response:
        """Answer one player request (always JSON, never cached)."""
        answer = player_requests.url_provide(
            authorization=request.headers.get("Authorization"),
            recording_sid=request.query_params.get("recording_sid")
            or request.query_params.get("recording"),
            base_url=public_base_url(request),
            context=player_requests.RequestContext(**request_audit_fields(request)),
        )
        return Response(answer.body, status=answer.status, headers={"Cache-Control": "no-store"})


url_provider = UrlProviderView.as_view()
