"""The access log at the size of a real contact centre: seal, verify and export a log of
``--rows`` rows (default one million) in this machine's PostgreSQL (database
``portal_scale``, emptied first), and print the time of each per million rows.

Rows are written in bulk with the portal's own hashes and MACs (as ``access_log_append`` would
write them, without its per-row round trips), numbered from 1; then the sealer seals them, a
full verification reads them all, an incremental one reads what came after, and both exports
(the SIEM's JSON Lines, an evidence bundle) write them out.

Run: ``.venv/bin/python bench/audit_scale.py [--rows 1000000]``.
"""

from __future__ import annotations

import argparse
import os
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
    options = parser.parse_args()

    anchors = tempfile.mkdtemp(prefix="scale-anchors-")
    env = server_env(
        free_port(),
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{DATABASE}",
        AUDIT_ANCHOR_DIR=anchors,
        AUDIT_SEAL_INLINE="0",
    )
    for command in (["dropdb", "--if-exists"], ["createdb"]):
        subprocess.run([*command, "-h", "127.0.0.1", "-U", "postgres", DATABASE], check=True)
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.db.models import QuerySet
    from django.utils import timezone

    from audit.chain import row_hash_compute, row_mac_compute, row_mac_keys
    from audit.evidence_export import evidence_export
    from audit.models import AccessLog
    from audit.sealer import seal_and_anchor
    from audit.services import chain_check_run

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
    _timed("write (bulk, with hashes and MACs)", options.rows, write)
    _timed("seal and anchor (10,000 rows a seal)", options.rows, seal)
    full = chain_check_run(trigger="command", full=True)
    assert full.ok, full.message
    _timed("full verification", options.rows, lambda: chain_check_run(trigger="command"))
    _timed(
        "incremental verification (nothing new)",
        options.rows,
        lambda: chain_check_run(trigger="command", full=False),
    )
    sink = StringIO()
    _timed(
        "export_audit_log --format jsonl",
        options.rows,
        lambda: call_command("export_audit_log", "--format", "jsonl", stdout=sink),
    )
    bundle = Path(tempfile.mkdtemp(prefix="scale-bundle-")) / "bundle"
    _timed(
        "export_audit_evidence (whole log)", options.rows, lambda: evidence_export(output=bundle)
    )
    size = sum(path.stat().st_size for path in bundle.iterdir())
    print(f"evidence bundle: {size / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
