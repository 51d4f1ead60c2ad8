"""List filters for the access log's admin page that stay fast on millions of rows.

Django's stock filters for a plain text column list its distinct values (a full scan of the
table on every page view) and its date filter has no "last hour". These take typed values
instead (identity, worker, role, recording), offer a fixed, labelled list where the values are
known (action, reason, activity), and filter time by presets or an explicit range. A date that
is not one is named next to its field and left out, the other filters kept (Django's own answer,
a redirect to ``?e=1``, dropped them all); an export of such a filter is refused
(:func:`filter_problems`).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.db import connection
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from audit.labels import ACTION_LABELS, PLAYER_ACTIONS, REASON_LABELS, reason_label
from audit.models import AccessAction

if TYPE_CHECKING:
    from django.contrib.admin.filters import _ListFilterChoices

    class _TextInputChoice(_ListFilterChoices):
        """What ``input_filter.html`` draws, besides the keys every choice has (``display``
        the typed value, ``query_string`` the list without this filter)."""

        parameter: str
        value: str
        placeholder: str
        hidden: list[tuple[str, str]]
        clear_url: str

    class _SelectChoice(_ListFilterChoices):
        """What ``select_filter.html`` draws: the codes as ``(code, label, selected)``."""

        parameter: str
        hidden: list[tuple[str, str]]
        options: list[tuple[str, str, bool]]


# Query parameters a filter form must not carry along: the page number and the error flag.
_NOT_KEPT = ("p", "e")


def _kept_parameters(changelist: ChangeList, drop: tuple[str, ...]) -> list[tuple[str, str]]:
    """The current query's parameters (search, ordering, other filters) as hidden form fields,
    minus the filter's own and the page number, so submitting one filter keeps the others."""
    return [
        (name, value)
        for name, values in changelist.filter_params.items()
        if name not in drop and name not in _NOT_KEPT
        for value in values
    ]


class TextInputFilter(admin.SimpleListFilter):
    """A filter with a text box: exact match on ``field`` (subclasses set it).

    Rendered by ``admin/audit/input_filter.html``; the box submits with the other filters kept.
    """

    template = "admin/audit/input_filter.html"
    parameter_name: str  # every subclass sets it (SimpleListFilter refuses None)
    field = ""
    placeholder = ""

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        """No fixed choices: the value is typed."""
        return []

    def has_output(self) -> bool:
        """Always shown."""
        return True

    def value(self) -> str | None:
        """The typed value, stripped; ``None`` when empty."""
        raw = super().value()
        return (raw.strip() or None) if raw is not None else None

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        """Rows whose ``field`` equals the typed value."""
        value = self.value()
        return queryset.filter(**{self.field: value}) if value else queryset

    def choices(self, changelist: ChangeList) -> Iterator[_TextInputChoice]:
        """One "choice" carrying what the template needs to draw the box."""
        clear_url = changelist.get_query_string(remove=[self.parameter_name])
        yield {
            "display": self.value() or "",
            "query_string": clear_url,
            "parameter": self.parameter_name,
            "value": self.value() or "",
            "placeholder": self.placeholder,
            "hidden": _kept_parameters(changelist, (self.parameter_name,)),
            "clear_url": clear_url,
            "selected": self.value() is not None,
        }


class IdentityFilter(TextInputFilter):
    """The Flex identity (or ``admin:<user>`` for staff), exactly; indexed."""

    title = "identity"
    parameter_name = "identity"
    field = "identity"
    placeholder = "e.g. alice"


class WorkerFilter(TextInputFilter):
    """The TaskRouter worker SID, exactly."""

    title = "worker SID"
    parameter_name = "worker"
    field = "worker_sid"
    placeholder = "WK…"


class RecordingFilter(TextInputFilter):
    """The recording SID, exactly; indexed."""

    title = "recording SID"
    parameter_name = "recording"
    field = "recording_sid"
    placeholder = "RE…"


class RoleFilter(TextInputFilter):
    """Rows whose caller held this role."""

    title = "role"
    parameter_name = "role"
    placeholder = "e.g. supervisor"

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        """JSON containment on PostgreSQL; elsewhere (SQLite has no JSON ``contains``) a match
        on the quoted role inside the stored JSON text."""
        role = self.value()
        if not role:
            return queryset
        if connection.vendor == "postgresql":
            return queryset.filter(roles__contains=[role])
        quoted = '"' + role.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return queryset.filter(roles__icontains=quoted)


class SelectFilter(admin.SimpleListFilter):
    """A fixed list of labelled codes drawn as a drop-down (``select_filter.html``: dozens of
    reasons do not fit as links); a code typed into the URL that the list does not hold (an
    old row's) still filters, shown as itself."""

    template = "admin/audit/select_filter.html"
    parameter_name: str  # every subclass sets it
    field = ""

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        """Rows whose ``field`` is the chosen code."""
        value = self.value()
        return queryset.filter(**{self.field: value}) if value else queryset

    def choices(self, changelist: ChangeList) -> Iterator[_SelectChoice]:
        """The "All" choice, carrying the codes and the other filters' hidden fields."""
        value = self.value()
        options = list(self.lookup_choices)
        if value and value not in {code for code, _ in options}:
            options.append((value, value))
        yield {
            "selected": value is None,
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": "All",
            "parameter": self.parameter_name,
            "hidden": _kept_parameters(changelist, (self.parameter_name,)),
            "options": [(str(code), str(label), code == value) for code, label in options],
        }


class ActionFilter(SelectFilter):
    """What was attempted, from the known actions (a fixed list: no scan of the table)."""

    title = "action"
    parameter_name = "action"
    field = "action"

    def lookups(self, request: HttpRequest | None, model_admin: Any) -> list[tuple[str, str]]:
        """Every action the portal writes, by its label."""
        codes = {**dict.fromkeys(AccessAction.values), **ACTION_LABELS}
        return sorted(((code, ACTION_LABELS.get(code, code)) for code in codes), key=_by_label)


class ReasonFilter(SelectFilter):
    """Why, from the known reason codes, by their labels (``no_matching_rule`` reads "no rule
    allows it")."""

    title = "reason"
    parameter_name = "reason"
    field = "reason_code"

    def lookups(self, request: HttpRequest | None, model_admin: Any) -> list[tuple[str, str]]:
        """Every reason the portal writes, by its label (the code after it: labels repeat)."""
        return sorted(
            ((code, f"{reason_label(code)} ({code})") for code in REASON_LABELS), key=_by_label
        )


def _by_label(choice: tuple[str, str]) -> str:
    return choice[1].lower()


class ActivityFilter(admin.SimpleListFilter):
    """Player and media activity apart from staff's (issue 14: the officer's own page views
    filled half the log). Shows player activity unless the officer picks another; every row
    is kept, only the view changes."""

    title = "activity"
    parameter_name = "activity"
    DEFAULT = "player"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        """Player and media (the default), staff and the portal's own work, or all."""
        return [
            ("player", "Player and media"),
            ("staff", "Staff and system"),
            ("all", "All"),
        ]

    def value(self) -> str:
        """The chosen view; the default when none (or an unknown one) is given."""
        raw = super().value()
        return raw if raw in ("player", "staff", "all") else self.DEFAULT

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        """The rows of the chosen view."""
        value = self.value()
        if value == "player":
            return queryset.filter(action__in=PLAYER_ACTIONS)
        if value == "staff":
            return queryset.exclude(action__in=PLAYER_ACTIONS)
        return queryset

    def choices(self, changelist: ChangeList) -> Iterator[_ListFilterChoices]:
        """The three views as links, the current one selected (no "All" link of Django's:
        "all" is one of the three)."""
        for key, label in self.lookup_choices:
            yield {
                "selected": self.value() == key,
                "query_string": changelist.get_query_string({self.parameter_name: key}),
                "display": label,
            }


def date_parameter(text: str, *, end: bool) -> datetime:
    """A date (``2026-03-01``, the whole day) or a date and time (``2026-03-01T10:00``, UTC
    when no zone is given) from a query parameter; ``IncorrectLookupParameters`` otherwise."""
    text = text.strip()
    try:
        day = parse_date(text)
        moment = None if day else parse_datetime(text)
    except ValueError:
        day = moment = None
    if day is not None:
        moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
        if end:
            try:
                moment += timedelta(days=1)
            except OverflowError:
                moment = None
    if moment is None:
        raise IncorrectLookupParameters(
            f"“{text}” is not a date (2026-03-01) or a date and time (2026-03-01T10:00)"
        )
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


class OccurredFilter(admin.ListFilter):
    """When: presets relative to now (last hour, 24 hours, 7 and 30 days) or an explicit range
    ``since``/``until`` (dates or dates and times, UTC; ``until`` is exclusive, and a date as
    ``until`` includes that whole day)."""

    title = "date"
    template = "admin/audit/occurred_filter.html"
    PRESETS = (
        ("1h", "Last hour", timedelta(hours=1)),
        ("24h", "Last 24 hours", timedelta(hours=24)),
        ("7d", "Last 7 days", timedelta(days=7)),
        ("30d", "Last 30 days", timedelta(days=30)),
    )
    PARAMETERS = ("occurred", "since", "until")

    def __init__(self, request: HttpRequest, params: dict[str, list[str]], model, model_admin):
        super().__init__(request, params, model, model_admin)
        for name in self.PARAMETERS:
            if name in params:
                self.used_parameters[name] = params.pop(name)[-1]
        # What is wrong with each parameter, shown next to its field; such a bound is left out
        # and the other filters still apply (an export refuses it: ``filter_problems``).
        self.errors: dict[str, str] = {}
        self.bounds: dict[str, datetime] = {}
        preset = self._parameter("occurred")
        if preset and preset not in {key for key, _, _ in self.PRESETS}:
            self.errors["occurred"] = f"“{preset}” is not one of the periods offered"
        for name, end in (("since", False), ("until", True)):
            if text := self._parameter(name):
                try:
                    self.bounds[name] = date_parameter(text, end=end)
                except IncorrectLookupParameters as exc:
                    self.errors[name] = str(exc)
        if self.errors:
            messages.error(
                request,
                "Not applied: " + "; ".join(self.errors.values()) + ". The other filters are.",
                fail_silently=True,
            )

    def has_output(self) -> bool:
        """Always shown."""
        return True

    def expected_parameters(self) -> list[str | None]:
        """``occurred`` (a preset), ``since`` and ``until``."""
        return list(self.PARAMETERS)

    def _parameter(self, name: str) -> str:
        """The value given for one of :attr:`PARAMETERS`; ``""`` when absent."""
        value = self.used_parameters.get(name, "")
        return value if isinstance(value, str) else ""

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        """Rows inside the preset's window, or between ``since`` and ``until`` (the bounds
        that parsed)."""
        preset = self._parameter("occurred")
        condition = Q()
        windows = {key: window for key, _, window in self.PRESETS}
        if preset in windows:
            condition &= Q(occurred_at__gte=timezone.now() - windows[preset])
        if "since" in self.bounds:
            condition &= Q(occurred_at__gte=self.bounds["since"])
        if "until" in self.bounds:
            condition &= Q(occurred_at__lt=self.bounds["until"])
        return queryset.filter(condition)

    def choices(self, changelist: ChangeList) -> Iterator[dict[str, Any]]:
        """The presets as links; the first also carries the since/until form's values."""
        current = self._parameter("occurred")
        explicit = bool(self._parameter("since") or self._parameter("until"))
        yield {
            "display": "Any time",
            "selected": not current and not explicit,
            "query_string": changelist.get_query_string(remove=list(self.PARAMETERS)),
            "range": {
                "since": self._parameter("since"),
                "until": self._parameter("until"),
                "errors": self.errors,
                "hidden": _kept_parameters(changelist, self.PARAMETERS),
            },
        }
        for key, label, _ in self.PRESETS:
            yield {
                "display": label,
                "selected": current == key,
                "query_string": changelist.get_query_string(
                    {"occurred": key}, remove=["since", "until"]
                ),
            }


def filter_problems(changelist: ChangeList) -> list[str]:
    """What is wrong with the list's filters (a date that is not one): the list shows it and
    leaves that filter out, an export must not run without it."""
    return [
        problem
        for spec in changelist.filter_specs
        for problem in getattr(spec, "errors", {}).values()
    ]
