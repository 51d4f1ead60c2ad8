"""Evidence packages in the admin: the recordings list's "Export an evidence package" action,
its form (a required reason; decrypted audio or not), the packages page and the download.

A package is written in the background (``recordings.lifecycle.evidence_package``): the form
only records the job. Who may: staff who may view recordings and the access log (the package
holds both). Decrypted audio is for superusers only: it leaves the portal in clear, outside
every access rule and link lifetime, and superusers are already the ones trusted with the
private keys that decrypt it (importing and deleting them); a new permission would be one more
thing to grant by mistake. Every refusal is written to the access log like any decision.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.storage import default_storage
from django.db.models import QuerySet
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from audit.models import AccessOutcome
from audit.staff_actions import staff_action_log
from recordings.lifecycle import evidence_package
from recordings.models import EvidencePackage, Recording

EXPORT_ACTION = evidence_package.EXPORT_ACTION


class EvidencePackageForm(forms.Form):
    """What a package needs besides its recordings."""

    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        max_length=1000,
        help_text="Why the package is made (required; in its signed manifest and the access log).",
    )
    include_decrypted = forms.BooleanField(
        required=False,
        label="Include decrypted audio",
        help_text=(
            "Beside the encrypted originals, the audio in clear (superusers only). Recordings "
            "that were never encrypted are always in clear."
        ),
    )

    def __init__(self, *args: object, may_decrypt: bool, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.may_decrypt = may_decrypt
        if not may_decrypt:
            self.fields["include_decrypted"].disabled = True

    def clean_reason(self) -> str:
        """A reason of only spaces is no reason."""
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise ValidationError("Say why the package is made.")
        return reason


def _ids(text: str) -> list[int]:
    limit = evidence_package.MAX_RECORDINGS + 1
    return [int(part) for part in text.split()[:limit] if part.isascii() and part.isdigit()]


class EvidencePackageAdminMixin(admin.ModelAdmin):
    """The evidence package parts of the recordings admin."""

    def get_urls(self) -> list[URLPattern]:
        """The form, the packages page and the download, ahead of the recording page."""
        wrap = self.admin_site.admin_view
        return [
            path(
                "evidence-package/",
                wrap(self.evidence_package_view),
                name="recordings_recording_evidence_package",
            ),
            path(
                "evidence-packages/",
                wrap(self.evidence_packages_view),
                name="recordings_recording_evidence_packages",
            ),
            path(
                "evidence-packages/<int:package_id>/download/",
                wrap(self.evidence_package_download),
                name="recordings_recording_evidence_package_download",
            ),
            *super().get_urls(),
        ]

    def has_evidence_package_permission(self, request: HttpRequest) -> bool:
        """Packages hold recordings and their access-log rows: staff who may see both."""
        user = request.user
        return bool(
            user.is_active
            and user.has_perm("recordings.view_recording")
            and user.has_perm("audit.view_accesslog")
        )

    def _refuse(self, request: HttpRequest, why: str) -> None:
        staff_action_log(
            request,
            action=EXPORT_ACTION,
            outcome=AccessOutcome.DENIED,
            reason_code="permission",
            detail={"page": "evidence_package", "refused": why},
        )
        raise PermissionDenied

    @admin.action(
        description="Export an evidence package (asks for a reason)",
        permissions=["evidence_package"],
    )
    def export_evidence_package(
        self, request: HttpRequest, queryset: QuerySet[Recording]
    ) -> HttpResponse:
        """The package form for the selection: nothing is written yet."""
        limit = evidence_package.MAX_RECORDINGS + 1
        return self._package_page(request, list(queryset.values_list("pk", flat=True)[:limit]))

    def evidence_package_view(self, request: HttpRequest) -> HttpResponse:
        """Queue the package with the reason given (POST from the form)."""
        if not self.has_evidence_package_permission(request):
            self._refuse(request, "package")
        if request.method != "POST":
            return HttpResponseRedirect(reverse("admin:recordings_recording_changelist"))
        return self._package_page(request, _ids(request.POST.get("ids", "")))

    def _package_page(self, request: HttpRequest, ids: list[int]) -> HttpResponse:
        too_many = len(ids) > evidence_package.MAX_RECORDINGS
        recordings = list(
            Recording.objects.filter(pk__in=ids[: evidence_package.MAX_RECORDINGS]).order_by(
                "start_time", "pk"
            )
        )
        may_decrypt = bool(request.user.is_superuser)
        confirming = request.method == "POST" and "confirm" in request.POST
        if confirming and request.POST.get("include_decrypted") and not may_decrypt:
            self._refuse(request, "decrypted audio")
        form = EvidencePackageForm(request.POST if confirming else None, may_decrypt=may_decrypt)
        if confirming and form.is_valid() and recordings and not too_many:
            package = evidence_package.evidence_package_queue(
                recording_sids=[r.sid for r in recordings],
                reason=form.cleaned_data["reason"],
                requested_by=request.user.get_username(),
                include_decrypted=bool(form.cleaned_data["include_decrypted"]),
            )
            staff_action_log(
                request,
                action=EXPORT_ACTION,
                reason_code="evidence_package_requested",
                detail={
                    "package_id": package.pk,
                    "recordings": len(recordings),
                    "decrypted": "yes" if package.include_decrypted else "no",
                },
            )
            messages.info(
                request,
                f"Evidence package {package.pk} is being written; download it below when done.",
            )
            return HttpResponseRedirect(reverse("admin:recordings_recording_evidence_packages"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Export an evidence package",
            "form": form,
            "ids": " ".join(str(r.pk) for r in recordings),
            "recordings": recordings,
            "encrypted": sum(1 for r in recordings if r.is_encrypted),
            "too_many": too_many,
            "max_recordings": evidence_package.MAX_RECORDINGS,
        }
        return TemplateResponse(
            request, "admin/recordings/recording/evidence_package.html", context
        )

    def _visible_packages(self, request: HttpRequest) -> QuerySet[EvidencePackage]:
        packages = EvidencePackage.objects.select_related("hold")
        if not request.user.is_superuser:
            packages = packages.filter(requested_by=request.user.get_username())
        return packages

    def evidence_packages_view(self, request: HttpRequest) -> HttpResponse:
        """The officer's packages (a superuser's: everyone's), newest first."""
        if not self.has_evidence_package_permission(request):
            self._refuse(request, "list")
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Evidence packages",
            "packages": self._visible_packages(request)[:50],
        }
        return TemplateResponse(
            request, "admin/recordings/recording/evidence_packages.html", context
        )

    def evidence_package_download(self, request: HttpRequest, package_id: int) -> FileResponse:
        """A finished package's file, through the portal (audited); 404 for another officer's
        package or one not done."""
        if not self.has_evidence_package_permission(request):
            self._refuse(request, "download")
        package = (
            self._visible_packages(request)
            .filter(pk=package_id, state=evidence_package.PackageState.DONE)
            .first()
        )
        if package is None:
            raise Http404("no such evidence package")
        staff_action_log(
            request,
            action=EXPORT_ACTION,
            reason_code="evidence_package_download",
            detail={"package_id": package.pk, "package_sha256": package.sha256},
        )
        response = FileResponse(
            default_storage.open(package.file_name, "rb"),
            content_type="application/zip",
            as_attachment=True,
            filename=f"evidence-package-{package.pk}.zip",
        )
        response["Cache-Control"] = "no-store"
        return response
