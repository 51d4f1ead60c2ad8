"""``manage.py export_access_rules``: print the enabled access rules as a rules file."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from audit.rules_file import rules_dump_text


class Command(BaseCommand):
    """Print the rules in force in the format ``import_access_rules`` reads."""

    help = "Print the enabled access rules as JSON (the import_access_rules format)."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(rules_dump_text(), ending="")
