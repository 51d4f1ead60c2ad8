"""The portal's media endpoint: what a ``media_url`` issued by url_provider points to.

Serves the (decrypted) recording whole or by ``Range`` (206), for the player's ``<audio>`` element
on another origin. Thin: ``recordings.playback.player_requests.media_serve`` decides and audits.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.views import APIView

from audit.grants import MAX_DURATION_HOURS
from audit.models import GrantScope
from portal.http import request_audit_fields
from portal.negotiation import FixedFormat
from portal.openapi import ERROR_SCHEMA
from recordings.media.body import CONTENT_TYPES
from recordings.models import MediaLink
from recordings.playback import access_requests, links, player_requests


def _counted(chunks: Iterator[bytes], link: MediaLink) -> Iterator[bytes]:
    """Pass the chunks on, and add what was actually sent to the link's byte count (also when
    the player hangs up mid-way, as it does when seeking)."""
    sent = 0
    try:
        for chunk in chunks:
            sent += len(chunk)
            yield chunk
    finally:
        links.media_link_add_bytes(link=link, count=sent)


_MEDIA_TYPES = sorted({*CONTENT_TYPES.values(), "application/octet-stream"})


def _media(description: str) -> dict[tuple[int, str], OpenApiResponse]:
    return {
        (status, media_type): OpenApiResponse(OpenApiTypes.BINARY, description=description)
        for status in (200, 206)
        for media_type in _MEDIA_TYPES
    }


class MediaStreamView(APIView):
    """The media endpoint (``GET``/``HEAD`` only; the CORS preflight is answered before it)."""

    authentication_classes: list = []
    permission_classes: list = []
    content_negotiation_class = FixedFormat
    http_method_names = ["get", "head"]

    @extend_schema(
        operation_id="media_stream",
        summary="A recording's media, for the player's <audio> element (a url_provider link)",
        parameters=[
            OpenApiParameter(
                "token", OpenApiTypes.STR, required=True, description="the link's token"
            ),
            OpenApiParameter(
                "Range",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                description="one byte range, e.g. bytes=0-1023 (206)",
            ),
        ],
        responses={
            **_media("the media, whole (200) or the requested range (206)"),
            403: OpenApiResponse(ERROR_SCHEMA, description="unknown, wrong or expired link"),
            (404, "application/json"): OpenApiResponse(
                ERROR_SCHEMA, description="the recording or its media is gone"
            ),
            (404, "text/html"): OpenApiResponse(
                OpenApiTypes.STR, description="not a link at all (the id is not a UUID)"
            ),
            409: OpenApiResponse(ERROR_SCHEMA, description="the stored file failed verification"),
            416: OpenApiResponse(ERROR_SCHEMA, description="the range starts past the end"),
            500: OpenApiResponse(ERROR_SCHEMA, description="unusable encryption details"),
            503: OpenApiResponse(ERROR_SCHEMA, description="storage, Twilio or a key unavailable"),
        },
    )
    def get(self, request: Request, link_id: uuid.UUID) -> HttpResponseBase:
        """Stream a recording for a valid link (``HEAD``: the same headers, no body)."""
        return _stream(request, link_id)


media_stream = MediaStreamView.as_view()


def _stream(request: Request, link_id: uuid.UUID) -> HttpResponseBase:
    """Stream a recording for a valid link: 200 whole, 206 a range, 403 a bad link."""
    answer = player_requests.media_serve(
        link_id=link_id,
        token=request.GET.get("token", ""),
        range_header=request.headers.get("Range"),
        context=player_requests.RequestContext(**request_audit_fields(request)),
    )
    response: HttpResponseBase
    if answer.served is None:
        response = JsonResponse(answer.error or {}, status=answer.status)
        if answer.size is not None:
            response["Content-Range"] = f"bytes */{answer.size}"
    else:
        body = answer.served.body
        if request.method == "HEAD":
            response = HttpResponse(status=answer.status)  # the body is never read
        else:
            response = StreamingHttpResponse(
                _counted(body.chunks, answer.served.link), status=answer.status
            )
        response["Content-Type"] = body.content_type
        response["Content-Length"] = str(body.length)
        if body.partial:
            response["Content-Range"] = body.content_range
    response["Accept-Ranges"] = "bytes"
    response["Cache-Control"] = "no-store"
    return response


def demo_player(request: HttpRequest) -> HttpResponse:
    """A page that behaves like the Flex Insights Player, for the demo and the browser tests.

    Served only when ``DEMO_PLAYER_ENABLED`` (embedded mode); ``?portal=`` points it at a portal
    on another origin, as Flex is.
    """
    if not settings.DEMO_PLAYER_ENABLED:
        raise Http404("the demo player is off")
    return render(
        request,
        "player/demo.html",
        {
            "portal_origin": request.GET.get("portal")
            or f"{request.scheme}://{request.get_host()}",
            "token": request.GET.get("token", ""),
            "recording_sid": request.GET.get("recording_sid", ""),
        },
    )


def access_requests_page(request: HttpRequest) -> HttpResponse:
    """The Flex user's access-request page (``/access-requests/``): ask for a recording, a
    call's or a team's recordings with the player's Flex token, a reason and a duration; see
    one's requests. ``recordings.playback.access_requests`` decides and audits."""
    context = player_requests.RequestContext(**request_audit_fields(request))
    data = request.POST if request.method == "POST" else request.GET
    result = None
    if request.method == "POST":
        if data.get("action") == "list":
            result = access_requests.access_requests_show(
                token=data.get("token", ""), context=context
            )
        else:
            result = access_requests.access_request_submit(
                token=data.get("token", ""),
                scope=data.get("scope", ""),
                scope_value=data.get("scope_value", ""),
                reason=data.get("reason", ""),
                duration_hours=data.get("duration_hours", ""),
                context=context,
            )
    response = render(
        request,
        "access_requests/page.html",
        {
            "result": result,
            "token": data.get("token", ""),
            "scope": data.get("scope", "recording"),
            "scope_value": data.get("scope_value", data.get("recording_sid", "")),
            "reason": "" if result is not None and result.filed else data.get("reason", ""),
            "duration_hours": data.get("duration_hours", "8"),
            "scopes": GrantScope.choices,
            "max_hours": MAX_DURATION_HOURS,
        },
        status=result.status if result is not None else 200,
    )
    response["Cache-Control"] = "no-store"
    # Under the portal-wide no-referrer, browsers post this page's form with Origin: null,
    # which the CSRF check refuses (as for the admin: portal.middleware).
    response["Referrer-Policy"] = "same-origin"
    return response
