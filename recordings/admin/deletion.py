"""Deleting recordings by hand in the admin: never in one click. The "delete" action opens a
confirmation page with the count, the recordings a legal hold covers (they will be refused)
and a required reason; only then are the others soft-deleted by
:func:`recordings.lifecycle.retention.recording_soft_delete`, which keeps the reason in the
``retention_delete`` audit row (the recording has no field for it) and refuses, and audits,
any recording a hold covers by then. Superusers only, as before.
"""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone

from audit.models import AccessOutcome
from audit.staff_actions import staff_action_log, staff_identity
from portal.http import request_audit_fields
from recordings.lifecycle import retention
from recordings.models import Recording, RecordingStatus

# As before the confirmation page: one round deletes at most this many.
MAX_DELETE = 1000


class DeleteConfirmForm(forms.Form):
    """The reason a deletion by hand must give (kept in its audit rows)."""

    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        max_length=500,
        help_text="Why these recordings are deleted (required; kept in the access log).",
    )

    def clean_reason(self) -> str:
        """A reason of only spaces is no reason."""
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise ValidationError("Say why these recordings are deleted.")
        return reason


def _ids(text: str) -> list[int]:
    """The recording ids of the confirmation's hidden field; anything else is ignored (the
    selection is re-read from the database, so a forged id can only name a recording)."""
    return [
        int(part) for part in text.split()[: MAX_DELETE + 1] if part.isascii() and part.isdigit()
    ]


class DeletionAdminMixin(admin.ModelAdmin):
    """The deletion parts of the recordings admin: the action, its confirmation page and the
    status column that says "deleted" instead of Twilio's last status."""

    def get_urls(self) -> list[URLPattern]:
        """The confirmation page, ahead of the recording page's catch-all."""
        confirm = path(
            "delete-with-reason/",
            self.admin_site.admin_view(self.delete_confirm_view),
            name="recordings_recording_delete_confirm",
        )
        return [confirm, *super().get_urls()]

    @admin.display(description="status", ordering="status")
    def status_shown(self, obj: Recording) -> str:
        """Twilio's status, or "deleted" once the portal deleted (or hid) the recording."""
        if obj.status == RecordingStatus.DELETED or obj.hard_deleted_at is not None:
            return "deleted"
        if obj.soft_deleted_at is not None:
            return "deleted (media purge pending)"
        return obj.get_status_display() or "-"

    def has_retention_delete_permission(self, request: HttpRequest) -> bool:
        """Deleting recordings by hand is for superusers only."""
        return bool(request.user.is_active and request.user.is_superuser)

    @admin.action(
        description="Delete the selected recordings (asks for a reason; media deleted after "
        "the grace period)",
        permissions=["retention_delete"],
    )
    def delete_now(self, request: HttpRequest, queryset: QuerySet[Recording]) -> HttpResponse:
        """The confirmation page for the selection: nothing is deleted yet."""
        return self._delete_page(
            request, list(queryset.values_list("pk", flat=True)[: MAX_DELETE + 1])
        )

    def delete_confirm_view(self, request: HttpRequest) -> HttpResponse:
        """Delete the confirmed recordings with the reason given (POST from the confirmation
        page); a refusal for want of permission is audited like any other."""
        if not self.has_retention_delete_permission(request):
            staff_action_log(
                request,
                action=retention.ACTION,
                outcome=AccessOutcome.DENIED,
                reason_code="permission",
                detail={"page": "delete"},
            )
            raise PermissionDenied
        if request.method != "POST":
            return HttpResponseRedirect(reverse("admin:recordings_recording_changelist"))
        return self._delete_page(request, _ids(request.POST.get("ids", "")))

    def _delete_page(self, request: HttpRequest, ids: list[int]) -> HttpResponse:
        too_many = len(ids) > MAX_DELETE
        recordings = list(
            Recording.objects.filter(pk__in=ids[:MAX_DELETE]).order_by("-start_time", "pk")
        )
        held = retention.holds_by_recording(recordings)
        already = [r for r in recordings if r.soft_deleted_at is not None]
        deletable = [r for r in recordings if r.pk not in held and r.soft_deleted_at is None]
        confirming = request.method == "POST" and "confirm" in request.POST
        form = DeleteConfirmForm(request.POST if confirming else None)
        if confirming and form.is_valid():
            self._delete(request, recordings, reason=form.cleaned_data["reason"])
            return HttpResponseRedirect(reverse("admin:recordings_recording_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Delete recordings",
            "form": form,
            "ids": " ".join(str(r.pk) for r in recordings),
            "count": len(recordings),
            "deletable": deletable,
            "held": [(r, held[r.pk]) for r in recordings if r.pk in held],
            "already": already,
            "too_many": too_many,
            "max_delete": MAX_DELETE,
            "grace_days": retention.DEFAULT_GRACE_DAYS,
            "purge_on": timezone.now() + timedelta(days=retention.DEFAULT_GRACE_DAYS),
        }
        return TemplateResponse(request, "admin/recordings/recording/delete_confirm.html", context)

    def _delete(self, request: HttpRequest, recordings: list[Recording], *, reason: str) -> None:
        """Soft-delete each recording not deleted yet, by hand (``admin:<user>``) and with the
        reason; the service refuses, and audits, each one a hold covers."""
        context = {"identity": staff_identity(request), **request_audit_fields(request)}
        deleted = 0
        for recording in recordings:
            if recording.soft_deleted_at is not None:
                continue
            try:
                retention.recording_soft_delete(
                    recording_id=recording.pk,
                    policy=context["identity"],
                    context=context,
                    reason=reason,
                )
                deleted += 1
            except retention.RecordingHeld as exc:
                self.message_user(
                    request,
                    f"{exc.recording.sid} is under legal hold {exc.hold} and was not deleted.",
                    messages.ERROR,
                )
        if deleted:
            self.message_user(
                request,
                f"{deleted} recording(s) hidden; their media is deleted for good after "
                f"{retention.DEFAULT_GRACE_DAYS} days.",
                messages.SUCCESS,
            )
