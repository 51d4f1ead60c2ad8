"""``manage.py export_audit_log --format jsonl|csv|ocsf [--since ISO] [--until ISO]
[--person WHO]``: stream the access log to stdout for a SIEM, oldest first, one row per line,
with sequence and hashes so the receiving side can check the chain too, and after them who the
identity is (``identity_email``, ``agent_name``). ``--person`` keeps the rows of one person,
named as an officer knows them (``audit.people.people_match``). ``ocsf`` writes one OCSF 1.3.0
event per row instead (``audit.ocsf``, docs/siem.md). Memory use does not grow with the log.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Generator
from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Q, QuerySet

from audit.export import (
    COLUMNS,
    EXPORT_COLUMNS,
    csv_lines,
    jsonl_lines,
    ocsf_lines,
    rows_with_people,
)
from audit.models import AccessLog
from audit.people import people_match
from portal.sids import WORKER_SID, is_sid


def _moment(text: str) -> datetime:
    """An ISO 8601 date or date-time; without a time zone it is taken as UTC."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise CommandError(f"{text!r} is not an ISO 8601 date or date and time") from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def _row_values(rows: QuerySet[AccessLog]) -> Generator[tuple[Any, ...], None, None]:
    """``COLUMNS`` of each row, read from a server-side cursor in chunks; closing the generator
    closes the cursor (``yield from`` passes ``close()`` on to Django's iterator)."""
    yield from rows.values_list(*COLUMNS).iterator(chunk_size=2000)


def _person_rows(term: str) -> Q:
    """The rows of the person ``term`` names (their identities; a typed worker SID too)."""
    term = term.strip()
    if not term:
        raise CommandError("--person needs an e-mail, a name, a worker SID or an identity")
    condition = Q(identity__in=sorted(people_match(term=term).identities))
    if is_sid(WORKER_SID, term):
        condition |= Q(worker_sid=term)
    return condition


class Command(BaseCommand):
    """Print access log rows as JSON lines or CSV."""

    help = "Stream access log rows (oldest first) as JSON lines, CSV or OCSF events."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--format", choices=["jsonl", "csv", "ocsf"], default="jsonl")
        parser.add_argument("--since", help="rows at or after this ISO 8601 time (UTC if naive)")
        parser.add_argument("--until", help="rows before this ISO 8601 time (UTC if naive)")
        parser.add_argument(
            "--person",
            help="rows of one person: an e-mail, a name, a worker SID or a Flex identity",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            self._export(options)
        except BrokenPipeError:
            # The reader went away (``| head``): stop quietly, but say the export is incomplete.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise SystemExit(1) from None

    def _export(self, options: dict[str, Any]) -> None:
        rows = AccessLog.objects.order_by("sequence")
        if options["since"]:
            rows = rows.filter(occurred_at__gte=_moment(options["since"]))
        if options["until"]:
            rows = rows.filter(occurred_at__lt=_moment(options["until"]))
        if options["person"]:
            rows = rows.filter(_person_rows(options["person"]))
        values = _row_values(rows)
        with_people = rows_with_people(values)
        writers = {"csv": csv_lines, "jsonl": jsonl_lines, "ocsf": ocsf_lines}
        lines = writers[options["format"]](with_people, columns=EXPORT_COLUMNS)
        try:
            for line in lines:
                self.stdout.write(line, ending="")
        finally:
            values.close()  # release the (server-side) cursor now, even when the reader left
