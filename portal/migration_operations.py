"""Migration operations the portal's apps share.

Why: the access log takes an insert on every player request and never stops. A plain
``AddIndex`` on it holds a lock that blocks those inserts for as long as the build takes
(minutes at ten million rows), so every url_provider request waits through an upgrade.
PostgreSQL builds an index without that lock (``CREATE INDEX CONCURRENTLY``), which Django
offers as ``django.contrib.postgres.operations.AddIndexConcurrently``; but that operation
refuses other databases, and the embedded mode runs on SQLite. This operation is that one on
PostgreSQL and a plain ``AddIndex`` elsewhere. A migration using it sets ``atomic = False``
(PostgreSQL cannot build concurrently inside a transaction); keep such a migration to index
operations only, so a failure leaves nothing half-done but the index, which a rerun makes.
"""

from __future__ import annotations

from typing import Any

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db.migrations.operations import AddIndex


class AddIndexWithoutBlockingWrites(AddIndex):
    """``AddIndexConcurrently`` on PostgreSQL, ``AddIndex`` on any other database; the
    migration state is the same either way (see the module docstring)."""

    atomic = False

    def _concurrent(self) -> AddIndexConcurrently:
        return AddIndexConcurrently(self.model_name, self.index)

    def database_forwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        """Build the index; concurrently on PostgreSQL."""
        if schema_editor.connection.vendor == "postgresql":
            self._concurrent().database_forwards(app_label, schema_editor, from_state, to_state)
        else:
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        """Drop the index; concurrently on PostgreSQL."""
        if schema_editor.connection.vendor == "postgresql":
            self._concurrent().database_backwards(app_label, schema_editor, from_state, to_state)
        else:
            super().database_backwards(app_label, schema_editor, from_state, to_state)

    def describe(self) -> str:
        """What ``migrate`` prints."""
        return f"{super().describe()} (without blocking writes on PostgreSQL)"
