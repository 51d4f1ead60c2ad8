"""``export_audit_log``: JSON lines and CSV, with time filters, verifiable by the receiver."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from django.core.management import CommandError, call_command

from audit import services
from audit.chain import row_hash_compute
from audit.services import access_log_append

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


@pytest.fixture
def three_days(monkeypatch):
    """Rows at T0, T0 + 1 day and T0 + 2 days (the service's clock is replaced)."""
    times = iter([T0, T0 + timedelta(days=1), T0 + timedelta(days=2)])
    monkeypatch.setattr(services, "timezone", SimpleNamespace(now=lambda: next(times)))
    for day in range(3):
        access_log_append(
            action="url_provider",
            outcome="allowed",
            identity=f"day_{day}",
            roles=["supervisor", "admin"],
            client_ip="192.0.2.1",
            user_agent='quote " and, comma',
            detail={"day": day},
        )


def export(*args: str) -> str:
    out = io.StringIO()
    call_command("export_audit_log", *args, stdout=out)
    return out.getvalue()


def test_jsonl_has_one_verifiable_row_per_line(three_days):
    lines = export("--format", "jsonl").splitlines()
    records = [json.loads(line) for line in lines]
    assert [record["identity"] for record in records] == ["day_0", "day_1", "day_2"]
    assert [record["sequence"] for record in records] == [1, 2, 3]
    assert records[0]["occurred_at"] == "2026-03-01T10:00:00.000000Z"
    for record in records:  # what a SIEM can do with the export alone
        record["occurred_at"] = datetime.fromisoformat(record["occurred_at"])
        assert record["prev_hash"] == ""  # rows are not linked; the seals prove completeness
        assert row_hash_compute(record) == record["row_hash"]


def test_csv_has_a_header_and_one_row_per_line(three_days):
    text = export("--format", "csv")
    assert len(text.splitlines()) == 4
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [row["sequence"] for row in rows] == ["1", "2", "3"]
    assert json.loads(rows[1]["roles"]) == ["supervisor", "admin"]
    assert json.loads(rows[1]["detail"]) == {"day": 1}
    assert rows[1]["user_agent"] == 'quote " and, comma'
    assert rows[1]["bytes_served"] == ""
    assert len(rows[2]["row_hash"]) == 64


@pytest.mark.parametrize(
    ("args", "identities"),
    [
        (["--since", "2026-03-02T10:00:00Z"], ["day_1", "day_2"]),  # inclusive
        (["--until", "2026-03-02T10:00:00Z"], ["day_0"]),  # exclusive
        (["--since", "2026-03-02", "--until", "2026-03-03T10:00:00+00:00"], ["day_1"]),
        (["--since", "2026-03-02T12:00:00+02:00"], ["day_1", "day_2"]),
        (["--since", "2026-03-04T00:00:00Z"], []),
    ],
)
def test_time_filters(three_days, args, identities):
    jsonl = [
        json.loads(line)["identity"] for line in export("--format", "jsonl", *args).splitlines()
    ]
    assert jsonl == identities
    rows = list(csv.DictReader(io.StringIO(export("--format", "csv", *args))))
    assert [row["identity"] for row in rows] == identities


def test_a_bad_time_is_refused():
    with pytest.raises(CommandError, match="ISO 8601"):
        export("--format", "jsonl", "--since", "yesterday")
