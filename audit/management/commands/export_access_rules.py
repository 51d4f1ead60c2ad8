"""``manage.py export_access_rules``: print every access rule as a rules file (disabled ones with
``"enabled": false``), which ``import_access_rules --replace`` loads back unchanged."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from audit.rules_file import rules_dump_text


class Command(BaseCommand):
    """Print all rules in the format ``import_access_rules`` reads."""

    help = "Print all access rules as JSON (the import_access_rules format), disabled ones too."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(rules_dump_text(), ending="")
