"""The playback report an officer can hand on (issue 14): a page, a CSV and a PDF of who opened
which recordings in a period, how often, roughly how long they listened, and their denials and
why, grouped by person, team or recording (``audit.admin.report_selectors``).

Every view and download is itself audited (``admin_view`` / ``admin_export`` with the filters
in ``detail``) and needs ``audit.view_accesslog``, like the access log it summarizes.

The figures are aggregated by the database, so the answer is a row per group however many log
rows the period holds; the page and the PDF show the first :data:`PAGE_GROUP_LIMIT` groups and
the CSV has them all. The CSV and the PDF are written in the background, like the access log's
exports and through the same jobs (``audit.admin.export_jobs``, kind ``playback_report``): the
page queues one (audited as ``playback_report_csv``/``_pdf`` with the job's number), the exports
page lists it and serves the file (audited again as ``playback_report_download``), and the file
is deleted after ``AUDIT_EXPORT_RETENTION_HOURS`` like every export. The job reads the query as
the page did when it was asked (the default period counted from the request's time).
The PDF is drawn with ReportLab (a maintained, pure-Python PDF
library with no system dependencies, unlike WeasyPrint's Pango and Cairo) and carries who
produced it, when, for which filters, the audit log's sealing status (the last seal and the
rows waiting for one) and the sequence number of its own access-log row, so whoever receives
it can check it against the sealed log.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import IO, Any, cast
from urllib.parse import urlencode
from xml.sax.saxutils import escape

from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.sites import AdminSite
from django.core.exceptions import PermissionDenied
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    QueryDict,
)
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone

from audit.admin import export_jobs
from audit.admin.filters import date_parameter
from audit.admin.report_selectors import (
    GROUPINGS,
    PAGE_GROUP_LIMIT,
    PlaybackReport,
    ReportFilters,
    ReportGroup,
    duration_text,
    playback_report,
    report_totals,
)
from audit.models import AccessAction, AccessLog, AccessLogExport, ExportKind
from audit.rollups import DASHBOARD_DAYS
from audit.sealer import SealingStatus, sealing_status
from audit.staff_actions import staff_action_log
from portal.admin_site import ComplianceAdminSite
from portal.sids import RECORDING_SID

# Without a "since", the report covers the dashboard's window, the last 30 days up to now:
# its whole days are the ones the hourly rollup counts once more (``audit.rollups``).
DEFAULT_DAYS = DASHBOARD_DAYS
_MAX_TEXT = 255
# A spreadsheet runs a cell starting with one of these as a formula; names come from outside.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class ReportRequest:
    """A report query read from the URL: the filters, the grouping, the text the form shows
    again, and what is wrong with any field (a wrong field is left out, the others kept)."""

    filters: ReportFilters
    group_by: str
    form: dict[str, str]
    errors: dict[str, str]

    def query(self) -> str:
        """The query string of this report (for the download links)."""
        return urlencode({name: value for name, value in self.form.items() if value})

    def detail(self) -> dict[str, str]:
        """What the audit row keeps: the effective filters and the grouping."""
        return {**self.filters.detail(), "group_by": self.group_by}


def report_request_parse(*, query: QueryDict, now: datetime) -> ReportRequest:
    """Read ``since``, ``until`` (the access log's date rules: a date or a date and time, UTC,
    ``until`` exclusive and a whole day for a date), ``person``, ``team``, ``recording`` (a
    recording SID) and ``by`` (person, team or recording) from a query string."""
    form = {
        name: query.get(name, "").strip()[:_MAX_TEXT]
        for name in ("since", "until", "person", "team", "recording", "by")
    }
    errors: dict[str, str] = {}
    bounds: dict[str, datetime] = {}
    for name, end in (("since", False), ("until", True)):
        if form[name]:
            try:
                bounds[name] = date_parameter(form[name], end=end)
            except IncorrectLookupParameters as exc:
                errors[name] = str(exc)
    since = bounds.get("since", now.astimezone(UTC) - timedelta(days=DEFAULT_DAYS))
    until = bounds.get("until")
    if until is not None and until <= since:
        errors["until"] = "“Until” must come after “from”."
        until = None
    recording = form["recording"]
    if recording and not RECORDING_SID.fullmatch(recording):
        errors["recording"] = f"“{recording}” is not a recording SID (RE and 32 hex digits)."
        recording = ""
    group_by = form["by"] if form["by"] in GROUPINGS else "person"
    form["by"] = group_by
    filters = ReportFilters(
        since=since,
        until=until,
        person=form["person"],
        team=form["team"],
        recording_sid=recording,
    )
    return ReportRequest(filters=filters, group_by=group_by, form=form, errors=errors)


def _require_view(request: HttpRequest) -> None:
    if not request.user.has_perm("audit.view_accesslog"):
        raise PermissionDenied


def _parsed(request: HttpRequest) -> ReportRequest:
    return report_request_parse(query=request.GET, now=timezone.now())


def playback_report_page(request: HttpRequest, site: AdminSite) -> HttpResponse:
    """The report page: the filter form, the groups with their figures and drill-down links
    to the filtered access log, and the CSV and PDF downloads of the same query."""
    _require_view(request)
    parsed = _parsed(request)
    staff_action_log(
        request,
        action=AccessAction.ADMIN_VIEW,
        reason_code="playback_report",
        detail=parsed.detail(),
    )
    report = playback_report(filters=parsed.filters, group_by=parsed.group_by)
    totals = report_totals(report)
    context = {
        **site.each_context(request),
        "opts": AccessLog._meta,
        "title": "Playback report",
        "parsed": parsed,
        "form": parsed.form,
        "errors": parsed.errors,
        "groupings": GROUPINGS,
        "report": report,
        "totals": totals,
        "listened_total": duration_text(totals["listened_seconds"]),
        "rows": [_display_row(report, group) for group in report.groups],
        "limit": PAGE_GROUP_LIMIT,
    }
    return TemplateResponse(request, "admin/audit/report.html", context)


def _display_row(report: PlaybackReport, group: ReportGroup) -> dict[str, Any]:
    return {"group": group, "listened": duration_text(group.listened_seconds)}


CSV_COLUMNS = (
    "group_by",
    "key",
    "name",
    "team",
    "plays_allowed",
    "distinct_recordings",
    "distinct_people",
    "denials",
    "denials_by_reason",
    "requests_for_missing_recordings",
    "errors",
    "playbacks_measured",
    "bytes_served",
    "estimated_seconds_listened",
    "first_at",
    "last_at",
)


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def csv_lines(rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    """``rows`` as CSV lines, one at a time (for streaming): every field quoted, so a line
    break in a name cannot split a record, and a text cell a spreadsheet would run as a
    formula gets a leading ``'``. Shared by the playback report and the access reviews."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL)
    for cells in rows:
        writer.writerow([_cell(cell) for cell in cells])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


def report_csv_lines(report: PlaybackReport) -> Iterator[str]:
    """The report as CSV lines (:func:`csv_lines`): a header, one line per group."""
    yield from csv_lines(_report_csv_rows(report))


def _report_csv_rows(report: PlaybackReport) -> Iterator[list[Any]]:
    yield list(CSV_COLUMNS)
    for group in report.groups:
        yield (
            [
                report.group_by,
                group.key,
                group.label if group.label != group.key else "",
                group.team,
                group.plays,
                group.recordings,
                group.people,
                group.denials,
                "; ".join(f"{item.reason_code}: {item.count}" for item in group.denial_reasons),
                group.not_found,
                group.errors,
                group.playbacks_measured,
                group.bytes_served,
                round(group.listened_seconds),
                group.first_at.isoformat() if group.first_at else "",
                group.last_at.isoformat() if group.last_at else "",
            ]
        )


def _report_export(request: HttpRequest, fmt: str) -> HttpResponse:
    """POST: queue the report's file (``csv``: every group; ``pdf``: the page's groups) as an
    export job, audited with the job's number, and go to the exports page where it is
    downloaded once written. A report with a wrong field is not queued: back to the page,
    which names the field."""
    _require_view(request)
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    parsed = _parsed(request)
    if parsed.errors:
        messages.error(request, "Correct the report's filters first; nothing was exported.")
        return HttpResponseRedirect(
            reverse("admin:audit_playback_report") + f"?{request.GET.urlencode()}"
        )
    job = export_jobs.export_record(
        kind=ExportKind.PLAYBACK_REPORT,
        requested_by=request.user.get_username(),
        query=parsed.query(),
        fmt=fmt,
    )
    row = staff_action_log(
        request,
        action=AccessAction.ADMIN_EXPORT,
        reason_code=f"playback_report_{fmt}",
        detail={**parsed.detail(), "export_id": job.pk},
    )
    export_jobs.export_start(job_id=job.pk, audit_sequence=row.sequence)
    messages.info(
        request,
        f"Export {job.pk} (playback report, {fmt.upper()}) is being written; download it "
        "below when done.",
    )
    return HttpResponseRedirect(reverse("admin:audit_accesslog_exports"))


def playback_report_csv(request: HttpRequest, site: AdminSite) -> HttpResponse:
    """POST: queue the report as CSV, every group (see :func:`_report_export`)."""
    return _report_export(request, "csv")


def playback_report_pdf(request: HttpRequest, site: AdminSite) -> HttpResponse:
    """POST: queue the report as a PDF (at most :data:`PAGE_GROUP_LIMIT` groups, like the
    page), naming who asked, when, its filters, the log's sealing status and the access-log
    row of the request (see :func:`_report_export`)."""
    return _report_export(request, "pdf")


def report_file_write(job: AccessLogExport, spool: IO[bytes], digest: hashlib._Hash) -> int:
    """Write a queued report export (``audit.admin.export_jobs``) to ``spool``, feeding
    ``digest`` the same bytes; answers the number of groups written."""
    parsed = report_request_parse(query=QueryDict(job.query), now=job.requested_at)
    if job.format == "csv":
        report = playback_report(filters=parsed.filters, group_by=parsed.group_by, limit=None)
        for line in report_csv_lines(report):
            data = line.encode("utf-8")
            spool.write(data)
            digest.update(data)
        return len(report.groups)
    if job.format != "pdf":
        raise ValueError(f"a playback report is written as csv or pdf, not {job.format!r}")
    now = timezone.now()
    report = playback_report(filters=parsed.filters, group_by=parsed.group_by)
    content = report_pdf(
        report=report,
        produced_by=job.requested_by,
        produced_at=now,
        sealing=sealing_status(now=now),
        audit_sequence=job.audit_sequence or 0,
    )
    spool.write(content)
    digest.update(content)
    return len(report.groups)


def _sealing_lines(sealing: SealingStatus) -> list[str]:
    last = sealing.last_seal
    lines = [
        (
            f"Last seal: number {last.number}, made {last.created_at:%Y-%m-%d %H:%M:%S} UTC, "
            f"covering log rows up to {last.last_sequence} "
            f"(Ed25519 key {last.key_fingerprint[:16]}…)."
            if last is not None
            else "The audit log has no seal yet."
        ),
        f"Rows not yet sealed: {sealing.unsealed_rows}"
        + (
            f" (WARNING: some wait longer than {sealing.max_delay_seconds} s: sealing is late)."
            if sealing.overdue
            else "."
        ),
        f"Seals are anchored in: {sealing.anchor_store}.",
    ]
    return lines


def report_pdf(
    *,
    report: PlaybackReport,
    produced_by: str,
    produced_at: datetime,
    sealing: SealingStatus,
    audit_sequence: int,
) -> bytes:
    """The report drawn as an A4 landscape PDF (ReportLab's platypus: paragraphs and a table
    that breaks across pages, its header repeated)."""
    # Imported here: only this download needs ReportLab, and its import is not free.
    from reportlab.lib import colors
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.platypus import LongTable, Paragraph, Spacer, TableStyle

    styles = getSampleStyleSheet()
    small = styles["BodyText"].clone("small", fontSize=8, leading=10)
    filters = report.filters.detail()
    story: list[Any] = [
        Paragraph("Playback report", styles["Title"]),
        Paragraph(
            escape(
                f"Produced by {produced_by} (admin:{produced_by}) on "
                f"{produced_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC; asked for in "
                f"access-log row {audit_sequence}."
            ),
            styles["BodyText"],
        ),
        Paragraph(
            escape(
                f"Grouped by {GROUPINGS[report.group_by].lower()}. Period from "
                f"{filters['since']} until {filters['until'] or 'now'} (exclusive). "
                f"Person: {filters['person'] or 'anyone'}. Team: {filters['team'] or 'any'}. "
                f"Recording: {filters['recording'] or 'any'}."
            ),
            styles["BodyText"],
        ),
        *[Paragraph(escape(line), styles["BodyText"]) for line in _sealing_lines(sealing)],
        Paragraph(
            escape(
                "Plays: the player was given a link. Denials exclude requests for recordings "
                "that do not exist. Listening time is an estimate: the audio the portal's media "
                "endpoint sent (bytes as a share of the file, times its duration); links served "
                "directly by S3 are not measured."
            ),
            small,
        ),
        Spacer(1, 4 * mm),
    ]
    header = [
        "Group",
        "Team",
        "Plays",
        "Recordings",
        "People",
        "Denials (by reason)",
        "Listened (est.)",
        "First",
        "Last",
    ]
    data: list[list[Any]] = [header]
    for group in report.groups:
        reasons = "<br/>".join(
            escape(f"{item.count} x {item.label}") for item in group.denial_reasons
        )
        data.append(
            [
                Paragraph(
                    escape(group.label)
                    + (
                        f"<br/><font size=6>{escape(group.key)}</font>"
                        if group.label != group.key
                        else ""
                    ),
                    small,
                ),
                Paragraph(escape(group.team or "-"), small),
                group.plays,
                group.recordings,
                group.people,
                Paragraph(f"{group.denials}" + (f"<br/>{reasons}" if reasons else ""), small),
                duration_text(group.listened_seconds) if group.playbacks_measured else "-",
                f"{group.first_at:%Y-%m-%d %H:%M}" if group.first_at else "-",
                f"{group.last_at:%Y-%m-%d %H:%M}" if group.last_at else "-",
            ]
        )
    table = LongTable(
        data,
        repeatRows=1,
        colWidths=[62 * mm, 30 * mm, 16 * mm, 20 * mm, 16 * mm, 55 * mm, 24 * mm, 26 * mm, 26 * mm],
    )
    table.setStyle(
        TableStyle(
            [
                ("FONTSIZE", (0, 0), (-1, -1), 8),
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8e8e8")),
                ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ]
        )
    )
    story.append(table)
    if not report.groups:
        story.append(Paragraph("No player activity matches these filters.", styles["BodyText"]))
    if report.truncated:
        story.append(
            Paragraph(
                escape(
                    f"Only the first {len(report.groups)} groups are listed; the CSV has them all."
                ),
                styles["BodyText"],
            )
        )
    return pdf_build(
        story,
        title="Playback report",
        author=produced_by,
        subject=f"Playback report by {report.group_by}",
    )


def pdf_build(story: list[Any], *, title: str, author: str, subject: str) -> bytes:
    """``story`` (ReportLab flowables) laid out on A4 landscape pages with the console's
    margins and the document's title, author and subject; shared by the playback report and
    the access reviews."""
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.units import mm
    from reportlab.platypus import SimpleDocTemplate

    buffer = io.BytesIO()
    document = SimpleDocTemplate(
        buffer,
        pagesize=landscape(A4),
        leftMargin=12 * mm,
        rightMargin=12 * mm,
        topMargin=12 * mm,
        bottomMargin=12 * mm,
        title=title,
        author=author,
        subject=subject,
    )
    document.build(story)
    return buffer.getvalue()


def report_urls(site: AdminSite) -> list[URLPattern]:
    """The report page and its two downloads, behind the admin site's login check."""

    def bind(view: Any) -> Any:
        return site.admin_view(lambda request: view(request, site))

    return [
        path("audit/reports/playback/", bind(playback_report_page), name="audit_playback_report"),
        path(
            "audit/reports/playback/csv/",
            bind(playback_report_csv),
            name="audit_playback_report_csv",
        ),
        path(
            "audit/reports/playback/pdf/",
            bind(playback_report_pdf),
            name="audit_playback_report_pdf",
        ),
    ]


cast(ComplianceAdminSite, admin.site).register_urls(report_urls)
