"""The compliance console at a real contact centre's size: build an access log of ``--rows``
rows over the last ``--days`` days and ``--recordings`` recordings in this machine's
PostgreSQL (database ``portal_admin_scale``), then open each page an officer clicks (the
dashboard, the log with its filters, search and last page, an identity's activity, a
recording's timeline, the recordings list with its search and filters, the playback report)
and print each page's time (median of ``--repeat`` views after one warm-up) and query count.

The data is written by PostgreSQL itself (``INSERT … SELECT generate_series``): Python would
take an hour to hash ten million rows, and no page here verifies the chain, so the rows carry
placeholder hashes. The mix is a contact centre's: most rows are the player's (url_provider,
media fetches and playback summaries), a few are staff's; one agent is much busier than the
others; a few actions, reasons, workers and roles are rare (the filters an officer narrows to).

Run: ``.venv/bin/python bench/admin_scale.py [--rows 1000000] [--recordings 300000]
[--days 30] [--reuse] [--database portal_admin_scale]`` (``--reuse`` keeps the data the last
run built and only times pages; migrations still run, so new indexes are built on the existing
data). The issue's size, ten million rows of which a million in the dashboard's 30 days, and a
million recordings: ``--rows 10000000 --days 300 --recordings 1000000`` (about ten minutes to
build on two cores).

Before the pages are timed, the dashboard's daily rollup is brought up to date the way the
worker's hourly task does (``audit.rollups``; its time is printed): the pages then read what a
running portal's would.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import PYTHON, ROOT, free_port, server_env

DATABASE = "portal_admin_scale"
BUSIEST = "agent_busy@example.com"
RARE_WORKER = "WK" + "f" * 32
RARE_ROLE = "qa_auditor"
RARE_REASON = "decryption_key_mismatch"

# One statement per table: PostgreSQL generates the rows (see the module docstring). ``%(n)s``
# is the row count, ``%(r)s`` the recordings', ``%(days)s`` the window.
RECORDINGS_SQL = """
INSERT INTO recordings_recording (
    sid, account_sid, call_sid, conference_sid, status, source, channels, track,
    duration_seconds, start_time, date_created, date_updated, price_unit, twilio_uri, media_url,
    encryption_type, encryption_public_key_sid, encryption_cek, encryption_iv, media_location,
    media_bucket, media_key, sync_state, sync_error, synced_at, created_at, updated_at,
    integrity_error, integrity_state, media_etag, media_sha256, archive_attempts, archive_error,
    archive_state, deleted_by_policy, retention_error, handled_queues, handled_team_names,
    handled_worker_sids, restricted_by, restricted_reason)
SELECT 'RE' || lpad(to_hex(i), 32, '0'),
       'AC' || lpad(to_hex(i %% 3), 32, '0'),
       'CA' || lpad(to_hex(i), 32, '0'), '', 'completed',
       (ARRAY['OutboundAPI', 'DialVerb', 'Conference', 'StartCallRecording'])[1 + i %% 4],
       2, 'both', 30 + i %% 600, at, at, at, 'USD', '', '',
       CASE WHEN i %% 10 = 0 THEN 'rsa-aes' ELSE '' END, '', '', '', 's3', 'bench',
       'recordings/' || i, CASE WHEN i %% 50000 = 0 THEN 'sync_failed' ELSE 'synced' END, '',
       at, at, at, '', 'verified', '', '', 0, '', 'archived', '', '', '[]', '[]', '[]', '', ''
FROM (SELECT i, now() - make_interval(secs => (%(r)s - i) * 86400.0 * 365 / %(r)s) AS at
      FROM generate_series(1, %(r)s) AS i) AS made
"""

ACCESS_LOG_SQL = """
INSERT INTO audit_accesslog (
    sequence, occurred_at, action, outcome, reason_code, identity, realm_user_id, worker_sid,
    roles, recording_sid, rule_name, client_ip, user_agent, request_id, link_id, bytes_served,
    detail, prev_hash, row_hash, mac_key_id, row_mac)
SELECT i, now() - make_interval(secs => (%(n)s - i) * 86400.0 * %(days)s / %(n)s),
       CASE WHEN i %% 100000 = 7 THEN 'legal_hold'
            WHEN i %% 50000 = 11 THEN 'rule_change'
            WHEN k < 55 THEN 'url_provider' WHEN k < 63 THEN 'url_provider'
            WHEN k < 88 THEN 'media_fetch' WHEN k < 94 THEN 'media_playback'
            ELSE 'admin_view' END,
       CASE WHEN i %% 100000 = 7 OR i %% 50000 = 11 THEN 'allowed'
            WHEN k >= 55 AND k < 63 THEN 'denied' ELSE 'allowed' END,
       CASE WHEN i %% 100000 = 7 THEN 'legal_hold' WHEN i %% 50000 = 11 THEN 'rule_updated'
            WHEN i %% 200000 = 13 THEN %(reason)s
            WHEN k < 55 THEN 'allowed_by_rule' WHEN k < 63 THEN 'no_matching_rule'
            WHEN k < 88 THEN 'playback_started' WHEN k < 94 THEN 'playback_summary'
            ELSE 'access_log_list' END,
       CASE WHEN k >= 94 THEN 'admin:officer'
            WHEN i %% 20 = 0 THEN %(busiest)s
            ELSE 'agent_' || (i * 7919 %% 2000) || '@example.com' END,
       '',
       CASE WHEN k >= 94 THEN ''
            WHEN i %% 250000 = 17 THEN %(worker)s
            ELSE 'WK' || lpad(to_hex(i * 7919 %% 2000), 32, '0') END,
       CASE WHEN k >= 94 THEN '[]'::jsonb
            WHEN i %% 300000 = 19 THEN jsonb_build_array('agent', %(role)s::text)
            WHEN i %% 50 = 0 THEN '["supervisor"]'::jsonb ELSE '["agent"]'::jsonb END,
       CASE WHEN k >= 94 THEN ''
            ELSE 'RE' || lpad(to_hex(1 + (i * 104729) %% %(r)s), 32, '0') END,
       CASE WHEN k < 55 THEN 'agents-own-calls' ELSE '' END,
       '192.0.2.10', 'Mozilla/5.0 (Flex Insights Player)', 'req-' || i, '',
       -- A playback summary's bytes and the audio they amount to (recordings.playback.links).
       CASE WHEN k >= 88 AND k < 94 AND i %% 100000 <> 7 AND i %% 50000 <> 11
            THEN 200000 + (i %% 900000) END,
       CASE WHEN k >= 88 AND k < 94 AND i %% 100000 <> 7 AND i %% 50000 <> 11
            THEN jsonb_build_object('fetches', 1,
                                    'audio_ms_sent', round((200000 + (i %% 900000)) / 16.0)::bigint)
            ELSE '{}'::jsonb END,
       '', md5(i::text) || md5((i + 1)::text), '', ''
FROM (SELECT i, (i * 37) %% 100 AS k FROM generate_series(1::bigint, %(n)s) AS i) AS made
"""


def _sql(env: dict[str, str], statement: str, params: dict[str, object] | None = None) -> float:
    import psycopg

    began = time.perf_counter()
    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as connection:
        connection.execute(statement, params)  # type: ignore[arg-type]
    return time.perf_counter() - began


def build(env: dict[str, str], *, database: str, rows: int, recordings: int, days: int) -> None:
    """Empty the database, migrate it, and write the data set (see the module docstring)."""
    for command in (["dropdb", "--if-exists"], ["createdb"]):
        subprocess.run([*command, "-h", "127.0.0.1", "-U", "postgres", database], check=True)
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    params = {
        "n": rows,
        "r": recordings,
        "days": days,
        "reason": RARE_REASON,
        "busiest": BUSIEST,
        "worker": RARE_WORKER,
        "role": RARE_ROLE,
    }
    took = _sql(env, RECORDINGS_SQL, params)
    print(f"wrote {recordings:,} recordings in {took:.1f} s")
    took = _sql(env, ACCESS_LOG_SQL, params)
    print(f"wrote {rows:,} access-log rows over {days} days in {took:.1f} s")
    _sql(env, "SELECT setval('audit_accesslog_position', %(n)s + 1, false)", params)
    took = _sql(env, "VACUUM ANALYZE")
    print(f"VACUUM ANALYZE in {took:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--recordings", type=int, default=300_000)
    parser.add_argument("--days", type=int, default=30)
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
        PORTAL_MEDIA_ROOT=tempfile.mkdtemp(prefix="admin-scale-media-"),
        LOG_LEVEL="ERROR",
        # The recording page presigns a link (offline: nothing is fetched from S3).
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench-secret",
    )
    if options.reuse:
        began = time.perf_counter()
        subprocess.run(
            [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
        )
        _sql(env, "ANALYZE")
        print(f"migrate and ANALYZE (reused data) in {time.perf_counter() - began:.1f} s")
    else:
        build(
            env,
            database=options.database,
            rows=options.rows,
            recordings=options.recordings,
            days=options.days,
        )
    os.environ.update(env)
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from audit.models import AccessLog
    from recordings.models import Recording

    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    officer = get_user_model().objects.filter(username="bench-officer").first()
    if officer is None:
        officer = get_user_model().objects.create_superuser("bench-officer", password=None)
    client = Client(secure=True)
    client.force_login(officer)
    # Past the OTP middleware the way a verified session is (production asks staff for a code).
    if getattr(settings, "ADMIN_REQUIRE_OTP", False):
        from django_otp.plugins.otp_totp.models import TOTPDevice

        device, _ = TOTPDevice.objects.get_or_create(user=officer, name="bench")
        session = client.session
        session["otp_device_id"] = device.persistent_id
        session.save()

    from django.utils import timezone

    from audit.rollups import DASHBOARD_DAYS, access_log_rollup

    began = time.perf_counter()
    run = access_log_rollup(now=timezone.now())
    print(
        f"rollup of {len(run.rolled)} days (the worker's hourly task) in "
        f"{time.perf_counter() - began:.1f} s"
    )
    # What autovacuum does to freshly written tables: statistics, and the visibility map that
    # lets the rollup's indexes answer alone.
    _sql(env, "VACUUM ANALYZE")
    head = AccessLog.objects.order_by("-sequence").values_list("sequence", flat=True).first() or 0
    last_page = max(1, -(-head // 50))
    sid = Recording.objects.order_by("pk").values_list("sid", "call_sid", "pk")[
        options.recordings // 2
    ]
    # The middle recording's year and month: the drill-down's pages.
    middle = Recording.objects.get(pk=sid[2]).start_time
    year, month = middle.year, middle.month
    log = "/admin/audit/accesslog/"
    pages = [
        ("dashboard", f"{log}dashboard/"),
        ("access log (default view)", log),
        ("access log, everything", f"{log}?activity=all"),
        ("access log, last page of everything", f"{log}?activity=all&p={last_page}"),
        ("access log, last page of the default view", f"{log}?p=201"),
        ("filter: rare action (legal_hold)", f"{log}?activity=all&action=legal_hold"),
        ("filter: rare reason", f"{log}?activity=all&reason={RARE_REASON}"),
        ("filter: rare worker SID", f"{log}?worker={RARE_WORKER}"),
        ("filter: rare role", f"{log}?activity=all&role={RARE_ROLE}"),
        ("filter: common action, denied", f"{log}?action=url_provider&outcome__exact=denied"),
        ("search: recording SID", f"{log}?q={sid[0]}"),
        ("search: busiest identity", f"{log}?q={BUSIEST}"),
        ("identity page: busiest identity", f"{log}identity/?identity={BUSIEST}"),
        ("recording timeline", f"{log}recording/{sid[0]}/"),
        ("recordings list", "/admin/recordings/recording/"),
        ("recordings search: exact SID", f"/admin/recordings/recording/?q={sid[0]}"),
        ("recordings search: call SID", f"/admin/recordings/recording/?q={sid[1]}"),
        ("recordings search: no such SID", "/admin/recordings/recording/?q=RE" + "0" * 31 + "z"),
        (
            "recordings filter: sync failed",
            "/admin/recordings/recording/?sync_state__exact=sync_failed",
        ),
        # The date drill-down and the filters with choices (a common and an absent value).
        ("recordings: a year's months", f"/admin/recordings/recording/?start_time__year={year}"),
        (
            "recordings: a month's days",
            f"/admin/recordings/recording/?start_time__year={year}&start_time__month={month}",
        ),
        (
            "recordings filter: source (common)",
            "/admin/recordings/recording/?source__exact=Conference",
        ),
        ("recordings filter: source (none)", "/admin/recordings/recording/?source__exact=Trunking"),
        (
            "recordings filter: not encrypted",
            "/admin/recordings/recording/?encryption_type__exact=",
        ),
        (
            "recordings filter: archive failed",
            "/admin/recordings/recording/?archive_state__exact=failed",
        ),
        ("recording page", f"/admin/recordings/recording/{sid[2]}/change/"),
        # The playback report's default period (the last 30 days and today), each grouping.
        ("playback report by person", "/admin/audit/reports/playback/?by=person"),
        ("playback report by team", "/admin/audit/reports/playback/?by=team"),
        ("playback report by recording", "/admin/audit/reports/playback/?by=recording"),
    ]
    window = AccessLog.objects.filter(
        occurred_at__gte=timezone.now() - timedelta(days=DASHBOARD_DAYS)
    ).count()
    print(
        f"\n{head:,} access-log rows ({window:,} in the dashboard's {DASHBOARD_DAYS} days), "
        f"{options.recordings:,} recordings (database {options.database})"
    )
    print(f"{'page':<46} {'median':>9} {'worst':>9} {'queries':>8}")
    slowest = 0.0
    for label, url in pages:
        times = []
        queries = 0
        failed = ""
        for attempt in range(options.repeat + 1):
            with CaptureQueriesContext(connection) as captured:
                began = time.perf_counter()
                try:
                    response = client.get(url)
                except Exception as exc:  # one broken page must not hide the rest
                    failed = f"{type(exc).__name__}: {str(exc).splitlines()[0][:60]}"
                    break
                took = time.perf_counter() - began
            if response.status_code != 200:
                failed = f"answered {response.status_code}"
                break
            if attempt:  # the first view warms caches, as an officer's second click would find
                times.append(took)
                queries = len(captured)
        if failed:
            print(f"{label:<46} {failed}")
            continue
        median = statistics.median(times)
        slowest = max(slowest, median)
        print(f"{label:<46} {median * 1000:7.0f} ms {max(times) * 1000:7.0f} ms {queries:8d}")
    print(f"slowest page: {slowest * 1000:.0f} ms")


if __name__ == "__main__":
    main()
