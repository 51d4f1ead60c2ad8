"""Periodic access reviews in the admin: the list (state, period, reviewer, due date, an
overdue marker), the review page (the frozen report, readable, with the sign-off and
reassignment forms), the exports (CSV, PDF and the JSON snapshot with its SHA-256) and the
dashboard's alert for overdue and unassigned reviews (:func:`access_review_alerts`).

Every change goes through ``audit.reviews``, which enforces who may sign off and reassign and
writes the access log; the admin edits nothing directly (no add, change or delete: a review is
built by the daily task, and a signed-off one is read-only for everyone). Who may open what:

* the list, a review and its exports: ``audit.view_accessreview`` (both compliance groups);
* the sign-off form: the assigned reviewer (``audit.review_accessreview``);
* reassignment: ``audit.assign_accessreview``.

Opening the list or a review is an ``admin_view`` row; each export an ``access_review`` row
(``review_exported``, with the format) whose sequence number the PDF carries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode
from xml.sax.saxutils import escape

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.http.response import HttpResponseBase
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html

from audit import reviews
from audit.admin import review_report as _review_report  # noqa: F401  (registers the builder)
from audit.admin.display import utc_text, utc_time
from audit.admin.report_selectors import duration_text
from audit.admin.reports import csv_lines, pdf_build
from audit.admin.selectors import Alert
from audit.models import AccessAction, AccessReview, ReviewFindings, ReviewState
from audit.staff_actions import staff_action_log
from portal.http import request_audit_fields

VIEW_PERMISSION = "audit.view_accessreview"


# --- The dashboard's alert -------------------------------------------------------------------


def access_review_alerts(*, now: datetime) -> list[Alert]:
    """Open reviews past their due date (an error each), and open reviews nobody is assigned
    to (a warning each): one query."""
    alerts: list[Alert] = []
    for review in AccessReview.objects.filter(state=ReviewState.OPEN).select_related("reviewer"):
        link = reverse("admin:audit_accessreview_change", args=[review.pk])
        period = reviews.ReviewPeriod(review.schedule, review.period_start, review.period_end)
        if reviews.access_review_overdue(review, now=now):
            who = review.reviewer.get_username() if review.reviewer else "nobody (unassigned)"
            alerts.append(
                Alert(
                    "error",
                    f"Access review overdue: {period.label()}",
                    f"due {utc_text(review.due_at)}, not signed off; assigned to {who}.",
                    link,
                )
            )
        elif review.reviewer_id is None:
            alerts.append(
                Alert(
                    "warning",
                    f"Access review unassigned: {period.label()}",
                    "nobody held the reviewer permission when it was built; a compliance "
                    f"manager signs it off or assigns it (due {utc_text(review.due_at)}).",
                    link,
                )
            )
    return alerts


# --- Forms -----------------------------------------------------------------------------------


class SignOffForm(forms.Form):
    """The reviewer's findings and comments (required: what was examined, what was found)."""

    findings = forms.ChoiceField(
        choices=ReviewFindings.choices, widget=forms.RadioSelect, label="Findings"
    )
    comments = forms.CharField(
        max_length=reviews.COMMENTS_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 5, "cols": 80}),
        label="Comments",
        help_text="What you examined and what you found or followed up (required).",
    )


class ReassignForm(forms.Form):
    """The staff member who should review instead."""

    reviewer = forms.ModelChoiceField(queryset=User.objects.none(), label="Assign to")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["reviewer"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = User.objects.filter(
            pk__in=[user.pk for user in reviews.reviewer_candidates()]
        ).order_by("username")


# --- The admin -------------------------------------------------------------------------------


def _period(review: AccessReview) -> reviews.ReviewPeriod:
    return reviews.ReviewPeriod(review.schedule, review.period_start, review.period_end)


@admin.register(AccessReview)
class AccessReviewAdmin(admin.ModelAdmin):
    """The reviews, newest period first; the review page replaces Django's change form."""

    list_display = (
        "period_text",
        "schedule",
        "state_text",
        "reviewer",
        "due_text",
        "findings",
        "signed_off_by",
        "signed_off_text",
    )
    list_filter = ("state", "schedule")
    list_select_related = ("reviewer", "signed_off_by")
    ordering = ("-period_start", "-id")
    show_facets = admin.ShowFacets.NEVER
    show_full_result_count = False
    actions = None

    def get_queryset(self, request: HttpRequest) -> Any:
        """The reviews without their reports (the list never shows them; the page reads its
        review itself)."""
        return super().get_queryset(request).defer("report")

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Reviews are built by the daily task, never by hand."""
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Nothing is edited as a form: sign-off and reassignment are the page's own forms."""
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Reviews are kept (the log names them)."""
        return False

    @admin.display(description="period", ordering="period_start")
    def period_text(self, review: AccessReview) -> str:
        """``November 2026`` or ``week of 2026-11-23``, with its UTC bounds on hover."""
        return format_html(
            '<span title="{} to {} (exclusive)">{}</span>',
            utc_text(review.period_start),
            utc_text(review.period_end),
            _period(review).label(),
        )

    @admin.display(description="state", ordering="state")
    def state_text(self, review: AccessReview) -> str:
        """Open, open and overdue (marked), or signed off."""
        if reviews.access_review_overdue(review, now=timezone.now()):
            return format_html(
                '<strong class="review-overdue portal-tone-error">{}</strong>', "OVERDUE"
            )
        return review.get_state_display()

    @admin.display(description="due (UTC)", ordering="due_at")
    def due_text(self, review: AccessReview) -> str:
        """The due date, in UTC."""
        return utc_time(review.due_at)

    @admin.display(description="signed off (UTC)", ordering="signed_off_at")
    def signed_off_text(self, review: AccessReview) -> str:
        """When it was signed off, in UTC."""
        return utc_time(review.signed_off_at)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """The list; opening it is written to the log."""
        if self.has_view_permission(request):
            staff_action_log(request, action=AccessAction.ADMIN_VIEW, reason_code="review_list")
        return super().changelist_view(request, extra_context)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """The review page (see :func:`review_page`)."""
        return review_page(request, self, object_id)

    def get_urls(self) -> list[URLPattern]:
        """Sign-off, reassignment and the exports, before Django's URLs."""
        view = self.admin_site.admin_view
        return [
            path(
                "<int:review_id>/sign-off/",
                view(lambda request, review_id: review_sign_off(request, self, review_id)),
                name="audit_accessreview_sign_off",
            ),
            path(
                "<int:review_id>/reassign/",
                view(lambda request, review_id: review_reassign(request, self, review_id)),
                name="audit_accessreview_reassign",
            ),
            path(
                "<int:review_id>/export/<str:fmt>/",
                view(lambda request, review_id, fmt: review_export(request, review_id, fmt)),
                name="audit_accessreview_export",
            ),
            *super().get_urls(),
        ]


# --- Views -----------------------------------------------------------------------------------


def _review_or_404(request: HttpRequest, review_id: Any) -> AccessReview:
    if not request.user.has_perm(VIEW_PERMISSION):
        raise PermissionDenied
    if not str(review_id).isdigit():
        raise Http404("No such access review.")
    review = (
        AccessReview.objects.select_related("reviewer", "signed_off_by")
        .filter(pk=int(review_id))
        .first()
    )
    if review is None:
        raise Http404("No such access review.")
    return review


def _parse_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def _log_link(**params: str) -> str:
    return reverse("admin:audit_accesslog_changelist") + "?" + urlencode(params)


def review_display(review: AccessReview) -> dict[str, Any]:
    """The frozen report as the page shows it: times as datetimes, listening estimates as
    words, and each row's link to the access log filtered to the period (no query: the
    report is read from the review)."""
    report = review.report
    since = review.period_start.strftime("%Y-%m-%dT%H:%M:%S")
    until = review.period_end.strftime("%Y-%m-%dT%H:%M:%S")
    people = [
        {
            **row,
            "first": _parse_time(row["first_at"]),
            "last": _parse_time(row["last_at"]),
            "listened": duration_text(row["listened_seconds"]) if row["listened_seconds"] else "",
            "link": _log_link(identity=row["identity"], since=since, until=until),
        }
        for row in report.get("by_person", [])
    ]
    teams = [
        {
            **row,
            "listened": duration_text(row["listened_seconds"]) if row["listened_seconds"] else "",
        }
        for row in report.get("by_team", [])
    ]
    denials = [
        {
            **row,
            "link": _log_link(
                outcome__exact="denied", reason=row["reason_code"], since=since, until=until
            ),
        }
        for row in report.get("denials", [])
    ]
    alerts = [
        {
            **alert,
            "link": _log_link(
                **({"identity": alert["identity"]} if alert.get("identity") else {}),
                since=alert["since"][:19],
                until=alert["until"][:19],
            )
            if alert.get("since")
            else "",
        }
        for alert in report.get("alerts", [])
    ]
    sealing = dict(report.get("sealing", {}))
    sealing["last_seal"] = _parse_time(sealing.get("last_seal_at", ""))
    sealing["last_check"] = _parse_time(sealing.get("last_check_at", ""))
    return {
        "totals": report.get("totals", {}),
        "people": people,
        "people_truncated": report.get("by_person_truncated", False),
        "teams": teams,
        "teams_truncated": report.get("by_team_truncated", False),
        "denials": denials,
        "restricted": report.get("restricted", {}),
        "restricted_link": _log_link(restricted="1", since=since, until=until),
        "staff": report.get("staff", []),
        "alerts": alerts,
        "sealing": sealing,
        "built_at": _parse_time(report.get("built_at", "")),
    }


def review_page(
    request: HttpRequest, model_admin: admin.ModelAdmin, object_id: str
) -> HttpResponse:
    """A review: its state, the frozen report in sections, whether the report still matches
    its hash, the exports, and (while open) the sign-off and reassignment forms for those who
    may use them. Opening it is an ``admin_view`` row."""
    review = _review_or_404(request, object_id)
    staff_action_log(
        request,
        action=AccessAction.ADMIN_VIEW,
        reason_code="review_page",
        detail={"review_id": review.pk},
    )
    return _render_page(request, model_admin, review)


def _render_page(
    request: HttpRequest,
    model_admin: admin.ModelAdmin,
    review: AccessReview,
    sign_off_form: SignOffForm | None = None,
    reassign_form: ReassignForm | None = None,
    status: int = 200,
) -> HttpResponse:
    user = request.user
    is_open = review.state == ReviewState.OPEN
    refusal = reviews.sign_off_refusal(review=review, user=user) if is_open else None  # type: ignore[arg-type]
    may_reassign = is_open and user.has_perm(reviews.ASSIGN_PERMISSION)
    period = _period(review)
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": AccessReview._meta,
        "title": f"Access review: {period.label()}",
        "review": review,
        "period": period,
        "report": review_display(review),
        "intact": reviews.review_report_intact(review),
        "overdue": reviews.access_review_overdue(review, now=timezone.now()),
        "sign_off_refusal": refusal,
        "own_activity": is_open and reviews.reviewer_in_report(review=review, user=user),  # type: ignore[arg-type]
        "sign_off_form": (sign_off_form or SignOffForm()) if is_open and not refusal else None,
        "reassign_form": (reassign_form or ReassignForm()) if may_reassign else None,
        "formats": reviews.EXPORT_FORMATS,
    }
    return TemplateResponse(request, "admin/audit/accessreview/review.html", context, status=status)


def _submit(
    request: HttpRequest,
    model_admin: admin.ModelAdmin,
    review: AccessReview,
    form: SignOffForm | ReassignForm,
    act: Callable[[dict[str, Any]], str],
) -> HttpResponse:
    """Run ``act`` (a service call answering the success message) with the valid form's data;
    back to the review on success, else the page again with the form's or the service's
    errors (``400``, nothing written)."""
    if form.is_valid():
        try:
            done = act(form.cleaned_data)
        except reviews.AccessReviewInvalid as exc:
            for field, message in exc.errors.items():
                form.add_error(field if field in form.fields else None, message)
        else:
            messages.success(request, done)
            return HttpResponseRedirect(
                reverse("admin:audit_accessreview_change", args=[review.pk])
            )
    if isinstance(form, SignOffForm):
        return _render_page(request, model_admin, review, sign_off_form=form, status=400)
    return _render_page(request, model_admin, review, reassign_form=form, status=400)


def review_sign_off(
    request: HttpRequest, model_admin: admin.ModelAdmin, review_id: int
) -> HttpResponse:
    """POST: sign the review off (``audit.reviews.access_review_sign_off``); a form error or
    a refusal shows the page again with the reason, nothing written."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    review = _review_or_404(request, review_id)

    def sign(data: dict[str, Any]) -> str:
        reviews.access_review_sign_off(
            review=review,
            user=request.user,  # type: ignore[arg-type]
            comments=data["comments"],
            findings=data["findings"],
            now=timezone.now(),
            audit_fields=request_audit_fields(request),
        )
        return "The review is signed off and kept as it is."

    return _submit(request, model_admin, review, SignOffForm(request.POST), sign)


def review_reassign(
    request: HttpRequest, model_admin: admin.ModelAdmin, review_id: int
) -> HttpResponse:
    """POST: give the review to another reviewer (``audit.reviews.access_review_reassign``)."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    review = _review_or_404(request, review_id)
    if not request.user.has_perm(reviews.ASSIGN_PERMISSION):
        raise PermissionDenied

    def reassign(data: dict[str, Any]) -> str:
        reviews.access_review_reassign(
            review=review,
            user=request.user,  # type: ignore[arg-type]
            reviewer=data["reviewer"],
            now=timezone.now(),
            audit_fields=request_audit_fields(request),
        )
        return f"The review is now assigned to {data['reviewer']}."

    return _submit(request, model_admin, review, ReassignForm(request.POST), reassign)


def review_export(request: HttpRequest, review_id: int, fmt: str) -> HttpResponseBase:
    """The review as CSV, PDF or its JSON snapshot (the exact bytes its SHA-256 covers, the
    hash in ``X-Report-SHA256``); each download is an ``access_review`` row."""
    review = _review_or_404(request, review_id)
    if fmt not in reviews.EXPORT_FORMATS:
        raise Http404("Export formats: csv, pdf, json.")
    row = reviews.access_review_export_log(
        review=review,
        user=request.user,  # type: ignore[arg-type]
        fmt=fmt,
        audit_fields=request_audit_fields(request),
    )
    name = f"access-review-{review.period_start:%Y-%m-%d}-{review.schedule}"
    response: HttpResponseBase
    if fmt == "json":
        response = HttpResponse(
            reviews.report_canonical(review.report), content_type="application/json"
        )
        response["X-Report-SHA256"] = review.report_sha256
    elif fmt == "csv":
        response = StreamingHttpResponse(
            csv_lines(review_csv_rows(review)), content_type="text/csv; charset=utf-8"
        )
    else:
        response = HttpResponse(
            review_pdf(
                review=review,
                produced_by=request.user.get_username(),
                produced_at=timezone.now(),
                audit_sequence=row.sequence,
            ),
            content_type="application/pdf",
        )
    response["Content-Disposition"] = f'attachment; filename="{name}.{fmt}"'
    response["Cache-Control"] = "no-store"
    return response


# --- Exports ---------------------------------------------------------------------------------

CSV_COLUMNS = (
    "section",
    "key",
    "name",
    "team",
    "plays",
    "recordings",
    "people",
    "denials",
    "attempts",
    "refused",
    "detail",
)


def _review_facts(review: AccessReview) -> list[tuple[str, str]]:
    return [
        (
            "period",
            f"{_period(review).label()}: {utc_text(review.period_start)} to "
            f"{utc_text(review.period_end)} (exclusive)",
        ),
        ("state", review.get_state_display()),
        ("reviewer", review.reviewer.get_username() if review.reviewer else "(unassigned)"),
        ("due", utc_text(review.due_at)),
        ("built", utc_text(review.created_at)),
        ("report_sha256", review.report_sha256),
        ("signed_off_by", review.signed_off_by.get_username() if review.signed_off_by else ""),
        ("signed_off_at", utc_text(review.signed_off_at)),
        ("findings", review.get_findings_display() if review.findings else ""),
        ("comments", review.comments),
    ]


def review_csv_rows(review: AccessReview) -> Iterator[list[Any]]:
    """The review as one table: its facts and sign-off, then every section of the report,
    a ``section`` column naming each line's part (for :func:`audit.admin.reports.csv_lines`)."""
    report = review.report
    blank = [""] * 8
    yield list(CSV_COLUMNS)
    for key, value in _review_facts(review):
        yield ["review", key, *blank, value]
    for key, value in report.get("totals", {}).items():
        yield ["totals", key, *blank, value]
    for row in report.get("by_person", []):
        reasons = "; ".join(
            f"{item['reason_code']}: {item['count']}" for item in row["denial_reasons"]
        )
        yield [
            "person",
            row["identity"],
            row["label"],
            row["team"],
            row["plays"],
            row["recordings"],
            "",
            row["denials"],
            "",
            "",
            reasons,
        ]
    for row in report.get("by_team", []):
        yield [
            "team",
            row["team"],
            row["label"],
            row["team"],
            row["plays"],
            row["recordings"],
            row["people"],
            row["denials"],
            "",
            "",
            "",
        ]
    for row in report.get("denials", []):
        yield [
            "denial",
            row["reason_code"],
            row["label"],
            "",
            "",
            "",
            row["people"],
            row["count"],
            "",
            "",
            "",
        ]
    restricted = report.get("restricted", {})
    for row in restricted.get("by_person", []):
        yield [
            "restricted",
            row["identity"],
            row["label"],
            "",
            "",
            row["recordings"],
            "",
            "",
            row["attempts"],
            row["refused"],
            f"allowed {row['allowed']}",
        ]
    for step, count in restricted.get("requests", {}).items():
        yield ["access_requests", step, *blank, count]
    for row in report.get("staff", []):
        actions = "; ".join(f"{item['action']}: {item['count']}" for item in row["actions"])
        yield ["staff", row["identity"], "", "", "", "", "", "", row["total"], "", actions]
    for alert in report.get("alerts", []):
        yield [
            "alert",
            alert["kind"],
            alert["title"],
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            f"{alert['level']}: {alert['detail']}",
        ]
    for key, value in report.get("sealing", {}).items():
        yield ["sealing", key, *blank, value]


def _sealing_words(sealing: dict[str, Any]) -> list[str]:
    """The report's sealing status as sentences (the PDF and the page say the same)."""
    if sealing.get("last_seal_number"):
        seal = (
            f"Last seal when built: number {sealing['last_seal_number']} "
            f"({sealing['last_seal_at'][:19]} UTC), covering rows up to "
            f"{sealing['last_sealed_sequence']} (Ed25519 key {sealing['key_fingerprint']}…)."
        )
    else:
        seal = "The audit log had no seal when the review was built."
    return [
        seal,
        "The period's rows were "
        + ("sealed" if sealing.get("period_sealed") else "NOT all sealed")
        + " and "
        + ("verified" if sealing.get("period_verified") else "NOT yet verified")
        + f" when the review was built; {sealing.get('unsealed_rows', 0)} rows waited for a seal"
        + (" (sealing was late)." if sealing.get("sealing_late") else "."),
        f"Verifications since the period began: {sealing.get('checks_since_period_start', 0)} "
        f"({sealing.get('failed_checks', 0)} failed). Anchored in: "
        f"{sealing.get('anchor_store', '-')}.",
    ]


def review_pdf(
    *, review: AccessReview, produced_by: str, produced_at: datetime, audit_sequence: int
) -> bytes:
    """The review as a PDF: its facts, sign-off and hash, then each section of the report
    (the console's ReportLab layout, ``audit.admin.reports.pdf_build``)."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.platypus import LongTable, Paragraph, Spacer, TableStyle

    styles = getSampleStyleSheet()
    small = styles["BodyText"].clone("small", fontSize=8, leading=10)
    # A4 landscape less the margins of ``pdf_build``.
    page_width = landscape(A4)[0] - 24 * mm
    report = review.report
    period = _period(review)

    def text(line: str, style: Any = styles["BodyText"]) -> Any:
        return Paragraph(escape(line).replace("\n", "<br/>"), style)

    def table(header: list[str], rows: list[list[Any]], empty: str) -> list[Any]:
        if not rows:
            return [text(empty, small)]
        # The first and the last column hold words (names, reasons, details): they get what
        # the figures between them leave of the page's width.
        figures = (len(header) - 2) * 24 * mm
        words = (page_width - figures) / 2
        grid = LongTable(
            [header, *[[text(str(cell), small) for cell in row] for row in rows]],
            repeatRows=1,
            colWidths=[words, *[24 * mm] * (len(header) - 2), words],
        )
        grid.setStyle(
            TableStyle(
                [
                    ("FONTSIZE", (0, 0), (-1, -1), 8),
                    ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8e8e8")),
                    ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
                    ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ]
            )
        )
        return [grid]

    totals = report.get("totals", {})
    restricted = report.get("restricted", {})
    story: list[Any] = [
        text(f"Access review: {period.label()}", styles["Title"]),
        text(
            f"Produced by {produced_by} (admin:{produced_by}) on "
            f"{produced_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC; this download is access-log "
            f"row {audit_sequence}."
        ),
        *[
            text(f"{key.replace('_', ' ').capitalize()}: {value or '-'}")
            for key, value in _review_facts(review)
        ],
        text(
            "The report was frozen when the review was built; the SHA-256 above covers its "
            "canonical JSON (the JSON download)."
            + ("" if reviews.review_report_intact(review) else " WARNING: it no longer matches.")
        ),
        Spacer(1, 4 * mm),
        text("Totals", styles["Heading2"]),
        text(
            f"{totals.get('plays', 0)} plays by {totals.get('people', 0)} people of "
            f"{totals.get('recordings', 0)} recordings; {totals.get('denials', 0)} denials, "
            f"{totals.get('not_found', 0)} requests for missing recordings, "
            f"{totals.get('errors', 0)} errors; {totals.get('staff_rows', 0)} staff and system "
            f"rows; log rows {totals.get('first_sequence', 0)} to {totals.get('last_sequence', 0)}."
        ),
        text("Accesses by person", styles["Heading2"]),
        *table(
            ["Person", "Team", "Plays", "Recordings", "Denials (by reason)", "Listened (est.)"],
            [
                [
                    f"{row['label']}\n{row['identity']}"
                    if row["label"]
                    else row["identity"] or "(none)",
                    row["team"] or "-",
                    row["plays"],
                    row["recordings"],
                    f"{row['denials']}"
                    + "".join(
                        f"\n{item['count']} x {item['label']}" for item in row["denial_reasons"]
                    ),
                    duration_text(row["listened_seconds"]) if row["listened_seconds"] else "-",
                ]
                for row in report.get("by_person", [])
            ],
            "No player activity in the period.",
        ),
        text("Accesses by team", styles["Heading2"]),
        *table(
            ["Team", "Plays", "People", "Recordings", "Denials"],
            [
                [row["label"], row["plays"], row["people"], row["recordings"], row["denials"]]
                for row in report.get("by_team", [])
            ],
            "No player activity in the period.",
        ),
        text("Denials by reason", styles["Heading2"]),
        *table(
            ["Reason", "Denials", "People"],
            [[row["label"], row["count"], row["people"]] for row in report.get("denials", [])],
            "Nobody was denied a recording.",
        ),
        text("Restricted recordings", styles["Heading2"]),
        text(
            f"{restricted.get('attempts', 0)} attempts, {restricted.get('refused', 0)} refused; "
            f"{restricted.get('restricted', 0)} restrictions placed, "
            f"{restricted.get('unrestricted', 0)} lifted; access requests: "
            + ", ".join(f"{count} {step}" for step, count in restricted.get("requests", {}).items())
            + "."
        ),
        *table(
            ["Person", "Attempts", "Allowed", "Refused", "Recordings"],
            [
                [
                    row["label"] or row["identity"],
                    row["attempts"],
                    row["allowed"],
                    row["refused"],
                    row["recordings"],
                ]
                for row in restricted.get("by_person", [])
            ],
            "No attempt on a restricted recording.",
        ),
        text("Staff activity", styles["Heading2"]),
        *table(
            ["Staff member", "Rows", "By action"],
            [
                [
                    row["identity"],
                    row["total"],
                    "; ".join(f"{item['count']} x {item['label']}" for item in row["actions"]),
                ]
                for row in report.get("staff", [])
            ],
            "No staff activity in the period.",
        ),
        text("Alerts", styles["Heading2"]),
        *table(
            ["Level", "Alert", "Detail"],
            [
                [alert["level"], alert["title"], alert["detail"]]
                for alert in report.get("alerts", [])
            ],
            "No alerts in the period.",
        ),
        text("Sealing status", styles["Heading2"]),
        *[text(line) for line in _sealing_words(report.get("sealing", {}))],
    ]
    return pdf_build(
        story,
        title=f"Access review: {period.label()}",
        author=produced_by,
        subject=f"Periodic access review {period.start:%Y-%m-%d} to {period.end:%Y-%m-%d}",
    )
