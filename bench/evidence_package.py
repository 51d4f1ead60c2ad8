"""Evidence packages at a case's size: ``--recordings`` stored files (default 50) of ``--mib``
MiB each (default 5) in a local media folder, each with a few sealed access-log rows, in this
machine's PostgreSQL (database ``portal_evidence_bench``, emptied first); then one package of
all of them written to a temporary file and verified offline. Prints the package's size, the
time to write and to verify, and the peak Python memory of each (``tracemalloc``) beside the
package's size: the ratio shows memory does not follow the package.

Run: ``.venv/bin/python bench/evidence_package.py [--recordings 50] [--mib 5]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import tracemalloc
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import free_port, prepare_database, server_env

DATABASE = "portal_evidence_bench"
MiB = 1024 * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recordings", type=int, default=50)
    parser.add_argument("--mib", type=int, default=5)
    options = parser.parse_args()

    media = tempfile.mkdtemp(prefix="evidence-bench-")
    env = server_env(
        free_port(),
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{DATABASE}",
        PORTAL_MEDIA_ROOT=media,
        REDIS_URL=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"),
        LOG_LEVEL="WARNING",
    )
    prepare_database(env)
    os.environ.update(env)
    import django

    django.setup()
    from django.db import connection
    from django.utils import timezone

    from audit.sealer import seal_pending, seal_public_keys
    from audit.services import access_log_append
    from recordings.lifecycle.evidence_package import evidence_package_write
    from recordings.lifecycle.evidence_verify import package_verify
    from recordings.models import MediaLocation, Recording

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE recordings_recording CASCADE")
    recordings = []
    for n in range(options.recordings):
        sid = f"RE{n:032x}"
        key = f"bench/{sid}.wav"
        path = Path(media) / "recordings" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(options.mib * MiB))
        recordings.append(
            Recording.objects.create(
                sid=sid,
                account_sid="AC" + "a" * 32,
                media_location=MediaLocation.LOCAL,
                media_key=key,
                start_time=timezone.now(),
            )
        )
        for who in ("qa_1", "qa_2", "qa_3"):
            access_log_append(
                action="url_provider", outcome="allowed", identity=who, recording_sid=sid
            )
    while seal_pending(now=timezone.now() + timedelta(minutes=1)) is not None:
        pass

    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "package.zip"
        tracemalloc.start()
        started = time.perf_counter()
        with target.open("wb") as out:
            summary = evidence_package_write(
                recordings=recordings,
                reason="benchmark",
                exporter="bench",
                include_decrypted=False,
                output=out,
            )
        write_seconds = time.perf_counter() - started
        write_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        started = time.perf_counter()
        report = package_verify(target, seal_public_keys())
        verify_seconds = time.perf_counter() - started
        verify_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    shutil.rmtree(media)
    size = summary.size
    print(
        f"package: {options.recordings} recordings x {options.mib} MiB = {size / MiB:.1f} MiB, "
        f"{summary.files} files, {summary.rows} rows in {summary.seals} seals"
    )
    print(
        f"write:  {write_seconds:6.2f} s  ({size / MiB / write_seconds:6.1f} MiB/s)  "
        f"peak Python memory {write_peak / MiB:5.2f} MiB = {write_peak / size:.4f} x package"
    )
    print(
        f"verify: {verify_seconds:6.2f} s  ({size / MiB / verify_seconds:6.1f} MiB/s)  "
        f"peak Python memory {verify_peak / MiB:5.2f} MiB = {verify_peak / size:.4f} x package"
        f"  -> {'OK' if report.ok else report.problems}"
    )


if __name__ == "__main__":
    main()
