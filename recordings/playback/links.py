"""Short-lived media links: what url_provider hands the player, and how the media endpoint
recognises them.

Unencrypted recordings in S3 get a presigned S3 URL. Everything else (encrypted, local files,
media still at Twilio, or ``MEDIA_LINKS_VIA_PORTAL``) gets a link to the portal's own media
endpoint carrying a random token that is stored only as its SHA-256, bound to one recording and
to the access-log row that allowed it, and expiring after ``MEDIA_LINK_TTL_SECONDS``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone

from audit.services import access_log_append
from recordings.integrations import storage
from recordings.models import MediaLink, MediaLocation, Recording


class LinkRefused(Exception):
    """A media link cannot be used; ``reason`` is the machine code for the answer and audit."""

    def __init__(self, reason: str, detail: str, link: MediaLink | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.link = link


@dataclass(frozen=True)
class IssuedLink:
    """A link handed to a player."""

    url: str
    link_id: str
    kind: str  # "presigned" or "portal"


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def link_kind(recording: Recording) -> str:
    """``presigned`` when S3 can serve the file to the player as it is, else ``portal``."""
    if (
        recording.media_location == MediaLocation.S3
        and not recording.is_encrypted
        and not settings.MEDIA_LINKS_VIA_PORTAL
    ):
        return "presigned"
    return "portal"


def media_link_issue(
    *,
    recording: Recording,
    link_id: uuid.UUID,
    base_url: str,
    identity: str = "",
    realm_user_id: str = "",
    worker_sid: str = "",
    roles: tuple[str, ...] = (),
    now: datetime | None = None,
) -> IssuedLink:
    """Make the link for an access that was just allowed (and audited under ``link_id``)."""
    ttl = settings.MEDIA_LINK_TTL_SECONDS
    if link_kind(recording) == "presigned":
        url = storage.presigned_get_url(
            bucket=recording.media_bucket, key=recording.media_key, ttl=ttl
        )
        return IssuedLink(url=url, link_id=str(link_id), kind="presigned")
    token = secrets.token_urlsafe(32)
    now = now or timezone.now()
    MediaLink.objects.create(
        link_id=link_id,
        token_hash=_token_hash(token),
        recording=recording,
        identity=identity,
        realm_user_id=realm_user_id,
        worker_sid=worker_sid,
        roles=list(roles),
        expires_at=now + timedelta(seconds=ttl),
    )
    path = reverse("media-stream", kwargs={"link_id": link_id})
    return IssuedLink(url=f"{base_url}{path}?token={token}", link_id=str(link_id), kind="portal")


def media_link_bind(*, link_id: str, access_log_sequence: int) -> None:
    """Record which access-log row allowed a portal link (written right after the link)."""
    MediaLink.objects.filter(link_id=link_id).update(access_log_sequence=access_log_sequence)


def media_link_resolve(*, link_id: uuid.UUID, token: str, now: datetime | None = None) -> MediaLink:
    """The link a player presents, checked: it exists, the token is its own (constant-time
    compare), and it has not expired. Raises LinkRefused otherwise."""
    link = MediaLink.objects.select_related("recording").filter(link_id=link_id).first()
    if link is None:
        raise LinkRefused("unknown_link", "This media link does not exist.")
    if not token or not hmac.compare_digest(link.token_hash, _token_hash(token)):
        raise LinkRefused("wrong_token", "This token does not belong to this media link.", link)
    if link.expires_at <= (now or timezone.now()):
        raise LinkRefused("expired_link", "This media link has expired.", link)
    return link


def media_link_note_fetch(*, link: MediaLink, now: datetime | None = None) -> bool:
    """Count one fetch of a link; True when it is the first (the start of a playback)."""
    now = now or timezone.now()
    with transaction.atomic():
        MediaLink.objects.filter(pk=link.pk).update(
            fetches=F("fetches") + 1,
            first_fetch_at=Coalesce(F("first_fetch_at"), now),
            last_fetch_at=now,
        )
        fetches = MediaLink.objects.values_list("fetches", flat=True).get(pk=link.pk)
    return fetches == 1


def media_link_add_bytes(*, link: MediaLink, count: int) -> None:
    """Add the bytes one answer actually sent to the link's running total."""
    if count:
        MediaLink.objects.filter(pk=link.pk).update(bytes_served=F("bytes_served") + count)


def playback_ms_sent(*, bytes_sent: int, recording: Recording) -> int | None:
    """The audio ``bytes_sent`` of ``recording`` amount to, in milliseconds (the log's detail
    holds integers, not floats): their share of the stored file times its duration, at most
    the whole duration; ``None`` when the duration or the stored size is unknown. What the
    playback report sums as listening time (an estimate: audio sent, not heard)."""
    size, duration = recording.media_size, recording.duration_seconds
    if not size or size <= 0 or duration is None:
        return None
    return min(round(bytes_sent * duration * 1000 / size), duration * 1000)


def media_links_summarize(*, now: datetime | None = None) -> int:
    """Write one ``media_playback`` audit row per expired link that was fetched, with its
    fetch count and bytes, so seeking (many range requests) costs the log one row. Returns the
    number of rows written.

    The row also keeps the audio those bytes amount to (``audio_ms_sent``, from the
    recording's duration and stored size now): the playback report sums them instead of
    looking each row's recording up again (``audit.admin.report_selectors``)."""
    now = now or timezone.now()
    written = 0
    expired = MediaLink.objects.filter(summarized_at__isnull=True, expires_at__lte=now)
    for link in expired.select_related("recording").order_by("expires_at")[:1000]:
        with transaction.atomic():
            claimed = MediaLink.objects.filter(pk=link.pk, summarized_at__isnull=True).update(
                summarized_at=now
            )
            if not claimed or not link.fetches:
                continue
            audio_ms = playback_ms_sent(bytes_sent=link.bytes_served, recording=link.recording)
            access_log_append(
                action="media_playback",
                outcome="allowed",
                reason_code="playback_summary",
                identity=link.identity,
                realm_user_id=link.realm_user_id,
                worker_sid=link.worker_sid,
                roles=link.roles,
                recording_sid=link.recording.sid,
                link_id=str(link.link_id),
                bytes_served=link.bytes_served,
                detail={
                    "fetches": link.fetches,
                    "first_fetch_at": link.first_fetch_at.isoformat()
                    if link.first_fetch_at
                    else "",
                    "last_fetch_at": link.last_fetch_at.isoformat() if link.last_fetch_at else "",
                    **({"audio_ms_sent": audio_ms} if audio_ms is not None else {}),
                },
            )
            written += 1
    return written
