"""The audit admin's own pages: dashboard, chain verification, export of the current filter,
a recording's timeline, an identity's activity, the rule tester and the rules-file import.

Views stay thin: they check the permission, call one selector or service, write the access-log
row the page owes (``audit.staff_actions``) and render. Who may open what:

* access log pages (dashboard, verify, export, timelines): ``audit.view_accesslog``;
* rule tester and rules export: ``audit.view_accessrule``;
* rules import: ``audit.add_accessrule`` and ``audit.change_accessrule``.

The admin site itself (``admin_view``) already sent anonymous users and non-staff to the login
page; a staff member without the permission gets 403.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from celery import current_app
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.core.files.storage import default_storage
from django.db.models import QuerySet
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.http.response import HttpResponseBase
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from audit.admin import export_jobs, selectors
from audit.admin.chart import daily_bar_chart
from audit.admin.control_changes import pending_change_message, pending_change_url
from audit.admin.filters import date_parameter
from audit.admin.forms import RulesImportForm, RuleTestForm
from audit.admin.reviews import access_review_alerts
from audit.control_changes import control_changes_need_approval, control_changes_pending_count
from audit.control_rules import rules_load_or_propose
from audit.decisions import access_decide, access_explain
from audit.grants import restricted_activity
from audit.models import (
    AccessAction,
    AccessLogExport,
    AccessRule,
    ChainCheck,
    ChainVerificationRun,
    ControlChange,
    ExportKind,
    ExportState,
    VerificationState,
)
from audit.people import people_describe, people_match
from audit.rules_file import (
    RulePreview,
    RulesFileError,
    rules_dump_text,
    rules_preview,
    rules_state_fingerprint,
)
from audit.sealer import sealing_status
from audit.services import chain_check_run
from audit.staff_actions import query_detail, staff_action_log, staff_identity
from audit.verification import (
    STALE_AFTER,
    UNFINISHED,
    full_verification_current,
    full_verification_resume,
    full_verification_start,
)
from portal.http import request_audit_fields
from portal.sids import RECORDING_SID
from recordings.models import Recording

EXPORT_FORMATS = {
    "csv": ("text/csv; charset=utf-8", "csv"),
    "jsonl": ("application/x-ndjson", "jsonl"),
}
# A finished export's download: its content type and extension (a report may be a PDF), and
# the reason code of its audit row, by the job's kind.
DOWNLOAD_TYPES = {**EXPORT_FORMATS, "pdf": ("application/pdf", "pdf")}
DOWNLOAD_REASONS = {
    ExportKind.ACCESS_LOG: "access_log_download",
    ExportKind.PLAYBACK_REPORT: "playback_report_download",
}


def _require(request: HttpRequest, *permissions: str) -> None:
    if not request.user.has_perms(permissions):
        raise PermissionDenied


def _context(request: HttpRequest, model_admin: admin.ModelAdmin, title: str) -> dict[str, Any]:
    return {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.model._meta,
        "title": title,
    }


# --- Access log pages ------------------------------------------------------------------------


def dashboard(request: HttpRequest, model_admin: admin.ModelAdmin) -> HttpResponse:
    """The compliance dashboard (``audit.admin.selectors.dashboard``) with its SVG chart."""
    _require(request, "audit.view_accesslog")
    staff_action_log(request, action=AccessAction.ADMIN_VIEW, reason_code="dashboard")
    data = selectors.dashboard(now=timezone.now())
    context = {
        **_context(request, model_admin, "Compliance dashboard"),
        "dashboard": data,
        "chart": daily_bar_chart(data.per_day),
        "bulk_threshold": settings.AUDIT_ALERT_BULK_ACCESS_PER_HOUR,
        "restricted": restricted_activity(since=timezone.now() - timedelta(hours=24)),
        # Maker/checker's box: counted only while the setting is on (no query otherwise).
        "pending_control_changes": (
            control_changes_pending_count() if control_changes_need_approval() else None
        ),
        "review_alerts": access_review_alerts(now=timezone.now()),
    }
    return TemplateResponse(request, "admin/audit/dashboard.html", context)


def verify(request: HttpRequest, model_admin: admin.ModelAdmin) -> HttpResponse:
    """GET: the seal status, a full re-verification's progress and the last verifications;
    POST: have the log verified (what was sealed since the last verified seal), or with
    ``scope=full`` start (or take up) a full re-verification, or ``resume=<run id>`` one that
    stopped.

    Nothing here reads the whole log: with a broker both kinds run as Celery tasks and their
    result appears here when done (a million rows outlast any web request); embedded mode, with
    no broker, runs them at once.
    """
    _require(request, "audit.view_accesslog")
    if request.method == "POST" and ("resume" in request.POST or "scope" in request.POST):
        return _full_verification_post(request)
    if request.method == "POST":
        actor = staff_identity(request)
        if current_app.conf.task_always_eager:
            check = chain_check_run(
                trigger="admin", actor=actor, full=False, **request_audit_fields(request)
            )
            if check.ok:
                messages.success(request, f"The audit log is intact: {check.message}.")
            else:
                messages.error(request, f"The audit log is BROKEN: {check.message}")
        else:
            current_app.send_task(
                "audit.tasks.verify_audit_chain",
                kwargs={"trigger": "admin", "actor": actor, "full": False},
            )
            messages.info(
                request, "Verification queued: its result appears below when it is done."
            )
        return HttpResponseRedirect(reverse("admin:audit_accesslog_verify"))
    checks = list(ChainCheck.objects.order_by("-checked_at", "-id")[:10])
    now = timezone.now()
    run = full_verification_current() or ChainVerificationRun.objects.first()
    context = {
        **_context(request, model_admin, "Verify audit log"),
        "latest": checks[0] if checks else None,
        "checks": checks,
        "sealing": sealing_status(now=now),
        "run": run,
        "run_stalled": run is not None
        and (
            run.state == VerificationState.FAILED
            or (run.state in UNFINISHED and run.updated_at < now - STALE_AFTER)
        ),
    }
    return TemplateResponse(request, "admin/audit/verify.html", context)


def _full_verification_post(request: HttpRequest) -> HttpResponse:
    """Start, take up or resume the full re-verification (``audit.verification``), audited
    as the officer's ``chain_verify`` request; its verdict is written when it ends."""
    resume = request.POST.get("resume", "")
    if resume:
        if not resume.isdigit():
            raise Http404("no such verification")
        run = ChainVerificationRun.objects.filter(pk=int(resume)).first()
        if run is None:
            raise Http404("no such verification")
        run = full_verification_resume(run_id=run.pk)
        created = False
    else:
        run, created = full_verification_start(trigger="admin", actor=staff_identity(request))
    staff_action_log(
        request,
        action=AccessAction.CHAIN_VERIFY,
        reason_code="full_verification_resumed" if resume else "full_verification_requested",
        detail={"run_id": run.pk, "new": created},
    )
    if run.state == VerificationState.DONE and run.verdict is not None:
        if run.verdict.ok:
            messages.success(request, f"The audit log is intact: {run.verdict.message}.")
        else:
            messages.error(request, f"The audit log is BROKEN: {run.verdict.message}")
    elif created:
        messages.info(
            request,
            f"Full re-verification {run.pk} queued: its progress and result appear below.",
        )
    else:
        messages.info(
            request,
            f"Full re-verification {run.pk} goes on from seal {run.through_seal}: "
            "only one runs at a time.",
        )
    return HttpResponseRedirect(reverse("admin:audit_accesslog_verify"))


def export(request: HttpRequest, model_admin: admin.ModelAdmin, fmt: str) -> HttpResponseBase:
    """POST: queue an export of the access log's current filter and search, oldest first, as
    CSV (safe to open in a spreadsheet) or JSON Lines (exact values, like ``export_audit_log``),
    and show the exports page, where it can be downloaded once written."""
    _require(request, "audit.view_accesslog")
    if fmt not in EXPORT_FORMATS:
        raise Http404("unknown export format")
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    # The list's filters travel in the form's query string, as on the list itself.
    try:
        job = export_jobs.export_queue(request=request, fmt=fmt)
    except IncorrectLookupParameters as exc:
        messages.error(request, f"The filter is not valid ({exc}); nothing was exported.")
        # Back to the same list, its filters kept, where the bad one is named by its field.
        query = request.GET.urlencode()
        return HttpResponseRedirect(
            reverse("admin:audit_accesslog_changelist") + (f"?{query}" if query else "")
        )
    staff_action_log(
        request,
        action=AccessAction.ADMIN_EXPORT,
        reason_code=f"access_log_{fmt}",
        detail={"filters": query_detail(request.GET), "export_id": job.pk},
    )
    messages.info(request, f"Export {job.pk} is being written; download it below when done.")
    return HttpResponseRedirect(reverse("admin:audit_accesslog_exports"))


def _visible_exports(request: HttpRequest) -> QuerySet[AccessLogExport]:
    exports = AccessLogExport.objects.all()
    if not request.user.is_superuser:
        exports = exports.filter(requested_by=request.user.get_username())
    return exports


def exports(request: HttpRequest, model_admin: admin.ModelAdmin) -> HttpResponse:
    """The officer's exports (a superuser's: everyone's), newest first, with their state."""
    _require(request, "audit.view_accesslog")
    context = {
        **_context(request, model_admin, "Exports"),
        "exports": _visible_exports(request)[:50],
        "retention_hours": settings.AUDIT_EXPORT_RETENTION_HOURS,
    }
    return TemplateResponse(request, "admin/audit/exports.html", context)


def export_download(
    request: HttpRequest, model_admin: admin.ModelAdmin, export_id: int
) -> HttpResponseBase:
    """The file of a finished export, through the portal (audited); 404 for another officer's
    export, or one that is not done."""
    _require(request, "audit.view_accesslog")
    job = _visible_exports(request).filter(pk=export_id, state=ExportState.DONE).first()
    if job is None:
        raise Http404("no such export")
    staff_action_log(
        request,
        action=AccessAction.ADMIN_EXPORT,
        reason_code=DOWNLOAD_REASONS[ExportKind(job.kind)],
        detail={"export_id": job.pk, "rows": job.rows, "sha256": job.sha256},
    )
    content_type, extension = DOWNLOAD_TYPES[job.format]
    response = FileResponse(
        default_storage.open(job.file_name, "rb"),
        content_type=content_type,
        as_attachment=True,
        filename=f"{export_jobs.FILE_STEMS[job.kind]}-{job.pk}.{extension}",
    )
    response["Cache-Control"] = "no-store"
    return response


def identity(request: HttpRequest, model_admin: admin.ModelAdmin) -> HttpResponse:
    """Everything one person opened, grouped by recording: ``?identity=`` takes the person
    the way the officer knows them (an e-mail, a name, a worker SID, Flex's identity or part
    of it), ``since``/``until`` a date range validated like the log's (a bad date is named
    next to its field and left out)."""
    _require(request, "audit.view_accesslog")
    subject = request.GET.get("identity", "").strip()[:255]
    bounds, errors = _date_range(request)
    activity = None
    found = people_match(term=subject) if subject else None
    if found is not None:
        staff_action_log(
            request,
            action=AccessAction.ADMIN_VIEW,
            reason_code="identity_activity",
            detail={
                "subject": subject,
                **{name: moment.isoformat() for name, moment in bounds.items()},
            },
        )
        activity = selectors.identity_activity(identities=found.identities, **bounds)
    people = (
        people_describe(identities=found.identities, worker_sids=found.worker_sids)
        if found is not None
        else {}
    )
    shown = set(activity.identities) if activity else set()
    context = {
        **_context(request, model_admin, f"Opened by {subject}" if subject else "Identity"),
        "subject": subject,
        "since": request.GET.get("since", "").strip(),
        "until": request.GET.get("until", "").strip(),
        "errors": errors,
        "activity": activity,
        "people": sorted(
            {person for person in people.values() if person.identity in shown},
            key=lambda person: (person.name, person.identity),
        ),
        "log_query": urlencode({"q": subject, "activity": "all"}),
        "bytes_served": (
            selectors.playback_bytes(identities=found.identities) if found is not None else 0
        ),
    }
    return TemplateResponse(request, "admin/audit/identity.html", context)


def _date_range(request: HttpRequest) -> tuple[dict[str, datetime], dict[str, str]]:
    """``since`` and ``until`` from the query (the access log's rules: dates or dates and
    times, UTC, ``until`` exclusive and a whole day for a date), and what is wrong with each
    one that is not a date."""
    bounds: dict[str, datetime] = {}
    errors: dict[str, str] = {}
    for name, end in (("since", False), ("until", True)):
        text = request.GET.get(name, "").strip()
        if not text:
            continue
        try:
            bounds[name] = date_parameter(text, end=end)
        except IncorrectLookupParameters as exc:
            errors[name] = str(exc)
    return bounds, errors


def recording_timeline(
    request: HttpRequest, model_admin: admin.ModelAdmin, sid: str
) -> HttpResponse:
    """One recording SID's timeline, including SIDs the portal no longer has a row for."""
    _require(request, "audit.view_accesslog")
    if not RECORDING_SID.fullmatch(sid):
        raise Http404("not a recording SID")
    context = {
        **_context(request, model_admin, f"Timeline of {sid}"),
        **recording_page_context(request, sid),
    }
    return TemplateResponse(request, "admin/audit/recording_timeline.html", context)


def recording_page_context(request: HttpRequest, sid: str) -> dict[str, Any]:
    """Log the view of recording ``sid``'s page and answer its timeline for the template.

    Used by the timeline page and by the recording's own admin page; the timeline needs
    ``audit.view_accesslog`` (without it the page shows no timeline, and nothing is logged).
    """
    if not request.user.has_perm("audit.view_accesslog"):
        return {"timeline": None}
    staff_action_log(
        request,
        action=AccessAction.ADMIN_VIEW,
        reason_code="recording_page",
        recording_sid=sid,
    )
    return {"timeline": selectors.recording_timeline(sid=sid)}


def recording_change_context(request: HttpRequest, recording: Recording) -> dict[str, Any]:
    """The extra context of a ``Recording``'s admin page: its timeline (see above)."""
    return recording_page_context(request, recording.sid)


# --- Rules -----------------------------------------------------------------------------------


def rule_test(request: HttpRequest, model_admin: admin.ModelAdmin) -> HttpResponse:
    """Decide for an entered caller and recording with ``access_decide`` (what url_provider
    would answer), and show for every rule whether it applies and why not."""
    _require(request, "audit.view_accessrule")
    form = RuleTestForm(request.GET if "identity" in request.GET else None)
    decision = checks = caller = facts = None
    if form.is_valid():
        caller, facts, now = form.caller(), form.recording_facts(), form.moment()
        decision = access_decide(caller=caller, recording=facts, now=now)
        rules = list(AccessRule.objects.order_by("name"))
        checks = access_explain(caller=caller, recording=facts, now=now, rules=rules)
    context = {
        **_context(request, model_admin, "Test the access rules"),
        "form": form,
        "decision": decision,
        "checks": checks,
        "caller": caller,
        "facts": facts,
        "focus": request.GET.get("rule", ""),
    }
    return TemplateResponse(request, "admin/audit/accessrule/test.html", context)


def rules_import(request: HttpRequest, model_admin: admin.ModelAdmin) -> HttpResponse:
    """Upload or paste a rules file; see what it would change; confirm to load it.

    The confirmation carries a fingerprint of what was previewed (the rules in the database,
    the file's text and the replace choice): if any of them changed in between, the preview is
    shown again instead of loading something the officer did not see.
    """
    _require(request, "audit.add_accessrule", "audit.change_accessrule")
    form = (
        RulesImportForm(request.POST, request.FILES)
        if request.method == "POST"
        else RulesImportForm()
    )
    preview = None
    stale = False
    if request.method == "POST" and form.is_valid():
        data, replace = form.cleaned_data["parsed"], form.cleaned_data["replace"]
        fingerprint = _preview_fingerprint(form.cleaned_data["text"], replace)
        confirmed = "confirm" in request.POST
        stale = confirmed and form.cleaned_data["fingerprint"] != fingerprint
        try:
            if confirmed and not stale:
                loaded = rules_load_or_propose(
                    data,
                    replace=replace,
                    actor=staff_identity(request),
                    proposed_by=request.user,  # type: ignore[arg-type]
                    context={"identity": staff_identity(request), **request_audit_fields(request)},
                )
                if isinstance(loaded, ControlChange):
                    pending_change_message(request, loaded)
                    return HttpResponseRedirect(pending_change_url(loaded))
                messages.success(request, f"Rules file loaded: {loaded}.")
                return HttpResponseRedirect(reverse("admin:audit_accessrule_changelist"))
            preview = rules_preview(data, replace=replace)
        except RulesFileError as exc:
            for problem in exc.problems:
                form.add_error(None, problem)
        else:
            form = RulesImportForm(
                initial={
                    "content": form.cleaned_data["text"],
                    "replace": replace,
                    "fingerprint": fingerprint,
                }
            )
    context = {
        **_context(request, model_admin, "Import access rules"),
        "form": form,
        "preview": None if preview is None else [_preview_row(item) for item in preview],
        "stale": stale,
        "changes": [item for item in preview or [] if item.change != "unchanged"],
    }
    return TemplateResponse(request, "admin/audit/accessrule/import.html", context)


def _preview_row(item: RulePreview) -> dict[str, Any]:
    """One previewed rule for the template, its values shown as they read in the file."""
    return {
        "name": item.name,
        "change": item.change,
        "fields": [(name, json.dumps(old), json.dumps(new)) for name, old, new in item.fields],
    }


def _preview_fingerprint(text: str, replace: bool) -> str:
    state = f"{rules_state_fingerprint()}\n{replace}\n{text}"
    return hashlib.sha256(state.encode()).hexdigest()


def rules_export(request: HttpRequest, model_admin: admin.ModelAdmin) -> HttpResponse:
    """The enabled rules as a rules file (what ``export_access_rules`` prints)."""
    _require(request, "audit.view_accessrule")
    response = HttpResponse(rules_dump_text(), content_type="application/json")
    response["Content-Disposition"] = 'attachment; filename="access-rules.json"'
    response["Cache-Control"] = "no-store"
    return response
