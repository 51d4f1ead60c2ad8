"""Webhook ingestion throughput against its floor and the bare DRF view: signed
``recordingStatusCallback`` POSTs against the portal under gunicorn on loopback (PostgreSQL
rows, Celery messages to Redis).

Three kinds of request go to the same server in the same run, interleaved round by round:

* the portal's ``/twilio/recording-status``;
* the floor, ``/bench/floor/webhook`` (``bench/urls.py``): the same unavoidable work written the
  obvious way (form parse, Twilio's ``RequestValidator``, one ``RecordingEvent`` committed with
  the ORM, 204);
* the bare DRF view ``/bench/empty``, the HTTP ceiling.

Prints callbacks/s and p50/p99 of each (median run of the rounds) and the portal's ratio to
the floor (target >= 0.80) and to the bare view (target >= 0.50), each the median of the
round-by-round ratios, with PASS or MISS. The benchmark passes when either target holds.

Run: ``make bench-webhook`` (or ``.venv/bin/python bench/webhook.py --seconds 10``).
"""

from __future__ import annotations

import argparse
import secrets
import sys
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

PATH = "/twilio/recording-status"
FLOOR_PATH = "/bench/floor/webhook"
FLOOR_TARGET = 0.80
CEILING_TARGET = 0.50
# The floor's callbacks carry idempotency tokens with this prefix, so its rows can be told
# apart from the portal's.
FLOOR_IDEMPOTENCY_PREFIX = "floor-"


def signed_callbacks(port: int, count: int, path: str = PATH) -> list[Call]:
    """``count`` distinct completed-recording callbacks to ``path``, signed like Twilio signs
    them."""
    validator = RequestValidator(AUTH_TOKEN)
    url = f"http://127.0.0.1:{port}{path}"
    token_prefix = FLOOR_IDEMPOTENCY_PREFIX if path == FLOOR_PATH else ""
    calls = []
    for _ in range(count):
        sid = "RE" + secrets.token_hex(16)
        params = {
            "AccountSid": ACCOUNT_SID,
            "CallSid": "CA" + secrets.token_hex(16),
            "RecordingSid": sid,
            "RecordingUrl": f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{sid}",
            "RecordingStatus": "completed",
            "RecordingDuration": "42",
            "RecordingChannels": "2",
            "RecordingSource": "DialVerb",
            "RecordingStartTime": "Mon, 23 Nov 2026 10:00:00 +0000",
            "RecordingTrack": "both",
            "ErrorCode": "0",
        }
        calls.append(
            Call(
                "POST",
                path,
                urlencode(params).encode(),
                {
                    "Content-Type": "application/x-www-form-urlencoded",
                    "X-Twilio-Signature": validator.compute_signature(url, params),
                    "I-Twilio-Idempotency-Token": token_prefix + secrets.token_hex(16),
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
    args = parser.parse_args()

    port = free_port()
    env = server_env(port)
    prepare_database(env)
    broker = redis.Redis.from_url(env["REDIS_URL"])
    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as db:
        db.execute("TRUNCATE recordings_recordingevent")
    broker.flushdb()

    per_run = int(args.seconds * 4000)  # more than the box can answer in that time
    empty = [
        Call("POST", "/bench/empty", c.body, dict(c.headers)) for c in signed_callbacks(port, 500)
    ]

    def run(label: str, calls: Callable[[], list[Call]]) -> Callable[[], Result]:
        return lambda: load(
            label, port, calls(), concurrency=args.concurrency, seconds=args.seconds
        )

    with gunicorn(env, port):
        warm = load(
            "warm-up", port, signed_callbacks(port, 300), concurrency=args.concurrency, seconds=3
        )
        load(
            "warm-up",
            port,
            signed_callbacks(port, 300, FLOOR_PATH),
            concurrency=args.concurrency,
            seconds=3,
        )
        load("warm-up", port, empty[:300], concurrency=args.concurrency, seconds=3)
        webhooks, floors, ceilings = interleaved(
            args.runs,
            [
                run("signed callbacks (accepted)", lambda: signed_callbacks(port, per_run)),
                run(
                    "floor (same work, plain ORM)",
                    lambda: signed_callbacks(port, per_run, FLOOR_PATH),
                ),
                run("bare DRF view (ceiling)", lambda: empty * (per_run // len(empty) + 1)),
            ],
        )
    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as db:
        rows, floor_rows = db.execute(
            "SELECT count(*) FILTER (WHERE idempotency_token NOT LIKE %s),"
            " count(*) FILTER (WHERE idempotency_token LIKE %s)"
            " FROM recordings_recordingevent",
            [FLOOR_IDEMPOTENCY_PREFIX + "%", FLOOR_IDEMPOTENCY_PREFIX + "%"],
        ).fetchone()
    queued = broker.llen("celery")
    accepted = sum(r.statuses.get(204, 0) for r in webhooks) + warm.statuses.get(204, 0)

    webhook, floor, ceiling = best_of(webhooks), best_of(floors), best_of(ceilings)
    print(
        f"gunicorn sync, {workers_count()} workers, {args.concurrency} client processes, "
        f"{args.runs} interleaved rounds of {args.seconds:g} s per kind (median run shown)"
    )
    print(webhook.line())
    print(floor.line())
    print(ceiling.line())
    print(
        f"event rows stored {rows}, sync tasks queued {queued}, callbacks answered 204 "
        f"{accepted}; floor rows stored {floor_rows}"
    )
    to_floor, line = verdict("webhook / floor", webhooks, floors, FLOOR_TARGET)
    print(line)
    to_ceiling, line = verdict("webhook / bare DRF view", webhooks, ceilings, CEILING_TARGET)
    print(line)
    print(verdict("floor / bare DRF view", floors, ceilings, None)[1])
    passed = to_floor >= FLOOR_TARGET or to_ceiling >= CEILING_TARGET
    print(f"webhook benchmark: {'PASS' if passed else 'MISS'} (either target holding passes)")
    broker.flushdb()


if __name__ == "__main__":
    main()
