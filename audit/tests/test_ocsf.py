"""``export_audit_log --format ocsf``: every action the portal writes is an OCSF 1.3.0 event of a
class, and every event has what its class requires.

The required attributes below are copied from the OCSF schema at tag 1.3.0
(github.com/ocsf/ocsf-schema: ``events/base_event.json`` with ``includes/classification.json``
and ``includes/occurrence.json``; ``events/application/web_resources_activity.json`` with
``profiles/security_control.json``, ``api.json``, ``scan_activity.json``;
``events/iam/authentication.json``, ``entity_management.json``; ``objects/metadata.json``,
``product.json``, ``api.json``, ``scan.json``, ``_entity.json``, ``actor.json``, ``user.json``,
``endpoint.json``), written out here rather than taken from ``audit.ocsf`` so that the module
is checked against the schema, not against itself.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from itertools import product
from typing import Any

import pytest

from audit import labels
from audit.chain import row_hash_compute
from audit.export import COLUMNS
from audit.models import AccessAction
from audit.ocsf import ACTION_CLASSES, ocsf_event
from audit.services import access_log_append
from audit.tests.helpers import AWKWARD_ROW, RECORDING_SID, command_output
from audit.tests.test_labels import written_codes

BASE = ["activity_id", "category_uid", "class_uid", "type_uid", "time", "severity_id", "metadata"]
# class_uid: (category_uid, required attributes beyond BASE, activity ids the class defines)
SCHEMA_1_3_0: dict[int, tuple[int, list[str], set[int]]] = {
    0: (0, [], set()),
    6001: (6, ["web_resources", "action_id"], set(range(1, 9))),
    6003: (6, ["actor", "api", "src_endpoint"], {1, 2, 3, 4}),
    6007: (6, ["scan"], set(range(1, 11))),
    3002: (3, ["user"], set(range(1, 7))),
    3004: (3, ["entity"], set(range(1, 14))),
}
# Objects' own requirements: attribute path -> (required keys, at least one of these keys).
OBJECTS: dict[str, tuple[list[str], list[str]]] = {
    "metadata": (["product", "version"], []),
    "metadata.product": (["vendor_name"], ["name", "uid"]),
    "api": (["operation"], []),
    "scan": (["type_id"], ["name", "uid"]),
    "entity": ([], ["name", "uid", "device", "group", "org", "policy", "user"]),
    "actor": ([], ["process", "user", "invoked_by", "session", "app_name", "app_uid"]),
    "actor.user": ([], ["account", "name", "uid"]),
    "user": ([], ["account", "name", "uid"]),
    "src_endpoint": ([], ["ip", "uid", "name", "hostname", "svc_name", "instance_uid"]),
    "dst_endpoint": ([], ["ip", "uid", "name", "hostname", "svc_name", "instance_uid"]),
    "service": ([], ["name", "uid"]),
}
ENUMS = {
    "severity_id": {0, 1, 2, 3, 4, 5, 6, 99},
    "status_id": {0, 1, 2, 99},
    "action_id": {0, 1, 2, 99},
}
T0 = datetime(2026, 3, 1, 10, 0, 0, 123456, tzinfo=UTC)


def _at(event: dict[str, Any], path: str) -> Any:
    value: Any = event
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def assert_valid_ocsf(event: dict[str, Any]) -> None:
    """``event`` has every attribute OCSF 1.3.0 requires of its class, with sane values."""
    class_uid = event["class_uid"]
    assert class_uid in SCHEMA_1_3_0, class_uid
    category, extra, activities = SCHEMA_1_3_0[class_uid]
    for name in [*BASE, *extra]:
        assert event.get(name) not in (None, "", [], {}), f"{class_uid} lacks {name}"
    assert event["category_uid"] == category
    assert event["activity_id"] in activities | {0, 99}
    assert event["type_uid"] == class_uid * 100 + event["activity_id"]
    assert event["metadata"]["version"] == "1.3.0"
    assert isinstance(event["time"], int)
    assert event["time"] > 10**12  # epoch milliseconds
    for name, allowed in ENUMS.items():
        if name in event:
            assert event[name] in allowed, (name, event[name])
    for path, (required, one_of) in OBJECTS.items():
        value = _at(event, path)
        if value is None:
            continue
        for key in required:
            assert value.get(key) not in (None, "", [], {}), f"{path}.{key}"
        if one_of:
            assert any(value.get(key) not in (None, "") for key in one_of), path
    for resource in event.get("web_resources", []):
        assert resource.get("name") or resource.get("uid")
    if "security_control" in event["metadata"].get("profiles", []):
        assert "action_id" in event


ACTIONS = sorted({*written_codes()["actions"], *AccessAction.values, *labels.ACTION_LABELS})


@pytest.mark.parametrize("action", ACTIONS)
def test_every_action_the_portal_writes_has_a_class(action):
    assert action in ACTION_CLASSES, f"{action} has no OCSF class in audit.ocsf.ACTION_CLASSES"
    assert ACTION_CLASSES[action].ocsf_class.uid != 0


def _row(**values: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(COLUMNS, "")
    row.update(sequence=7, occurred_at=T0, roles=[], detail={}, client_ip=None)
    row.update(bytes_served=None, prev_hash="", row_hash="a" * 64)
    row.update(values)
    return row


IDENTITIES = ["", "admin:alice", "admin:", "agent_1@example.com"]
REASONS = sorted({"", *labels.REASON_LABELS})


@pytest.mark.parametrize(
    ("action", "outcome", "identity"),
    list(product(ACTIONS, ["allowed", "denied", "error"], IDENTITIES)),
)
def test_each_event_has_the_required_fields_of_its_class(action, outcome, identity):
    for reason in REASONS:
        for recording in ("", RECORDING_SID):
            row = _row(
                action=action,
                outcome=outcome,
                identity=identity,
                reason_code=reason,
                recording_sid=recording,
                detail={"trigger": "schedule"} if reason.startswith("chain") else {},
            )
            event = ocsf_event(row, raw_columns=COLUMNS)
            assert_valid_ocsf(event)
            assert event["metadata"]["sequence"] == 7
            assert event["time"] == int(T0.timestamp() * 1000)


def test_an_action_the_table_does_not_know_is_a_base_event():
    event = ocsf_event(_row(action="something_old", outcome="allowed"), raw_columns=COLUMNS)
    assert_valid_ocsf(event)
    assert (event["class_uid"], event["activity_id"], event["activity_name"]) == (
        0,
        99,
        "something_old",
    )


def test_the_classes_chosen_for_the_main_actions():
    def classify(**values: Any) -> tuple[int, int]:
        event = ocsf_event(_row(**values), raw_columns=COLUMNS)
        return event["class_uid"], event["activity_id"]

    assert classify(action="url_provider", outcome="denied") == (6001, 2)
    assert classify(action="admin_export", outcome="allowed", reason_code="access_log_csv") == (
        6001,
        7,
    )
    assert classify(action="retention_delete", outcome="allowed", reason_code="hard") == (6001, 4)
    assert classify(action="admin_login", outcome="denied", reason_code="bad_password") == (
        3002,
        1,
    )
    assert classify(action="rule_change", outcome="allowed", reason_code="rule_disabled") == (
        3004,
        9,
    )
    assert classify(action="recording_sync", outcome="allowed") == (6003, 2)
    assert classify(action="chain_verify", outcome="error", reason_code="chain_changed") == (
        6007,
        2,
    )


def test_outcome_status_and_security_control():
    denied = ocsf_event(
        _row(action="url_provider", outcome="denied", reason_code="no_matching_rule"),
        raw_columns=COLUMNS,
    )
    assert (denied["status_id"], denied["action_id"], denied["disposition_id"]) == (2, 2, 2)
    assert denied["status_detail"] == "no rule allows it"
    allowed = ocsf_event(_row(action="url_provider", outcome="allowed"), raw_columns=COLUMNS)
    assert (allowed["status_id"], allowed["action_id"], allowed["severity_id"]) == (1, 1, 1)
    broken = ocsf_event(
        _row(action="chain_verify", outcome="error", reason_code="chain_deleted"),
        raw_columns=COLUMNS,
    )
    assert (broken["severity_id"], broken["status_id"]) == (5, 2)


@pytest.mark.django_db
def test_the_command_writes_one_valid_event_per_row_with_the_row_in_raw_data():
    access_log_append(**AWKWARD_ROW)
    access_log_append(
        action="url_provider",
        outcome="denied",
        reason_code="no_matching_rule",
        identity="agent_7",
        worker_sid="WK" + "1" * 32,
        recording_sid=RECORDING_SID,
        client_ip="192.0.2.7",
        user_agent="Flex",
        request_id="req-7",
    )
    access_log_append(
        action="admin_login",
        outcome="denied",
        reason_code="bad_password",
        identity="admin:mallory",
        client_ip="192.0.2.9",
    )
    access_log_append(action="recording_sync", outcome="allowed", recording_sid=RECORDING_SID)
    lines = command_output("export_audit_log", "--format", "ocsf").splitlines()
    events = [json.loads(line) for line in lines]
    assert [event["metadata"]["sequence"] for event in events] == [1, 2, 3, 4]
    assert [event["class_uid"] for event in events] == [6001, 6001, 3002, 6003]
    for event in events:
        assert_valid_ocsf(event)
        record = json.loads(event["raw_data"])  # what a SIEM can check from the event alone
        assert list(record) == list(COLUMNS)
        record["occurred_at"] = datetime.fromisoformat(record["occurred_at"])
        assert row_hash_compute(record) == record["row_hash"]
    assert events[0]["unmapped"]["detail"] == AWKWARD_ROW["detail"]  # as written, None kept
    denial = events[1]
    assert denial["actor"]["user"]["uid"] == "agent_7"
    assert denial["actor"]["user"]["uid_alt"] == "WK" + "1" * 32
    assert denial["src_endpoint"] == {"ip": "192.0.2.7"}
    assert denial["http_request"] == {"user_agent": "Flex", "uid": "req-7"}
    assert denial["metadata"]["correlation_uid"] == "req-7"
    assert denial["web_resources"][0]["uid"] == RECORDING_SID
    assert events[2]["user"]["name"] == "mallory"
    assert events[3]["actor"] == {"app_name": "recordings-compliance-portal"}
    jsonl = [json.loads(line) for line in command_output("export_audit_log").splitlines()]
    assert [json.loads(event["raw_data"]) for event in events] == [
        {column: record[column] for column in COLUMNS} for record in jsonl
    ]
