"""The state banner at the top of a recording's admin page: the legal holds that cover it and
its deletion (when, by whom, why, and when its media goes for good), read from
:mod:`recordings.lifecycle.retention` so the page says what the deletion paths decide."""

from __future__ import annotations

from dataclasses import dataclass

from django import template

from recordings.lifecycle import retention
from recordings.models import LegalHold, Recording

register = template.Library()


@dataclass(frozen=True)
class RecordingState:
    """What the banner shows: the active holds covering the recording and its deletion."""

    holds: list[LegalHold]
    deletion: retention.Deletion | None
    # Restricted: played only under an access grant or a rule naming restricted recordings.
    restricted: bool = False


@register.simple_tag
def recording_state(recording: Recording | None) -> RecordingState | None:
    """The state of ``recording`` for its banner (None on a page without one). One query for
    the active holds; a deleted recording adds its audit row and its policy."""
    if recording is None or recording.pk is None:
        return None
    holds = retention.holds_by_recording([recording]).get(recording.pk, [])
    return RecordingState(
        holds=holds,
        deletion=retention.recording_deletion(recording=recording),
        restricted=recording.restricted_at is not None,
    )
