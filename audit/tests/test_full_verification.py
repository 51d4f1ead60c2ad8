"""The full re-verification as a resumable background job (``audit.verification``), against real
PostgreSQL: progress committed per batch, a run killed mid-batch goes on from its last batch to
the verdict an uninterrupted run gives, never two runs at once, and the admin page queues and
shows it without reading the log in the request."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from celery import current_app
from django.core.management.base import CommandError
from django.db import IntegrityError, connection, connections, transaction
from django.urls import reverse
from django.utils import timezone

from audit import sealer
from audit.chain import row_hash_compute, row_mac_compute, row_mac_keys
from audit.models import AccessLog, ChainCheck, ChainVerificationRun
from audit.tests.helpers import command_output, tamper
from audit.verification import (
    full_verification_continue,
    full_verification_resume,
    full_verification_start,
    full_verification_step,
    full_verification_sweep,
    full_verification_work,
)

pytestmark = pytest.mark.django_db

SEALS = 6
ROWS_PER_SEAL = 3

postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="tamper trials bypass PostgreSQL's triggers"
)


class WorkerKilled(Exception):
    """The worker dies in the middle of a batch."""


@pytest.fixture
def sealed_log(append_rows) -> list[AccessLog]:
    """Six seals of three rows each, anchored: with ``batch_rows=3`` a run has six batches."""
    rows = []
    for _ in range(SEALS):
        rows += append_rows(ROWS_PER_SEAL)
        assert sealer.seal_pending(max_rows=ROWS_PER_SEAL) is not None
    sealer.anchors_publish()
    return rows


@pytest.fixture
def embedded():
    """Embedded mode: no broker, queued work runs at once in this process."""
    current_app.conf.task_always_eager = True
    yield
    current_app.conf.task_always_eager = False


def step(run: ChainVerificationRun) -> ChainVerificationRun:
    stepped = full_verification_step(run_id=run.pk, batch_rows=ROWS_PER_SEAL)
    assert stepped is not None
    return stepped


def killed_mid_batch(run: ChainVerificationRun) -> None:
    with transaction.atomic():
        step(run)  # the batch is verified ...
        raise WorkerKilled  # ... but the worker dies before it commits


def to_the_end(run: ChainVerificationRun) -> ChainVerificationRun:
    done = full_verification_continue(run_id=run.pk, batch_rows=ROWS_PER_SEAL)
    assert done is not None
    assert done.state == "done"
    return done


def test_progress_is_committed_after_every_batch(sealed_log):
    run, created = full_verification_start(trigger="schedule", actor="system:weekly", queue=False)
    assert created
    assert (run.state, run.target_seal, run.target_sequence) == ("queued", SEALS, 18)
    for batch in range(1, SEALS + 1):
        step(run)
        kept = ChainVerificationRun.objects.get(pk=run.pk)  # what another process reads
        assert (kept.state, kept.batches, kept.through_seal) == ("running", batch, batch)
        assert (kept.rows_checked, kept.seals_checked) == (batch * 3, batch)
        assert kept.through_sequence == batch * 3
        assert kept.percent == min(99, batch * 3 * 100 // 18)
        assert kept.anchors_checked == batch
        assert kept.verdict is None
    final = step(run)  # the incremental step after the last seal, then the verdict
    assert (final.state, final.percent, final.batches) == ("done", 100, SEALS + 1)
    check = final.verdict
    assert (check.ok, check.full, check.count, check.through_seal) == (True, True, 18, SEALS)
    assert "18 rows" in check.message
    assert "6 seals" in check.message
    logged = AccessLog.objects.filter(action="chain_verify").get()
    assert (logged.outcome, logged.reason_code) == ("allowed", "chain_intact")
    assert logged.detail["run_id"] == run.pk
    assert logged.detail["batches"] == SEALS + 1


def test_a_finished_run_leaves_room_for_the_next_and_a_step_on_it_changes_nothing(sealed_log):
    first, _ = full_verification_start(trigger="schedule", queue=False)
    done = to_the_end(first)
    assert step(done).verdict == done.verdict
    second, created = full_verification_start(trigger="schedule", queue=False)
    assert created
    assert second.pk != first.pk


@postgresql_only
@pytest.mark.parametrize("attacker_has_the_mac_key", [False, True])
def test_a_run_killed_mid_batch_resumes_and_names_a_tampered_row_in_a_later_batch(
    sealed_log, embedded, attacker_has_the_mac_key
):
    bad = AccessLog.objects.get(sequence=14)  # in seal 5, the fifth batch
    bad.identity = "mallory"
    if attacker_has_the_mac_key:  # a consistent row: only its seal's Merkle root gives it away
        _key_id, key = row_mac_keys()[0]
        bad.row_hash = row_hash_compute(bad)
        tamper(
            "UPDATE audit_accesslog SET identity = %s, row_hash = %s, row_mac = %s WHERE id = %s",
            [bad.identity, bad.row_hash, row_mac_compute(bad.row_hash, key), bad.pk],
        )
    else:
        tamper("UPDATE audit_accesslog SET identity = 'mallory' WHERE id = %s", [bad.pk])

    run, _ = full_verification_start(trigger="schedule", queue=False)
    step(run)
    step(run)
    with pytest.raises(WorkerKilled):
        killed_mid_batch(run)
    kept = ChainVerificationRun.objects.get(pk=run.pk)
    assert (kept.state, kept.batches, kept.through_seal, kept.rows_checked) == (
        "running",
        2,
        2,
        6,
    )

    resumed = full_verification_resume(run_id=run.pk)  # runs to the end (embedded mode)
    assert (resumed.state, resumed.resumes) == ("done", 1)
    interrupted = resumed.verdict

    again, created = full_verification_start(trigger="schedule", queue=False)
    assert created
    again = to_the_end(again)
    uninterrupted = again.verdict
    for check in (interrupted, uninterrupted):
        assert not check.ok
        if attacker_has_the_mac_key:
            assert check.problem == "seals"
            assert "seal 5's Merkle root does not match rows 13 to 15" in check.message
        else:
            assert (check.problem, check.first_bad_sequence, check.bad_row_id) == (
                "changed",
                14,
                bad.pk,
            )
            assert "row sequence 14" in check.message
    same = ("ok", "problem", "first_bad_sequence", "bad_row_id")
    assert [getattr(interrupted, f) for f in same] == [getattr(uninterrupted, f) for f in same]
    # The same findings (the counts after them depend on where the batches ended).
    findings = [check.message.split(" (after ")[0] for check in (interrupted, uninterrupted)]
    assert findings[0] == findings[1]
    assert again.through_seal == 5  # it stopped at the broken batch
    broken_rows = AccessLog.objects.filter(action="chain_verify", outcome="error")
    assert broken_rows.count() == 2


@postgresql_only
def test_rows_and_seals_deleted_from_the_end_are_named_by_the_final_step(sealed_log):
    tamper("DELETE FROM audit_accesslog WHERE sequence > 15")
    tamper("DELETE FROM audit_auditseal WHERE number = 6")
    run, _ = full_verification_start(trigger="schedule", queue=False)
    check = to_the_end(run).verdict
    assert not check.ok
    assert "seal 6 is anchored but missing from the database" in check.message


def test_two_starts_at_once_give_one_run(transactional_db, sealed_log):
    barrier = threading.Barrier(2)
    answers: list[tuple[int, bool]] = []

    def start() -> None:
        try:
            barrier.wait()
            run, created = full_verification_start(trigger="admin", actor="x", queue=False)
            answers.append((run.pk, created))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=start) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({pk for pk, _created in answers}) == 1
    assert sorted(created for _pk, created in answers) == [False, True]
    assert ChainVerificationRun.objects.count() == 1
    with pytest.raises(IntegrityError), transaction.atomic():
        ChainVerificationRun.objects.create(trigger="admin")  # the constraint itself


@postgresql_only
def test_a_second_worker_leaves_a_run_another_worker_holds(transactional_db, sealed_log):
    run, _ = full_verification_start(trigger="schedule", queue=False)
    holding, release = threading.Event(), threading.Event()

    def first_worker() -> None:
        try:
            with transaction.atomic():
                ChainVerificationRun.objects.select_for_update().get(pk=run.pk)
                holding.set()
                release.wait(10)
        finally:
            connections.close_all()

    thread = threading.Thread(target=first_worker)
    thread.start()
    try:
        assert holding.wait(10)
        assert full_verification_step(run_id=run.pk) is None
        assert full_verification_work(run_id=run.pk) is None
    finally:
        release.set()
        thread.join()
    assert ChainVerificationRun.objects.get(pk=run.pk).batches == 0


def test_the_sweep_takes_up_an_abandoned_run_and_leaves_a_live_or_failed_one(sealed_log, embedded):
    run, _ = full_verification_start(trigger="schedule", queue=False)
    step(run)
    assert full_verification_sweep() == 0  # moved a moment ago
    ChainVerificationRun.objects.filter(pk=run.pk).update(
        updated_at=timezone.now() - timedelta(hours=1)
    )
    assert full_verification_sweep() == 1
    run.refresh_from_db()
    assert (run.state, run.resumes, run.verdict.ok) == ("done", 1, True)
    failed, _ = full_verification_start(trigger="schedule", queue=False)
    ChainVerificationRun.objects.filter(pk=failed.pk).update(
        state="failed", updated_at=timezone.now() - timedelta(hours=1)
    )
    assert full_verification_sweep() == 0


def test_an_error_stops_the_run_as_failed_and_a_resume_finishes_it(sealed_log, settings, embedded):
    run, _ = full_verification_start(trigger="schedule", queue=False)
    step(run)
    keys = settings.AUDIT_SEAL_SIGNING_KEYS
    settings.AUDIT_SEAL_SIGNING_KEYS = []  # a deploy that lost the key
    failed = full_verification_work(run_id=run.pk)
    assert failed is not None
    assert failed.state == "failed"
    assert "ImproperlyConfigured" in failed.error
    assert "AUDIT_SEAL_SIGNING_KEY" in failed.error
    assert failed.through_seal == 1  # the committed batch is kept
    # A failed run is still the unfinished one: a new start takes it up.
    settings.AUDIT_SEAL_SIGNING_KEYS = keys
    again, created = full_verification_start(trigger="admin", actor="admin:officer")
    assert (again.pk, created, again.state, again.verdict.ok) == (run.pk, False, "done", True)
    assert (again.error, again.rows_checked) == ("", 18)


def test_the_command_with_progress_prints_each_batch_and_resumes(sealed_log, capsys):
    run, _ = full_verification_start(trigger="schedule", queue=False)
    step(run)
    step(run)
    output = command_output("verify_audit_log", "--progress", "--batch-rows", "3")
    assert output.startswith("OK: 18 rows")
    printed = capsys.readouterr().err
    assert f"going on with full verification {run.pk} after seal 2" in printed
    assert "seal 3 of 6" in printed
    assert "seal 6 of 6" in printed
    assert "seal 1 of 6" not in printed  # not read again
    run.refresh_from_db()
    assert (run.state, run.verdict.trigger) == ("done", "schedule")


@postgresql_only
def test_the_command_with_progress_exits_1_naming_the_problem(sealed_log):
    tamper("DELETE FROM audit_accesslog WHERE sequence = 8")
    with pytest.raises(CommandError) as caught:
        command_output("verify_audit_log", "--progress", "--batch-rows", "3")
    assert caught.value.returncode == 1
    assert "seal 3 covers 3 rows" in str(caught.value)


# --- The verification page --------------------------------------------------------------------


def test_the_page_and_its_buttons_need_the_permission(staff_client, sealed_log):
    url = reverse("admin:audit_accesslog_verify")
    outsider = staff_client(None)
    assert outsider.get(url).status_code == 403
    assert outsider.post(url, {"scope": "full"}).status_code == 403
    assert outsider.post(url, {"resume": "1"}).status_code == 403
    assert not ChainVerificationRun.objects.exists()
    viewer = staff_client("compliance viewer")
    assert viewer.get(url).status_code == 200


def test_the_full_button_only_queues_and_the_page_shows_progress(staff_client, sealed_log):
    url = reverse("admin:audit_accesslog_verify")
    officer = staff_client("compliance viewer", username="officer")
    response = officer.post(url, {"scope": "full"}, follow=True)
    run = ChainVerificationRun.objects.get()
    # The request read nothing of the log: a worker will.
    assert (run.state, run.batches, run.rows_checked, run.trigger) == ("queued", 0, 0, "admin")
    assert f"Full re-verification {run.pk} queued" in response.content.decode()
    requested = AccessLog.objects.get(reason_code="full_verification_requested")
    assert (requested.identity, requested.detail) == (run.actor, {"run_id": run.pk, "new": True})
    # A second click takes up the same run.
    officer.post(url, {"scope": "full"})
    assert ChainVerificationRun.objects.count() == 1

    step(run)
    step(run)
    page = officer.get(url).content.decode()
    assert 'id="full-run"' in page
    assert "seal 2 of 6" in page
    assert "rows up to number 6 of 18" in page
    assert '<span id="full-run-percent">33 %</span>' in page
    assert "6 rows, 2 seals" in page
    assert 'id="full-run-resume"' not in page  # it is moving

    ChainVerificationRun.objects.filter(pk=run.pk).update(
        updated_at=timezone.now() - timedelta(hours=1)
    )
    page = officer.get(url).content.decode()
    assert 'id="full-run-resume"' in page
    assert "after seal 2" in page


def test_resume_from_the_page_finishes_the_run_in_embedded_mode(staff_client, sealed_log, embedded):
    url = reverse("admin:audit_accesslog_verify")
    officer = staff_client("compliance viewer", username="officer")
    run, _ = full_verification_start(trigger="admin", actor="admin:officer", queue=False)
    step(run)
    ChainVerificationRun.objects.filter(pk=run.pk).update(state="failed", error="OSError: gone")
    page = officer.get(url).content.decode()
    assert "OSError: gone" in page
    assert 'id="full-run-resume"' in page
    response = officer.post(url, {"resume": str(run.pk)}, follow=True)
    assert b"The audit log is intact" in response.content
    run.refresh_from_db()
    assert (run.state, run.resumes, run.rows_checked) == ("done", 1, 18)
    latest = response.context["latest"]
    assert (latest.pk, latest.full, latest.ok) == (run.verdict.pk, True, True)
    assert officer.post(url, {"resume": "nope"}).status_code == 404
    assert officer.post(url, {"resume": "99999"}).status_code == 404


def test_the_history_shows_each_result_with_its_age_and_scope(staff_client, sealed_log):
    from audit.services import chain_check_run

    chain_check_run(trigger="schedule", full=False)  # nothing verified before: reads it all
    daily = chain_check_run(trigger="schedule", full=False)
    ChainCheck.objects.filter(pk=daily.pk).update(checked_at=timezone.now() - timedelta(days=3))
    run, _ = full_verification_start(trigger="schedule", queue=False)
    run = to_the_end(run)
    page = staff_client("compliance viewer").get(reverse("admin:audit_accesslog_verify"))
    content = page.content.decode()
    assert page.context["latest"].pk == run.verdict.pk
    assert "0\xa0minutes ago" in content  # the last result's age
    assert "3\xa0days" in content
    assert "incremental" in content


def test_the_weekly_entry_starts_a_run_and_takes_up_an_unfinished_one(sealed_log, embedded):
    from audit.tasks import verify_audit_chain

    run, _ = full_verification_start(trigger="schedule", queue=False)
    step(run)
    assert verify_audit_chain(actor="system:weekly", full=True) is True
    run.refresh_from_db()
    assert (run.state, run.resumes) == ("running", 0)  # a worker may be moving it: left alone
    ChainVerificationRun.objects.filter(pk=run.pk).update(
        updated_at=timezone.now() - timedelta(hours=1)
    )
    assert verify_audit_chain(actor="system:weekly", full=True) is True
    run.refresh_from_db()
    assert (run.state, run.resumes, run.verdict.ok) == ("done", 1, True)
    assert verify_audit_chain(actor="system:weekly", full=True) is True
    newest = ChainVerificationRun.objects.first()
    assert newest.pk != run.pk
    assert (newest.actor, newest.state, newest.verdict.ok) == ("system:weekly", "done", True)


@pytest.fixture
def anchors_in_s3(s3_server, settings):
    """An Object Lock bucket on moto's server as the anchor store."""
    import boto3

    settings.AWS_S3_ENDPOINT_URL = s3_server
    settings.AWS_S3_REGION_NAME = "us-east-1"
    settings.AWS_ACCESS_KEY_ID = "testing"
    settings.AWS_SECRET_ACCESS_KEY = "testing"
    name = f"anchors-{timezone.now():%H%M%S%f}"
    boto3.client(
        "s3",
        endpoint_url=s3_server,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    settings.AUDIT_ANCHOR_BUCKET = name
    return name


def test_each_batch_reads_only_its_own_anchors_from_s3(anchors_in_s3, append_rows):
    for _ in range(SEALS):
        append_rows(ROWS_PER_SEAL)
        sealer.seal_pending(max_rows=ROWS_PER_SEAL)
    assert sealer.anchors_publish() == SEALS
    store = sealer.anchor_store()
    assert sorted(store.anchored(from_number=3, through_number=4)) == [3, 4]
    assert sorted(store.anchored(from_number=5)) == [5, 6]
    run, _ = full_verification_start(trigger="schedule", queue=False)
    done = to_the_end(run)
    assert done.verdict.ok, done.verdict.message
    assert (done.anchors_checked, done.seals_checked) == (SEALS, SEALS)
