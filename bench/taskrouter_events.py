"""TaskRouter event intake against recording status callbacks, and event processing.

Signed ``POST /twilio/taskrouter-events`` requests (each a distinct ``reservation.accepted``
with task and worker attributes, as TaskRouter sends them) and signed
``/twilio/recording-status`` callbacks go to the same portal under gunicorn on loopback
(PostgreSQL rows, Celery messages to Redis), interleaved round by round. Both do the same kind
of work (signature, validation, one row committed, one message), so the target is a ratio of
at least 0.90. Then the stored events are processed in one process, as a worker would
(``taskrouter_events_process``), and events/s printed (each one a new task with its calls, a
reservation and a worker, and the search for recordings to link).

Run: ``make bench-taskrouter`` (or ``.venv/bin/python bench/taskrouter_events.py --seconds 8``).
"""

from __future__ import annotations

import argparse
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
import redis
from twilio.request_validator import RequestValidator

from bench.harness import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    PYTHON,
    ROOT,
    Call,
    Result,
    best_of,
    free_port,
    gunicorn,
    interleaved,
    load,
    prepare_database,
    server_env,
    verdict,
    workers_count,
)
from bench.webhook import signed_callbacks

PATH = "/twilio/taskrouter-events"
WORKSPACE_SID = "WS" + "b" * 32
TARGET = 0.90

# Processes the stored events in the portal's own code, as a Celery worker would, and prints
# how long it took; run in a child process with the benchmark's environment.
PROCESS_SCRIPT = """
import time
import django
django.setup()
from recordings.flex.events import taskrouter_events_process
from recordings.models import EventState, TaskRouterEvent
ids = list(TaskRouterEvent.objects.filter(state=EventState.PENDING).values_list("pk", flat=True))
started = time.perf_counter()
for start in range(0, len(ids), 100):
    taskrouter_events_process(event_ids=ids[start:start + 100])
elapsed = time.perf_counter() - started
done = TaskRouterEvent.objects.filter(pk__in=ids, state=EventState.PROCESSED).count()
print(len(ids), done, elapsed)
"""


def signed_events(port: int, count: int) -> list[Call]:
    """``count`` distinct ``reservation.accepted`` events, signed as TaskRouter signs them."""
    validator = RequestValidator(AUTH_TOKEN)
    url = f"http://127.0.0.1:{port}{PATH}"
    calls = []
    now_ms = int(time.time() * 1000)
    for n in range(count):
        call_sid = "CA" + secrets.token_hex(16)
        params = {
            "Sid": "EV" + secrets.token_hex(16),
            "EventType": "reservation.accepted",
            "AccountSid": ACCOUNT_SID,
            "WorkspaceSid": WORKSPACE_SID,
            "WorkspaceName": "Flex Task Assignment",
            "ResourceType": "Reservation",
            "ResourceSid": "WR" + secrets.token_hex(16),
            "Timestamp": str((now_ms + n) // 1000),
            "TimestampMs": str(now_ms + n),
            "TaskSid": "WT" + secrets.token_hex(16),
            "TaskAttributes": json.dumps(
                {
                    "type": "inbound",
                    "call_sid": call_sid,
                    "conference": {
                        "sid": "CF" + secrets.token_hex(16),
                        "participants": {
                            "customer": call_sid,
                            "worker": "CA" + secrets.token_hex(16),
                        },
                    },
                }
            ),
            "TaskAssignmentStatus": "assigned",
            "TaskChannelUniqueName": "voice",
            "TaskDateCreated": str(now_ms // 1000),
            "TaskQueueSid": "WQ" + "c" * 32,
            "TaskQueueName": "Support",
            "WorkerSid": "WK" + secrets.token_hex(16),
            "WorkerName": "agent_40example_2Ecom",
            "WorkerAttributes": json.dumps(
                {"full_name": "An Agent", "email": "agent@example.com", "team_name": "Blue"}
            ),
        }
        params["ReservationSid"] = params["ResourceSid"]
        calls.append(
            Call(
                "POST",
                PATH,
                urlencode(params).encode(),
                {
                    "Content-Type": "application/x-www-form-urlencoded",
                    "X-Twilio-Signature": validator.compute_signature(url, params),
                },
            )
        )
    return calls


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each run")
    parser.add_argument("--runs", type=int, default=3, help="rounds of each kind (median shown)")
    parser.add_argument("--concurrency", type=int, default=8, help="client processes")
    parser.add_argument("--process", type=int, default=2000, help="events to process after")
    args = parser.parse_args()

    port = free_port()
    env = server_env(port, TWILIO_WORKSPACE_SID=WORKSPACE_SID)
    prepare_database(env)
    broker = redis.Redis.from_url(env["REDIS_URL"])
    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as db:
        db.execute(
            "TRUNCATE recordings_taskrouterevent, recordings_recordingevent,"
            " recordings_flextask, recordings_flexworker, recordings_flextaskqueue CASCADE"
        )
    broker.flushdb()
    per_run = int(args.seconds * 4000)

    def run(label: str, calls: Callable[[], list[Call]]) -> Callable[[], Result]:
        return lambda: load(
            label, port, calls(), concurrency=args.concurrency, seconds=args.seconds
        )

    with gunicorn(env, port):
        load("warm-up", port, signed_events(port, 300), concurrency=args.concurrency, seconds=3)
        load("warm-up", port, signed_callbacks(port, 300), concurrency=args.concurrency, seconds=3)
        events, callbacks = interleaved(
            args.runs,
            [
                run("TaskRouter events (accepted)", lambda: signed_events(port, per_run)),
                run("recording callbacks (accepted)", lambda: signed_callbacks(port, per_run)),
            ],
        )
    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as db:
        (stored,) = db.execute("SELECT count(*) FROM recordings_taskrouterevent").fetchone()
        # Keep the newest events for the processing pass.
        db.execute(
            "DELETE FROM recordings_taskrouterevent WHERE id NOT IN "
            "(SELECT id FROM recordings_taskrouterevent ORDER BY id DESC LIMIT %s)",
            [args.process],
        )
    broker.flushdb()
    print(
        f"gunicorn sync, {workers_count()} workers, {args.concurrency} client processes, "
        f"{args.runs} interleaved rounds of {args.seconds:g} s per kind (median run shown)"
    )
    print(best_of(events).line())
    print(best_of(callbacks).line())
    print(f"TaskRouter event rows stored {stored}")
    ratio, line = verdict("TaskRouter / recording callback", events, callbacks, TARGET)
    print(line)

    answer = subprocess.run(
        [PYTHON, "-c", PROCESS_SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    count, done, elapsed = int(answer[-3]), int(answer[-2]), float(answer[-1])
    print(
        f"processing: {done}/{count} events in {elapsed:.1f} s, "
        f"{done / elapsed if elapsed else 0:.0f} events/s in one process "
        "(each a new task, reservation, worker and queue lookup)"
    )
    print(f"TaskRouter intake benchmark: {'PASS' if ratio >= TARGET else 'MISS'}")
    broker.flushdb()


if __name__ == "__main__":
    main()
