"""Deleting recordings by hand in the admin (``recordings.admin.deletion``): a confirmation
with the count and the held recordings, a required reason kept in the audit row, refusals of
held recordings audited, the banner and the "deleted" status afterwards, superusers only.
Against PostgreSQL with Django's test client; query counts pinned."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from audit.models import AccessLog
from recordings.lifecycle import retention
from recordings.models import LegalHold, Recording, RecordingStatus, RetentionPolicy
from recordings.templatetags.recording_state import recording_state

pytestmark = pytest.mark.django_db

LIST = "admin:recordings_recording_changelist"
CONFIRM = "admin:recordings_recording_delete_confirm"
START = datetime(2026, 9, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def make(recording_make) -> Callable[..., Recording]:
    """Recordings that started at ``START`` unless told otherwise."""
    return lambda **fields: recording_make(**{"start_time": START, **fields})


def deletion_rows(**filters) -> list[AccessLog]:
    return list(AccessLog.objects.filter(action="retention_delete", **filters).order_by("sequence"))


def page(client: Client, recording: Recording) -> str:
    url = reverse("admin:recordings_recording_change", args=[recording.pk])
    return client.get(url).content.decode()


def test_the_action_asks_first_with_the_count_and_the_held_ones(admin_client, make):
    free, also_free, held = make(), make(), make()
    hold = LegalHold.objects.create(reason="r", case_reference="CASE-3", recording_sids=[held.sid])
    response = admin_client.post(
        reverse(LIST),
        {"action": "delete_now", "_selected_action": [free.pk, also_free.pk, held.pk]},
    )
    assert response.status_code == 200
    text = response.content.decode()
    assert "Delete 2 of 3 selected recordings" in text
    assert "1 recording on legal hold will be refused" in text
    assert reverse("admin:recordings_legalhold_change", args=[hold.pk]) in text
    assert 'name="reason"' in text
    assert not deletion_rows()
    assert not Recording.objects.filter(soft_deleted_at__isnull=False).exists()


def test_a_reason_is_required(admin_client, make):
    recording = make()
    for reason in ("", "   "):
        response = admin_client.post(
            reverse(CONFIRM), {"ids": str(recording.pk), "reason": reason, "confirm": "1"}
        )
        assert response.status_code == 200
        assert 'class="errorlist' in response.content.decode()
    recording.refresh_from_db()
    assert recording.soft_deleted_at is None
    assert not deletion_rows()


def test_delete_with_a_reason_keeps_it_in_the_audit_row_and_shows_the_banner(admin_client, make):
    recording = make()
    admin_client.post(
        reverse(CONFIRM),
        {"ids": f"{recording.pk} 999999 x", "reason": "recorded by mistake", "confirm": "1"},
    )
    recording.refresh_from_db()
    assert recording.soft_deleted_at is not None
    (row,) = deletion_rows()
    assert (row.outcome, row.reason_code, row.identity) == ("allowed", "soft", "admin:admin")
    assert row.detail == {"policy": "admin:admin", "reason": "recorded by mistake"}

    text = page(admin_client, recording)
    due = recording.soft_deleted_at + timedelta(days=retention.DEFAULT_GRACE_DAYS)
    assert 'id="deletion-banner"' in text
    assert f"{recording.soft_deleted_at:%Y-%m-%d %H:%M:%S} UTC by admin:admin" in text
    assert "“recorded by mistake”" in text
    assert f"deleted for good on {due:%Y-%m-%d %H:%M} UTC" in text

    listed = admin_client.get(reverse(LIST)).content.decode()
    assert "deleted (media purge pending)" in listed
    results = listed.split('id="result_list"')[1].split("</table>")[0]
    assert "deleted (media purge pending)" in results
    assert "Completed" not in results


def test_a_held_recording_is_refused_at_delete_with_an_audit_row(admin_client, make):
    free, held = make(), make()
    # The hold is placed after the confirmation page was shown: the service still refuses.
    confirmation = admin_client.post(
        reverse(LIST), {"action": "delete_now", "_selected_action": [free.pk, held.pk]}
    )
    assert "Delete 2 of 2" in confirmation.content.decode()
    LegalHold.objects.create(reason="r", case_reference="CASE-4", call_sids=[held.call_sid])
    response = admin_client.post(
        reverse(CONFIRM),
        {"ids": f"{free.pk} {held.pk}", "reason": "cleanup", "confirm": "1"},
        follow=True,
    )
    assert f"{held.sid} is under legal hold CASE-4 and was not deleted" in (
        response.content.decode()
    )
    held.refresh_from_db()
    assert held.soft_deleted_at is None
    (refused,) = deletion_rows(outcome="denied")
    assert (refused.recording_sid, refused.reason_code, refused.identity) == (
        held.sid,
        "legal_hold",
        "admin:admin",
    )
    assert refused.detail["reason"] == "cleanup"
    assert refused.detail["case"] == "CASE-4"
    assert [r.recording_sid for r in deletion_rows(outcome="allowed")] == [free.sid]


def test_already_deleted_recordings_are_left_alone(admin_client, make):
    gone = make(soft_deleted_at=timezone.now(), deleted_by_policy="keep-30")
    response = admin_client.post(
        reverse(LIST), {"action": "delete_now", "_selected_action": [gone.pk]}
    )
    assert "1 already deleted" in response.content.decode()
    assert 'id="delete-form"' not in response.content.decode()
    admin_client.post(reverse(CONFIRM), {"ids": str(gone.pk), "reason": "r", "confirm": "1"})
    assert not deletion_rows()


def test_only_superusers_delete_and_refusals_are_audited(django_user_model, make):
    recording = make()
    manager = django_user_model.objects.create_user("mgr", password="unused", is_staff=True)
    manager.groups.add(Group.objects.get(name="compliance manager"))
    client = Client()
    client.force_login(manager)
    response = client.post(
        reverse(CONFIRM), {"ids": str(recording.pk), "reason": "r", "confirm": "1"}
    )
    assert response.status_code == 403
    recording.refresh_from_db()
    assert recording.soft_deleted_at is None
    (denied,) = deletion_rows()
    assert (denied.outcome, denied.reason_code, denied.identity) == (
        "denied",
        "permission",
        "admin:mgr",
    )
    # The action is not offered, and posting it anyway does nothing.
    action_form = client.get(reverse(LIST)).context["action_form"]
    assert action_form is None or "delete_now" not in dict(action_form.fields["action"].choices)
    client.post(reverse(LIST), {"action": "delete_now", "_selected_action": [recording.pk]})
    recording.refresh_from_db()
    assert recording.soft_deleted_at is None


def test_a_policy_deletion_banner_names_the_policy_and_its_grace(admin_client, make):
    RetentionPolicy.objects.create(name="keep-30", keep_days=30, hard_delete_grace_days=3)
    recording = make()
    retention.recording_soft_delete(recording_id=recording.pk, policy="keep-30")
    recording.refresh_from_db()
    text = page(admin_client, recording)
    due = recording.soft_deleted_at + timedelta(days=3)
    assert "by retention policy keep-30" in text
    assert f"deleted for good on {due:%Y-%m-%d %H:%M} UTC" in text

    Recording.objects.filter(pk=recording.pk).update(
        status=RecordingStatus.DELETED, hard_deleted_at=timezone.now()
    )
    text = page(admin_client, recording)
    assert "Its media was deleted for good" in text
    assert "deleted</td>" in admin_client.get(reverse(LIST)).content.decode()


def test_the_confirmation_reads_the_selection_in_constant_queries(admin_client, make):
    """Pinned: the holds are read once for the whole selection, not once per recording."""
    LegalHold.objects.create(reason="r", started_from=START - timedelta(days=1))

    def queries_for(count: int) -> int:
        ids = [make().pk for _ in range(count)]
        with CaptureQueriesContext(connection) as queries:
            response = admin_client.post(
                reverse(LIST), {"action": "delete_now", "_selected_action": ids}
            )
        assert f"{count} recordings on legal hold will be refused" in response.content.decode()
        return len(queries.captured_queries)

    queries_for(2)  # warms the per-process caches (content types, permissions)
    # The same count for 3 recordings as for 40 (the list's own filters set the number).
    assert queries_for(3) == queries_for(40) <= 12


def test_the_banner_costs_one_query_or_three_when_deleted(make, django_assert_num_queries):
    """Pinned: the active holds; for a deleted recording also its audit row and its policy."""
    recording = make()
    LegalHold.objects.create(reason="r", recording_sids=[recording.sid])
    with django_assert_num_queries(1):
        state = recording_state(recording)
    assert state is not None
    assert len(state.holds) == 1
    assert state.deletion is None

    other = make()
    retention.recording_soft_delete(recording_id=other.pk, policy="admin:admin", reason="x")
    other.refresh_from_db()
    with django_assert_num_queries(3):
        state = recording_state(other)
    assert state is not None
    assert state.holds == []
    assert state.deletion is not None
    assert state.deletion.reason == "x"
