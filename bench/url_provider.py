"""url_provider throughput against its floor: the Flex Insights Player's requests with one cached
valid token, against the portal under gunicorn on loopback (Twilio IAM = the fake, audit rows
in PostgreSQL, presigned S3 links), with the audit sealer (``run_audit_sealer``) running beside
it as in production.

Four kinds of request go to the same server in the same run, interleaved round by round:

* the portal's ``/api/v1/url-provider`` with 10 access rules enabled;
* the same with 1,000 rules enabled (a realistic mix: per-identity and per-worker grants,
  team and queue rules of other roles, a few glob and account-wide rules; only a few dozen
  can apply to the benchmark's caller) and 200 expired temporary grants still enabled; the
  ratio to the 10-rule runs is judged against 0.9 (rules cost O(1) per request);
* the floor, ``/bench/floor/url-provider`` (``bench/urls.py``): the same unavoidable I/O written
  the obvious way (cached token from Redis, one recording row read, one row inserted and
  committed, one presign);
* the bare DRF view ``/bench/empty``, the HTTP ceiling, for context only.

Prints requests/s and p50/p99 of each (median run of the rounds), the portal's ratio to the
floor (target >= 0.80, PASS or MISS), the 1,000-rule runs' ratio to the 10-rule runs (target >=
0.90) and to the bare view (context, no target), each the median of the round-by-round ratios,
and how many times Twilio IAM was asked per 1,000 requests with one token (target: 1 per token).
Each kind sets its rule count before it runs (the rules' version token moves, so the server
reads them again once).

Run: ``make bench-url-provider`` (or ``.venv/bin/python bench/url_provider.py --seconds 8``).
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    PYTHON,
    Call,
    Result,
    best_of,
    free_port,
    gunicorn,
    interleaved,
    load,
    prepare_database,
    process,
    server_env,
    verdict,
    workers_count,
)
from faketwilio import FakeTwilio

TOKEN = "eyJ6aXAiOiJERUYiLCJlbmMiOiJBMjU2R0NNIiwiYWxnIjoiZGlyIn0..bench-token.body.tag"
FLOOR_TARGET = 0.80
MANY_RULES_TARGET = 0.90
FEW_RULES = 10
MANY_RULES = 1000
EXPIRED_GRANTS = 200


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


def _filler_rules() -> list[dict]:
    """The 999 rules the 1,000-rule runs add to ``bench-supervisors`` (model field values):
    realistic shapes, of which only the role and glob ones reach the caller's candidates."""
    rules: list[dict] = []
    for i in range(409):
        rules.append({"identities": [f"agent_{i}@example.com"]})
    for i in range(400):
        rules.append({"worker_sids": [f"WK{i:032x}"]})
    for i in range(100):
        rules.append({"roles": ["wfo.quality_manager"], "queues": [f"Queue {i}"]})
    for i in range(50):
        rules.append({"roles": ["supervisor"], "teams": [f"Team {i}"]})
    for i in range(30):
        rules.append({"identities": [f"contractor-{i}-*"], "effect": "deny"})
    for i in range(10):
        rules.append({"account_sids": [f"AC{i:032x}"], "effect": "deny"})
    return rules


def rules_seed() -> None:
    """Create the filler rules (disabled) and the expired grants, once."""
    from datetime import UTC, datetime, timedelta

    from audit.models import AccessRule

    if AccessRule.objects.filter(name__startswith="bench-filler-").count() == MANY_RULES - 1:
        return
    AccessRule.objects.filter(name__startswith="bench-").exclude(name="bench-supervisors").delete()
    rows = [
        AccessRule(
            name=f"bench-filler-{i:04d}",
            effect=fields.pop("effect", "allow"),
            enabled=i < FEW_RULES - 1,
            reason="benchmark",
            **fields,
        )
        for i, fields in enumerate(_filler_rules())
    ]
    past = datetime.now(UTC) - timedelta(days=1)
    rows += [
        AccessRule(
            name=f"bench-expired-{i:04d}",
            effect="allow",
            identities=[f"temp_{i}@example.com"],
            valid_until=past,
            reason="benchmark: an expired temporary grant",
        )
        for i in range(EXPIRED_GRANTS)
    ]
    AccessRule.objects.bulk_create(rows)


def rules_count_set(count: int) -> None:
    """Enable ``count`` rules in all (``bench-supervisors`` and the first fillers)."""
    from django.utils import timezone

    from audit.models import AccessRule

    fillers = AccessRule.objects.filter(name__startswith="bench-filler-")
    fillers.filter(name__lt=f"bench-filler-{count - 1:04d}").update(enabled=True)
    fillers.filter(name__gte=f"bench-filler-{count - 1:04d}").update(enabled=False)
    enabled = AccessRule.objects.filter(enabled=True).exclude(valid_until__lte=timezone.now())
    if enabled.count() != count:
        raise SystemExit(f"expected {count} rules in force, found {enabled.count()}")


def seed_floor_token(answer: dict) -> None:
    """Cache the token's caller where the floor reads it (Redis, via Django's cache), in the
    shape of a cached IAM answer."""
    from django.core.cache import cache

    from bench.urls import floor_token_key

    caller = {
        "identity": str(answer.get("identity") or ""),
        "realm_user_id": str(answer.get("realm_user_id") or ""),
        "worker_sid": str(answer.get("worker_sid") or ""),
        "roles": [str(role) for role in answer.get("roles") or []],
    }
    cache.set(floor_token_key(TOKEN), caller, timeout=3600)


def floor_links_delete(sid: str) -> int:
    """Delete the link rows the floor wrote (the portal binds every link it makes to an access
    log row, the floor never does); answers how many."""
    from recordings.models import MediaLink

    links = MediaLink.objects.filter(recording__sid=sid, access_log_sequence__isnull=True)
    return links.delete()[0]


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each run")
    parser.add_argument("--runs", type=int, default=3, help="rounds of each kind (median shown)")
    parser.add_argument("--concurrency", type=int, default=8, help="client processes")
    args = parser.parse_args()

    fake = FakeTwilio(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN)
    fake.start()
    answer = fake.add_token(TOKEN, identity="bench", roles=["supervisor"])
    port = free_port()
    env = server_env(
        port,
        TWILIO_API_OVERRIDE=fake.url,
        AWS_STORAGE_BUCKET_NAME="bench-recordings",
        AWS_S3_REGION_NAME="us-east-1",
        AWS_ACCESS_KEY_ID="AKIABENCHONLY000000",
        AWS_SECRET_ACCESS_KEY="bench-only-secret",
        FLEX_ALLOWED_ORIGINS="https://flex.twilio.com",
        AUDIT_ANCHOR_DIR=str(Path(os.environ.get("TMPDIR", "/tmp")) / "bench-anchors-url"),
    )
    prepare_database(env)
    sid = seed(env)
    rules_seed()
    floor_links_delete(sid)  # left over by an interrupted run
    from audit.models import AccessLog

    headers = {
        "Authorization": "Basic " + base64.b64encode(f"token:{TOKEN}".encode()).decode(),
        "Origin": "https://flex.twilio.com",
        "Accept": "*/*",
    }
    asks = [Call("GET", f"/api/v1/url-provider?recording_sid={sid}", b"", headers)]
    floors = [Call("GET", f"/bench/floor/url-provider?recording_sid={sid}", b"", headers)]
    empty = [Call("GET", "/bench/empty", b"", headers)]
    per_run = int(args.seconds * 4000)  # more than the box can answer in that time
    import redis

    redis.Redis.from_url(env["REDIS_URL"]).flushdb()  # no token cached from an earlier run
    seed_floor_token(answer)
    rows_before = AccessLog.objects.count()

    def run(label: str, calls: list[Call], rules: int = FEW_RULES) -> Callable[[], Result]:
        def one() -> Result:
            rules_count_set(rules)
            return load(
                label, port, calls * per_run, concurrency=args.concurrency, seconds=args.seconds
            )

        return one

    rules_count_set(FEW_RULES)

    sealer = (PYTHON, "manage.py", "run_audit_sealer", "--interval", "5")
    with gunicorn(env, port), process(*sealer, env=env):
        warm = load("warm-up", port, asks * 300, concurrency=args.concurrency, seconds=10)
        load("warm-up", port, floors * 300, concurrency=args.concurrency, seconds=3)
        load("warm-up", port, empty * 300, concurrency=args.concurrency, seconds=3)
        providers, floor_runs, ceilings, many = interleaved(
            args.runs,
            [
                run("url_provider (allowed, audited)", asks),
                run("floor (same I/O, plain ORM)", floors),
                run("bare DRF view (ceiling)", empty),
                run(f"url_provider, {MANY_RULES:,} rules", asks, MANY_RULES),
            ],
        )
    rules_count_set(FEW_RULES)
    answered = warm.requests + sum(r.requests for r in providers + many)
    rows = AccessLog.objects.count() - rows_before
    iam_calls = fake.count("POST", "/Tokens/validate")
    fake.stop()
    floor_rows = floor_links_delete(sid)

    provider, floor, ceiling = best_of(providers), best_of(floor_runs), best_of(ceilings)
    many_rules = best_of(many)
    print(
        f"gunicorn sync, {workers_count()} workers, {args.concurrency} client processes, "
        f"{args.runs} interleaved rounds of {args.seconds:g} s per kind (median run shown)"
    )
    print(provider.line())
    print(many_rules.line())
    print(floor.line())
    print(ceiling.line())
    print(
        f"audit rows written {rows} for {answered} url_provider answers; "
        f"floor rows written {floor_rows} (deleted afterwards)"
    )
    print(
        f"Twilio IAM calls: {iam_calls} for {answered} requests with one token "
        f"= {1000 * iam_calls / answered:.3f} per 1,000 (target: 1 per token)"
    )
    print(
        f"rules: {FEW_RULES} in force, or {MANY_RULES:,} in force plus {EXPIRED_GRANTS} expired "
        "grants still enabled"
    )
    for label, runs, references, target in (
        ("url_provider / floor", providers, floor_runs, FLOOR_TARGET),
        (f"{MANY_RULES:,} rules / {FEW_RULES} rules", many, providers, MANY_RULES_TARGET),
        ("url_provider / bare DRF view", providers, ceilings, None),
        ("floor / bare DRF view", floor_runs, ceilings, None),
    ):
        print(verdict(label, runs, references, target)[1])


if __name__ == "__main__":
    main()
