"""Geometry of the dashboard's "accesses and denials per day" chart, drawn as inline SVG by the
template: no chart library, no CDN, nothing for a content-security policy to allow.

Pure functions over :class:`audit.admin.selectors.DayCount` values, so the drawing is tested without
a browser or a database.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from audit.admin.selectors import DayCount

WIDTH = 900
HEIGHT = 260
MARGIN_LEFT = 48
MARGIN_RIGHT = 12
MARGIN_TOP = 12
MARGIN_BOTTOM = 36


@dataclass(frozen=True)
class Bar:
    """One bar: ``series`` is ``allowed`` or ``denied``; ``label`` is its tooltip."""

    x: float
    y: float
    width: float
    height: float
    series: str
    label: str


@dataclass(frozen=True)
class Tick:
    """An axis label at ``position`` (y for the value axis, x for the day axis)."""

    position: float
    text: str


@dataclass(frozen=True)
class BarChart:
    """Everything the template draws: the view box, bars, value gridlines and day labels."""

    width: int
    height: int
    plot_left: int
    plot_right: int
    plot_bottom: int
    bars: list[Bar]
    value_ticks: list[Tick]
    day_ticks: list[Tick]
    empty: bool


def _nice_ceiling(value: int) -> int:
    """The smallest of 1, 2 or 5 times a power of ten that is at least ``value`` (min. 1)."""
    if value <= 1:
        return 1
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude


def daily_bar_chart(days: Sequence[DayCount]) -> BarChart:
    """Two bars a day (allowed, denied) on a shared value axis with 0, ½ and full ticks, and
    a day label about every week (the first day always labelled)."""
    plot_width = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_height = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    bottom = HEIGHT - MARGIN_BOTTOM
    top_value = _nice_ceiling(max([0, *(d.allowed for d in days), *(d.denied for d in days)]))
    slot = plot_width / max(len(days), 1)
    bar_width = max(slot * 0.38, 1.0)
    bars: list[Bar] = []
    day_ticks: list[Tick] = []
    label_every = max(1, math.ceil(len(days) / 6))
    for index, day in enumerate(days):
        left = MARGIN_LEFT + index * slot + slot * 0.1
        for offset, series, value in ((0, "allowed", day.allowed), (1, "denied", day.denied)):
            height = plot_height * value / top_value
            bars.append(
                Bar(
                    x=round(left + offset * bar_width, 2),
                    y=round(bottom - height, 2),
                    width=round(bar_width, 2),
                    height=round(height, 2),
                    series=series,
                    label=f"{day.day:%Y-%m-%d}: {value} {series}",
                )
            )
        if index % label_every == 0:
            day_ticks.append(Tick(round(MARGIN_LEFT + (index + 0.5) * slot, 2), f"{day.day:%d %b}"))
    value_ticks = [
        Tick(round(bottom - plot_height * fraction, 2), str(round(top_value * fraction)))
        for fraction in (0, 0.5, 1)
        if fraction == 0 or top_value * fraction == int(top_value * fraction)
    ]
    return BarChart(
        width=WIDTH,
        height=HEIGHT,
        plot_left=MARGIN_LEFT,
        plot_right=WIDTH - MARGIN_RIGHT,
        plot_bottom=bottom,
        bars=bars,
        value_ticks=value_ticks,
        day_ticks=day_ticks,
        empty=not any(d.allowed or d.denied for d in days),
    )
