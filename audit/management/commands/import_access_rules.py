"""``manage.py import_access_rules FILE [--replace]``: load access rules from a JSON file.

An invalid file (unreadable, not JSON, or breaking any rule of the format) exits 1 with the
problems on stderr and changes nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.rules_file import RulesFileError, rules_json_parse, rules_load


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
            summary = rules_load(
                rules_json_parse(text), replace=options["replace"], actor="cli:import_access_rules"
            )
        except RulesFileError as exc:
            raise CommandError(f"{path}: {exc}; nothing was changed", returncode=1) from exc
        self.stdout.write(f"{path}: {summary}")
