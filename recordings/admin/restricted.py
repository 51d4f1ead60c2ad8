"""Restricted recordings in the admin: mark or lift by hand or from a search (the recordings
list's actions, each asking for a reason), the list's column and filter.

``recordings.lifecycle.restriction`` changes the recordings and writes one access-log row per
recording; here only the form. Who may: staff holding ``recordings.restrict_recording`` (the
compliance manager group has it).
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from audit.staff_actions import staff_identity
from recordings.lifecycle import restriction
from recordings.models import Recording

MAX_SELECTION = 1000


class RestrictionForm(forms.Form):
    """The reason a restriction is placed or lifted (required; in the access log)."""

    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        max_length=restriction.REASON_MAX_LENGTH,
        help_text="e.g. PCI segment not paused, HR matter, caller declined QA use.",
    )


class RestrictedFilter(admin.SimpleListFilter):
    """Restricted recordings, or the others."""

    title = "restricted"
    parameter_name = "restricted"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        """Yes or no."""
        return [("yes", "restricted"), ("no", "not restricted")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        """Filter on ``restricted_at`` (indexed)."""
        if self.value() == "yes":
            return queryset.filter(restricted_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(restricted_at__isnull=True)
        return queryset


class RestrictedAdminMixin(admin.ModelAdmin):
    """The restricted-recording parts of the recordings admin."""

    def has_restrict_permission(self, request: HttpRequest) -> bool:
        """Marking and lifting restrictions needs ``recordings.restrict_recording``."""
        return request.user.has_perm("recordings.restrict_recording")

    @admin.display(boolean=True, description="restricted", ordering="restricted_at")
    def restricted_shown(self, obj: Recording) -> bool:
        """Whether the recording is restricted (the list's column)."""
        return obj.restricted_at is not None

    @admin.action(
        description="Mark the selected recordings restricted (asks for a reason)",
        permissions=["restrict"],
    )
    def restrict_recordings(
        self, request: HttpRequest, queryset: QuerySet[Recording]
    ) -> HttpResponse | None:
        """Restrict the selection once the reason is given."""
        return self._restriction(request, queryset, restrict=True)

    @admin.action(
        description="Lift the restriction of the selected recordings (asks for a reason)",
        permissions=["restrict"],
    )
    def unrestrict_recordings(
        self, request: HttpRequest, queryset: QuerySet[Recording]
    ) -> HttpResponse | None:
        """Lift the selection's restriction once the reason is given."""
        return self._restriction(request, queryset, restrict=False)

    def _restriction(
        self, request: HttpRequest, queryset: QuerySet[Recording], *, restrict: bool
    ) -> HttpResponse | None:
        recordings = list(queryset.order_by("pk")[: MAX_SELECTION + 1])
        if len(recordings) > MAX_SELECTION:
            self.message_user(
                request, f"Select at most {MAX_SELECTION} recordings at once.", messages.ERROR
            )
            return None
        form = RestrictionForm(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            actor = staff_identity(request)
            try:
                if restrict:
                    changed = restriction.recordings_restrict(
                        recordings=recordings,
                        reason=form.cleaned_data["reason"],
                        actor=actor,
                        now=timezone.now(),
                    )
                else:
                    changed = restriction.recordings_unrestrict(
                        recordings=recordings, reason=form.cleaned_data["reason"], actor=actor
                    )
            except restriction.RestrictionInvalid as exc:
                form.add_error("reason", str(exc))
            else:
                verb = "restricted" if restrict else "released from restriction"
                self.message_user(request, f"{len(changed)} recordings {verb}.", messages.SUCCESS)
                return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Restrict recordings" if restrict else "Lift a restriction",
            "opts": self.model._meta,
            "form": form,
            "recordings": recordings,
            "restrict": restrict,
            "action": "restrict_recordings" if restrict else "unrestrict_recordings",
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "select_across": request.POST.get("select_across", "0"),
        }
        return TemplateResponse(request, "admin/recordings/recording/restrict.html", context)
