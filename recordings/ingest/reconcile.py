"""Reconciliation: recordings at Twilio that no callback announced (missed webhooks, recordings
made before the portal existed), found by listing Twilio's Recordings and stored like a sync.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from recordings.ingest.sync import parse_datetime, recording_store_resource
from recordings.integrations import twilio_api
from recordings.models import Recording, SyncState, TwilioSubaccount


@dataclass
class ReconcileSummary:
    """What a reconciliation found and did."""

    seen: int = 0
    synced: int = 0
    up_to_date: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def _is_stale(recording: Recording | None, resource: twilio_api.TwilioRecording) -> bool:
    if recording is None or recording.sync_state != SyncState.SYNCED:
        return True
    updated = parse_datetime(resource.date_updated)
    return recording.status != resource.status or (
        updated is not None and recording.date_updated != updated
    )


def recordings_reconcile(
    *,
    since: date,
    on_progress: Callable[[twilio_api.TwilioRecording], None] | None = None,
) -> ReconcileSummary:
    """Find recordings at Twilio created since ``since`` that the portal lacks or holds stale
    (missed callbacks) and store them, for the configured account and its subaccounts."""
    summary = ReconcileSummary()
    account_sids: list[str | None] = [None, *TwilioSubaccount.objects.values_list("sid", flat=True)]
    created_after = datetime(since.year, since.month, since.day, tzinfo=UTC)
    for account_sid in account_sids:
        for resource in twilio_api.recordings_list(
            account_sid=account_sid, created_after=created_after
        ):
            summary.seen += 1
            existing = Recording.objects.filter(sid=resource.sid).first()
            if _is_stale(existing, resource):
                try:
                    recording_store_resource(resource=resource)
                except Exception as exc:  # one bad row must not stop the sweep
                    summary.failed += 1
                    summary.errors.append(f"{resource.sid}: {type(exc).__name__}")
                else:
                    summary.synced += 1
            else:
                summary.up_to_date += 1
            if on_progress:
                on_progress(resource)
    return summary


