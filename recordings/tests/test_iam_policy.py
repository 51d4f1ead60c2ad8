"""The portal's IAM policy follows its enabled features (archive writes, retention deletes,
anchors lock), and the credentials check finds what real credentials cannot do: an IAM user on
moto's server, with moto enforcing IAM for the duration of the check."""

from __future__ import annotations

import json

import boto3
import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from moto.core.authorization import enable_iam_authentication

from audit import anchors
from audit.admin import export_jobs
from portal.health import storage_permissions_probe
from recordings.custody import iam_policy
from recordings.custody.iam_policy import PortalFeatures, portal_features_current, storage_policies
from recordings.integrations import storage
from recordings.models import ArchivePolicy, RetentionPolicy

pytestmark = [pytest.mark.django_db, pytest.mark.urls("audit.tests.urls")]

POLICY = "admin:twilio_storage_iam_policy"


def actions_on(policies, resource: str) -> set[str]:
    return {
        action
        for statement in policies.portal_policy["Statement"]
        if statement["Resource"] == resource
        for action in statement["Action"]
    }


def all_actions(policies) -> set[str]:
    return {a for s in policies.portal_policy["Statement"] for a in s["Action"]}


def test_read_only_when_nothing_writes():
    policies = storage_policies(bucket="acme-calls", path="voice", features=PortalFeatures())
    assert all_actions(policies) == {"s3:GetObject", "s3:ListBucket"}
    assert actions_on(policies, "arn:aws:s3:::acme-calls/voice/*") == {"s3:GetObject"}
    assert policies.portal_read_only


def test_archive_writes_under_its_prefix_only():
    features = PortalFeatures(archive_targets=(("acme-archive", "/recordings/"),))
    policies = storage_policies(bucket="acme-calls", path="voice", features=features)
    assert actions_on(policies, "arn:aws:s3:::acme-archive/recordings/*") == {
        "s3:PutObject",
        "s3:AbortMultipartUpload",
        "s3:GetObject",
    }
    assert "s3:ListBucket" in actions_on(policies, "arn:aws:s3:::acme-archive")
    # Voice's own path stays read-only, and nothing deletes without retention.
    assert actions_on(policies, "arn:aws:s3:::acme-calls/voice/*") == {"s3:GetObject"}
    assert "s3:DeleteObject" not in all_actions(policies)
    assert not policies.portal_read_only


def test_retention_deletes_recordings_archived_copies_and_derived_data():
    features = PortalFeatures(
        storage_bucket="acme-portal", archive_targets=(("acme-archive", "rec"),), deletes=True
    )
    policies = storage_policies(bucket="acme-calls", path="", features=features)
    assert "s3:DeleteObject" in actions_on(policies, "arn:aws:s3:::acme-calls/*")
    assert "s3:DeleteObject" in actions_on(policies, "arn:aws:s3:::acme-archive/rec/*")
    assert actions_on(policies, "arn:aws:s3:::acme-portal/derived/*") == {
        "s3:PutObject",
        "s3:GetObject",
        "s3:DeleteObject",
    }
    # Each bucket is listed once.
    listed = [
        s["Resource"]
        for s in policies.portal_policy["Statement"]
        if s["Action"] == ["s3:ListBucket"]
    ]
    assert sorted(listed) == [
        "arn:aws:s3:::acme-archive",
        "arn:aws:s3:::acme-calls",
        "arn:aws:s3:::acme-portal",
    ]


def test_anchors_put_with_retention_on_the_anchor_bucket():
    policies = storage_policies(
        bucket="acme-calls", path="", features=PortalFeatures(anchor_bucket="acme-anchors")
    )
    assert actions_on(policies, "arn:aws:s3:::acme-anchors/audit-seals/*") == {
        "s3:PutObject",
        "s3:PutObjectRetention",
        "s3:GetObject",
        "s3:GetObjectVersion",
    }
    assert actions_on(policies, "arn:aws:s3:::acme-anchors") == {
        "s3:ListBucket",
        "s3:ListBucketVersions",
    }
    # Nothing may delete or shorten an anchor's retention.
    anchor_actions = actions_on(policies, "arn:aws:s3:::acme-anchors/audit-seals/*")
    assert not any("Delete" in a or "Bypass" in a for a in anchor_actions)


def test_the_prefixes_are_the_ones_the_features_write():
    assert iam_policy.DERIVED_PREFIX == storage.DERIVED_PREFIX
    assert iam_policy.EXPORTS_PREFIX == export_jobs.EXPORT_FOLDER + "/"
    assert iam_policy.ANCHORS_PREFIX == anchors.PREFIX


def test_features_are_read_from_the_policies_and_settings(settings):
    settings.AWS_STORAGE_BUCKET_NAME = "acme-portal"
    settings.AUDIT_ANCHOR_BUCKET = ""
    assert portal_features_current() == PortalFeatures(storage_bucket="acme-portal")
    ArchivePolicy.objects.create(account_sid="", bucket="", key_prefix="recordings")
    ArchivePolicy.objects.create(account_sid="AC" + "1" * 32, enabled=False, bucket="elsewhere")
    RetentionPolicy.objects.create(name="seven years", keep_days=2555, enabled=False)
    assert portal_features_current() == PortalFeatures(
        storage_bucket="acme-portal", archive_targets=(("acme-portal", "recordings"),)
    )
    RetentionPolicy.objects.update(enabled=True)
    assert portal_features_current().deletes


def test_the_page_shows_the_policy_the_enabled_features_need(admin_client, settings):
    settings.AWS_STORAGE_BUCKET_NAME = ""
    settings.AUDIT_ANCHOR_BUCKET = ""
    page = admin_client.get(reverse(POLICY), {"bucket": "acme-calls", "path": "voice"})
    assert b"read only" in page.content
    RetentionPolicy.objects.create(name="one year", keep_days=365)
    page = admin_client.get(reverse(POLICY), {"bucket": "acme-calls", "path": "voice"})
    policies = page.context["policies"]
    assert "s3:DeleteObject" in actions_on(policies, "arn:aws:s3:::acme-calls/voice/*")
    assert b"Retention and deletion" in page.content
    assert json.loads(policies.portal_json) == policies.portal_policy


@pytest.fixture
def limited_user(s3_server, s3, settings):
    """An IAM user at moto whose policy is the portal's minus ``s3:DeleteObject``; the portal's
    storage settings use its access key."""
    iam = boto3.client(
        "iam",
        endpoint_url=s3_server,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    features = PortalFeatures(storage_bucket=settings.AWS_STORAGE_BUCKET_NAME, deletes=True)
    wanted = storage_policies(
        bucket=settings.AWS_STORAGE_BUCKET_NAME, path="voice", features=features
    )
    document = json.loads(wanted.portal_json)
    for statement in document["Statement"]:
        statement["Action"] = [a for a in statement["Action"] if a != "s3:DeleteObject"]
    document["Statement"] = [s for s in document["Statement"] if s["Action"]]
    name = "portal-no-delete"
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="portal", PolicyDocument=json.dumps(document))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    settings.AWS_ACCESS_KEY_ID = key["AccessKeyId"]
    settings.AWS_SECRET_ACCESS_KEY = key["SecretAccessKey"]
    yield wanted
    for old in iam.list_access_keys(UserName=name)["AccessKeyMetadata"]:
        iam.delete_access_key(UserName=name, AccessKeyId=old["AccessKeyId"])
    iam.delete_user_policy(UserName=name, PolicyName="portal")
    iam.delete_user(UserName=name)


def test_probe_reports_each_action(limited_user, s3, settings):
    with enable_iam_authentication():
        probes = storage_permissions_probe(grants=limited_user.grants)
    outcomes = {(p.action, p.where): p.outcome for p in probes}
    bucket = settings.AWS_STORAGE_BUCKET_NAME
    assert outcomes[("s3:GetObject", f"s3://{bucket}/voice/")] == "ok"
    assert outcomes[("s3:ListBucket", f"s3://{bucket}")] == "ok"
    assert outcomes[("s3:PutObject", f"s3://{bucket}/derived/")] == "ok"
    assert outcomes[("s3:DeleteObject", f"s3://{bucket}/voice/")] == "denied"
    assert outcomes[("s3:DeleteObject", f"s3://{bucket}/audit-exports/")] == "denied"
    # S3 refuses the probe's write (wrong Content-MD5) after authorizing it; moto does not check
    # the digest and stores it, so the probe deletes it again, and names any it could not.
    left = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert all(k.split("/")[-2] == "_portal_check" for k in left)
    details = " ".join(p.detail for p in probes)
    assert all(f"s3://{bucket}/{k}" in details for k in left)


def test_check_warns_when_the_credentials_cannot_delete(limited_user, admin_client, settings):
    RetentionPolicy.objects.create(name="one year", keep_days=365)
    with enable_iam_authentication():
        page = admin_client.post(
            reverse(POLICY),
            {"bucket": settings.AWS_STORAGE_BUCKET_NAME, "path": "voice", "check": "1"},
        )
    assert page.status_code == 200
    warnings = [str(m) for m in get_messages(page.wsgi_request)]
    assert any(
        "cannot s3:DeleteObject" in w and "/voice/" in w and "Retention and deletion" in w
        for w in warnings
    ), warnings
    assert b"probe-denied" in page.content
