"""The portal's URLs plus the benchmarks' reference views, served by the same gunicorn:

* ``/bench/empty``: the cheapest DRF view the same server can answer (the HTTP ceiling, printed
  for context);
* ``/bench/floor/url-provider`` and ``/bench/floor/webhook``: "the floor" of each hot path, the
  same unavoidable I/O as the portal's endpoint written the obvious way with the stock ORM and
  libraries (see ``/work/shared/PERFORMANCE_NOTES.md``, "How each benchmark is judged"). A
  benchmark's target is the portal's rate over its floor's, measured in the same run.

The floors are deliberately plain: no caching beyond what the portal also relies on, no raw
SQL, no batching. Do not optimise them; they define what "nobody can skip" costs.
"""

import base64
import hashlib
import secrets
from datetime import timedelta

import boto3
from botocore.config import Config
from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from twilio.request_validator import RequestValidator

from portal.urls import urlpatterns as portal_urlpatterns
from recordings.models import MediaLink, Recording, RecordingEvent

FLOOR_TOKEN_PREFIX = "bench-floor-token:"
"""Cache key prefix (plus the token's SHA-256) of the caller answer ``bench/url_provider.py``
seeds for the url_provider floor: the shape of a cached Twilio IAM answer."""

# One client per process, made at import like any sensible app (creating one costs ~5 ms).
_s3 = boto3.client(
    "s3",
    endpoint_url=settings.AWS_S3_ENDPOINT_URL,
    region_name=settings.AWS_S3_REGION_NAME,
    aws_access_key_id=settings.AWS_ACCESS_KEY_ID,
    aws_secret_access_key=settings.AWS_SECRET_ACCESS_KEY,
    config=Config(signature_version="s3v4"),
)


def floor_token_key(token: str) -> str:
    """The cache key under which the url_provider floor finds a token's caller."""
    return FLOOR_TOKEN_PREFIX + hashlib.sha256(token.encode()).hexdigest()


class EmptyView(APIView):
    """Answers ``{}`` to GET and POST: what DRF costs with nothing else to do."""

    authentication_classes: list = []
    permission_classes: list = []

    def get(self, request: Request) -> Response:
        """The ceiling for GET endpoints."""
        return Response({})

    def post(self, request: Request) -> Response:
        """The ceiling for POST endpoints."""
        return Response({})


class UrlProviderFloorView(APIView):
    """The url_provider floor: the token's cached caller from Redis (Django's cache), the
    recording row by SID, one row inserted and committed (a ``MediaLink`` for the caller), one
    presigned S3 URL, answered as ``{"media_url": ...}``.

    The row is a ``MediaLink`` rather than an ``AccessLog`` because the access log is
    append-only (a trigger refuses deletes and truncation) and hash-chained: floor rows there
    would break the portal's chain for good. A link row is the same kind of write: one row of
    about the same width, with the same number of indexes (primary key plus five).
    """

    authentication_classes: list = []
    permission_classes: list = []

    def get(self, request: Request) -> Response:
        """Answer one player request the obvious way."""
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return Response({"error": "missing_token"}, status=401)
        token = base64.b64decode(credentials).decode().partition(":")[2]
        caller = cache.get(floor_token_key(token))
        if caller is None:
            return Response({"error": "invalid_token"}, status=401)
        try:
            recording = Recording.objects.get(sid=request.query_params.get("recording_sid", ""))
        except Recording.DoesNotExist:
            return Response({"error": "recording_not_found"}, status=404)
        ttl = settings.MEDIA_LINK_TTL_SECONDS
        MediaLink.objects.create(
            token_hash=secrets.token_hex(32),
            recording=recording,
            identity=caller["identity"],
            realm_user_id=caller["realm_user_id"],
            worker_sid=caller["worker_sid"],
            roles=caller["roles"],
            expires_at=timezone.now() + timedelta(seconds=ttl),
        )
        url = _s3.generate_presigned_url(
            "get_object",
            Params={"Bucket": recording.media_bucket, "Key": recording.media_key},
            ExpiresIn=ttl,
        )
        return Response({"media_url": url}, headers={"Cache-Control": "no-store"})


@csrf_exempt
@require_POST
def webhook_floor(request: HttpRequest) -> HttpResponse:
    """The webhook floor: parse the form, check the Twilio signature with Twilio's own
    ``RequestValidator``, commit one ``RecordingEvent`` row, answer 204. A plain Django view,
    like the portal's webhook."""
    validator = RequestValidator(settings.TWILIO_AUTH_TOKEN)
    signature = request.headers.get("X-Twilio-Signature", "")
    if not validator.validate(request.build_absolute_uri(), request.POST, signature):
        return HttpResponse(status=403)
    RecordingEvent.objects.create(
        recording_sid=request.POST["RecordingSid"],
        account_sid=request.POST["AccountSid"],
        recording_status=request.POST.get("RecordingStatus", ""),
        idempotency_token=request.headers.get("I-Twilio-Idempotency-Token", ""),
        payload=request.POST.dict(),
    )
    return HttpResponse(status=204)


urlpatterns = [
    path("bench/empty", EmptyView.as_view()),
    path("bench/floor/url-provider", UrlProviderFloorView.as_view()),
    path("bench/floor/webhook", webhook_floor),
    *portal_urlpatterns,
]
