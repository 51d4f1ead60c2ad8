"""Legal holds in the admin, the way an officer places them: SIDs pasted as text (one per line,
or separated by commas or spaces), or a hold on a selection of recordings or on everything a
search of the recordings list matches, always through a preview with the count and a sample
before anything is placed. The recordings list shows which recordings are held (a column and
a filter); the decision of what a hold covers stays in :mod:`recordings.lifecycle.retention`.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join

from audit.models import AccessOutcome
from audit.staff_actions import staff_action_log, staff_identity
from portal import sids
from portal.http import request_audit_fields
from recordings.admin.hold_cases import CustodiansField, hold_locks_schedule
from recordings.lifecycle import retention
from recordings.models import LegalHold, Recording

# A hold by SID names every recording; past this many, a date-range hold says it better (and
# the preview page, the hidden form and the JSON list stay a sensible size).
MAX_HOLD_RECORDINGS = 10_000
# What a pasted list may hold before it is refused whole rather than parsed.
MAX_SID_TEXT = 2_000_000
PREVIEW_SAMPLE = 20
_SEPARATORS = re.compile(r"[\s,;\"'\[\]]+")
_MAX_ERRORS_SHOWN = 20


# --- SIDs as text -------------------------------------------------------------------------------


def _shown(value: str) -> str:
    """A bad value as an error message quotes it: short, printable (Django escapes the HTML)."""
    printable = "".join(ch if ch.isprintable() else "?" for ch in value)
    return printable if len(printable) <= 40 else printable[:40] + "…"


def sids_parse(text: str) -> tuple[list[str], list[str]]:
    """Recording and call SIDs in ``text``: one per line, or separated by commas, semicolons
    or spaces (a JSON list pasted from elsewhere reads the same). Duplicates are dropped,
    order kept. Raises ``ValidationError`` naming every value that is neither a recording
    SID (``RE…``) nor a call SID (``CA…``), so nothing is held by half."""
    if len(text) > MAX_SID_TEXT:
        raise ValidationError("That is too much text to be a list of SIDs.")
    recordings: dict[str, None] = {}
    calls: dict[str, None] = {}
    bad: list[str] = []
    for value in _SEPARATORS.split(text):
        if not value:
            continue
        if sids.is_sid(sids.RECORDING_SID, value):
            recordings[value] = None
        elif sids.is_sid(sids.CALL_SID, value):
            calls[value] = None
        else:
            bad.append(value)
    if bad:
        errors = [
            ValidationError(
                "“%(value)s” is not a recording SID (RE and 32 hex digits) or a call SID "
                "(CA and 32 hex digits).",
                params={"value": _shown(value)},
            )
            for value in bad[:_MAX_ERRORS_SHOWN]
        ]
        if len(bad) > _MAX_ERRORS_SHOWN:
            errors.append(ValidationError(f"…and {len(bad) - _MAX_ERRORS_SHOWN} more."))
        raise ValidationError(errors)
    if len(recordings) + len(calls) > MAX_HOLD_RECORDINGS:
        raise ValidationError(
            f"At most {MAX_HOLD_RECORDINGS} SIDs per hold: place a hold by date range instead."
        )
    return list(recordings), list(calls)


class SidListField(forms.CharField):
    """A text area of SIDs (see :func:`sids_parse`) that cleans to both lists at once."""

    widget = forms.Textarea(attrs={"rows": 6, "cols": 48, "spellcheck": "false"})

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("strip", True)
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> Any:
        """A stored list (or the form's own initial list) shows one SID per line."""
        if isinstance(value, list):
            return "\n".join(str(item) for item in value)
        return value

    def clean(self, value: Any) -> tuple[list[str], list[str]]:
        """Both lists of SIDs in the text, or the errors for every bad value."""
        text = super().clean(value)
        return sids_parse(text or "")


class LegalHoldForm(forms.ModelForm):
    """The form of a new hold: SIDs as plain text, where a call SID pasted among the
    recordings (or the other way round) goes where its prefix says."""

    recording_sids = SidListField(
        label="Recording SIDs",
        help_text="One per line, or separated by commas or spaces (RE…). Call SIDs pasted here "
        "hold every recording of the call.",
    )
    call_sids = SidListField(
        label="Call SIDs",
        help_text="Every recording of these calls, including ones that arrive later (CA…).",
    )
    custodians = CustodiansField()

    class Meta:
        model = LegalHold
        fields = (
            "matter_name",
            "case_reference",
            "reason",
            "custodians",
            "notes",
            "recording_sids",
            "call_sids",
            "started_from",
            "started_until",
        )

    def clean(self) -> dict[str, Any]:
        """Merge the two text areas into the model's two lists, by what each SID is."""
        cleaned = super().clean() or {}
        recordings: dict[str, None] = {}
        calls: dict[str, None] = {}
        for name in ("recording_sids", "call_sids"):
            found = cleaned.get(name)
            if found is None:
                continue
            recordings.update(dict.fromkeys(found[0]))
            calls.update(dict.fromkeys(found[1]))
        if "recording_sids" in cleaned:
            cleaned["recording_sids"] = list(recordings)
        if "call_sids" in cleaned:
            cleaned["call_sids"] = list(calls)
        return cleaned


# --- Holds on the recordings list ---------------------------------------------------------------


class OnHoldFilter(admin.SimpleListFilter):
    """Recordings an active legal hold covers, or none does."""

    title = "on legal hold"
    parameter_name = "on_hold"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        """Yes or no."""
        return [("yes", "yes"), ("no", "no")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Recording]) -> QuerySet[Recording]:
        """The held (or free) recordings, by the rule :func:`retention.hold_covers` states."""
        if self.value() in ("yes", "no"):
            return retention.recordings_on_hold(queryset, held=self.value() == "yes")
        return queryset


class HoldFilter(admin.SimpleListFilter):
    """The recordings one legal hold covers (the active holds are listed; the link on a
    released hold's page works too)."""

    title = "legal hold"
    parameter_name = "legal_hold"
    LISTED = 30

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        """The newest active holds, by case reference, and the chosen one whatever it is
        (Django applies no filter that offers no choice, which would list everything)."""
        holds = LegalHold.objects.only("pk", "case_reference", "released_at")
        choices = [
            (str(hold.pk), str(hold))
            for hold in holds.filter(released_at__isnull=True).order_by("-created_at")[
                : self.LISTED
            ]
        ]
        chosen = self.value()
        if chosen and chosen not in dict(choices):
            hold = holds.filter(pk=int(chosen)).first() if chosen.isdigit() else None
            choices.append((chosen, str(hold) if hold else "unknown hold"))
        return choices

    def queryset(self, request: HttpRequest, queryset: QuerySet[Recording]) -> QuerySet[Recording]:
        """What the chosen hold covers (nothing for an unknown hold)."""
        value = self.value()
        if not value:
            return queryset
        hold = LegalHold.objects.filter(pk=int(value)).first() if value.isdigit() else None
        if hold is None:
            return queryset.none()
        return retention.recordings_on_hold(queryset, held=True, holds=[hold])


def hold_coverage(hold: LegalHold | None) -> str:
    """How many recordings ``hold`` covers now, linked to the recordings list filtered by it:
    what a hold by date range or by call really holds."""
    if hold is None or hold.pk is None:
        return "shown once the hold is placed"
    count = retention.recordings_on_hold(Recording.objects.all(), held=True, holds=[hold]).count()
    url = reverse("admin:recordings_recording_changelist") + f"?legal_hold={hold.pk}"
    return format_html('<a href="{}">{} recording{}</a>', url, count, "" if count == 1 else "s")


_PAGE_HOLDS = "active_legal_holds"


class HoldsOnPageChangeList(ChangeList):
    """The recordings list, told which holds cover each row of the page in one query (the
    active holds), instead of one per row for the "legal hold" column."""

    def get_results(self, request: HttpRequest) -> None:
        """Django's page of results, each row carrying the holds that cover it."""
        super().get_results(request)
        page = list(self.result_list)  # evaluates the page once; the template reuses it
        held = retention.holds_by_recording(page)
        for recording in page:
            setattr(recording, _PAGE_HOLDS, held.get(recording.pk, []))


def hold_links(holds: list[LegalHold]) -> str:
    """Links to ``holds``' own pages, by case reference."""
    return format_html_join(
        ", ",
        '<a href="{}">{}</a>',
        (
            (reverse("admin:recordings_legalhold_change", args=[hold.pk]), str(hold))
            for hold in holds
        ),
    )


# --- Placing a hold from a selection or a search ------------------------------------------------


class HoldPlaceForm(forms.Form):
    """What the preview asks before the hold is placed."""

    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        max_length=5000,
        help_text="Why these recordings must be kept (required).",
    )
    case_reference = forms.CharField(max_length=200, required=False)
    matter_name = forms.CharField(max_length=200, required=False)
    custodians = CustodiansField()
    notes = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 60}), required=False)
    fingerprint = forms.CharField(widget=forms.HiddenInput, required=False, max_length=64)

    def clean_reason(self) -> str:
        """A reason of only spaces is no reason."""
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise ValidationError("Say why these recordings are held.")
        return reason


def _fingerprint(recording_sids: list[str], call_sids: list[str]) -> str:
    """What the preview showed, so a confirmation of a search that has since changed shows
    the preview again instead of holding what the officer did not see."""
    text = "\n".join(sorted(recording_sids)) + "\n--\n" + "\n".join(sorted(call_sids))
    return hashlib.sha256(text.encode()).hexdigest()


def _search_described(request: HttpRequest) -> str:
    """The list's search and filters in words, for the preview (``source = DialVerb``)."""
    parts = []
    for name, value in sorted(request.GET.items()):
        if name == "q":
            parts.append(f"“{value}”")
        elif name != "o":
            label = name.removesuffix("__exact").replace("__", " ").replace("_", " ")
            parts.append(f"{label} = {value}")
    return ", ".join(parts)


class HoldsAdminMixin(admin.ModelAdmin):
    """The legal-hold parts of the recordings admin: the column, the selection action and the
    page that previews and places a hold on a selection or a search."""

    def get_urls(self) -> list[URLPattern]:
        """The hold page, ahead of the recording page's catch-all."""
        hold = path(
            "hold/",
            self.admin_site.admin_view(self.hold_view),
            name="recordings_recording_hold",
        )
        return [hold, *super().get_urls()]

    @admin.display(description="legal hold")
    def legal_hold(self, obj: Recording) -> str:
        """The active holds covering the recording, linked (one query per page: see
        :class:`HoldsOnPageChangeList`)."""
        holds = getattr(obj, _PAGE_HOLDS, None)
        if holds is None:
            holds = retention.holds_by_recording([obj]).get(obj.pk, [])
        return hold_links(holds) if holds else ""

    def has_legal_hold_permission(self, request: HttpRequest) -> bool:
        """Placing a hold is adding a ``LegalHold``."""
        return request.user.has_perm("recordings.add_legalhold")

    @admin.action(
        description="Place a legal hold on the selected recordings", permissions=["legal_hold"]
    )
    def place_legal_hold(
        self, request: HttpRequest, queryset: QuerySet[Recording]
    ) -> HttpResponse | None:
        """Show the preview of a hold on the selection (or, with "select all", on the whole
        search: the same page as the list's "hold this search" link)."""
        if request.POST.get("select_across") == "1":
            query = request.GET.urlencode()
            url = reverse("admin:recordings_recording_hold")
            return HttpResponseRedirect(f"{url}?{query}" if query else url)
        selected = list(queryset.values_list("sid", flat=True)[: MAX_HOLD_RECORDINGS + 1])
        return self._hold_page(request, mode="selection", recording_sids=selected)

    def hold_view(self, request: HttpRequest) -> HttpResponse:
        """Preview (GET) and place (POST) a hold: ``mode=selection`` holds the posted SIDs; any
        other request holds what the recordings list shows for the same query string."""
        if not (self.has_legal_hold_permission(request) and self.has_view_permission(request)):
            staff_action_log(
                request,
                action=retention.HOLD_ACTION,
                outcome=AccessOutcome.DENIED,
                reason_code="permission",
                detail={"page": "hold"},
            )
            raise PermissionDenied
        if request.method == "POST" and request.POST.get("mode") == "selection":
            # One field of SIDs, not one field each: Django refuses forms of over 1000 fields.
            posted = [
                sid
                for sid in request.POST.get("sids", "").split()[: MAX_HOLD_RECORDINGS + 1]
                if sids.is_sid(sids.RECORDING_SID, sid)
            ]
            return self._hold_page(request, mode="selection", recording_sids=posted)
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            messages.error(request, "That search cannot be held: its filters are not valid.")
            return HttpResponseRedirect(reverse("admin:recordings_recording_changelist"))
        matched = list(changelist.queryset.values_list("sid", flat=True)[: MAX_HOLD_RECORDINGS + 1])
        term = (changelist.query or "").strip()
        calls = [term] if sids.is_sid(sids.CALL_SID, term) else []
        return self._hold_page(request, mode="search", recording_sids=matched, call_sids=calls)

    def _hold_page(
        self,
        request: HttpRequest,
        *,
        mode: str,
        recording_sids: list[str],
        call_sids: list[str] | None = None,
    ) -> HttpResponse:
        call_sids = call_sids or []
        too_many = len(recording_sids) > MAX_HOLD_RECORDINGS
        if mode == "selection":
            # Only recordings the portal has: a posted SID is the officer's word, not proof.
            recording_sids = list(
                Recording.objects.filter(sid__in=recording_sids).values_list("sid", flat=True)
            )
        fingerprint = _fingerprint(recording_sids, call_sids)
        confirming = request.method == "POST" and "confirm" in request.POST
        form = HoldPlaceForm(request.POST if confirming else None)
        stale = False
        if confirming and form.is_valid() and not too_many and (recording_sids or call_sids):
            if mode == "search" and form.cleaned_data["fingerprint"] != fingerprint:
                stale = True
            else:
                hold = retention.legal_hold_place(
                    hold=LegalHold(
                        reason=form.cleaned_data["reason"],
                        case_reference=form.cleaned_data["case_reference"],
                        matter_name=form.cleaned_data["matter_name"],
                        custodians=form.cleaned_data["custodians"],
                        notes=form.cleaned_data["notes"],
                        recording_sids=recording_sids,
                        call_sids=call_sids,
                    ),
                    created_by=request.user.get_username(),
                    source=mode,
                    context={"identity": staff_identity(request), **request_audit_fields(request)},
                )
                hold_locks_schedule(hold_id=hold.pk, request=request)
                hold_url = reverse("admin:recordings_legalhold_case", args=[hold.pk])
                messages.success(
                    request,
                    format_html(
                        'Legal hold <a href="{}">{}</a> placed on {} recording(s){}.',
                        hold_url,
                        str(hold),
                        len(recording_sids),
                        f" and every recording of call {call_sids[0]}" if call_sids else "",
                    ),
                )
                back = reverse("admin:recordings_recording_changelist")
                query = request.GET.urlencode() if mode == "search" else ""
                return HttpResponseRedirect(f"{back}?{query}" if query else back)
        sample = list(
            Recording.objects.filter(sid__in=recording_sids[:PREVIEW_SAMPLE]).order_by(
                "-start_time", "pk"
            )
        )
        already = retention.holds_by_recording(sample)
        for recording in sample:
            setattr(recording, _PAGE_HOLDS, already.get(recording.pk, []))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Place a legal hold",
            "mode": mode,
            "form": form,
            "fingerprint": fingerprint,
            "count": len(recording_sids),
            "call_sids": call_sids,
            "sample": sample,
            "selected_sids": " ".join(recording_sids) if mode == "selection" else "",
            "too_many": too_many,
            "max_recordings": MAX_HOLD_RECORDINGS,
            "stale": stale,
            "query": request.GET.urlencode(),
            "search": _search_described(request) if mode == "search" else "",
        }
        return TemplateResponse(request, "admin/recordings/recording/hold.html", context)
