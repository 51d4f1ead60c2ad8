"""Writing the portal's ``url_provider`` into Flex Insights conversations.

Flex Insights plays a recording through the portal only when the conversation's TaskRouter task
says so: a ``VoiceRecording`` item with a ``url_provider`` in ``conversations.media`` (or, with
``FLEX_MEDIA_LEVEL=reservation``, in ``reservation_attributes.<WR…>.media``). Custom media
*replace* Insights' default recording, so the list must hold every recording of the conversation
the portal knows, and other writers (Flex plugins, Studio, Functions) change the same attributes.

Hence read-merge-write: read the task with its ``ETag``, merge the portal's items into what is
there (every other attribute and every item the portal did not write kept exactly), write with
``If-Match``; a 412 means someone wrote in between, so read and merge again. The merge is pure
(:func:`attributes_with_media`), so its guarantees are property-tested; the orchestration
(:func:`flex_media_attach`) keeps the state of each ``RecordingTaskLink`` and writes an
access-log row for each attachment and each failure, so an officer can show when a recording
was put into Flex and by which process.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from audit.models import AccessAction, AccessOutcome
from audit.services import access_log_append
from recordings import jobs
from recordings.integrations import twilio_api
from recordings.models import (
    FlexReservation,
    FlexTask,
    MediaAttachState,
    Recording,
    RecordingStatus,
    RecordingTaskLink,
)

logger = logging.getLogger(__name__)

MEDIA_TYPE = "VoiceRecording"
URL_PROVIDER_PATH = "/api/v1/url-provider"
DUAL_CHANNEL_LABELS = ("customer", "others")
"""Twilio's labels for a dual-channel recording: left the customer, right the agent(s)."""
ACTOR = "system:flex"
"""The access-log identity of the process that writes into Flex."""
LEVELS = ("task", "reservation", "off")
PRECONDITION_RETRIES = 5
"""Reads and merges per task after a 412 before the attempt counts as transient."""
SWEEP_LEASE = timedelta(minutes=5)
"""How long a link the sweep queued is left alone by the next sweep (its message is in flight)."""
SWEEP_BATCH = 50
ACCEPTED_STATUSES = ("accepted", "wrapping", "completed")
NO_RESERVATION = "no accepted reservation of the task is known yet"
NOT_PLAYABLE = "the recording cannot be played (deleted by the portal, absent or failed)"


class MediaMergeError(ValueError):
    """The task's attributes have a shape the portal cannot add to without losing something
    (e.g. ``conversations.media`` is not a list): left as it is, and shown as a failure."""


class FlexMediaNotConfigured(Exception):
    """A setting the attachment needs is missing; the message names it."""


# --- Pure parts ---------------------------------------------------------------------------------


def url_provider_url(*, recording_sid: str, base_url: str) -> str:
    """The url_provider Flex Insights calls for ``recording_sid`` (the contract's URL)."""
    return (
        f"{base_url.rstrip('/')}{URL_PROVIDER_PATH}?{urlencode({'recording_sid': recording_sid})}"
    )


def epoch_ms(moment: datetime) -> int:
    """``moment`` as whole milliseconds since the epoch (Insights' ``start_time``)."""
    return int(moment.timestamp() * 1000)


def media_item(recording: Recording, base_url: str) -> dict[str, Any]:
    """The ``conversations.media`` item for ``recording``: ``VoiceRecording`` with the portal's
    url_provider, the recording's start in epoch milliseconds, and Twilio's channel labels for a
    dual-channel recording (mono recordings carry none: the labels name the two channels)."""
    started = recording.start_time or recording.date_created or recording.created_at
    item: dict[str, Any] = {
        "type": MEDIA_TYPE,
        "url_provider": url_provider_url(recording_sid=recording.sid, base_url=base_url),
        "start_time": epoch_ms(started),
    }
    if recording.channels == 2:
        item["channels"] = list(DUAL_CHANNEL_LABELS)
    return item


def _provider_prefix(url_provider: str) -> str:
    return url_provider.split("?", 1)[0] + "?"


def _is_ours(item: Any, prefixes: frozenset[str]) -> bool:
    """An item the portal wrote: its url_provider is the portal's endpoint (same origin)."""
    if not isinstance(item, dict):
        return False
    provider = item.get("url_provider")
    return isinstance(provider, str) and any(provider.startswith(p) for p in prefixes)


def _start_key(item: Mapping[str, Any]) -> tuple[int, int, str]:
    start = item.get("start_time")
    if isinstance(start, int) and not isinstance(start, bool):
        return (0, start, str(item.get("url_provider")))
    return (1, 0, str(item.get("url_provider")))


def media_list_merge(existing: Any, items: Sequence[Mapping[str, Any]], *, where: str) -> list[Any]:
    """``existing`` (a media list as found, or None) with the portal's ``items`` merged in.

    Items the portal did not write stay exactly as they are, in their order. The portal's items
    (found by their url_provider) form one block in start order, at the place of the first one
    already there (at the end when there was none); an item for a recording already listed
    replaces it (fresher facts), so a recording never appears twice, and a recording listed
    before stays listed. ``where`` names the list in the error for an unusable shape.
    """
    if existing is None:
        existing = []
    if not isinstance(existing, list):
        raise MediaMergeError(f"{where} is a {type(existing).__name__}, not a list")
    if not items:
        return copy.deepcopy(existing)
    prefixes = frozenset(_provider_prefix(str(item["url_provider"])) for item in items)
    ours: dict[str, dict[str, Any]] = {}
    for item in existing:
        if _is_ours(item, prefixes):
            ours[item["url_provider"]] = copy.deepcopy(item)
    for item in items:
        ours[str(item["url_provider"])] = copy.deepcopy(dict(item))
    block = sorted(ours.values(), key=_start_key)
    merged: list[Any] = []
    placed = False
    for item in existing:
        if _is_ours(item, prefixes):
            if not placed:
                merged.extend(block)
                placed = True
            continue
        merged.append(copy.deepcopy(item))
    if not placed:
        merged.extend(block)
    return merged


def _object(parent: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = parent.get(key)
    if value is None:
        value = parent[key] = {}
    if not isinstance(value, dict):
        raise MediaMergeError(f"{where} is a {type(value).__name__}, not an object")
    return value


def attributes_with_media(
    attributes: Mapping[str, Any],
    items: Sequence[Mapping[str, Any]],
    *,
    level: str,
    reservation_sids: Iterable[str] = (),
) -> dict[str, Any]:
    """A copy of a task's ``attributes`` with the portal's media ``items`` merged in
    (:func:`media_list_merge`): under ``conversations.media`` at ``level="task"``, under
    ``reservation_attributes.<WR…>.media`` for each of ``reservation_sids`` at
    ``level="reservation"``, nowhere at ``level="off"``. Every other attribute is kept exactly;
    ``attributes`` itself is not changed. Raises :class:`MediaMergeError` when a container on
    the way is not an object or the list is not a list."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, not {level!r}")
    result = copy.deepcopy(dict(attributes))
    if level == "off" or not items:
        return result
    if level == "task":
        conversations = _object(result, "conversations", "conversations")
        conversations["media"] = media_list_merge(
            conversations.get("media"), items, where="conversations.media"
        )
        return result
    sids = list(reservation_sids)
    if not sids:
        return result
    per_reservation = _object(result, "reservation_attributes", "reservation_attributes")
    for sid in sids:
        where = f"reservation_attributes.{sid}"
        entry = _object(per_reservation, sid, where)
        entry["media"] = media_list_merge(entry.get("media"), items, where=f"{where}.media")
    return result


def reservation_for(
    started: datetime | None, reservations: Sequence[FlexReservation]
) -> FlexReservation | None:
    """The accepted reservation whose worker's leg a recording that ``started`` then belongs to:
    the last one accepted at or before the start (a transfer hands the call on), else the first
    one (the recording began while the task waited); without a start, the last one."""
    accepted = sorted(
        (r for r in reservations if r.accepted_at or r.status in ACCEPTED_STATUSES),
        key=lambda r: (r.accepted_at or r.created_at_twilio or timezone.now(), r.pk),
    )
    if not accepted:
        return None
    if started is None:
        return accepted[-1]
    before = [r for r in accepted if r.accepted_at is not None and r.accepted_at <= started]
    return before[-1] if before else accepted[0]


# --- Orchestration ------------------------------------------------------------------------------


@dataclass
class AttachSummary:
    """What one :func:`flex_media_attach` call did, link ids by outcome; ``retry_in`` is the
    shortest countdown (seconds) before links left pending are due again."""

    attached: list[int] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)
    task_gone: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    off: list[int] = field(default_factory=list)
    retry_in: int | None = None

    def note_retry(self, link_ids: Sequence[int], countdown: int) -> None:
        """Remember links that Twilio could not take now, and when to try them again."""
        self.pending.extend(link_ids)
        self.retry_in = countdown if self.retry_in is None else min(self.retry_in, countdown)


def public_base_url() -> str:
    """The origin written into url_providers: ``PUBLIC_BASE_URL``. No request tells it here,
    and a guessed origin would send Flex Insights to the wrong place, so unset is an error."""
    base = settings.PUBLIC_BASE_URL
    if not base:
        raise FlexMediaNotConfigured(
            "PUBLIC_BASE_URL is not set: the url_provider written into Flex must name the "
            "portal's public origin (scheme and host, as Flex users' browsers reach it)"
        )
    return base


def _audit(
    link: RecordingTaskLink, *, outcome: str, reason_code: str, detail: dict[str, Any]
) -> None:
    access_log_append(
        action=AccessAction.FLEX_MEDIA_ATTACH,
        outcome=outcome,
        reason_code=reason_code,
        identity=ACTOR,
        recording_sid=link.recording.sid,
        detail={"task_sid": link.task.sid, **detail},
    )


def _audit_errors(
    batch: Sequence[RecordingTaskLink], *, reason_code: str, error: str, detail: dict[str, Any]
) -> None:
    for link in batch:
        _audit(
            link,
            outcome=AccessOutcome.ERROR,
            reason_code=reason_code,
            detail={**detail, "error": error[:300]},
        )


def _mark(links: Sequence[RecordingTaskLink], **fields: Any) -> None:
    RecordingTaskLink.objects.filter(pk__in=[link.pk for link in links]).update(**fields)


def _playable(recording: Recording) -> bool:
    """Whether url_provider can serve the recording: not deleted by the portal, and with
    media (Twilio's ``deleted`` status is fine: the portal may hold the archived copy)."""
    return (
        recording.soft_deleted_at is None
        and recording.hard_deleted_at is None
        and recording.status not in (RecordingStatus.ABSENT, RecordingStatus.FAILED)
    )


def _items_for(
    task: FlexTask, batch: Sequence[RecordingTaskLink], base_url: str, level: str
) -> list[tuple[list[dict[str, Any]], list[str]]]:
    """What to write for ``task``: the batch's recordings plus those already attached (so a
    writer that dropped them gets them back), as (items, reservation SIDs) groups. At task
    level one group; at reservation level one per reservation (empty when none is accepted)."""
    attached = RecordingTaskLink.objects.filter(
        task=task, attach_state=MediaAttachState.ATTACHED
    ).exclude(pk__in=[link.pk for link in batch])
    recordings = [link.recording for link in batch] + [
        link.recording for link in attached.select_related("recording")
    ]
    recordings = [r for r in recordings if _playable(r)]
    if level == "task":
        return [([media_item(r, base_url) for r in recordings], [])]
    reservations = list(task.reservations.all())
    groups: dict[str, list[dict[str, Any]]] = {}
    for recording in recordings:
        reservation = reservation_for(recording.start_time, reservations)
        if reservation is not None:
            groups.setdefault(reservation.sid, []).append(media_item(recording, base_url))
    return [(items, [sid]) for sid, items in groups.items()]


def _merged(
    attributes: Mapping[str, Any],
    groups: Sequence[tuple[list[dict[str, Any]], list[str]]],
    level: str,
) -> dict[str, Any]:
    merged = dict(attributes)
    for items, reservation_sids in groups:
        merged = attributes_with_media(
            merged, items, level=level, reservation_sids=reservation_sids
        )
    return merged


def _write(workspace_sid: str, task_sid: str, groups: Any, level: str) -> tuple[bool, int]:
    """Read-merge-write until Twilio takes it; (whether anything was written, 412s seen).
    A write is skipped when the merge changes nothing (the media are already there)."""
    conflicts = 0
    while True:
        snapshot = twilio_api.taskrouter_task_fetch(workspace_sid=workspace_sid, task_sid=task_sid)
        merged = _merged(snapshot.attributes, groups, level)
        if merged == snapshot.attributes:
            return False, conflicts
        try:
            twilio_api.taskrouter_task_update_attributes(
                workspace_sid=workspace_sid,
                task_sid=task_sid,
                attributes=merged,
                if_match=snapshot.etag,
            )
        except twilio_api.TwilioPreconditionFailed:
            conflicts += 1
            if conflicts > PRECONDITION_RETRIES:
                raise
            logger.info("task %s changed while attaching media; reading it again", task_sid)
            continue
        return True, conflicts


def _attach_task(
    task: FlexTask, batch: list[RecordingTaskLink], summary: AttachSummary, *, level: str
) -> None:
    now = timezone.now()
    attempts = max(link.attach_attempts for link in batch) + 1
    _mark(batch, attach_attempts=F("attach_attempts") + 1)
    workspace_sid = task.workspace_sid or settings.TWILIO_WORKSPACE_SID
    detail: dict[str, Any] = {"level": level, "attempt": attempts}

    def fail(state: str, error: str, reason: str) -> None:
        _mark(batch, attach_state=state, attach_error=error[:2000], next_attempt_at=now)
        _audit_errors(batch, reason_code=reason, error=error, detail=detail)
        (summary.task_gone if state == MediaAttachState.TASK_GONE else summary.failed).extend(
            link.pk for link in batch
        )
        logger.warning("Flex media for task %s: %s", task.sid, error)

    recordings = [link.recording for link in batch]
    try:
        base_url = public_base_url()
        groups = _items_for(task, batch, base_url, level)
        if not groups or not any(items for items, _ in groups):
            if level == "reservation" and any(_playable(r) for r in recordings):
                # The reservation events may still be on their way: like Twilio being busy.
                _transient(task, batch, summary, attempts, NO_RESERVATION, detail)
                return
            deleted = all(r.soft_deleted_at or r.hard_deleted_at for r in recordings)
            fail(
                MediaAttachState.FAILED,
                NOT_PLAYABLE,
                "recording_deleted" if deleted else "no_media",
            )
            return
        written, conflicts = _write(workspace_sid, task.sid, groups, level)
    except FlexMediaNotConfigured as exc:
        fail(MediaAttachState.FAILED, str(exc), "not_configured")
        return
    except twilio_api.TwilioNotConfigured as exc:
        fail(MediaAttachState.FAILED, str(exc), "not_configured")
        return
    except MediaMergeError as exc:
        fail(MediaAttachState.FAILED, f"task attributes left unchanged: {exc}", "bad_attributes")
        return
    except twilio_api.TwilioNotFound as exc:
        FlexTask.objects.filter(pk=task.pk, deleted_at__isnull=True).update(deleted_at=now)
        fail(MediaAttachState.TASK_GONE, str(exc), "task_gone")
        return
    except twilio_api.TwilioUnavailable as exc:
        _transient(task, batch, summary, attempts, str(exc), detail)
        return
    except twilio_api.TwilioPreconditionFailed as exc:
        _transient(task, batch, summary, attempts, f"{exc} (kept changing)", detail)
        return
    except twilio_api.TwilioRejected as exc:
        code = f" (Twilio error {exc.code})" if exc.code else ""
        fail(MediaAttachState.FAILED, f"{exc}{code}", "twilio_rejected")
        return
    _mark(
        batch,
        attach_state=MediaAttachState.ATTACHED,
        attached_at=now,
        attach_error="",
        next_attempt_at=now,
    )
    for link in batch:
        _audit(
            link,
            outcome=AccessOutcome.ALLOWED,
            reason_code="attached" if written else "already_present",
            detail={**detail, "conflicts": conflicts},
        )
    summary.attached.extend(link.pk for link in batch)


def _transient(
    task: FlexTask,
    batch: Sequence[RecordingTaskLink],
    summary: AttachSummary,
    attempts: int,
    error: str,
    detail: dict[str, Any],
) -> None:
    """Twilio could not take the write now (429, 5xx, timeout, repeated 412s, no accepted
    reservation yet): pending again with backoff, until ``jobs.MAX_RETRIES`` attempts make it
    ``failed``. Each such attempt is an ``error`` row, so the log shows the retries."""
    if attempts > jobs.MAX_RETRIES:
        error = f"{error} (gave up after {attempts} attempts)"
        _mark(batch, attach_state=MediaAttachState.FAILED, attach_error=error[:2000])
        summary.failed.extend(link.pk for link in batch)
        reason = "gave_up"
    else:
        countdown = jobs.retry_delay(attempts)
        _mark(
            batch,
            attach_state=MediaAttachState.PENDING,
            attach_error=error[:2000],
            next_attempt_at=timezone.now() + timedelta(seconds=countdown),
        )
        summary.note_retry([link.pk for link in batch], countdown)
        reason = "retry_later"
        detail = {**detail, "retry_in": countdown}
    _audit_errors(batch, reason_code=reason, error=error, detail=detail)
    logger.warning("Flex media for task %s not written yet: %s", task.sid, error)


def flex_media_attach(*, link_ids: Sequence[int]) -> AttachSummary:
    """Write the recordings of ``link_ids`` into their tasks' ``conversations.media`` (or the
    reservations' attributes, as ``FLEX_MEDIA_LEVEL`` says), one read-merge-write per task.

    Each link ends ``attached``, ``pending`` (Twilio unavailable: due again after a backoff,
    see ``summary.retry_in``), ``task_gone`` (404: not retried), ``failed`` (Twilio refused,
    or a setting is missing; the error is kept) or ``off`` (``FLEX_MEDIA_LEVEL=off``: nothing
    written). Links already attached are written again only if their item is missing.
    """
    summary = AttachSummary()
    links = list(
        RecordingTaskLink.objects.filter(pk__in=list(link_ids))
        .select_related("recording", "task")
        .order_by("task_id", "recording__start_time", "pk")
    )
    level = settings.FLEX_MEDIA_LEVEL
    if level == "off":
        # Links already attached (or whose task is gone) keep saying so.
        waiting = [
            link
            for link in links
            if link.attach_state not in (MediaAttachState.ATTACHED, MediaAttachState.TASK_GONE)
        ]
        _mark(waiting, attach_state=MediaAttachState.OFF, attach_error="")
        summary.off.extend(link.pk for link in waiting)
        return summary
    by_task: dict[int, list[RecordingTaskLink]] = {}
    for link in links:
        if link.attach_state == MediaAttachState.TASK_GONE:
            summary.task_gone.append(link.pk)
            continue
        by_task.setdefault(link.task_id, []).append(link)
    for batch in by_task.values():
        _attach_task(batch[0].task, batch, summary, level=level)
    return summary


def flex_media_reset(*, link_ids: Iterable[int]) -> int:
    """Make links due now with a fresh attempt count (the admin's "Attach to Flex again", the
    command); answers how many. A task that was gone is asked again too: it may be back."""
    return RecordingTaskLink.objects.filter(pk__in=list(link_ids)).update(
        attach_state=MediaAttachState.PENDING,
        attach_attempts=0,
        attach_error="",
        next_attempt_at=timezone.now(),
    )


def links_due(*, now: datetime | None = None) -> Any:
    """Links waiting to be written whose time has come (the periodic sweep's work)."""
    return RecordingTaskLink.objects.filter(
        attach_state=MediaAttachState.PENDING, next_attempt_at__lte=now or timezone.now()
    ).order_by("next_attempt_at", "pk")


def flex_media_sweep(*, limit: int = 1000) -> int:
    """Queue due pending links (a lost message, a broker outage, a retry's countdown passed),
    ``SWEEP_BATCH`` to a message; answers how many were queued. Queued links are left alone for
    ``SWEEP_LEASE`` so that the next sweep does not queue them again while they run."""
    if settings.FLEX_MEDIA_LEVEL == "off":
        return 0
    due = list(links_due().values_list("pk", flat=True)[:limit])
    queued = 0
    for start in range(0, len(due), SWEEP_BATCH):
        batch = due[start : start + SWEEP_BATCH]
        RecordingTaskLink.objects.filter(
            pk__in=batch, attach_state=MediaAttachState.PENDING
        ).update(next_attempt_at=timezone.now() + SWEEP_LEASE)
        if not jobs.queue_flex_media_attach(batch):
            RecordingTaskLink.objects.filter(pk__in=batch).update(next_attempt_at=timezone.now())
            break
        queued += len(batch)
    return queued


def links_not_attached(*, since: datetime) -> Any:
    """Links of recordings started (or created) since ``since`` that are not attached: what
    ``attach_flex_media --since`` writes for recordings made before the linkage was set up."""
    return (
        RecordingTaskLink.objects.filter(
            Q(recording__start_time__gte=since)
            | Q(recording__start_time__isnull=True, recording__created_at__gte=since)
        )
        .exclude(attach_state=MediaAttachState.ATTACHED)
        .order_by("task_id", "pk")
    )
