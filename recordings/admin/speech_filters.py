"""The recordings list's QA-trigger filter, from the waveform analysis
(``recordings.analysis.selectors``): long silences, heavy cross-talk, not analysed."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from recordings.analysis import selectors
from recordings.models import Recording


class SpeechFilter(admin.SimpleListFilter):
    """Recordings a QA reviewer usually wants to hear: a long silence, or heavy cross-talk."""

    title = "speech"
    parameter_name = "speech"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [
            (
                "long_silence",
                f"silence of {selectors.LONG_SILENCE_SECONDS:.0f} s or more",
            ),
            (
                "cross_talk",
                f"cross-talk {selectors.HEAVY_CROSS_TALK_RATIO:.0%} of the call or more",
            ),
            ("not_analysed", "not analysed"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Recording]) -> QuerySet[Recording]:
        choice = self.value()
        if choice == "long_silence":
            return selectors.recordings_with_long_silence(queryset)
        if choice == "cross_talk":
            return selectors.recordings_with_heavy_cross_talk(queryset)
        if choice == "not_analysed":
            return selectors.recordings_without_analysis(queryset)
        return queryset
