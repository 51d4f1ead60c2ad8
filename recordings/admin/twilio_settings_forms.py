"""Forms of the admin's Twilio storage pages. Each carries a one-line ``description`` the page shows
above it, and validates with ``recordings.custody.twilio_settings`` (the same rules as Twilio)."""

from __future__ import annotations

from typing import Any

from django import forms

from recordings.custody import twilio_settings
from recordings.custody.iam_policy import PolicyInputError, bucket_name_problem, path_prefix
from recordings.integrations.twilio_api import VideoStorageSettings
from recordings.models import PrivateKey


class VideoSettingsForm(forms.Form):
    """Video ``RecordingSettings`` or ``CompositionSettings``, validated like Twilio."""

    friendly_name = forms.CharField(max_length=64, help_text="Required by Twilio.")
    aws_storage_enabled = forms.BooleanField(
        required=False, label="Store in my S3 bucket", help_text="Instead of Twilio's storage."
    )
    aws_credentials_sid = forms.CharField(
        required=False, max_length=34, label="AWS credentials SID", help_text="CR…"
    )
    aws_s3_url = forms.CharField(
        required=False,
        max_length=1024,
        label="S3 URL",
        help_text="e.g. https://my-bucket.s3.us-east-1.amazonaws.com/video",
    )
    encryption_enabled = forms.BooleanField(required=False, label="Encrypt media")
    encryption_key_sid = forms.CharField(
        required=False, max_length=34, label="Public key SID", help_text="CR…"
    )

    def __init__(self, *args: Any, description: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.description = description

    def clean(self) -> dict[str, Any]:
        """Twilio's rules, field by field (``twilio_settings.video_settings_problems``)."""
        super().clean()
        cleaned = self.cleaned_data
        for name, problem in twilio_settings.video_settings_problems(self.settings()).items():
            if name not in self.errors:
                self.add_error(name, problem)
        return cleaned

    def settings(self) -> VideoStorageSettings:
        """The entered values."""
        data = self.cleaned_data
        return VideoStorageSettings(
            friendly_name=data.get("friendly_name", ""),
            aws_credentials_sid=data.get("aws_credentials_sid", "").strip(),
            aws_s3_url=data.get("aws_s3_url", "").strip(),
            aws_storage_enabled=bool(data.get("aws_storage_enabled")),
            encryption_key_sid=data.get("encryption_key_sid", "").strip(),
            encryption_enabled=bool(data.get("encryption_enabled")),
        )

    @classmethod
    def initial_from(cls, current: VideoStorageSettings) -> dict[str, Any]:
        """The form's initial values from Twilio's current settings."""
        return {
            "friendly_name": current.friendly_name,
            "aws_storage_enabled": current.aws_storage_enabled,
            "aws_credentials_sid": current.aws_credentials_sid,
            "aws_s3_url": current.aws_s3_url,
            "encryption_enabled": current.encryption_enabled,
            "encryption_key_sid": current.encryption_key_sid,
        }


class AwsCredentialForm(forms.Form):
    """An AWS access key for Twilio to write to the bucket; the secret is never kept."""

    description = (
        "Give Twilio an access key of the IAM user that may only write recordings to your "
        "bucket (see the IAM policy generator); the secret goes to Twilio and is not kept here."
    )
    friendly_name = forms.CharField(max_length=64, required=False)
    access_key_id = forms.CharField(max_length=128, label="Access key id")
    secret_access_key = forms.CharField(
        max_length=256, label="Secret access key", widget=forms.PasswordInput(render_value=False)
    )

    def clean_access_key_id(self) -> str:
        """``AKIA…``-style: uppercase letters and digits."""
        value = self.cleaned_data["access_key_id"].strip()
        if problem := twilio_settings.access_key_id_problem(value):
            raise forms.ValidationError(problem)
        return value

    def clean_secret_access_key(self) -> str:
        """One word, no spaces or colons (Twilio's format is ``ID:SECRET``)."""
        value = self.cleaned_data["secret_access_key"].strip()
        if not value or any(char.isspace() or char == ":" for char in value):
            raise forms.ValidationError("The secret has no spaces or colons.")
        return value


class PublicKeyForm(forms.Form):
    """A public key for Twilio to encrypt with: one the portal holds, or a pasted one."""

    description = (
        "Register the public half of a key pair so Twilio encrypts new recordings with it; "
        "prefer a key the portal holds, or nothing encrypted with it can be played here."
    )
    friendly_name = forms.CharField(max_length=64, required=False)
    private_key = forms.ModelChoiceField(
        queryset=PrivateKey.objects.filter(public_key_sid__isnull=True),
        required=False,
        label="A key the portal holds",
        help_text="Keys made by generate_keypair or import_private_key, not yet registered.",
    )
    pem = forms.CharField(
        required=False,
        label="…or paste a public key",
        widget=forms.Textarea(attrs={"rows": 6, "cols": 70, "spellcheck": "false"}),
    )

    def clean(self) -> dict[str, Any]:
        """Exactly one of the two, and a pasted key must be an RSA public key."""
        super().clean()
        cleaned = self.cleaned_data
        held, pem = cleaned.get("private_key"), (cleaned.get("pem") or "").strip()
        if bool(held) == bool(pem):
            raise forms.ValidationError("Choose a key the portal holds, or paste one (not both).")
        if pem and (problem := twilio_settings.public_key_problem(pem)):
            self.add_error("pem", problem)
        return cleaned


class IamPolicyForm(forms.Form):
    """The bucket and path Twilio Voice writes recordings to."""

    description = (
        "Enter the bucket and path of Voice's external storage to get the policy for Twilio's "
        "upload user (write only, nothing else) and the one the portal needs for the features "
        "it has on now (read only unless it archives, deletes or keeps its own files in S3)."
    )
    bucket = forms.CharField(max_length=63, help_text="e.g. acme-call-recordings")
    path = forms.CharField(
        max_length=512, required=False, help_text="e.g. voice/ (empty: the whole bucket)"
    )

    def clean_bucket(self) -> str:
        """An S3 bucket name."""
        value = self.cleaned_data["bucket"].strip()
        if problem := bucket_name_problem(value):
            raise forms.ValidationError(problem[0].upper() + problem[1:] + ".")
        return value

    def clean_path(self) -> str:
        """A key prefix IAM reads literally."""
        value = self.cleaned_data["path"]
        try:
            path_prefix(value)
        except PolicyInputError as exc:
            raise forms.ValidationError(str(exc)) from exc
        return value
