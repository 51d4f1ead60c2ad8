"""Restriction rules in the admin: define a rule on recordings' facts (applied by itself to
every recording synced or linked from then on), and apply it to the recordings already there
after a preview of how many it would restrict and which.

``recordings.lifecycle.restriction_rules`` decides and restricts; here only the forms. Every
change of a rule is a ``rule_change``/``restriction_rule`` row with old and new values; every
recording restricted is its own ``recording_restrict`` row. Who may: staff holding
``recordings.restrict_recording`` (the compliance manager group), the same people who
restrict recordings by hand.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from audit.models import AccessAction, AccessOutcome
from audit.staff_actions import staff_action_log, staff_identity
from recordings.lifecycle import restriction_rules
from recordings.models import RestrictionRule

AUDITED_FIELDS = (
    "name",
    "reason",
    "enabled",
    *RestrictionRule.LIST_FIELDS,
    "min_duration_seconds",
)


def _fingerprint(rule: RestrictionRule, preview: restriction_rules.RulePreview) -> str:
    """What the preview showed (the rule as saved, the count and the sample), so a
    confirmation after the rule or the recordings changed shows the preview again instead of
    restricting what the officer did not see."""
    seen = f"{rule.pk}|{rule.updated_at.isoformat()}|{preview.count}|{','.join(preview.sample)}"
    return hashlib.sha256(seen.encode()).hexdigest()


class ApplyForm(forms.Form):
    """The confirmation of a preview."""

    fingerprint = forms.CharField(widget=forms.HiddenInput, max_length=64)


@admin.register(RestrictionRule)
class RestrictionRuleAdmin(admin.ModelAdmin):
    """Restriction rules: who holds ``recordings.restrict_recording`` defines, changes and
    applies them; every change is in the access log."""

    list_display = ("name", "enabled", "reason", "facts", "apply_link", "updated_at")
    list_filter = ("enabled",)
    search_fields = ("name", "reason")
    readonly_fields = ("created_by", "created_at", "updated_at")
    fields = (
        "name",
        "reason",
        "enabled",
        "account_sids",
        "sources",
        "call_sids",
        "queues",
        "teams",
        "workers",
        "min_duration_seconds",
        "created_by",
        "created_at",
        "updated_at",
    )

    def _may(self, request: HttpRequest) -> bool:
        return bool(
            request.user.is_active and request.user.has_perm("recordings.restrict_recording")
        )

    def has_module_permission(self, request: HttpRequest) -> bool:
        """Shown in the index to those who may restrict recordings."""
        return self._may(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Read by those who may restrict recordings."""
        return self._may(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Defined by those who may restrict recordings."""
        return self._may(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Changed by those who may restrict recordings."""
        return self._may(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Deleted by those who may restrict recordings (recordings it restricted stay so)."""
        return self._may(request)

    @admin.display(description="matches")
    def facts(self, obj: RestrictionRule) -> str:
        """The facts the rule names, in a few words."""
        parts = [
            f"{name.replace('_', ' ')}: {', '.join(str(v) for v in getattr(obj, name))}"
            for name in RestrictionRule.LIST_FIELDS
            if getattr(obj, name)
        ]
        if obj.min_duration_seconds is not None:
            parts.append(f"at least {obj.min_duration_seconds} s")
        return "; ".join(parts)[:300]

    @admin.display(description="existing recordings")
    def apply_link(self, obj: RestrictionRule) -> str:
        """A link to the preview of the rule applied to the recordings already there."""
        url = reverse("admin:recordings_restrictionrule_apply", args=[obj.pk])
        return format_html('<a href="{}" class="restriction-rule-apply">Preview and apply</a>', url)

    def get_urls(self) -> list[URLPattern]:
        """The preview-and-apply page, ahead of the rule's own pages."""
        return [
            path(
                "<int:rule_id>/apply/",
                self.admin_site.admin_view(self.apply_view),
                name="recordings_restrictionrule_apply",
            ),
            *super().get_urls(),
        ]

    def save_model(
        self, request: HttpRequest, obj: RestrictionRule, form: Any, change: bool
    ) -> None:
        """Save, and log who changed which fact from what to what."""
        before = (
            RestrictionRule.objects.filter(pk=obj.pk).values(*AUDITED_FIELDS).first() or {}
            if change
            else {}
        )
        if not change:
            obj.created_by = request.user.get_username()[:150]
        super().save_model(request, obj, form, change)
        changes = {
            name: {"old": before.get(name), "new": getattr(obj, name)}
            for name in AUDITED_FIELDS
            if before.get(name) != getattr(obj, name)
        }
        self._log(request, obj, "changed" if change else "created", changes)

    def delete_model(self, request: HttpRequest, obj: RestrictionRule) -> None:
        """Delete, and log it (recordings it restricted stay restricted)."""
        super().delete_model(request, obj)
        self._log(request, obj, "deleted", {})

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        """The list's bulk delete, one logged deletion per rule."""
        for rule in list(queryset):
            self.delete_model(request, rule)

    @staticmethod
    def _log(
        request: HttpRequest, obj: RestrictionRule, what: str, changes: dict[str, Any]
    ) -> None:
        staff_action_log(
            request,
            action=AccessAction.RULE_CHANGE,
            reason_code="restriction_rule",
            detail={"rule": obj.name[:100], "what": what, "changes": changes},
        )

    def apply_view(self, request: HttpRequest, rule_id: int) -> HttpResponse:
        """Preview what the rule restricts among existing recordings; restrict them once the
        officer confirms the very preview shown."""
        if not self._may(request):
            staff_action_log(
                request,
                action=AccessAction.RULE_CHANGE,
                outcome=AccessOutcome.DENIED,
                reason_code="permission",
                detail={"page": "restriction_rule_apply", "rule_id": rule_id},
            )
            raise PermissionDenied
        rule = RestrictionRule.objects.filter(pk=rule_id).first()
        if rule is None:
            raise Http404("no such restriction rule")
        preview = restriction_rules.restriction_rule_preview(rule=rule)
        fingerprint = _fingerprint(rule, preview)
        form = ApplyForm(request.POST if request.method == "POST" else None)
        if form.is_bound and form.is_valid():
            if form.cleaned_data["fingerprint"] != fingerprint:
                messages.warning(
                    request,
                    "The rule or the recordings changed since the preview: check it again.",
                )
            else:
                actor = staff_identity(request)
                changed = restriction_rules.restriction_rule_apply_existing(
                    rule=rule, actor=actor, limit=restriction_rules.INLINE_LIMIT
                )
                messages.success(
                    request, f"{len(changed)} recordings restricted by rule “{rule.name}”."
                )
                rest = preview.count - len(changed)
                if len(changed) >= restriction_rules.INLINE_LIMIT and rest > 0:
                    if restriction_rules.restriction_rule_apply_queue(rule=rule, actor=actor):
                        messages.info(
                            request,
                            f"The other {rest} are being restricted in the background.",
                        )
                    else:
                        messages.warning(
                            request,
                            f"The other {rest} could not be queued (the job queue is down): "
                            "apply the rule again later.",
                        )
                return HttpResponseRedirect(
                    reverse("admin:recordings_recording_changelist") + "?restricted=yes"
                )
        elif form.is_bound:
            messages.error(request, "The confirmation was incomplete: check the preview again.")
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Apply restriction rule “{rule.name}” to existing recordings",
            "rule": rule,
            "facts": self.facts(rule),
            "preview": preview,
            "form": ApplyForm(initial={"fingerprint": fingerprint}),
            "sample_size": restriction_rules.PREVIEW_SAMPLE,
        }
        return TemplateResponse(request, "admin/recordings/restrictionrule/apply.html", context)
