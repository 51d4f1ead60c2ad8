"""The access log at the size of a real contact centre: seal, verify and export a log of
``--rows`` rows (default one million) in this machine's PostgreSQL (database
``portal_scale``, emptied first), and print the time of each per million rows.

Rows are written in bulk with the portal's own hashes and MACs (as ``access_log_append`` would
write them, without its per-row round trips), numbered from 1; then the sealer seals them, a
full verification reads them all (in one pass, and as the resumable run in batches that the
admin and the weekly task start), an incremental one reads what came after, and the exports
(the SIEM's JSON Lines, the admin's CSV export job, an evidence bundle) write them out.

Run: ``.venv/bin/python bench/audit_scale.py [--rows 1000000] [--reuse]`` (``--reuse`` keeps the
log and anchors the last run built, and times only what reads them).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from io import StringIO
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import PYTHON, ROOT, free_port, server_env

DATABASE = "portal_scale"
BATCH = 5000


def _timed(label: str, rows: int, action) -> float:  # type: ignore[no-untyped-def]
    began = time.perf_counter()
    action()
    took = time.perf_counter() - began
    per_million = took * 1_000_000 / max(rows, 1)
    print(f"{label:<44} {took:8.1f} s   {per_million:8.1f} s per million rows")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reuse", action="store_true", help="keep the log the last run built")
    options = parser.parse_args()

    anchors = Path(tempfile.gettempdir()) / "portal-scale-anchors"
    if not options.reuse:
        # Anchors are written read-only, as on a WORM volume: make them removable first.
        for path in anchors.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        shutil.rmtree(anchors, ignore_errors=True)
    env = server_env(
        free_port(),
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{DATABASE}",
        AUDIT_ANCHOR_DIR=str(anchors),
        AUDIT_SEAL_INLINE="0",
        PORTAL_MEDIA_ROOT=tempfile.mkdtemp(prefix="scale-media-"),
    )
    for command in (["dropdb", "--if-exists"], ["createdb"]) if not options.reuse else ():
        subprocess.run([*command, "-h", "127.0.0.1", "-U", "postgres", DATABASE], check=True)
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    os.environ.update(env)
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.db.models import QuerySet
    from django.utils import timezone

    from audit.admin.export_jobs import export_run
    from audit.chain import row_hash_compute, row_mac_compute, row_mac_keys
    from audit.evidence_export import evidence_export
    from audit.models import AccessLog, AccessLogExport
    from audit.sealer import seal_and_anchor
    from audit.services import chain_check_run
    from audit.verification import BATCH_ROWS, full_verification_continue, full_verification_start

    key_id, key = row_mac_keys()[0]
    start = timezone.now() - timedelta(days=730)
    step = timedelta(days=730) / options.rows

    def write() -> None:
        for first in range(1, options.rows + 1, BATCH):
            batch = []
            for sequence in range(first, min(first + BATCH, options.rows + 1)):
                values = {
                    "sequence": sequence,
                    "occurred_at": start + step * sequence,
                    "action": "url_provider",
                    "outcome": "allowed" if sequence % 7 else "denied",
                    "reason_code": "allowed_by_rule" if sequence % 7 else "no_matching_rule",
                    "identity": f"agent_{sequence % 400}@example.com",
                    "realm_user_id": "",
                    "worker_sid": "",
                    "roles": ["agent"],
                    "recording_sid": f"RE{sequence:032x}",
                    "rule_name": "agents-own-calls",
                    "client_ip": "192.0.2.10",
                    "user_agent": "Mozilla/5.0 (Flex Insights Player)",
                    "request_id": f"req-{sequence}",
                    "link_id": "",
                    "bytes_served": None,
                    "detail": {},
                    "prev_hash": "",
                }
                row_hash = row_hash_compute(values)
                batch.append(
                    AccessLog(
                        **values,
                        row_hash=row_hash,
                        row_mac=row_mac_compute(row_hash, key),
                        mac_key_id=key_id,
                    )
                )
            # The model's manager refuses bulk writes on purpose; the benchmark builds the rows
            # access_log_append would, and writes them with a plain queryset.
            QuerySet(AccessLog).bulk_create(batch)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT setval('audit_accesslog_position', %s, false)", [options.rows + 1]
            )

    def seal() -> None:
        while seal_and_anchor()[0]:
            pass

    print(f"{options.rows} access-log rows over two years, PostgreSQL database {DATABASE}")
    if not options.reuse:
        _timed("write (bulk, with hashes and MACs)", options.rows, write)
        _timed("seal and anchor (10,000 rows a seal)", options.rows, seal)
    seal()  # what an earlier verification appended: no row may wait past the delay

    def one_pass() -> None:
        check = chain_check_run(trigger="command", full=True)
        assert check.ok, check.message

    _timed("full verification (one pass)", options.rows, one_pass)
    seal()
    batches: list[int] = []

    def resumable() -> None:
        run, _created = full_verification_start(trigger="command", queue=False)
        done = full_verification_continue(run_id=run.pk)
        assert done is not None, "another process holds the run"
        assert done.verdict is not None, "the run did not finish"
        assert done.verdict.ok, done.verdict.message
        batches.append(done.batches)

    _timed(f"full, resumable run ({BATCH_ROWS:,}-row batches)", options.rows, resumable)
    print(f"  ({batches[0]} batches, each committed)")
    seal()
    _timed(
        "incremental verification (nothing new)",
        options.rows,
        lambda: chain_check_run(trigger="command", full=False),
    )
    sink = StringIO()
    jsonl = _timed(
        "export_audit_log --format jsonl",
        options.rows,
        lambda: call_command("export_audit_log", "--format", "jsonl", stdout=sink),
    )
    ocsf = _timed(
        "export_audit_log --format ocsf",
        options.rows,
        lambda: call_command("export_audit_log", "--format", "ocsf", stdout=StringIO()),
    )
    print(f"  (OCSF takes {ocsf / jsonl:.2f} times as long as JSON Lines)")
    if not get_user_model().objects.filter(username="bench-officer").exists():
        get_user_model().objects.create_superuser("bench-officer", password=None)

    def admin_export() -> None:
        job = AccessLogExport.objects.create(requested_by="bench-officer", format="csv")
        done = export_run(job_id=job.pk)
        assert done.state == "done", done.error
        assert done.rows is not None, done.error
        assert done.rows >= options.rows, done.rows

    _timed("the admin's CSV export job (whole log)", options.rows, admin_export)
    bundle = Path(tempfile.mkdtemp(prefix="scale-bundle-")) / "bundle"
    _timed(
        "export_audit_evidence (whole log)", options.rows, lambda: evidence_export(output=bundle)
    )
    size = sum(path.stat().st_size for path in bundle.iterdir())
    print(f"evidence bundle: {size / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
