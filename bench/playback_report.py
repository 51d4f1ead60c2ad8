"""The playback report (``audit.admin.report_selectors``) on a large access log: write
``--rows`` player rows over 30 days (url_provider allowed and denied, media fetches, playback
summaries with bytes and the audio they amount to) for 2,000 agents in 20 teams and
``--recordings`` recordings into this machine's PostgreSQL (database ``portal_report_bench``,
or ``--database``), then time the report grouped by
person, team and recording, over 30 days and over one day, and for one person, printing each
one's time (median of ``--repeat`` after a warm-up), its query count and the ratio of the
30-day time to the one-day time (how the time follows the rows the period holds).

Before the reports are timed, the daily rollup is brought up to date the way the worker's
hourly task does (``audit.rollups``; its time is printed), so the reports of the whole centre
read their whole days from it, as a running portal's do. The 30 days are the report's default,
the dashboard's window, whose whole days the rollup also counts as a span; 28 whole days to
midnight are another window (the days' rollup without the span); each 30-day report of the
whole centre is also timed from the log alone (``from_rollup=False``), the way it read before.

Rows are written by PostgreSQL itself (``INSERT … SELECT generate_series``) with placeholder
hashes: nothing here verifies the chain. Run:
``.venv/bin/python bench/playback_report.py [--rows 1000000] [--recordings 100000] [--reuse]``
(``--reuse`` keeps the data the last run built; migrations still run).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import PYTHON, ROOT, free_port, server_env

DATABASE = "portal_report_bench"
AGENTS = 2000
TEAMS = 20

ACCESS_LOG_SQL = """
INSERT INTO audit_accesslog (
    sequence, occurred_at, action, outcome, reason_code, identity, realm_user_id, worker_sid,
    roles, recording_sid, rule_name, client_ip, user_agent, request_id, link_id, bytes_served,
    detail, prev_hash, row_hash, mac_key_id, row_mac)
SELECT i, now() - make_interval(secs => (%(n)s - i) * 86400.0 * 30 / %(n)s),
       CASE WHEN k < 50 THEN 'url_provider' WHEN k < 60 THEN 'url_provider'
            WHEN k < 85 THEN 'media_fetch' ELSE 'media_playback' END,
       CASE WHEN k >= 50 AND k < 60 THEN 'denied' ELSE 'allowed' END,
       CASE WHEN k < 50 THEN 'allowed_by_rule'
            WHEN k < 58 THEN 'no_matching_rule' WHEN k < 60 THEN 'recording_not_found'
            WHEN k < 85 THEN 'playback_started' ELSE 'playback_summary' END,
       'agent' || (i * 7919 %% %(agents)s) || '_40example_2Ecom', '',
       'WK' || lpad(to_hex(i * 7919 %% %(agents)s), 32, '0'), '["agent"]'::jsonb,
       'RE' || lpad(to_hex(1 + (i * 104729) %% %(r)s), 32, '0'), '', '192.0.2.10', 'bench',
       'req-' || i, '', CASE WHEN k >= 85 THEN 200000 + (i %% 900000) ELSE NULL END,
       -- A summary keeps the audio its bytes amount to, as recordings.playback.links writes
       -- it (a recording's stored size is 16,000 bytes a second of its duration here).
       CASE WHEN k >= 85 THEN jsonb_build_object('fetches', 1, 'audio_ms_sent', least(
           round((200000 + (i %% 900000)) / 16.0),
           (30 + (1 + (i * 104729) %% %(r)s) %% 600) * 1000)::bigint)
            ELSE '{}'::jsonb END,
       '', md5(i::text) || md5((i + 1)::text), '', ''
FROM (SELECT i, (i * 37) %% 100 AS k FROM generate_series(1::bigint, %(n)s) AS i) AS made
"""


def _sql(env: dict[str, str], statement: str, params: dict[str, int] | None = None) -> float:
    import psycopg

    began = time.perf_counter()
    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as connection:
        connection.execute(statement, params)  # type: ignore[arg-type]
    return time.perf_counter() - began


def build(env: dict[str, str], *, database: str, rows: int, recordings: int) -> None:
    """Empty the database, migrate it, and write the data set (see the module docstring)."""
    for command in (["dropdb", "--if-exists"], ["createdb"]):
        subprocess.run([*command, "-h", "127.0.0.1", "-U", "postgres", database], check=True)
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    # Recordings and workers through the ORM (their columns' defaults follow the models);
    # the log, the big table, through PostgreSQL.
    from django.utils import timezone

    from recordings.models import FlexWorker, Recording, RecordingStatus, SyncState

    began = time.perf_counter()
    now = timezone.now()
    Recording.objects.bulk_create(
        (
            Recording(
                sid="RE" + f"{i:032x}",
                account_sid="AC" + "1" * 32,
                call_sid="CA" + f"{i:032x}",
                status=RecordingStatus.COMPLETED,
                source="DialVerb",
                start_time=now,
                duration_seconds=30 + i % 600,
                media_size=(30 + i % 600) * 16000,
                sync_state=SyncState.SYNCED,
                handled_team_names=[f"Team {i % TEAMS}"],
            )
            for i in range(1, recordings + 1)
        ),
        batch_size=5000,
    )
    FlexWorker.objects.bulk_create(
        FlexWorker(
            sid="WK" + f"{a:032x}",
            workspace_sid="WS" + "1" * 32,
            friendly_name=f"agent{a}_40example_2Ecom",
            full_name=f"Agent {a}",
            email=f"agent{a}@example.com",
            team_name=f"Team {a % TEAMS}",
        )
        for a in range(AGENTS)
    )
    print(
        f"wrote {recordings:,} recordings, {AGENTS:,} workers "
        f"in {time.perf_counter() - began:.1f} s"
    )
    params = {"n": rows, "r": recordings, "agents": AGENTS}
    took = _sql(env, ACCESS_LOG_SQL, params)
    print(f"wrote {rows:,} access-log rows over 30 days in {took:.1f} s")
    _sql(env, "SELECT setval('audit_accesslog_position', %(n)s + 1, false)", params)
    print(f"VACUUM ANALYZE in {_sql(env, 'VACUUM ANALYZE'):.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--recordings", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--reuse", action="store_true", help="keep the data the last run built")
    parser.add_argument(
        "--database", default=DATABASE, help=f"PostgreSQL database to build in (default {DATABASE})"
    )
    options = parser.parse_args()
    env = server_env(
        free_port(),
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{options.database}",
        AUDIT_SEAL_INLINE="0",
        LOG_LEVEL="ERROR",
    )
    os.environ.update(env)
    import django

    django.setup()
    if not options.reuse:
        build(env, database=options.database, rows=options.rows, recordings=options.recordings)
    else:  # the data the last run built, with this version's tables
        subprocess.run(
            [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
        )
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from audit.admin.report_selectors import ReportFilters, playback_report
    from audit.rollups import access_log_rollup

    began = time.perf_counter()
    run = access_log_rollup(now=timezone.now())
    print(
        f"rollup of {len(run.rolled)} days (the worker's hourly task) in "
        f"{time.perf_counter() - began:.1f} s"
    )
    # What autovacuum does to freshly written tables.
    _sql(env, "VACUUM ANALYZE")

    now = timezone.now()
    month = now - timedelta(days=30)
    day = now - timedelta(days=1)
    cases = [
        (f"by {group_by}, {label}", ReportFilters(since=since), group_by)
        for group_by in ("person", "team", "recording")
        for label, since in (("1 day", day), ("30 days", month))
    ]
    # Another window than the dashboard's (from midnight, 28 whole days to yesterday): its
    # whole days come from the daily rollup, but the dashboard's span does not hold them.
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    other = ReportFilters(since=midnight - timedelta(days=28), until=midnight)
    cases += [
        (f"by {group_by}, 28 whole days", other, group_by)
        for group_by in ("person", "team", "recording")
    ]
    cases += [
        (f"by {group_by}, 30 days, log alone", ReportFilters(since=month), group_by)
        for group_by in ("person", "team", "recording")
    ]
    cases.append(
        (
            "by recording, one person, 30 days",
            ReportFilters(since=month, person="agent7@example.com"),
            "recording",
        )
    )
    cases.append(
        ("by person, one team, 30 days", ReportFilters(since=month, team="Team 3"), "person")
    )
    print(
        f"\n{options.rows:,} player rows, {options.recordings:,} recordings, "
        f"{AGENTS:,} agents in {TEAMS} teams (database {options.database})"
    )
    print(f"{'report':<38} {'median':>9} {'queries':>8} {'groups':>7}")
    medians: dict[str, float] = {}
    for label, filters, group_by in cases:
        times = []
        for attempt in range(options.repeat + 1):
            with CaptureQueriesContext(connection) as captured:
                began = time.perf_counter()
                report = playback_report(
                    filters=filters, group_by=group_by, from_rollup="log alone" not in label
                )
                took = time.perf_counter() - began
            if attempt:
                times.append(took)
        medians[label] = statistics.median(times)
        print(
            f"{label:<38} {medians[label] * 1000:7.0f} ms {len(captured):8d} "
            f"{len(report.groups):7d}"
        )
    for group_by in ("person", "team", "recording"):
        ratio = medians[f"by {group_by}, 30 days"] / medians[f"by {group_by}, 1 day"]
        print(f"by {group_by}: 30 days take {ratio:.1f}x the time of 1 day (30x the rows)")
    for group_by in ("person", "team", "recording"):
        ratio = medians[f"by {group_by}, 30 days, log alone"] / medians[f"by {group_by}, 30 days"]
        print(f"by {group_by}, 30 days: the log alone takes {ratio:.1f}x the time")


if __name__ == "__main__":
    main()
