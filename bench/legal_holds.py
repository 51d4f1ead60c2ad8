"""Legal holds on the officer's pages at a real contact centre's size: ``--recordings`` rows
(default 300,000) in this machine's PostgreSQL (database ``portal_holds_bench``, emptied
first), twenty active holds (SID lists of 1,000, call holds, a date range), then each page the
holds touch, asked in-process through Django's test client as a superuser: the recordings
list (its "legal hold" column), the list filtered "on legal hold: yes" and "no", the preview
of a hold on a call's search, the delete confirmation of a page of 100, and a recording's page
(its banner and timeline). Prints each page's best time of five and its query count.

Run: ``.venv/bin/python bench/legal_holds.py [--recordings 300000]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import free_port, prepare_database, server_env

DATABASE = "portal_holds_bench"
RUNS = 5


def _fill(recordings: int) -> None:
    """The recordings (one call per two recordings, a start a minute apart) and the holds."""
    from django.db import connection

    from recordings.models import LegalHold, Recording

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE recordings_recording, recordings_legalhold CASCADE")
        cursor.execute(
            """
            INSERT INTO recordings_recording (
                sid, account_sid, call_sid, conference_sid, status, source, track,
                start_time, price_unit, twilio_uri, media_url, encryption_type,
                encryption_public_key_sid, encryption_cek, encryption_iv, media_location,
                media_bucket, media_key, media_etag, media_sha256, integrity_state,
                integrity_error, sync_state, sync_error, archive_state, archive_error,
                archive_attempts, deleted_by_policy, retention_error, handled_worker_sids,
                handled_team_names, handled_queues, created_at, updated_at
            )
            SELECT 'RE' || md5('re' || n), 'AC' || repeat('a', 32), 'CA' || md5('ca' || (n / 2)),
                   '', 'completed', 'DialVerb', '',
                   timestamptz '2026-01-01' + n * interval '1 minute', '', '', '', '',
                   '', '', '', 'unknown', '', '', '', '', 'unverified',
                   '', 'synced', '', '', '', 0, '', '', '[]', '[]', '[]', now(), now()
            FROM generate_series(1, %s) AS n
            """,
            [recordings],
        )
        cursor.execute("ANALYZE recordings_recording")
    sids = list(Recording.objects.order_by("?").values_list("sid", flat=True)[:18_000])
    calls = list(Recording.objects.order_by("?").values_list("call_sid", flat=True)[:200])
    for index in range(18):
        LegalHold.objects.create(
            reason="bench",
            case_reference=f"CASE-{index}",
            recording_sids=sids[index * 1000 : (index + 1) * 1000],
            call_sids=calls[index * 10 : (index + 1) * 10],
            created_by="bench",
        )
    first = Recording.objects.order_by("start_time").values_list("start_time", flat=True)[1000]
    LegalHold.objects.create(
        reason="bench",
        case_reference="RANGE",
        started_from=first,
        started_until=first + (first - first.replace(day=1)),
        created_by="bench",
    )
    LegalHold.objects.create(reason="bench", case_reference="ONE-CALL", call_sids=calls[:1])


def _measure(label: str, ask: Callable[[], object]) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    ask()  # warm
    best = float("inf")
    queries = 0
    for _ in range(RUNS):
        with CaptureQueriesContext(connection) as captured:
            began = time.perf_counter()
            response = ask()
            best = min(best, time.perf_counter() - began)
        queries = len(captured.captured_queries)
        status = getattr(response, "status_code", 0)
        if status != 200:
            raise SystemExit(f"{label}: answered {status}")
    print(f"{label:<52} {best * 1000:8.1f} ms   {queries:3d} queries")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recordings", type=int, default=300_000)
    options = parser.parse_args()

    env = server_env(
        free_port(),
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{DATABASE}",
        LOG_LEVEL="WARNING",
    )
    prepare_database(env)
    os.environ.update(env)
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.test import Client

    from recordings.models import Recording

    settings.ADMIN_REQUIRE_OTP = False  # the pages, not the second factor, are measured
    _fill(options.recordings)
    user, _ = User.objects.get_or_create(
        username="bench-officer", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    base = "/admin/recordings/recording/"
    call = Recording.objects.order_by("pk").values_list("call_sid", flat=True)[500]
    page = list(Recording.objects.order_by("-pk").values_list("pk", flat=True)[:100])
    one = Recording.objects.order_by("pk").first()
    assert one is not None

    print(f"{options.recordings} recordings, 20 active holds (18,000 SIDs, 181 calls, a range)")
    _measure("recordings list (legal hold column)", lambda: client.get(base))
    _measure("recordings list, on legal hold: yes", lambda: client.get(base, {"on_hold": "yes"}))
    _measure("recordings list, on legal hold: no", lambda: client.get(base, {"on_hold": "no"}))
    _measure("hold preview of a call's search", lambda: client.get(f"{base}hold/", {"q": call}))
    _measure(
        "delete confirmation of 100 recordings",
        lambda: client.post(base, {"action": "delete_now", "_selected_action": page}),
    )
    _measure("a recording's page (banner, timeline)", lambda: client.get(f"{base}{one.pk}/change/"))


if __name__ == "__main__":
    main()
