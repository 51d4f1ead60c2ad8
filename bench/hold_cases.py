"""A legal-hold case on locked storage at size: ``--recordings`` recordings (default 10,000)
stored as objects in a bucket with Object Lock on moto's S3 server (in-process, loopback), in
this machine's PostgreSQL (database ``portal_hold_cases_bench``, emptied first), all held by
one case. Times setting every object's S3 legal hold (objects per second, with its audit rows),
then the pages an officer opens, through Django's test client as a superuser: the hold's own
page (its lock summary, from the database) and the case page's first and last page (50
recordings each, read back from S3). Prints each page's best time of five and its query count,
and the lock pass's rate; a second pass (nothing owed) shows what the reconcile costs a
settled case.

Run: ``.venv/bin/python bench/hold_cases.py [--recordings 10000]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import free_port, prepare_database, server_env
from bench.legal_holds import _measure

DATABASE = "portal_hold_cases_bench"
BUCKET = "bench-locked-recordings"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recordings", type=int, default=10_000)
    options = parser.parse_args()

    import logging

    from moto.server import ThreadedMotoServer

    s3_port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=s3_port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{s3_port}"
    env = server_env(
        free_port(),
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{DATABASE}",
        LOG_LEVEL="WARNING",
        AWS_STORAGE_BUCKET_NAME=BUCKET,
        AWS_S3_ENDPOINT_URL=endpoint,
        AWS_S3_REGION_NAME="us-east-1",
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
    )
    prepare_database(env)
    os.environ.update(env)
    import django

    django.setup()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's request lines
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client

    from recordings.integrations import storage
    from recordings.lifecycle import hold_locks, retention
    from recordings.models import LegalHold, MediaLocation, Recording, RecordingStatus

    settings.ADMIN_REQUIRE_OTP = False  # the pages, not the second factor, are measured
    client_s3 = storage.s3_client()
    client_s3.create_bucket(Bucket=BUCKET, ObjectLockEnabledForBucket=True)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE recordings_recording, recordings_legalhold CASCADE")
    rows = []
    for n in range(options.recordings):
        sid = f"RE{n:032x}"
        key = f"recordings/{sid}.wav"
        client_s3.put_object(Bucket=BUCKET, Key=key, Body=b"RIFF")
        rows.append(
            Recording(
                sid=sid,
                account_sid="AC" + "a" * 32,
                call_sid=f"CA{n // 2:032x}",
                status=RecordingStatus.COMPLETED,
                media_location=MediaLocation.S3,
                media_bucket=BUCKET,
                media_key=key,
            )
        )
    Recording.objects.bulk_create(rows, batch_size=2000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE recordings_recording")  # as autovacuum would after such a load
    hold = retention.legal_hold_place(
        hold=LegalHold(
            reason="bench",
            case_reference="BENCH-CASE",
            matter_name="Bench v. Scale",
            recording_sids=[r.sid for r in rows],
        ),
        created_by="bench",
    )

    began = time.perf_counter()
    run = hold_locks.hold_locks_apply(hold_id=hold.pk, limit=None)
    took = time.perf_counter() - began
    print(f"{options.recordings} recordings in one case, on moto's S3 with Object Lock")
    print(
        f"{'setting every S3 legal hold (with audit rows)':<52} {took:8.1f} s    "
        f"{run.locked / took:6.0f} objects/s   ({run.locked} locked, {run.failed} failed)"
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE recordings_holdobjectlock")
    began = time.perf_counter()
    hold_locks.hold_locks_reconcile()
    print(
        f"{'reconcile of the settled case (nothing owed)':<52} {time.perf_counter() - began:8.2f} s"
    )

    user, _ = User.objects.get_or_create(
        username="bench-officer", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    base = f"/admin/recordings/legalhold/{hold.pk}/"
    last = (options.recordings + 49) // 50
    _measure("the hold's page (lock summary)", lambda: client.get(f"{base}change/"))
    _measure("case page 1 (50 read back from S3)", lambda: client.get(f"{base}case/"))
    _measure(
        f"case page {last} (50 read back from S3)", lambda: client.get(f"{base}case/?page={last}")
    )
    moto.stop()


if __name__ == "__main__":
    main()
