"""Legal holds as cases in the admin (issue 15, item 4): the matter, its custodians and notes on
the hold's form, and the case page, which lists what the hold covers with each recording's S3
Object Lock legal hold as S3 reports it now (read back, one page at a time, so a case of 10,000
recordings opens as fast as one of ten).

Placing or releasing a hold, from any admin path, sets or clears the locks right after the
hold's transaction commits (:func:`hold_locks_schedule`); what that first pass leaves is done
by a queued job and, whatever happens to it, the periodic reconcile
(:mod:`recordings.lifecycle.hold_locks`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from audit.models import AccessOutcome
from audit.staff_actions import staff_action_log, staff_identity
from portal.http import request_audit_fields
from recordings import jobs
from recordings.lifecycle import hold_locks, retention
from recordings.models import LegalHold

logger = logging.getLogger(__name__)

CASE_PAGE_SIZE = 50
MAX_CUSTODIANS = 200


class CustodiansField(forms.CharField):
    """Custodians one per line (a name, an e-mail address, or both as counsel writes them),
    cleaned to a list; a stored list shows one per line again."""

    widget = forms.Textarea(attrs={"rows": 3, "cols": 48})

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("help_text", "Whose recordings the matter concerns: one per line.")
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> Any:
        """A stored list shows one custodian per line."""
        if isinstance(value, list):
            return "\n".join(str(item) for item in value)
        return value

    def clean(self, value: Any) -> list[str]:
        """The non-empty lines, each at most 200 characters, duplicates dropped."""
        text = super().clean(value) or ""
        people = list(dict.fromkeys(line.strip() for line in text.splitlines() if line.strip()))
        too_long = [person for person in people if len(person) > 200]
        if too_long:
            raise ValidationError("A custodian is at most 200 characters: one per line.")
        if len(people) > MAX_CUSTODIANS:
            raise ValidationError(f"At most {MAX_CUSTODIANS} custodians per case.")
        return people


def _after_commit(hold_id: int, context: Mapping[str, Any]) -> None:
    try:
        hold_locks.hold_locks_after_change(hold_id=hold_id, context=context)
    except Exception:
        # The hold is placed (or released) whatever S3 does; the job and the reconcile set
        # what this pass could not, and the case page shows it as owed meanwhile.
        logger.exception("object locks of legal hold %s left to the reconcile", hold_id)
        jobs.queue_hold_locks(hold_id)


def hold_locks_schedule(*, hold_id: int, request: HttpRequest) -> None:
    """Set (or clear) the hold's S3 locks once the transaction that placed (or released) it
    commits: never from inside it, so S3's answers cannot roll a hold back or hold a row lock
    while S3 is slow."""
    context = {"identity": staff_identity(request), **request_audit_fields(request)}
    transaction.on_commit(lambda: _after_commit(hold_id, context))


def hold_locks_schedule_with(*, hold_id: int, context: Mapping[str, Any]) -> None:
    """:func:`hold_locks_schedule` for a change made outside the staff member's own request
    (a release approved by a second staff member: ``recordings.admin.control_changes``)."""
    transaction.on_commit(lambda: _after_commit(hold_id, dict(context)))


def hold_lock_summary(hold: LegalHold | None) -> str:
    """The case's locks in one line, from what the portal recorded (no S3 call), linked to the
    case page where S3 is asked."""
    if hold is None or hold.pk is None:
        return "shown once the hold is placed"
    counts = hold_locks.hold_lock_counts(hold=hold)
    url = reverse("admin:recordings_legalhold_case", args=[hold.pk])
    parts = [f"{counts['in_s3']} in the portal's S3", f"{counts['locked']} locked"]
    if counts["failed"]:
        parts.append(f"{counts['failed']} failed (retried)")
    if counts["not_enabled"]:
        parts.append(f"{counts['not_enabled']} on a bucket without Object Lock")
    if counts["owed"] - counts["failed"] - counts["not_enabled"] > 0:
        parts.append(f"{counts['owed'] - counts['failed'] - counts['not_enabled']} pending")
    if counts["released"]:
        parts.append(f"{counts['released']} released")
    return format_html('{} — <a href="{}">case page (read back from S3)</a>', ", ".join(parts), url)


class HoldCaseAdminMixin(admin.ModelAdmin):
    """The case parts of the legal-hold admin: the case page, and the locks set or cleared
    when a hold is placed or released."""

    def get_urls(self) -> list[URLPattern]:
        """The case page, ahead of the change page's catch-all."""
        case = path(
            "<int:hold_id>/case/",
            self.admin_site.admin_view(self.case_view),
            name="recordings_legalhold_case",
        )
        return [case, *super().get_urls()]

    @admin.display(description="object locks")
    def object_locks(self, obj: LegalHold | None) -> str:
        """The case's S3 locks in one line, linked to the case page."""
        return hold_lock_summary(obj)

    def case_view(self, request: HttpRequest, hold_id: int) -> HttpResponse:
        """The case page: the matter, and per covered recording (a page at a time) its lock as
        S3 reports it. POST applies the locks still owed now (change permission)."""
        hold = get_object_or_404(LegalHold, pk=hold_id)
        posting = request.method == "POST"
        allowed = (
            self.has_change_permission(request, hold)
            if posting
            else self.has_view_permission(request, hold)
        )
        if not allowed:
            staff_action_log(
                request,
                action=retention.HOLD_ACTION,
                outcome=AccessOutcome.DENIED,
                reason_code="permission",
                detail={"hold": hold.pk, "page": "case"},
            )
            raise PermissionDenied
        if posting:
            run = hold_locks.hold_locks_apply(
                hold_id=hold.pk,
                limit=hold_locks.INLINE_LIMIT,
                context={"identity": staff_identity(request), **request_audit_fields(request)},
            )
            if run.remaining and not run.stopped:
                jobs.queue_hold_locks(hold.pk)
            level = messages.ERROR if run.stopped or run.failed else messages.SUCCESS
            messages.add_message(request, level, f"Object locks: {run.as_dict()}")
            return HttpResponseRedirect(request.path)
        covered = hold_locks.hold_covered(hold).order_by("pk")
        paginator = Paginator(covered, CASE_PAGE_SIZE)
        page = paginator.get_page(request.GET.get("page"))
        views = hold_locks.hold_lock_readback(hold=hold, recordings=page.object_list)
        staff_action_log(
            request,
            action=retention.HOLD_ACTION,
            reason_code="case_view",
            detail={"hold": hold.pk, "page": page.number, "shown": len(views)},
        )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Legal hold case: {hold.matter_name or hold}",
            "hold": hold,
            "page": page,
            "views": views,
            "counts": hold_locks.hold_lock_counts(hold=hold),
            "can_apply": self.has_change_permission(request, hold) and hold.released_at is None,
        }
        return TemplateResponse(request, "admin/recordings/legalhold/case.html", context)
