"""Archive throughput: 200 recordings of 1 MiB copied by the Celery worker from the fake Twilio
to S3 (moto's server), beside a plain boto3 upload loop of the same files (the ceiling).

Everything runs on loopback in separate processes: moto's S3 server, the fake Twilio, a Celery
worker (prefork, 2 processes) against this machine's PostgreSQL and Redis. The archives are
queued as the admin action queues them (``queue_recording_archives``: ten to a message). Prints
recordings/s and MiB/s for both, the ratio (target >= 0.50), and the CPU each process kind
spent per recording (read from ``/proc``; PostgreSQL's includes backends that exited, of any
database, so another user of the server shows up there).

Run: ``make bench-archive`` (or ``.venv/bin/python bench/archive.py --count 200``).
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import boto3
import requests

from bench.harness import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    PYTHON,
    cpu_seconds,
    free_port,
    prepare_database,
    process,
    process_tree,
    processes_named,
    reaped_cpu_seconds,
    server_env,
    summary,
)

BUCKET = "bench-archive"
MIB = 1024 * 1024


def answers(url: str) -> Callable[[], bool]:
    """A readiness check: true once ``url`` answers at all."""

    def check() -> bool:
        try:
            requests.get(url, timeout=1)
        except requests.RequestException:
            return False
        return True

    return check


def s3_client(endpoint: str):
    """A boto3 client for moto's server."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench-secret",
    )


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="recordings to archive")
    parser.add_argument("--size-mib", type=int, default=1, help="size of each recording")
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes")
    args = parser.parse_args()

    s3_port, twilio_port = free_port(), free_port()
    s3_url, twilio_url = f"http://127.0.0.1:{s3_port}", f"http://127.0.0.1:{twilio_port}"
    env = server_env(
        free_port(),
        DJANGO_SETTINGS_MODULE="portal.settings",
        TWILIO_API_OVERRIDE=twilio_url,
        AWS_STORAGE_BUCKET_NAME=BUCKET,
        AWS_S3_ENDPOINT_URL=s3_url,
        AWS_S3_REGION_NAME="us-east-1",
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench-secret",
        LOG_LEVEL="WARNING",
    )
    prepare_database(env)
    media = [os.urandom(args.size_mib * MIB) for _ in range(args.count)]
    total_mib = args.count * args.size_mib

    with (
        process(
            PYTHON,
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            str(s3_port),
            ready=answers(s3_url),
        ) as moto,
        process(
            PYTHON,
            "-m",
            "faketwilio",
            "--port",
            str(twilio_port),
            "--account-sid",
            ACCOUNT_SID,
            "--auth-token",
            AUTH_TOKEN,
            ready=answers(f"{twilio_url}/_fake/health"),
        ) as fake_twilio,
    ):
        s3 = s3_client(s3_url)
        s3.create_bucket(Bucket=BUCKET)

        # The ceiling: a plain boto3 upload loop of the same files.
        ceiling_pids = [*process_tree(moto.pid), os.getpid()]
        ceiling_cpu = cpu_seconds(ceiling_pids)
        started = time.monotonic()
        for n, body in enumerate(media):
            s3.put_object(Bucket=BUCKET, Key=f"ceiling/{n}.wav", Body=body)
        ceiling_seconds = time.monotonic() - started
        ceiling_cpu = cpu_seconds(ceiling_pids) - ceiling_cpu

        sids = seed(env, twilio_url, media)
        from recordings.models import Recording
        from recordings.tasks import queue_recording_archives

        worker_cmd = (
            PYTHON,
            "-m",
            "celery",
            "-A",
            "portal",
            "worker",
            "--concurrency",
            str(args.concurrency),
            "--pool",
            "prefork",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel",
            "WARNING",
        )
        database = env["DATABASE_URL"].rsplit("/", 1)[-1]
        with process(*worker_cmd, env=env) as worker:
            time.sleep(3)  # let the worker connect before the clock starts

            def kinds() -> dict[str, list[int]]:
                return {
                    "worker": process_tree(worker.pid),
                    "moto S3": process_tree(moto.pid),
                    "fake Twilio": process_tree(fake_twilio.pid),
                    "postgres": processes_named("postgres:", f" {database} "),
                    "redis": processes_named("redis-server"),
                    "this process": [os.getpid()],
                }

            # Backends that exit meanwhile (a connection closed) are counted by the server
            # process that reaps them (for every database: the figure includes other users').
            (postmaster,) = processes_named("postgres", " -D ")
            reaped_before = reaped_cpu_seconds(postmaster)
            cpu_before = {pid: cpu_seconds([pid]) for pids in kinds().values() for pid in pids}
            started = time.monotonic()
            queue_recording_archives(
                Recording.objects.filter(sid__in=sids).values_list("pk", flat=True)
            )
            deadline = started + 600
            while time.monotonic() < deadline:
                done = Recording.objects.filter(sid__in=sids, archived_at__isnull=False).count()
                if done == len(sids):
                    break
                time.sleep(0.1)
            worker_seconds = time.monotonic() - started
            cpu_used = {
                kind: sum(cpu_seconds([pid]) - cpu_before.get(pid, 0.0) for pid in pids)
                for kind, pids in kinds().items()
            }
            cpu_used["postgres"] += reaped_cpu_seconds(postmaster) - reaped_before
        archived = Recording.objects.filter(sid__in=sids, archived_at__isnull=False)
        stored = sum(1 for r in archived if r.media_size == args.size_mib * MIB)

    ceiling_rate, worker_rate = args.count / ceiling_seconds, len(sids) / worker_seconds
    worker_label = f"archive by the Celery worker ({args.concurrency} procs)"
    print(f"{args.count} recordings of {args.size_mib} MiB, fake Twilio -> moto S3 on loopback")
    print(
        f"{'plain boto3 upload loop (ceiling)':<40} {ceiling_rate:7.1f} rec/s "
        f"{total_mib / ceiling_seconds:7.1f} MiB/s"
    )
    print(f"{worker_label:<40} {worker_rate:7.1f} rec/s {total_mib / worker_seconds:7.1f} MiB/s")
    print(
        f"archived and verified: {archived.count()} of {len(sids)} ({stored} with the right size)"
    )
    print(
        "CPU ms per recording of the ceiling (moto and the loop): "
        f"{1000 * ceiling_cpu / args.count:.1f}"
    )
    per_recording = {kind: 1000 * seconds / len(sids) for kind, seconds in cpu_used.items()}
    print(
        "CPU ms per recording while the worker ran: "
        + ", ".join(f"{kind} {ms:.1f}" for kind, ms in per_recording.items())
        + f" (all {sum(per_recording.values()):.1f})"
    )
    print(summary(worker_rate / ceiling_rate, 0.50))


def seed(env: dict[str, str], twilio_url: str, media: list[bytes]) -> list[str]:
    """The recordings at the fake Twilio and in the portal's database, plus an archive policy."""
    os.environ.update(env)
    import django

    django.setup()
    from recordings.models import ArchivePolicy, MediaLocation, Recording, RecordingStatus
    from recordings.tests.callbacks import new_sid

    ArchivePolicy.objects.update_or_create(
        account_sid="", defaults={"enabled": True, "bucket": BUCKET, "key_prefix": "archive"}
    )
    sids = []
    for body in media:
        sid = new_sid("RE")
        response = requests.post(
            f"{twilio_url}/_fake/recordings",
            json={"sid": sid, "media_base64": base64.b64encode(body).decode(), "channels": 1},
            timeout=30,
        )
        response.raise_for_status()
        Recording.objects.create(
            sid=sid,
            account_sid=ACCOUNT_SID,
            status=RecordingStatus.COMPLETED,
            channels=1,
            media_location=MediaLocation.TWILIO,
        )
        sids.append(sid)
    return sids


if __name__ == "__main__":
    main()
