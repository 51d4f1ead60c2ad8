"""Embedded mode's periodic runner (``portal.periodic``) runs beat's entries exactly when Celery's
own schedules say they are due, on a clock the test moves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from celery.schedules import crontab

from portal.periodic import periodic_entries, periodic_tick

START = datetime(2026, 12, 2, 10, 0, 0, tzinfo=UTC)
SCHEDULE = {
    "every-minute": {"task": "t.minute", "schedule": timedelta(minutes=1)},
    "at-37": {"task": "t.hourly", "schedule": crontab(minute=37), "kwargs": {"full": True}},
}


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def run_at(clock, entries, moments, ran):
    waits = []
    for moment in moments:
        clock.now = moment
        waits.append(
            periodic_tick(
                entries=entries, clock=clock, run=lambda task, a, k: ran.append((task, k))
            )
        )
    return waits


def test_entries_run_when_due_like_beat():
    clock, ran = Clock(), []
    entries = periodic_entries(beat_schedule=SCHEDULE, clock=clock, run_first=False)
    waits = run_at(clock, entries, [START, START + timedelta(seconds=59)], ran)
    assert ran == []  # like beat: the first run comes one interval after the start
    assert waits[0] == 60.0
    run_at(clock, entries, [START + timedelta(minutes=1)], ran)
    assert ran == [("t.minute", {})]
    run_at(clock, entries, [START + timedelta(minutes=37)], ran)
    assert ran[-2:] == [("t.minute", {}), ("t.hourly", {"full": True})]
    # Not again until the next 37th minute.
    ran.clear()
    run_at(clock, entries, [START + timedelta(minutes=37, seconds=30)], ran)
    assert ran == []
    run_at(clock, entries, [START + timedelta(hours=1, minutes=37)], ran)
    assert ("t.hourly", {"full": True}) in ran


def test_run_first_runs_everything_at_once_and_a_failure_does_not_stop_the_rest():
    clock, ran = Clock(), []

    def run(task, args, kwargs):
        ran.append(task)
        if task == "t.minute":
            raise RuntimeError("broken")

    entries = periodic_entries(beat_schedule=SCHEDULE, clock=clock, run_first=True)
    wait = periodic_tick(entries=entries, clock=clock, run=run)
    assert ran == ["t.minute", "t.hourly"]
    assert wait == 60.0
    # The failed entry waits for its next turn like the others.
    ran.clear()
    clock.now = START + timedelta(seconds=30)
    periodic_tick(entries=entries, clock=clock, run=run)
    assert ran == []


def test_the_settings_schedule_is_left_alone():
    clock = Clock()
    original = SCHEDULE["at-37"]["schedule"]
    periodic_entries(beat_schedule=SCHEDULE, clock=clock, run_first=False)
    assert original.nowfun is None
