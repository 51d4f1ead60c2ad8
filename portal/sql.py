"""Hand-built statements for the hot paths (a webhook's event row, an audit row), built once per
model, column list and database vendor instead of by the ORM on every request.

Values still go through each model field's ``get_db_prep_save``, so they are adapted exactly as
the ORM would (JSON, IP addresses, aware datetimes); only quoted identifiers from the model are
interpolated into the text, every value is a parameter.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from django.db import connection
from django.db.models import Field, Model


@functools.cache
def insert_statement(
    model: type[Model], names: tuple[str, ...], vendor: str, suffix: str = ""
) -> tuple[str, tuple[Field, ...]]:
    """``INSERT INTO <table> (<columns of names>) VALUES (…) <suffix>`` and the fields of its
    parameters, in order. ``vendor`` keys the cache (quoting differs between databases)."""
    quote = connection.ops.quote_name
    fields = tuple(model._meta.get_field(name) for name in names)
    columns = ", ".join(quote(field.column) for field in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    sql = f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES ({placeholders})"  # noqa: S608
    return (f"{sql} {suffix}" if suffix else sql), fields


def insert_parameters(fields: tuple[Field, ...], values: Mapping[str, Any]) -> list[Any]:
    """The parameters of an ``insert_statement`` for ``values``, adapted by each field."""
    return [field.get_db_prep_save(values[field.name], connection) for field in fields]


def fetch_one(sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
    """Run one statement (``%s`` placeholders) and return its first row, or None: through the
    backend's direct path where it has one (``portal.postgresql``), a cursor elsewhere."""
    direct = getattr(connection, "fetch_one", None)
    if direct is not None:
        return direct(sql, params)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()
