"""``manage.py import_access_rules FILE [--replace]``: load access rules from a JSON file.

An invalid file (unreadable, not JSON, or breaking any rule of the format) exits 1 with the
problems on stderr and changes nothing. With ``CONTROL_CHANGES_NEED_APPROVAL`` on, a file that
weakens control (``audit.control_rules``) is kept as a pending change instead, loaded once a
staff member approves it in the admin: the command says so and exits 0, nothing changed yet.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.control_rules import rules_load_or_propose
from audit.models import ControlChange
from audit.rules_file import RulesFileError, rules_json_parse

ACTOR = "cli:import_access_rules"


class Command(BaseCommand):
    """Load the rules file named on the command line (``-`` for stdin)."""

    help = "Load access rules from a JSON rules file (format in docs/contract.md)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="the rules file, or - for standard input")
        parser.add_argument(
            "--replace",
            action="store_true",
            help="disable enabled rules that the file does not name (they are never deleted)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path = options["file"]
        try:
            text = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror or exc}", returncode=1) from exc
        try:
            summary = rules_load_or_propose(
                rules_json_parse(text),
                replace=options["replace"],
                actor=ACTOR,
                proposed_by=None,
                proposer_name=ACTOR,
                context={"identity": ACTOR},
            )
        except RulesFileError as exc:
            raise CommandError(f"{path}: {exc}; nothing was changed", returncode=1) from exc
        if isinstance(summary, ControlChange):
            self.stdout.write(
                f"{path}: weakens control, kept as pending change #{summary.pk}: needs a staff "
                "member's approval in the admin; nothing was changed yet"
            )
            return
        self.stdout.write(f"{path}: {summary}")
