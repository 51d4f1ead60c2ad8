"""The recordings list's date drill-down (years, a year's months, a month's days) without
reading every recording.

Django's ``date_hierarchy`` lists the periods that hold rows with ``SELECT DISTINCT
date_trunc(…)`` over every row the list matches: on 300,000 recordings a read of the whole
table at each click, the months of a year a read of the year. Django 5.2 offers no public hook
for those choices (they are computed in the ``date_hierarchy`` template tag), so the list's
template shows :func:`date_drilldown`'s choices in Django's own ``admin/date_hierarchy.html``
instead: the periods from the first to the last matching recording's start, found by one
``MIN``/``MAX`` that the ``start_time`` index (or a filter's ``(field, start_time)`` index)
answers in two index probes. The cost: a period with no recordings between two that have
some is listed too, and leads to an empty list. Where the list starts (a year, or the months
of the only year, or the days of the only month) and every link and title are Django's.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.contrib.admin.views.main import ChangeList
from django.db.models import Max, Min
from django.utils import formats, timezone
from django.utils.functional import cached_property
from django.utils.text import capfirst
from django.utils.translation import gettext as _


def _local(value: Any) -> Any:
    """A datetime in the current time zone, as Django's year/month/day lookups read it."""
    if isinstance(value, datetime.datetime) and timezone.is_aware(value):
        return timezone.localtime(value)
    return value


def date_drilldown(cl: ChangeList) -> dict[str, Any]:
    """The context of ``admin/date_hierarchy.html`` for ``cl``: ``show``, ``back`` and
    ``choices`` as Django's ``date_hierarchy`` tag builds them, the choices spanning the first
    to the last matching start time (see the module docstring). One query, none for a day."""
    field_name = cl.date_hierarchy
    year_field = f"{field_name}__year"
    month_field = f"{field_name}__month"
    day_field = f"{field_name}__day"
    year_lookup = cl.params.get(year_field)
    month_lookup = cl.params.get(month_field)
    day_lookup = cl.params.get(day_field)

    def link(filters: dict[str, Any]) -> str:
        return cl.get_query_string(filters, [f"{field_name}__"])

    if year_lookup and month_lookup and day_lookup:
        day = datetime.date(int(year_lookup), int(month_lookup), int(day_lookup))
        return {
            "show": True,
            "back": {
                "link": link({year_field: year_lookup, month_field: month_lookup}),
                "title": capfirst(formats.date_format(day, "YEAR_MONTH_FORMAT")),
            },
            "choices": [{"title": capfirst(formats.date_format(day, "MONTH_DAY_FORMAT"))}],
        }
    # The list's queryset already holds the year's or month's range when one is chosen.
    span = cl.queryset.aggregate(first=Min(field_name), last=Max(field_name))
    first, last = _local(span["first"]), _local(span["last"])
    if not (year_lookup or month_lookup) and first and last and first.year == last.year:
        year_lookup = str(first.year)
        if first.month == last.month:
            month_lookup = str(first.month)
    if year_lookup and month_lookup:
        year, month = int(year_lookup), int(month_lookup)
        days = range(first.day, last.day + 1) if first and last else range(0)
        return {
            "show": True,
            "back": {"link": link({year_field: year_lookup}), "title": str(year_lookup)},
            "choices": [
                {
                    "link": link({year_field: year_lookup, month_field: month, day_field: day}),
                    "title": capfirst(
                        formats.date_format(datetime.date(year, month, day), "MONTH_DAY_FORMAT")
                    ),
                }
                for day in days
            ],
        }
    if year_lookup:
        year = int(year_lookup)
        months = range(first.month, last.month + 1) if first and last else range(0)
        return {
            "show": True,
            "back": {"link": link({}), "title": _("All dates")},
            "choices": [
                {
                    "link": link({year_field: year_lookup, month_field: month}),
                    "title": capfirst(
                        formats.date_format(datetime.date(year, month, 1), "YEAR_MONTH_FORMAT")
                    ),
                }
                for month in months
            ],
        }
    years = range(first.year, last.year + 1) if first and last else range(0)
    return {
        "show": True,
        "back": None,
        "choices": [{"link": link({year_field: str(year)}), "title": str(year)} for year in years],
    }


class DateSpanDrilldownChangeList(ChangeList):
    """A change list whose template shows :func:`date_drilldown` in place of Django's
    ``date_hierarchy`` tag (``{% include "admin/date_hierarchy.html" with … %}``)."""

    @cached_property
    def date_drilldown(self) -> dict[str, Any]:
        """The drill-down's ``show``, ``back`` and ``choices`` (one query, on first use)."""
        return date_drilldown(self)
