"""Analysing a recording once, and reading the result back: what the Celery task, the
``analyse_recordings`` command, the waveform API and the admin player call.

The analysis streams the audio once (``decoding``), feeding each block to the peak reducer and
the voice detector, so memory stays flat whatever the length; the results go to storage
(``store``) and the summary figures to :class:`~recordings.models.RecordingAnalysis`, where the
dashboard and the recordings list filter on them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from recordings.analysis import store
from recordings.analysis.activity import ActivityTracker
from recordings.analysis.decoding import Audio, UnsupportedAudio, audio_open
from recordings.analysis.peaks import PeakAccumulator
from recordings.analysis.segments import CHANNEL_ROLES, speech_derive
from recordings.integrations import storage
from recordings.media.body import MediaError, MediaUnavailable
from recordings.models import (
    AnalysisState,
    MediaLocation,
    Recording,
    RecordingAnalysis,
    RecordingStatus,
)

logger = logging.getLogger(__name__)

ALGORITHM = 1
"""Version of the analysis: raise it when peaks or segments would come out differently, and
``analyse_recordings --stale`` redoes the older ones."""


class AnalysisUnavailable(Exception):
    """Storage or Twilio cannot be reached now: try again later."""


def recording_analysable(recording: Recording) -> bool:
    """Whether a recording has media worth analysing: completed, not deleted, media known."""
    return (
        recording.status == RecordingStatus.COMPLETED
        and recording.soft_deleted_at is None
        and recording.media_location != MediaLocation.UNKNOWN
    )


@dataclass(frozen=True)
class AnalysisOutcome:
    """What :func:`recording_analyse` did: ``done``, ``failed``, ``skipped`` or ``missing``,
    with the reason of a failure or a skip."""

    code: str
    reason: str = ""


def _fail(recording: Recording, reason: str) -> AnalysisOutcome:
    RecordingAnalysis.objects.update_or_create(
        recording=recording,
        defaults={
            "state": AnalysisState.FAILED,
            "error": reason[:2000],
            "algorithm": ALGORITHM,
            "analysed_at": timezone.now(),
        },
    )
    logger.warning("analysis of recording %s failed: %s", recording.sid, reason)
    return AnalysisOutcome("failed", reason)


@dataclass(frozen=True)
class AnalysisResult:
    """What one pass over the audio gives: the audiowaveform v2 peaks, the segments document
    (``channel_roles``, ``segments``, ``summary``) and the media's SHA-256."""

    peaks: dict
    speech: dict[str, Any]
    media_sha256: str


def audio_analyse(*, audio: Audio) -> AnalysisResult:
    """Read the audio once, block by block, into peaks and speech activity (memory stays flat:
    one block of samples at a time, plus the peaks and one byte per channel per 30 ms)."""
    peaks = PeakAccumulator(sample_rate=audio.sample_rate, channels=audio.channels)
    activity = ActivityTracker(sample_rate=audio.sample_rate, channels=audio.channels)
    frames = 0
    for block in audio.blocks:
        peaks.add(block)
        activity.add(block)
        frames += len(block)
    media_sha256 = audio.sha256()
    speech = speech_derive(flags=activity.result(), duration_seconds=frames / audio.sample_rate)
    document = {
        "channel_roles": list(CHANNEL_ROLES[: audio.channels]) if audio.channels > 1 else [],
        "segments": speech.segments,
        "summary": speech.summary,
    }
    return AnalysisResult(peaks.result(), document, media_sha256)


def recording_analyse(*, recording_id: int, force: bool = False) -> AnalysisOutcome:
    """Compute and store a recording's peaks, segments and summary.

    Skipped when the recording cannot be analysed (not completed, deleted, no media) or already
    has a finished analysis of this version (unless ``force``). Media that cannot be decoded, or
    that the opener refuses for good (missing, failed integrity, no key), is recorded as a failed
    analysis; storage or Twilio being down raises :class:`AnalysisUnavailable` so the caller
    can try again.
    """
    recording = Recording.objects.filter(pk=recording_id).first()
    if recording is None:
        return AnalysisOutcome("missing")
    if not recording_analysable(recording):
        return AnalysisOutcome("skipped", "not_analysable")
    existing = RecordingAnalysis.objects.filter(recording=recording).first()
    if (
        not force
        and existing is not None
        and existing.state == AnalysisState.DONE
        and existing.algorithm == ALGORITHM
    ):
        return AnalysisOutcome("skipped", "already_analysed")
    try:
        result = audio_analyse(audio=audio_open(recording=recording))
    except UnsupportedAudio as exc:
        return _fail(recording, str(exc))
    except ValueError as exc:  # a sample rate the detector does not take
        return _fail(recording, str(exc))
    except MediaUnavailable as exc:
        raise AnalysisUnavailable(str(exc)) from None
    except MediaError as exc:
        return _fail(recording, f"{exc.code}: {exc}")

    try:
        store.analysis_files_write(
            media_sha256=result.media_sha256,
            algorithm=ALGORITHM,
            peaks=result.peaks,
            speech=result.speech,
        )
    except storage.StorageError as exc:
        raise AnalysisUnavailable(str(exc)) from None
    summary = result.speech["summary"]
    RecordingAnalysis.objects.update_or_create(
        recording=recording,
        defaults={
            "state": AnalysisState.DONE,
            "error": "",
            "algorithm": ALGORITHM,
            "media_sha256": result.media_sha256,
            "analysed_at": timezone.now(),
            "duration_seconds": summary["duration_seconds"],
            "channels": result.peaks["channels"],
            "sample_rate": result.peaks["sample_rate"],
            "agent_talk_ratio": summary["agent_talk_ratio"],
            "customer_talk_ratio": summary["customer_talk_ratio"],
            "silence_seconds": summary["silence_seconds"],
            "silence_ratio": summary["silence_ratio"],
            "longest_silence_seconds": summary["longest_silence_seconds"],
            "cross_talk_seconds": summary["cross_talk_seconds"],
            "cross_talk_ratio": summary["cross_talk_ratio"],
            "interruptions": summary["interruptions"],
        },
    )
    return AnalysisOutcome("done")


def waveform_read(*, recording: Recording) -> dict[str, Any] | None:
    """A recording's finished analysis as answered to players:
    ``{"peaks": <audiowaveform v2>, "segments": [...], "summary": {...}}``, or None when it has
    none (yet). Raises :class:`AnalysisUnavailable` when storage cannot be reached."""
    analysis = RecordingAnalysis.objects.filter(
        recording=recording, state=AnalysisState.DONE
    ).first()
    if analysis is None or not analysis.media_sha256:
        return None
    try:
        peaks, speech = store.analysis_files_read(
            media_sha256=analysis.media_sha256, algorithm=analysis.algorithm
        )
    except storage.StorageNotFound:
        return None
    except storage.StorageError as exc:
        raise AnalysisUnavailable(str(exc)) from None
    summary = dict(speech["summary"])
    summary["channel_roles"] = speech.get("channel_roles", [])
    return {"peaks": peaks, "segments": speech["segments"], "summary": summary}


def recording_analysis_forget(*, recording_id: int) -> None:
    """Delete a recording's analysis: its row, and its derived files unless another recording
    has the same audio. For retention's hard delete: waveform data goes with the media."""
    analysis = RecordingAnalysis.objects.filter(recording_id=recording_id).first()
    if analysis is None:
        return
    shared = (
        RecordingAnalysis.objects.filter(media_sha256=analysis.media_sha256)
        .exclude(pk=analysis.pk)
        .exists()
    )
    if analysis.media_sha256 and not shared:
        try:
            store.analysis_files_delete(
                media_sha256=analysis.media_sha256, algorithm=analysis.algorithm
            )
        except storage.StorageError as exc:
            raise AnalysisUnavailable(str(exc)) from None
    analysis.delete()
