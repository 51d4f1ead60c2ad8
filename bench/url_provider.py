"""url_provider throughput: the Flex Insights Player's requests with one cached valid token,
against the portal under gunicorn on loopback (Twilio IAM = the fake, audit rows written to
PostgreSQL, presigned S3 links), beside the same server's bare DRF view (the ceiling).

Prints requests/s, p50/p99 for both and the ratio (target >= 0.50), and how many times Twilio
IAM was asked per 1,000 requests with one token (target: 1).

Run: ``make bench-url-provider`` (or ``.venv/bin/python bench/url_provider.py --seconds 8``).
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

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
from faketwilio import FakeTwilio

TOKEN = "eyJ6aXAiOiJERUYiLCJlbmMiOiJBMjU2R0NNIiwiYWxnIjoiZGlyIn0..bench-token.body.tag"


def seed(env: dict[str, str]) -> str:
    """One allowed rule and one recording in S3; returns the recording SID."""
    os.environ.update(env)
    import django

    django.setup()
    from audit.models import AccessRule
    from recordings.models import MediaLocation, Recording, RecordingStatus, SyncState

    AccessRule.objects.update_or_create(
        name="bench-supervisors",
        defaults={"effect": "allow", "roles": ["supervisor"], "reason": "benchmark"},
    )
    recording, _ = Recording.objects.update_or_create(
        sid="RE" + "be" * 16,
        defaults={
            "account_sid": ACCOUNT_SID,
            "status": RecordingStatus.COMPLETED,
            "source": "DialVerb",
            "media_location": MediaLocation.S3,
            "media_bucket": "bench-recordings",
            "media_key": f"{ACCOUNT_SID}/2026/11/{'RE' + 'be' * 16}.wav",
            "sync_state": SyncState.SYNCED,
        },
    )
    return recording.sid


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each run")
    parser.add_argument("--runs", type=int, default=3, help="runs of each kind (median shown)")
    parser.add_argument("--concurrency", type=int, default=8, help="client processes")
    args = parser.parse_args()

    fake = FakeTwilio(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN)
    fake.start()
    fake.add_token(TOKEN, identity="bench", roles=["supervisor"])
    port = free_port()
    env = server_env(
        port,
        TWILIO_API_OVERRIDE=fake.url,
        AWS_STORAGE_BUCKET_NAME="bench-recordings",
        AWS_S3_REGION_NAME="us-east-1",
        AWS_ACCESS_KEY_ID="AKIABENCHONLY000000",
        AWS_SECRET_ACCESS_KEY="bench-only-secret",
        FLEX_ALLOWED_ORIGINS="https://flex.twilio.com",
    )
    prepare_database(env)
    sid = seed(env)
    from audit.models import AccessLog

    headers = {
        "Authorization": "Basic " + base64.b64encode(f"token:{TOKEN}".encode()).decode(),
        "Origin": "https://flex.twilio.com",
        "Accept": "*/*",
    }
    asks = [Call("GET", f"/api/v1/url-provider?recording_sid={sid}", b"", headers)]
    empty = [Call("GET", "/bench/empty", b"", headers)]
    per_run = int(args.seconds * 4000)
    import redis

    redis.Redis.from_url(env["REDIS_URL"]).flushdb()  # no token cached from an earlier run
    rows_before = AccessLog.objects.count()
    with gunicorn(env, port):
        warm = load("warm-up", port, asks * 300, concurrency=args.concurrency, seconds=10)
        load("warm-up", port, empty * 300, concurrency=args.concurrency, seconds=3)
        ceilings, providers = [], []
        for _ in range(args.runs):
            ceilings.append(
                load(
                    "bare DRF view (ceiling)",
                    port,
                    empty * per_run,
                    concurrency=args.concurrency,
                    seconds=args.seconds,
                )
            )
            providers.append(
                load(
                    "url_provider (allowed, audited)",
                    port,
                    asks * per_run,
                    concurrency=args.concurrency,
                    seconds=args.seconds,
                )
            )
    answered = warm.requests + sum(r.requests for r in providers)
    rows = AccessLog.objects.count() - rows_before
    iam_calls = fake.count("POST", "/Tokens/validate")
    fake.stop()

    ceiling, provider = best_of(ceilings), best_of(providers)
    print(
        f"gunicorn sync, 5 workers, {args.concurrency} client processes, "
        f"{args.runs} runs of {args.seconds:.0f} s each (median run shown)"
    )
    print(ceiling.line())
    print(provider.line())
    print(f"audit rows written {rows} for {answered} url_provider answers")
    print(
        f"Twilio IAM calls: {iam_calls} for {answered} requests with one token "
        f"= {1000 * iam_calls / answered:.3f} per 1,000 (target: 1 per token)"
    )
    print(summary(provider.rate / ceiling.rate, 0.50))


if __name__ == "__main__":
    main()
