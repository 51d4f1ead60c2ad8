"""``{% speech_per_team %}``: the dashboard's panel of average talk ratio and silence per team
(``recordings.analysis.selectors.speech_per_team``), over the dashboard's 30 days."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import template
from django.utils import timezone

from recordings.analysis import selectors

register = template.Library()

DAYS = 30


@register.inclusion_tag("admin/recordings/_speech_per_team.html")
def speech_per_team() -> dict[str, Any]:
    """The panel's rows, and the QA thresholds its links filter on."""
    return {
        "teams": selectors.speech_per_team(since=timezone.now() - timedelta(days=DAYS)),
        "days": DAYS,
        "long_silence": selectors.LONG_SILENCE_SECONDS,
        "cross_talk": selectors.HEAVY_CROSS_TALK_RATIO,
    }
