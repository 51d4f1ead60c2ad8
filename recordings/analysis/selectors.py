"""Reading the analyses for the compliance console: the QA triggers of the recordings list and
the per-team figures of the dashboard.

Teams come from ``Recording.handled_team_names`` (the Flex linkage's snapshot of the handling
agents' teams); a recording handled by agents of two teams counts for both, one without
handling facts for none. Grouped in Python over one query of three numbers a recording, because
the team list is JSON, which SQLite and PostgreSQL unnest differently.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q, QuerySet

from recordings.models import AnalysisState, Recording

LONG_SILENCE_SECONDS = 20.0
"""A silence this long (hold without music, an agent looking something up) is a QA trigger."""

HEAVY_CROSS_TALK_RATIO = 0.10
"""Both parties speaking this share of the call or more is a QA trigger."""


def recordings_with_long_silence(queryset: QuerySet[Recording]) -> QuerySet[Recording]:
    """Those of ``queryset`` whose analysis found a silence of ``LONG_SILENCE_SECONDS``."""
    return queryset.filter(
        analysis__state=AnalysisState.DONE,
        analysis__longest_silence_seconds__gte=LONG_SILENCE_SECONDS,
    )


def recordings_with_heavy_cross_talk(queryset: QuerySet[Recording]) -> QuerySet[Recording]:
    """Those of ``queryset`` where both parties spoke ``HEAVY_CROSS_TALK_RATIO`` of the call."""
    return queryset.filter(
        analysis__state=AnalysisState.DONE,
        analysis__cross_talk_ratio__gte=HEAVY_CROSS_TALK_RATIO,
    )


def recordings_without_analysis(queryset: QuerySet[Recording]) -> QuerySet[Recording]:
    """Those of ``queryset`` with no finished analysis (none yet, or it failed)."""
    return queryset.exclude(Q(analysis__state=AnalysisState.DONE))


@dataclass(frozen=True)
class TeamSpeech:
    """One team's averages over its analysed dual-channel recordings."""

    team: str
    recordings: int
    agent_talk_ratio: float
    silence_ratio: float
    longest_silence_seconds: float


def speech_per_team(*, since: datetime) -> list[TeamSpeech]:
    """Average agent talk ratio and silence per team, for recordings made since ``since``,
    busiest team first."""
    rows = (
        Recording.objects.filter(
            analysis__state=AnalysisState.DONE,
            analysis__agent_talk_ratio__isnull=False,
            start_time__gte=since,
        )
        .values_list(
            "handled_team_names",
            "analysis__agent_talk_ratio",
            "analysis__silence_ratio",
            "analysis__longest_silence_seconds",
        )
        .iterator(chunk_size=2000)
    )
    sums: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0, 0.0])
    for teams, talk, silence, longest in rows:
        for team in set(teams or ()):
            if not isinstance(team, str) or not team:
                continue
            entry = sums[team]
            entry[0] += 1
            entry[1] += talk or 0.0
            entry[2] += silence or 0.0
            entry[3] = max(entry[3], longest or 0.0)
    return sorted(
        (
            TeamSpeech(
                team=team,
                recordings=int(count),
                agent_talk_ratio=talk / count,
                silence_ratio=silence / count,
                longest_silence_seconds=longest,
            )
            for team, (count, talk, silence, longest) in sums.items()
        ),
        key=lambda row: (-row.recordings, row.team),
    )
