"""Evidence package jobs whose worker died (``recordings.lifecycle.evidence_sweep``): a job still
running past the task's time limit is marked failed with the reason and an access-log row; a
job handed to a second worker is failed, not run twice; a run the sweep gave up on keeps
nothing when it finishes late; beat runs the sweep."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.core.files.storage import default_storage
from django.utils import timezone

from audit.models import AccessLog
from faketwilio.recording_formats import make_wav
from recordings import tasks
from recordings.lifecycle import evidence_package, evidence_sweep
from recordings.models import EvidencePackage
from recordings.tests.test_evidence_package import plain_in_s3

pytestmark = pytest.mark.django_db


def package(state: str, *, started_minutes_ago: float | None, **fields) -> EvidencePackage:
    started = (
        None
        if started_minutes_ago is None
        else timezone.now() - timedelta(minutes=started_minutes_ago)
    )
    values = {
        "requested_by": "officer",
        "reason": "Regulator's request",
        "recording_sids": ["RE" + "1" * 32],
        "state": state,
        "started_at": started,
        **fields,
    }
    return EvidencePackage.objects.create(**values)


def abandoned_rows() -> list[AccessLog]:
    return list(AccessLog.objects.filter(reason_code="evidence_package_abandoned"))


def test_a_job_running_past_the_time_limit_is_marked_failed_with_the_reason(settings):
    settings.EVIDENCE_PACKAGE_TIME_LIMIT_MINUTES = 30
    lost = package("running", started_minutes_ago=36)
    before_started_at = package("running", started_minutes_ago=None)  # from before the field
    slow = package("running", started_minutes_ago=34)  # within the limit and its margin
    queued = package("queued", started_minutes_ago=None)
    done = package("done", started_minutes_ago=500)

    assert evidence_sweep.evidence_packages_sweep() == [lost.pk, before_started_at.pk]

    states = dict(EvidencePackage.objects.values_list("pk", "state"))
    assert states == {
        lost.pk: "failed",
        before_started_at.pk: "failed",
        slow.pk: "running",
        queued.pk: "queued",
        done.pk: "done",
    }
    lost.refresh_from_db()
    assert lost.error.startswith("Abandoned: still running 30 minutes after it started")
    assert "ask for the package again" in lost.error
    assert lost.finished_at is not None
    rows = abandoned_rows()
    assert [(r.action, r.outcome, r.identity) for r in rows] == [
        ("admin_export", "error", "admin:officer")
    ] * 2
    assert {r.detail["package_id"] for r in rows} == {lost.pk, before_started_at.pk}
    # Swept again: nothing twice.
    assert evidence_sweep.evidence_packages_sweep() == []
    assert len(abandoned_rows()) == 2


def test_a_job_handed_to_a_second_worker_is_failed_not_run_twice(s3, recording_make):
    recording = plain_in_s3(s3, recording_make, make_wav(0.2))
    redelivered = package("running", started_minutes_ago=1, recording_sids=[recording.sid])

    result = evidence_package.evidence_package_run(package_id=redelivered.pk)

    assert result.state == "failed"
    assert "handed to another worker" in result.error
    assert result.file_name == ""
    assert not AccessLog.objects.filter(reason_code="evidence_package").exists()
    assert len(abandoned_rows()) == 1


def test_a_run_given_up_on_keeps_nothing_when_it_finishes_late(s3, recording_make, monkeypatch):
    recording = plain_in_s3(s3, recording_make, make_wav(0.2))
    job = package("queued", started_minutes_ago=None, recording_sids=[recording.sid])
    written = evidence_package.evidence_package_write

    def slow_write(**kwargs):
        # The worker is thought dead while it writes: the sweep marks the package failed.
        assert evidence_package.evidence_package_abandon(
            package_id=job.pk, why="test", started_before=timezone.now() + timedelta(seconds=1)
        )
        return written(**kwargs)

    monkeypatch.setattr(evidence_package, "evidence_package_write", slow_write)
    saved: list[str] = []
    original_save = default_storage.save

    def save(name, content, *args, **kwargs):
        stored = original_save(name, content, *args, **kwargs)
        saved.append(stored)
        return stored

    monkeypatch.setattr(default_storage, "save", save)

    result = evidence_package.evidence_package_run(package_id=job.pk)

    assert (result.state, result.error, result.file_name) == ("failed", "Abandoned: test", "")
    assert len(saved) == 1
    assert not default_storage.exists(saved[0])  # the late file was deleted
    assert not AccessLog.objects.filter(reason_code="evidence_package").exists()


def test_beat_runs_the_sweep_and_the_task_has_the_time_limit():
    entry = django_settings.CELERY_BEAT_SCHEDULE["sweep-evidence-packages"]
    assert entry["task"] == "recordings.tasks.sweep_evidence_packages"
    assert tasks.sweep_evidence_packages.name == entry["task"]
    limit = tasks.write_evidence_package.time_limit
    assert limit == django_settings.EVIDENCE_PACKAGE_TIME_LIMIT_MINUTES * 60
    # Below the broker's visibility timeout: no job is handed to a second worker while the
    # first still writes it.
    assert limit < django_settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    lost = package("running", started_minutes_ago=24 * 60)
    assert tasks.sweep_evidence_packages() == 1
    lost.refresh_from_db()
    assert lost.state == "failed"
