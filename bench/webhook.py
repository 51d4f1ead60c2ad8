"""Webhook ingestion throughput: signed ``recordingStatusCallback`` POSTs against the portal
under gunicorn on loopback (PostgreSQL rows, Celery messages to Redis), beside the same server's
bare DRF view (the ceiling). Prints callbacks/s, p50/p99 and the ratio (target >= 0.50).

Run: ``make bench-webhook`` (or ``.venv/bin/python bench/webhook.py --seconds 10``).
"""

from __future__ import annotations

import argparse
import secrets
import sys
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
    best_of,
    free_port,
    gunicorn,
    load,
    prepare_database,
    server_env,
    summary,
)

PATH = "/twilio/recording-status"


def signed_callbacks(port: int, count: int) -> list[Call]:
    """``count`` distinct completed-recording callbacks, signed like Twilio signs them."""
    validator = RequestValidator(AUTH_TOKEN)
    url = f"http://127.0.0.1:{port}{PATH}"
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
                PATH,
                urlencode(params).encode(),
                {
                    "Content-Type": "application/x-www-form-urlencoded",
                    "X-Twilio-Signature": validator.compute_signature(url, params),
                    "I-Twilio-Idempotency-Token": secrets.token_hex(16),
                },
            )
        )
    return calls


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each run")
    parser.add_argument("--runs", type=int, default=5, help="runs of each kind (median shown)")
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
    with gunicorn(env, port):
        load("warm-up", port, signed_callbacks(port, 300), concurrency=args.concurrency, seconds=3)
        load("warm-up", port, empty[:300], concurrency=args.concurrency, seconds=3)
        ceilings, webhooks = [], []
        for _ in range(args.runs):
            ceilings.append(
                load(
                    "bare DRF view (ceiling)",
                    port,
                    empty * (per_run // len(empty) + 1),
                    concurrency=args.concurrency,
                    seconds=args.seconds,
                )
            )
            webhooks.append(
                load(
                    "signed callbacks (accepted)",
                    port,
                    signed_callbacks(port, per_run),
                    concurrency=args.concurrency,
                    seconds=args.seconds,
                )
            )
    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as db:
        rows = db.execute("SELECT count(*) FROM recordings_recordingevent").fetchone()[0]
    queued = broker.llen("celery")
    accepted = sum(r.statuses.get(204, 0) for r in webhooks) + 300

    ceiling, webhook = best_of(ceilings), best_of(webhooks)
    print(
        f"gunicorn sync, 5 workers, {args.concurrency} client processes, "
        f"{args.runs} runs of {args.seconds:.0f} s each (median run shown)"
    )
    print(ceiling.line())
    print(webhook.line())
    print(
        f"event rows stored {rows}, sync tasks queued {queued}, callbacks answered 204 {accepted}"
    )
    print(summary(webhook.rate / ceiling.rate, 0.50))
    broker.flushdb()


if __name__ == "__main__":
    main()
