"""Where an analysis is kept: two derived files per media, named by the media's SHA-256 and the
analysis version, written through ``recordings.integrations.storage`` (the only S3/local I/O).

Keyed by content rather than by recording: the same audio gives the same file whichever
recording names it, a re-archived copy needs no new analysis, and a changed file can never be
drawn with the peaks of the old one. ``peaks.json`` is the audiowaveform v2 document,
``segments.json`` holds ``{"segments": [...], "summary": {...}}``.
"""

from __future__ import annotations

import json
from typing import Any

from recordings.integrations import storage


def _key(media_sha256: str, algorithm: int, name: str) -> str:
    if len(media_sha256) != 64 or not all(c in "0123456789abcdef" for c in media_sha256):
        raise ValueError("a media SHA-256 is 64 lowercase hex digits")
    return f"waveform/v{algorithm}/{media_sha256[:2]}/{media_sha256}/{name}"


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


ANALYSIS_FILES = ("peaks.json", "segments.json")


def analysis_file_keys(*, media_sha256: str, algorithm: int) -> dict[str, str]:
    """An analysis' files by name and their keys in the derived-data storage (what a legal
    hold locks beside the media: ``recordings.lifecycle.hold_derived_locks``)."""
    return {name: _key(media_sha256, algorithm, name) for name in ANALYSIS_FILES}


def analysis_files_write(
    *, media_sha256: str, algorithm: int, peaks: dict, speech: dict[str, Any]
) -> None:
    """Store an analysis' peaks and segments."""
    storage.derived_write(key=_key(media_sha256, algorithm, "peaks.json"), data=_dumps(peaks))
    storage.derived_write(key=_key(media_sha256, algorithm, "segments.json"), data=_dumps(speech))


def analysis_files_read(*, media_sha256: str, algorithm: int) -> tuple[dict, dict[str, Any]]:
    """An analysis' peaks and its ``{"segments", "summary"}``; ``storage.StorageNotFound``
    when they are gone, another ``storage.StorageError`` when storage cannot be reached."""
    peaks = json.loads(storage.derived_read(key=_key(media_sha256, algorithm, "peaks.json")))
    speech = json.loads(storage.derived_read(key=_key(media_sha256, algorithm, "segments.json")))
    return peaks, speech


def analysis_files_delete(*, media_sha256: str, algorithm: int) -> None:
    """Delete an analysis' files (the recording's media was deleted)."""
    for name in ("peaks.json", "segments.json"):
        storage.derived_delete(key=_key(media_sha256, algorithm, name))
