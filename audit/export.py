"""Access-log rows as JSON Lines or CSV, one line at a time, for the ``export_audit_log``
command (a SIEM) and the admin's export of the current filter (an officer).

Both are generators over ``values_list(*COLUMNS)`` tuples, so the caller streams a queryset's
``iterator()`` through them and memory use does not grow with the log. Rows keep their
``sequence``, ``prev_hash`` and ``row_hash``, so the receiving side can re-check the chain.
:func:`rows_with_people` adds, after every column the log has, who the identity is the way an
officer knows them (``identity_email``, ``agent_name``: ``audit.people``); they are not part
of the row's hash.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

from audit.chain import CHAIN_FIELDS, timestamp_canonical
from audit.ocsf import ocsf_event
from audit.people import people_describe, person_of

COLUMNS = ("sequence", *CHAIN_FIELDS, "prev_hash", "row_hash")
# After the log's own columns, so a reader of the older files finds every column where it was.
PERSON_COLUMNS = ("identity_email", "agent_name")
EXPORT_COLUMNS = (*COLUMNS, *PERSON_COLUMNS)
_PEOPLE_BATCH = 2000

# A spreadsheet runs a cell that starts with one of these as a formula ("CSV injection"); an
# identity or a user agent comes from outside, so the officer's CSV neutralizes them.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

# Every character something splits lines at (``str.splitlines``'s set), and NUL. ``csv.writer``
# quotes only the characters of its line terminator ("\n" here): a bare "\r" or U+2028 went out
# unquoted, a reader or spreadsheet split the record there, and the text after it became a cell
# of its own (a live formula, if it started with "="). A row holding any of them is written
# with every field quoted, so each record reads back as one.
_LINE_BREAK_OR_NUL = re.compile("[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029\x00]")


def rows_with_people(rows: Iterable[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
    """Each ``COLUMNS`` row followed by its ``PERSON_COLUMNS``: the e-mail behind the identity
    (the worker directory's, or Flex's encoding decoded) and the agent's name, ``""`` when
    unknown. The directory is asked once per 2,000 rows."""
    identity_at, worker_at = COLUMNS.index("identity"), COLUMNS.index("worker_sid")
    iterator = iter(rows)
    while chunk := list(islice(iterator, _PEOPLE_BATCH)):
        people = people_describe(
            identities={row[identity_at] for row in chunk},
            worker_sids={row[worker_at] for row in chunk},
        )
        for row in chunk:
            person = person_of(people, identity=row[identity_at], worker_sid=row[worker_at])
            yield (*row, person.email if person else "", person.name if person else "")


def _record(row: tuple[Any, ...], columns: tuple[str, ...]) -> dict[str, Any]:
    record = dict(zip(columns, row, strict=True))
    record["occurred_at"] = timestamp_canonical(record["occurred_at"])
    return record


def jsonl_lines(
    rows: Iterable[tuple[Any, ...]], *, columns: tuple[str, ...] = COLUMNS
) -> Iterator[str]:
    """One compact JSON object per row, each ending in a newline."""
    for row in rows:
        yield json.dumps(_record(row, columns), separators=(",", ":")) + "\n"


def ocsf_lines(
    rows: Iterable[tuple[Any, ...]], *, columns: tuple[str, ...] = COLUMNS
) -> Iterator[str]:
    """One OCSF event (``audit.ocsf``) per row as compact JSON, each ending in a newline; the
    row's ``COLUMNS`` go into the event's ``raw_data``."""
    for row in rows:
        event = ocsf_event(dict(zip(columns, row, strict=True)), raw_columns=COLUMNS)
        yield json.dumps(event, separators=(",", ":")) + "\n"


def _spreadsheet_safe(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def csv_lines(
    rows: Iterable[tuple[Any, ...]],
    *,
    spreadsheet_safe: bool = False,
    columns: tuple[str, ...] = COLUMNS,
) -> Iterator[str]:
    """A header line, then one CSV line per row (``roles`` and ``detail`` as compact JSON).

    A row with a line break of any kind (or NUL) in a cell has all its fields quoted, so a CSV
    reader reads exactly one record per row whatever callers put in the log.
    With ``spreadsheet_safe``, a text cell that a spreadsheet would run as a formula gets a
    leading ``'``: for files an officer opens; a SIEM wants the exact values.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    quoting_writer = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL)

    def line(cells: list[Any]) -> str:
        breaks = any(isinstance(cell, str) and _LINE_BREAK_OR_NUL.search(cell) for cell in cells)
        (quoting_writer if breaks else writer).writerow(cells)
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    yield line(list(columns))
    for row in rows:
        record = _record(row, columns)
        record["roles"] = json.dumps(record["roles"], separators=(",", ":"))
        record["detail"] = json.dumps(record["detail"], sort_keys=True, separators=(",", ":"))
        cells = ["" if record[column] is None else record[column] for column in columns]
        yield line([_spreadsheet_safe(cell) for cell in cells] if spreadsheet_safe else cells)
