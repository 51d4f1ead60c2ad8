"""The admin's Twilio storage pages against the fake Twilio: Video settings validated like
Twilio, credentials matched with the portal's private keys, every change audited, Twilio's
failures shown as messages; and the IAM policy generator."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.contrib.messages import get_messages
from django.urls import reverse

from audit.models import AccessLog
from recordings.custody import keys
from recordings.custody.iam_policy import PolicyInputError, storage_policies
from recordings.custody.twilio_settings import aws_s3_url_problem
from recordings.models import PrivateKey

pytestmark = [pytest.mark.django_db, pytest.mark.urls("audit.tests.urls")]

CR = "CR" + "ab" * 16
VIDEO = "admin:twilio_storage_video"
CREDENTIALS = "admin:twilio_storage_credentials"


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def config_rows() -> list[AccessLog]:
    return list(AccessLog.objects.filter(action="twilio_config").order_by("sequence"))


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://my-bucket.s3.us-east-1.amazonaws.com/video", None),
        ("https://documentation-example-twilio-bucket/recordings", None),
        ("https://bucket/path%20with%20spaces", None),
        ("http://my-bucket.s3.amazonaws.com", "https://"),
        ("https://My-Bucket.s3.amazonaws.com", "DNS-compliant"),
        ("https://my_bucket.s3.amazonaws.com", "DNS-compliant"),
        ("https://-bucket.s3.amazonaws.com", "DNS-compliant"),
        ("https://bucket/path with spaces", "RFC 3986"),
        ("https://bucket/récordings", "RFC 3986"),
        ("https://bucket/%zz", "RFC 3986"),
        ("https://bucket/video?versionId=1", "query"),
        ("https://user@bucket/video", "user"),
        ("https://bucket:8443/video", "port"),
    ],
)
def test_s3_url_is_validated_like_twilio(url, problem):
    found = aws_s3_url_problem(url)
    assert (found is None) if problem is None else (problem in found)


def test_video_settings_show_twilios_values_and_save_a_change(admin_client, fake_twilio):
    page = admin_client.get(reverse(VIDEO))
    assert page.status_code == 200
    assert b"cannot be used in Compositions" in page.content
    response = admin_client.post(
        reverse(VIDEO),
        {
            "kind": "recording",
            "recording-friendly_name": "Video to our bucket",
            "recording-aws_storage_enabled": "on",
            "recording-aws_credentials_sid": CR,
            "recording-aws_s3_url": "https://acme-video.s3.eu-west-1.amazonaws.com/rooms",
            "recording-encryption_enabled": "on",
            "recording-encryption_key_sid": "CR" + "cd" * 16,
        },
    )
    assert response.status_code == 302
    stored = fake_twilio.video_settings["RecordingSettings"]
    assert (stored["friendly_name"], stored["aws_storage_enabled"], stored["aws_s3_url"]) == (
        "Video to our bucket",
        True,
        "https://acme-video.s3.eu-west-1.amazonaws.com/rooms",
    )
    assert fake_twilio.video_settings["CompositionSettings"]["friendly_name"] is None
    notes = messages_of(response)
    assert any("saved at Twilio" in note for note in notes)
    assert any("holds no private key for CR" in note for note in notes)
    (row,) = config_rows()
    assert (row.outcome, row.reason_code, row.identity) == (
        "allowed",
        "video_recording_settings_updated",
        "admin:admin",
    )
    assert row.detail["old"]["friendly_name"] == ""
    assert row.detail["new"]["aws_s3_url"] == "acme-video.s3.eu-west-1.amazonaws.com/rooms"

    page = admin_client.get(reverse(VIDEO))
    assert page.context["sections"][0][2].initial["aws_s3_url"].startswith("https://acme-video")


def test_invalid_video_settings_never_reach_twilio(admin_client, fake_twilio):
    fake_twilio.clear_requests()
    response = admin_client.post(
        reverse(VIDEO),
        {
            "kind": "composition",
            "composition-friendly_name": "",
            "composition-aws_storage_enabled": "on",
            "composition-aws_s3_url": "http://Bucket/x",
            "composition-encryption_enabled": "on",
            "composition-encryption_key_sid": "CR123",
        },
    )
    assert response.status_code == 200
    form = {kind: form for kind, _, form in response.context["sections"]}["composition"]
    assert set(form.errors) == {
        "friendly_name",
        "aws_s3_url",
        "aws_credentials_sid",
        "encryption_key_sid",
    }
    assert fake_twilio.count("POST", "/video/") == 0
    assert not config_rows()


def test_twilio_failures_are_messages_not_errors(admin_client, fake_twilio):
    fake_twilio.fail(503)
    page = admin_client.get(reverse(VIDEO))
    assert page.status_code == 200
    assert any("Could not read the recording settings" in note for note in messages_of(page))
    response = admin_client.post(
        reverse(VIDEO), {"kind": "recording", "recording-friendly_name": "x"}
    )
    assert response.status_code == 200
    assert any("Twilio did not accept" in note for note in messages_of(response))
    (row,) = config_rows()
    assert (row.outcome, row.detail["twilio_status"]) == ("error", 503)

    credentials = admin_client.get(reverse(CREDENTIALS))
    assert credentials.status_code == 200
    assert any("Could not list the credentials" in note for note in messages_of(credentials))
    response = admin_client.post(
        reverse(CREDENTIALS),
        {
            "action": "aws",
            "aws-access_key_id": "AKIAEXAMPLE0000001",
            "aws-secret_access_key": "not-kept-anywhere",
        },
    )
    assert response.status_code == 200
    assert any("Twilio refused" in note for note in messages_of(response))
    assert b"not-kept-anywhere" not in response.content


def test_aws_credentials_go_to_twilio_and_the_secret_nowhere_else(admin_client, fake_twilio):
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"
    response = admin_client.post(
        reverse(CREDENTIALS),
        {
            "action": "aws",
            "aws-friendly_name": "video uploads",
            "aws-access_key_id": "AKIAIOSFODNN7EXAMPLE",
            "aws-secret_access_key": secret,
        },
    )
    assert response.status_code == 302
    ((sid, stored),) = fake_twilio.aws_credentials.items()
    assert stored == f"AKIAIOSFODNN7EXAMPLE:{secret}"
    (row,) = config_rows()
    assert row.detail == {
        "sid": sid,
        "friendly_name": "video uploads",
        "access_key_id_ending": "MPLE",
    }
    assert not AccessLog.objects.filter(detail__icontains=secret).exists()
    page = admin_client.get(reverse(CREDENTIALS))
    assert sid.encode() in page.content
    assert secret.encode() not in page.content

    delete = reverse("admin:twilio_storage_credential_delete", args=["aws", sid])
    assert b"Settings that use it" in admin_client.get(delete).content
    assert admin_client.post(delete).status_code == 302
    assert fake_twilio.aws_credentials == {}
    assert config_rows()[-1].reason_code == "aws_credential_deleted"


@pytest.fixture(scope="module")
def foreign_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_public_keys_are_matched_with_the_portals_private_keys(
    admin_client, fake_twilio, foreign_key
):
    held = keys.private_key_generate(friendly_name="portal key")
    response = admin_client.post(
        reverse(CREDENTIALS),
        {"action": "public_key", "pk-friendly_name": "portal", "pk-private_key": held.pk},
    )
    assert response.status_code == 302
    held.refresh_from_db()
    assert held.public_key_sid in fake_twilio.public_keys

    pem = keys.public_key_pem(foreign_key.public_key())
    response = admin_client.post(
        reverse(CREDENTIALS), {"action": "public_key", "pk-pem": pem, "pk-friendly_name": "hsm"}
    )
    assert any("holds no private key" in note for note in messages_of(response))
    orphan = next(sid for sid in fake_twilio.public_keys if sid != held.public_key_sid)
    page = admin_client.get(reverse(CREDENTIALS))
    overview = page.context["overview"]
    assert [entry.credential.sid for entry in overview.orphaned] == [orphan]
    assert (
        f"Public key {orphan} (hsm) is registered at Twilio, but the portal holds no".encode()
        in (page.content)
    )
    assert [row.detail["private_key_held"] for row in config_rows()] == [True, False]

    delete = reverse(
        "admin:twilio_storage_credential_delete", args=["public_key", held.public_key_sid]
    )
    assert b"The portal keeps its private key" in admin_client.get(delete).content
    admin_client.post(delete)
    assert held.public_key_sid not in fake_twilio.public_keys
    assert PrivateKey.objects.filter(pk=held.pk).exists()


def test_public_key_form_needs_exactly_one_rsa_key(admin_client, fake_twilio):
    response = admin_client.post(reverse(CREDENTIALS), {"action": "public_key"})
    assert "not both" in str(response.context["key_form"].errors)
    response = admin_client.post(
        reverse(CREDENTIALS), {"action": "public_key", "pk-pem": "-----BEGIN PUBLIC KEY-----x"}
    )
    assert "not a readable public key" in str(response.context["key_form"].errors)
    assert fake_twilio.public_keys == {}
    bad = reverse("admin:twilio_storage_credential_delete", args=["public_key", "CR1"])
    assert admin_client.get(bad).status_code == 404


def test_iam_policy_generator(admin_client):
    response = admin_client.get(
        reverse("admin:twilio_storage_iam_policy"), {"bucket": "acme-calls", "path": "/voice"}
    )
    assert response.status_code == 200
    policies = response.context["policies"]
    upload = policies.upload_policy["Statement"]
    assert upload[0]["Action"] == [
        "s3:PutObject",
        "s3:AbortMultipartUpload",
        "s3:ListMultipartUploadParts",
    ]
    assert upload[0]["Resource"] == "arn:aws:s3:::acme-calls/voice/*"
    assert upload[1] == {
        "Sid": "TwilioListsItsMultipartUploads",
        "Effect": "Allow",
        "Action": ["s3:ListBucketMultipartUploads"],
        "Resource": "arn:aws:s3:::acme-calls",
    }
    deny_all = upload[2]
    assert (deny_all["Effect"], deny_all["Resource"]) == ("Deny", "*")
    assert set(deny_all["NotAction"]) == {*upload[0]["Action"], *upload[1]["Action"]}
    assert upload[3]["NotResource"] == "arn:aws:s3:::acme-calls/voice/*"
    read = policies.portal_policy["Statement"]
    assert [statement["Action"] for statement in read] == [["s3:GetObject"], ["s3:ListBucket"]]
    assert not any("Put" in action for statement in read for action in statement["Action"])
    assert json.loads(policies.upload_json) == policies.upload_policy
    assert b"arn:aws:s3:::acme-calls/voice/*" in response.content

    bad = admin_client.get(
        reverse("admin:twilio_storage_iam_policy"), {"bucket": "Acme_Calls", "path": "a*"}
    )
    assert set(bad.context["form"].errors) == {"bucket", "path"}


@pytest.mark.parametrize(
    ("bucket", "path", "resource"),
    [
        ("acme-calls", "", "arn:aws:s3:::acme-calls/*"),
        ("acme.calls", "voice/2026/", "arn:aws:s3:::acme.calls/voice/2026/*"),
    ],
)
def test_policy_prefixes(bucket, path, resource):
    assert (
        storage_policies(bucket=bucket, path=path).upload_policy["Statement"][0]["Resource"]
        == resource
    )


@pytest.mark.parametrize(
    ("bucket", "path"),
    [("ab", ""), ("192.168.1.1", ""), ("a..b", ""), ("ok-bucket", "../up"), ("ok-bucket", "a b")],
)
def test_policy_inputs_are_refused(bucket, path):
    with pytest.raises(PolicyInputError):
        storage_policies(bucket=bucket, path=path)
