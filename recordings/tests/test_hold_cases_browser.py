"""The officer's legal-hold case in real headless Chromium: place a case (matter, reference,
custodians, notes, recordings) in the admin, open its case page and read each recording's S3
Object Lock legal hold back from S3 (moto's server, a bucket with Object Lock); release it and
see the locks cleared. Screenshots of each step go to ``test-artifacts/``."""

from __future__ import annotations

import secrets

import pytest

from portal.tests.test_browser_admin import log_in, officer, snap  # noqa: F401 (fixture)
from recordings.models import (
    LegalHold,
    MediaLocation,
    Recording,
    RecordingStatus,
    SyncState,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def stored(s3, bucket: str) -> Recording:
    sid = "RE" + secrets.token_hex(16)
    key = f"recordings/{sid}.wav"
    s3.put_object(Bucket=bucket, Key=key, Body=b"RIFF" + secrets.token_bytes(64))
    return Recording.objects.create(
        sid=sid,
        account_sid="AC" + "a" * 32,
        call_sid="CA" + secrets.token_hex(16),
        status=RecordingStatus.COMPLETED,
        source="DialVerb",
        sync_state=SyncState.SYNCED,
        media_location=MediaLocation.S3,
        media_bucket=bucket,
        media_key=key,
    )


def s3_status(s3, recording: Recording) -> str:
    answer = s3.get_object_legal_hold(Bucket=recording.media_bucket, Key=recording.media_key)
    return str(answer["LegalHold"].get("Status") or "OFF")


def test_hold_a_case_and_read_the_lock_back_from_s3(live_server, page, officer, s3):  # noqa: F811
    bucket = f"locked-{secrets.token_hex(6)}"
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    first, second = stored(s3, bucket), stored(s3, bucket)
    log_in(page, live_server, officer)

    page.goto(f"{live_server.url}/admin/recordings/legalhold/add/")
    page.fill("#id_matter_name", "Smith v. Acme Telecom")
    page.fill("#id_case_reference", "LIT-2026-042")
    page.fill("#id_reason", "Litigation hold requested by counsel")
    page.fill("#id_custodians", "Sam Taylor\nalex.kim@example.com")
    page.fill("#id_notes", "Preserve until the court's final order.")
    page.fill("#id_recording_sids", f"{first.sid}\n{second.sid}")
    snap(page, "hold-case-1-form")
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist")
    hold = LegalHold.objects.get()
    assert hold.custodians == ["Sam Taylor", "alex.kim@example.com"]

    page.goto(f"{live_server.url}/admin/recordings/legalhold/{hold.pk}/change/")
    assert "2 locked" in page.locator(".field-object_locks").inner_text()
    page.click("text=case page (read back from S3)")
    page.wait_for_selector("#case-recordings")
    assert "Smith v. Acme Telecom" in page.locator("#case-matter").inner_text()
    assert "alex.kim@example.com" in page.locator("#case-custodians").inner_text()
    for recording in (first, second):
        row = page.locator(f"#case-recordings tr:has-text('{recording.sid}')")
        assert row.locator(".lock-status").inner_text() == "locked (read back from S3)"
        assert s3_status(s3, recording) == "ON"
    assert "2 locked" in page.locator("#case-counts").inner_text()
    snap(page, "hold-case-2-locked")

    page.goto(f"{live_server.url}/admin/recordings/legalhold/")
    page.check(f"#result_list tr:has-text('{hold.case_reference}') input.action-select")
    page.select_option("select[name=action]", "release")
    page.fill("input[name=release_reason]", "Case settled")
    page.click("button[name=index]")
    page.wait_for_selector(".messagelist")
    assert s3_status(s3, first) == "OFF"
    page.goto(f"{live_server.url}/admin/recordings/legalhold/{hold.pk}/case/")
    status = page.locator(f"#case-recordings tr:has-text('{first.sid}') .lock-status")
    assert status.inner_text() == "released; S3 reports OFF"
    snap(page, "hold-case-3-released")
