"""Admin pages for Twilio's storage of media: Video recording and composition settings, AWS
credentials and public keys at Twilio, and the IAM policy generator for Voice's external S3.

Superusers only: pointing Twilio at another bucket or key decides where every future recording
goes and who can read it, which is an operator's decision, not a compliance officer's. Views are
thin: they call ``recordings.custody.twilio_settings`` (validation, Twilio, audit) or
``recordings.custody.iam_policy``, and show any Twilio failure as a message, never as an error page.
"""

from __future__ import annotations

from datetime import date
from functools import partial
from typing import Any

from django.contrib import messages
from django.contrib.admin import AdminSite
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.views.decorators.debug import sensitive_post_parameters

from audit.staff_actions import staff_identity
from portal.health import storage_permissions_probe
from portal.http import request_audit_fields
from recordings.admin.twilio_settings_forms import (
    AwsCredentialForm,
    IamPolicyForm,
    PublicKeyForm,
    VideoSettingsForm,
)
from recordings.custody import twilio_settings
from recordings.custody.iam_policy import portal_features_current, storage_policies
from recordings.integrations import twilio_api
from recordings.integrations.twilio_api import TwilioError

VIDEO_KINDS = {
    "recording": (
        "Recording settings",
        "Where Twilio stores Video room recordings, and the public key it encrypts them with.",
    ),
    "composition": (
        "Composition settings",
        "Where Twilio stores Video compositions, and the public key it encrypts them with.",
    ),
}
COMPOSITION_NOTE = (
    "Encrypted recordings and recordings stored in your own S3 bucket cannot be used in "
    "Compositions: turning either on for recordings turns Compositions off for them."
)


# Twilio's notice (twilio.com/docs/video, twilio-video.js README): no new customers are
# onboarded to Programmable Video, existing ones may use it until this day, when it reaches end
# of life and stops working for every customer; Twilio recommends migrating to the Zoom Video SDK.
VIDEO_END_OF_LIFE = date(2026, 12, 5)


def video_end_of_life_notice(*, today: date) -> str:
    """What the Video settings page says about Programmable Video's end of life on ``today``."""
    day = f"{VIDEO_END_OF_LIFE:%A} {VIDEO_END_OF_LIFE.day} {VIDEO_END_OF_LIFE:%B %Y}"
    if today >= VIDEO_END_OF_LIFE:
        return (
            f"Twilio Programmable Video reached its end of life on {day}: it no longer works "
            "for any customer, and these settings have no effect. Video recordings already "
            "copied to your own bucket stay there."
        )
    left = (VIDEO_END_OF_LIFE - today).days
    return (
        f"Twilio Programmable Video reaches its end of life on {day} "
        f"({left} day{'s' if left != 1 else ''} from now): from then on it stops working for "
        "every customer. Twilio onboards no new Video customers and recommends migrating to "
        "the Zoom Video SDK. Download any Video recording or composition kept in Twilio's "
        "storage that you must keep before that day."
    )


def _require_superuser(request: HttpRequest) -> None:
    if not request.user.is_superuser:
        raise PermissionDenied


def _context(site: AdminSite, request: HttpRequest, title: str) -> dict[str, Any]:
    return {**site.each_context(request), "title": title}


def video_settings(request: HttpRequest, *, site: AdminSite) -> HttpResponse:
    """Show both Video settings as Twilio has them; POST one of them back, validated."""
    _require_superuser(request)
    forms: dict[str, VideoSettingsForm] = {}
    posted = request.POST.get("kind") if request.method == "POST" else None
    if posted is not None and posted not in VIDEO_KINDS:
        raise Http404("unknown settings")
    for kind, (_, description) in VIDEO_KINDS.items():
        if kind == posted:
            forms[kind] = VideoSettingsForm(request.POST, prefix=kind, description=description)
            continue
        try:
            current = twilio_api.video_settings_fetch(kind=kind)
            initial = VideoSettingsForm.initial_from(current)
        except TwilioError as exc:
            messages.error(request, f"Could not read the {kind} settings from Twilio: {exc}")
            initial = {}
        forms[kind] = VideoSettingsForm(initial=initial, prefix=kind, description=description)
    if posted is not None and forms[posted].is_valid():
        new = forms[posted].settings()
        try:
            twilio_settings.video_settings_change(
                kind=posted,
                new=new,
                actor=staff_identity(request),
                context=request_audit_fields(request),
            )
        except TwilioError as exc:
            messages.error(request, f"Twilio did not accept the {posted} settings: {exc}")
        else:
            messages.success(request, f"The {posted} settings were saved at Twilio.")
            for warning in twilio_settings.video_settings_warnings(new):
                messages.warning(request, warning)
            return HttpResponseRedirect(reverse("admin:twilio_storage_video"))
    context = {
        **_context(site, request, "Twilio Video storage"),
        "sections": [(kind, VIDEO_KINDS[kind][0], form) for kind, form in forms.items()],
        "composition_note": COMPOSITION_NOTE,
        "end_of_life": video_end_of_life_notice(today=timezone.now().date()),
    }
    return TemplateResponse(request, "admin/twilio_storage/video.html", context)


@sensitive_post_parameters("aws-secret_access_key")
def credentials(request: HttpRequest, *, site: AdminSite) -> HttpResponse:
    """AWS credentials and public keys at Twilio, matched with the portal's private keys;
    POST adds one (``action`` = ``aws`` or ``public_key``)."""
    _require_superuser(request)
    action = request.POST.get("action") if request.method == "POST" else None
    aws_form = AwsCredentialForm(request.POST if action == "aws" else None, prefix="aws")
    key_form = PublicKeyForm(request.POST if action == "public_key" else None, prefix="pk")
    actor, audit_context = staff_identity(request), request_audit_fields(request)
    try:
        if action == "aws" and aws_form.is_valid():
            data = aws_form.cleaned_data
            created = twilio_settings.aws_credential_register(
                access_key_id=data["access_key_id"],
                secret_access_key=data["secret_access_key"],
                friendly_name=data["friendly_name"],
                actor=actor,
                context=audit_context,
            )
            messages.success(request, f"AWS credential {created.sid} registered at Twilio.")
            return HttpResponseRedirect(reverse("admin:twilio_storage_credentials"))
        if action == "public_key" and key_form.is_valid():
            data = key_form.cleaned_data
            sid, held = twilio_settings.public_key_register(
                friendly_name=data["friendly_name"],
                private_key=data["private_key"],
                pem=data["pem"],
                actor=actor,
                context=audit_context,
            )
            messages.success(request, f"Public key {sid} registered at Twilio.")
            if held is None:
                messages.warning(
                    request,
                    f"The portal holds no private key for {sid}: recordings encrypted with it "
                    "could never be played here.",
                )
            return HttpResponseRedirect(reverse("admin:twilio_storage_credentials"))
    except TwilioError as exc:
        messages.error(request, f"Twilio refused: {exc}")
    overview = None
    try:
        overview = twilio_settings.credentials_overview()
    except TwilioError as exc:
        messages.error(request, f"Could not list the credentials at Twilio: {exc}")
    context = {
        **_context(site, request, "Twilio credentials"),
        "overview": overview,
        "aws_form": aws_form,
        "key_form": key_form,
    }
    return TemplateResponse(request, "admin/twilio_storage/credentials.html", context)


def credential_delete(
    request: HttpRequest, kind: str, sid: str, *, site: AdminSite
) -> HttpResponse:
    """Confirm, then delete, one AWS credential or public key at Twilio."""
    _require_superuser(request)
    if kind not in twilio_api.CREDENTIAL_KINDS or twilio_settings.credential_sid_problem(sid):
        raise Http404("unknown credential")
    if request.method == "POST":
        remove = (
            twilio_settings.aws_credential_remove
            if kind == "aws"
            else twilio_settings.public_key_remove
        )
        try:
            remove(sid=sid, actor=staff_identity(request), context=request_audit_fields(request))
        except TwilioError as exc:
            messages.error(request, f"Twilio did not delete {sid}: {exc}")
        else:
            messages.success(request, f"{sid} deleted at Twilio.")
        return HttpResponseRedirect(reverse("admin:twilio_storage_credentials"))
    context = {
        **_context(site, request, f"Delete {sid}?"),
        "kind": kind,
        "sid": sid,
        "private_key_held": kind == "public_key" and twilio_settings.private_key_held(sid),
    }
    return TemplateResponse(request, "admin/twilio_storage/credential_delete.html", context)


def iam_policy(request: HttpRequest, *, site: AdminSite) -> HttpResponse:
    """Bucket and path in, the upload policy and the policy the portal's enabled features need
    out (``recordings.custody.iam_policy``); POST (``check``) also tries the portal's policy with
    its own S3 credentials (``portal.health.storage_permissions_probe``) and warns about each
    action they cannot do."""
    _require_superuser(request)
    data = request.POST if request.method == "POST" else request.GET
    form = IamPolicyForm(data if "bucket" in data else None)
    policies = probes = None
    features = portal_features_current()
    if form.is_valid():
        policies = storage_policies(
            bucket=form.cleaned_data["bucket"], path=form.cleaned_data["path"], features=features
        )
        if request.method == "POST" and "check" in request.POST:
            probes = storage_permissions_probe(grants=policies.grants)
            refused = [probe for probe in probes if probe.outcome != "ok"]
            for probe in refused:
                messages.warning(
                    request,
                    f"The portal's credentials cannot {probe.action} on {probe.where} "
                    f"({probe.feature}): {probe.detail}.",
                )
            if not refused:
                messages.success(
                    request, "The portal's credentials can do everything its policy needs."
                )
    context = {
        **_context(site, request, "IAM policy generator"),
        "form": form,
        "policies": policies,
        "features": features,
        "probes": probes,
    }
    return TemplateResponse(request, "admin/twilio_storage/iam_policy.html", context)


def storage_urls(site: AdminSite) -> list[URLPattern]:
    """The pages' URLs, under ``twilio-storage/``, each behind the site's login check."""

    def view(function: Any) -> Any:
        return site.admin_view(partial(function, site=site))

    return [
        path("twilio-storage/video/", view(video_settings), name="twilio_storage_video"),
        path("twilio-storage/credentials/", view(credentials), name="twilio_storage_credentials"),
        path(
            "twilio-storage/credentials/<str:kind>/<str:sid>/delete/",
            view(credential_delete),
            name="twilio_storage_credential_delete",
        ),
        path("twilio-storage/iam-policy/", view(iam_policy), name="twilio_storage_iam_policy"),
    ]
