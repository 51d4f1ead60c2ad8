"""Access-log rows as OCSF events (Open Cybersecurity Schema Framework, schema 1.3.0), for a SIEM
that reads OCSF (``export_audit_log --format ocsf``, and ``audit.forwarder``'s syslog messages).

Each row becomes one event of the class that fits its action (``ACTION_CLASSES``; the table is
also in ``docs/siem.md``):

================================  ==================================  =========================
action                            class (class_uid)                   activity
================================  ==================================  =========================
url_provider, media_fetch,        Web Resources Activity (6001)       Read (2)
media_playback, waveform_view,
admin_view
admin_export                      Web Resources Activity (6001)       Export (7); a download
                                                                      of the file: Read (2)
retention_delete                  Web Resources Activity (6001)       Delete (4)
admin_login                       Authentication (3002)               Logon (1)
rule_change                       Entity Management (3004)            Create / Update / Disable
legal_hold, retention_policy      Entity Management (3004)            Create / Update / Delete;
                                                                      a released hold Deactivate
private_key_delete                Entity Management (3004)            Delete (4)
recording_restrict                Entity Management (3004)            Update (3)
access_request                    Entity Management (3004)            requested Create, approved
                                                                      Enable, revoked Disable,
                                                                      refused Other (99)
twilio_config                     API Activity (6003)                 Create / Update / Delete
recording_sync,                   API Activity (6003)                 Read (2)
flex_directory_sync
flex_media_attach                 API Activity (6003)                 Update (3)
chain_verify, media_verify        Scan Activity (6007)                Completed (2); a full
                                                                      run Started / Resumed
any other action (old rows)       Base Event (0)                      Other (99)
================================  ==================================  =========================

Why these classes: a player or staff member reading, exporting or deleting a recording (or an
admin page) is an action on a web resource that an access control allowed or refused, which is
Web Resources Activity with the Security Control profile (``action_id``, ``disposition_id``).
Web Resource Access Activity (6004) says the same but is deprecated since OCSF 1.0.0 in favour of
exactly that. The portal's calls to Twilio's REST API are API Activity (like CloudTrail's). Staff
changing rules, holds, policies, keys and grants at a management console is Entity Management.
Verifying the audit chain or a recording's media is a scan whose result is the status.

Every event carries the class's required attributes (``REQUIRED`` lists them, from the 1.3.0
schema; ``audit/tests/test_ocsf.py`` checks them), ``status_id`` from the outcome, the reason
code as ``status_code`` and its label as ``status_detail``, the row's ``sequence`` as
``metadata.sequence`` and ``metadata.uid`` (so a SIEM can deduplicate), the request id as
``metadata.correlation_uid``, and the row itself, exactly as ``export_audit_log --format jsonl``
writes it, in ``raw_data``: the receiving side can re-check ``row_hash`` from it. Columns OCSF
has no place for (roles, rule, link, bytes, detail) are in ``unmapped``.

Pure functions, no database: the caller passes the row's values (``audit.export`` streams them).
Written here rather than with an OCSF library: the Python packages for OCSF are generated models
of whole schema versions (or AWS-specific), while the portal needs a dozen fields of six classes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from audit.chain import timestamp_canonical
from audit.labels import PLAYER_ACTIONS, action_label, reason_label

OCSF_VERSION = "1.3.0"
PRODUCT = {"name": "Recordings compliance portal", "vendor_name": "recordings-compliance-portal"}
# The source of an event the portal did itself (a sync, a scheduled deletion or verification).
PORTAL_APP = "recordings-compliance-portal"

# Attributes every event must have (OCSF 1.3.0 ``base_event`` with the Classification and
# Occurrence includes; ``metadata`` needs ``product`` and ``version``).
BASE_REQUIRED = (
    "activity_id",
    "category_uid",
    "class_uid",
    "type_uid",
    "time",
    "severity_id",
    "metadata",
)


@dataclass(frozen=True)
class OcsfClass:
    """One OCSF event class: its ids, names, activities and the attributes it requires."""

    uid: int
    name: str
    category_uid: int
    category_name: str
    activities: Mapping[int, str]
    required: tuple[str, ...]
    profiles: tuple[str, ...] = ()


_ANY_ACTIVITY = {0: "Unknown", 99: "Other"}

BASE_EVENT = OcsfClass(0, "Base Event", 0, "Uncategorized", _ANY_ACTIVITY, BASE_REQUIRED)
WEB_RESOURCES_ACTIVITY = OcsfClass(
    6001,
    "Web Resources Activity",
    6,
    "Application Activity",
    {
        **_ANY_ACTIVITY,
        1: "Create",
        2: "Read",
        3: "Update",
        4: "Delete",
        5: "Search",
        6: "Import",
        7: "Export",
        8: "Share",
    },
    # ``action_id`` comes with the Security Control profile the events declare.
    (*BASE_REQUIRED, "web_resources", "action_id"),
    ("security_control",),
)
API_ACTIVITY = OcsfClass(
    6003,
    "API Activity",
    6,
    "Application Activity",
    {**_ANY_ACTIVITY, 1: "Create", 2: "Read", 3: "Update", 4: "Delete"},
    (*BASE_REQUIRED, "actor", "api", "src_endpoint"),
)
SCAN_ACTIVITY = OcsfClass(
    6007,
    "Scan Activity",
    6,
    "Application Activity",
    {
        **_ANY_ACTIVITY,
        1: "Started",
        2: "Completed",
        3: "Cancelled",
        4: "Duration Violation",
        5: "Pause Violation",
        6: "Error",
        7: "Paused",
        8: "Resumed",
        9: "Restarted",
        10: "Delayed",
    },
    (*BASE_REQUIRED, "scan"),
)
AUTHENTICATION = OcsfClass(
    3002,
    "Authentication",
    3,
    "Identity & Access Management",
    {
        **_ANY_ACTIVITY,
        1: "Logon",
        2: "Logoff",
        3: "Authentication Ticket",
        4: "Service Ticket Request",
        5: "Service Ticket Renew",
        6: "Preauth",
    },
    (*BASE_REQUIRED, "user"),
)
ENTITY_MANAGEMENT = OcsfClass(
    3004,
    "Entity Management",
    3,
    "Identity & Access Management",
    {
        **_ANY_ACTIVITY,
        1: "Create",
        2: "Read",
        3: "Update",
        4: "Delete",
        5: "Move",
        6: "Enroll",
        7: "Unenroll",
        8: "Enable",
        9: "Disable",
        10: "Activate",
        11: "Deactivate",
        12: "Suspend",
        13: "Resume",
    },
    (*BASE_REQUIRED, "entity"),
)
CLASSES = (
    BASE_EVENT,
    WEB_RESOURCES_ACTIVITY,
    API_ACTIVITY,
    SCAN_ACTIVITY,
    AUTHENTICATION,
    ENTITY_MANAGEMENT,
)

# Objects whose own attributes are constrained ("at least one of"), by the path to them.
AT_LEAST_ONE: dict[str, tuple[str, ...]] = {
    "actor": ("process", "user", "invoked_by", "session", "app_name", "app_uid"),
    "actor.user": ("account", "name", "uid"),
    "user": ("account", "name", "uid"),
    "src_endpoint": ("ip", "uid", "name", "hostname", "svc_name", "instance_uid"),
    "dst_endpoint": ("ip", "uid", "name", "hostname", "svc_name", "instance_uid"),
    "entity": ("name", "uid", "device", "group", "org", "policy", "user"),
    "scan": ("name", "uid"),
    "metadata.product": ("name", "uid"),
}


@dataclass(frozen=True)
class ActionMapping:
    """Which class an action's rows are, their default activity, what the resource is, and
    reason codes that name another activity."""

    ocsf_class: OcsfClass
    activity_id: int
    resource_type: str
    by_reason: Mapping[str, int] | None = None


_READ = 2
_CHANGES = {"created": 1, "changed": 3, "deleted": 4}

ACTION_CLASSES: dict[str, ActionMapping] = {
    "url_provider": ActionMapping(WEB_RESOURCES_ACTIVITY, _READ, "Recording"),
    "media_fetch": ActionMapping(WEB_RESOURCES_ACTIVITY, _READ, "Recording media"),
    "media_playback": ActionMapping(WEB_RESOURCES_ACTIVITY, _READ, "Recording media"),
    "waveform_view": ActionMapping(WEB_RESOURCES_ACTIVITY, _READ, "Recording waveform"),
    "admin_view": ActionMapping(WEB_RESOURCES_ACTIVITY, _READ, "Admin page"),
    "admin_export": ActionMapping(
        WEB_RESOURCES_ACTIVITY,
        7,
        "Access log, report or evidence package",
        {"access_log_download": _READ, "playback_report_download": _READ},
    ),
    "retention_delete": ActionMapping(WEB_RESOURCES_ACTIVITY, 4, "Recording"),
    "admin_login": ActionMapping(AUTHENTICATION, 1, "Admin"),
    "rule_change": ActionMapping(
        ENTITY_MANAGEMENT,
        3,
        "Access rule",
        {"rule_created": 1, "rule_updated": 3, "rule_disabled": 9},
    ),
    "legal_hold": ActionMapping(ENTITY_MANAGEMENT, 3, "Legal hold", {**_CHANGES, "released": 11}),
    "retention_policy": ActionMapping(ENTITY_MANAGEMENT, 3, "Retention policy", _CHANGES),
    "private_key_delete": ActionMapping(ENTITY_MANAGEMENT, 4, "Private key"),
    "recording_restrict": ActionMapping(ENTITY_MANAGEMENT, 3, "Recording"),
    "access_request": ActionMapping(
        ENTITY_MANAGEMENT,
        99,
        "Access grant",
        {"grant_requested": 1, "grant_approved": 8, "grant_revoked": 9, "grant_refused": 99},
    ),
    # A change held for a second approver: proposing creates it, approving applies it
    # (Update), refusing or withdrawing ends it unapplied (Other).
    "control_change": ActionMapping(
        ENTITY_MANAGEMENT,
        99,
        "Change awaiting approval",
        {
            "change_proposed": 1,
            "change_approved": 3,
            "anchoring_paused": 12,
            "anchoring_resumed": 13,
        },
    ),
    # The periodic access review: built (Create), exported (Read), signed off or reassigned
    # (Update). Opening its pages is an admin_view row.
    "access_review": ActionMapping(
        ENTITY_MANAGEMENT, 3, "Access review", {"review_opened": 1, "review_exported": _READ}
    ),
    "twilio_config": ActionMapping(
        API_ACTIVITY,
        3,
        "Twilio storage configuration",
        {
            "aws_credential_created": 1,
            "aws_credential_deleted": 4,
            "public_key_created": 1,
            "public_key_deleted": 4,
        },
    ),
    "recording_sync": ActionMapping(API_ACTIVITY, _READ, "Recording"),
    "flex_directory_sync": ActionMapping(API_ACTIVITY, _READ, "Flex directory"),
    "flex_media_attach": ActionMapping(API_ACTIVITY, 3, "Flex task"),
    "chain_verify": ActionMapping(
        SCAN_ACTIVITY,
        2,
        "Audit log",
        {"full_verification_requested": 1, "full_verification_resumed": 8},
    ),
    "media_verify": ActionMapping(SCAN_ACTIVITY, 2, "Recording media"),
}
_UNMAPPED = ActionMapping(BASE_EVENT, 99, "")

SEVERITIES = {1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical"}
_OUTCOME_SEVERITY = {"allowed": 1, "denied": 2, "error": 3}
# Reasons that say something was tampered with: worth a look whatever the outcome says.
_HIGH_REASONS = ("media_tampered", "media_integrity_failed", "media_changed", "lockout")
_STATUS = {"allowed": (1, "Success"), "denied": (2, "Failure"), "error": (2, "Failure")}
# Security Control profile: (action_id, action, disposition_id, disposition) per outcome.
_CONTROL = {
    "allowed": (1, "Allowed", 1, "Allowed"),
    "denied": (2, "Denied", 2, "Blocked"),
    "error": (0, "Unknown", 27, "Error"),
}
_SCAN_TYPES = {"schedule": (2, "Scheduled"), "admin": (1, "Manual"), "command": (1, "Manual")}


def action_mapping(action: str) -> ActionMapping:
    """The class and activity of ``action``; an action this table does not know (a row older
    than the codes the portal writes now) is a Base Event with activity Other."""
    return ACTION_CLASSES.get(action, _UNMAPPED)


def _compact(value: Any) -> Any:
    """``value`` without empty strings, ``None``, empty lists and empty objects, at any depth:
    OCSF leaves an unknown attribute out rather than sending it blank. Only for the objects
    built here: a row's ``detail`` is added afterwards, exactly as it is."""
    if isinstance(value, dict):
        kept = {}
        for key, item in value.items():
            if isinstance(item, dict | list):
                item = _compact(item)
            if item or isinstance(item, int | float):  # 0 and False are values
                kept[key] = item
        return kept
    if isinstance(value, list):
        items = (_compact(item) if isinstance(item, dict | list) else item for item in value)
        return [item for item in items if item or isinstance(item, int | float)]
    return value


def _severity(row: Mapping[str, Any]) -> int:
    reason = row.get("reason_code") or ""
    if row["action"] == "chain_verify" and reason.startswith("chain_") and reason != "chain_intact":
        return 5  # the audit log itself was changed
    if reason in _HIGH_REASONS:
        return 4
    return _OUTCOME_SEVERITY.get(row["outcome"], 0)


def _user(row: Mapping[str, Any]) -> dict[str, Any]:
    """The person of the row: staff (``admin:<username>``) or a Flex user; "(unknown)" when
    the row names nobody (a request without a token)."""
    identity = row.get("identity") or ""
    if identity.startswith("admin:"):
        return {"uid": identity, "name": identity[6:] or "(unknown)", "type_id": 2, "type": "Admin"}
    uid = identity or row.get("realm_user_id") or row.get("worker_sid") or ""
    if not uid:
        return {"name": "(unknown)", "type_id": 0, "type": "Unknown"}
    return {
        "uid": uid,
        "name": row.get("agent_name") or identity or uid,
        "email_addr": row.get("identity_email") or "",
        "uid_alt": row.get("worker_sid") or "",
        "type_id": 1,
        "type": "User",
    }


def _actor(row: Mapping[str, Any]) -> dict[str, Any]:
    named = any(row.get(key) for key in ("identity", "realm_user_id", "worker_sid"))
    if named or row["action"] in PLAYER_ACTIONS:
        return {"user": _user(row)}
    return {"app_name": PORTAL_APP}  # the portal's own work: a sync, a scheduled job


def _src_endpoint(row: Mapping[str, Any]) -> dict[str, Any]:
    if row.get("client_ip"):
        return {"ip": str(row["client_ip"])}
    return {"svc_name": PORTAL_APP}


def _resource(row: Mapping[str, Any], mapping: ActionMapping) -> dict[str, Any]:
    """What the action was on: the recording when the row names one, else the rule, else the
    kind of thing (``resource_type``) named by the reason's label."""
    recording = row.get("recording_sid") or ""
    name = recording or row.get("rule_name") or reason_label(row.get("reason_code") or "")
    return {
        "uid": recording,
        "name": name or mapping.resource_type or row["action"],
        "type": mapping.resource_type,
    }


def _raw_row(row: Mapping[str, Any], columns: tuple[str, ...]) -> str:
    record = {column: row.get(column) for column in columns}
    record["occurred_at"] = timestamp_canonical(row["occurred_at"])
    if record.get("client_ip") is not None:
        record["client_ip"] = str(record["client_ip"])
    return json.dumps(record, separators=(",", ":"))


def ocsf_event(row: Mapping[str, Any], *, raw_columns: tuple[str, ...]) -> dict[str, Any]:
    """The OCSF 1.3.0 event of one access-log row.

    ``row`` holds the row's columns (``occurred_at`` a datetime) and optionally
    ``identity_email`` and ``agent_name``; ``raw_columns`` are the columns written to
    ``raw_data`` as the row's JSON Lines record (``audit.export.COLUMNS``).
    """
    mapping = action_mapping(row["action"])
    cls = mapping.ocsf_class
    reason = row.get("reason_code") or ""
    activity_id = (mapping.by_reason or {}).get(reason, mapping.activity_id)
    activity = cls.activities.get(activity_id, "Other")
    if activity_id == 99:
        activity = reason or row["action"]  # Other: the source's own word for it
    severity_id = _severity(row)
    status_id, status = _STATUS.get(row["outcome"], (0, "Unknown"))
    occurred_at: datetime = row["occurred_at"]
    event: dict[str, Any] = {
        "category_uid": cls.category_uid,
        "category_name": cls.category_name,
        "class_uid": cls.uid,
        "class_name": cls.name,
        "activity_id": activity_id,
        "activity_name": activity,
        "type_uid": cls.uid * 100 + activity_id,
        "type_name": f"{cls.name}: {activity}",
        "time": int(occurred_at.timestamp() * 1000),
        "timezone_offset": 0,
        "severity_id": severity_id,
        "severity": SEVERITIES.get(severity_id, "Unknown"),
        "status_id": status_id,
        "status": status,
        "status_code": reason,
        "status_detail": reason_label(reason),
        "message": f"{action_label(row['action'])}: {row['outcome']}"
        + (f" ({reason_label(reason)})" if reason else ""),
        "metadata": {
            "version": OCSF_VERSION,
            "product": PRODUCT,
            "profiles": list(cls.profiles),
            "uid": str(row["sequence"]),
            "sequence": row["sequence"],
            "correlation_uid": row.get("request_id") or "",
            "event_code": row["action"],
            "log_name": "access_log",
            "original_time": timestamp_canonical(occurred_at),
        },
        "actor": _actor(row),
        "src_endpoint": _src_endpoint(row),
        "http_request": {
            "user_agent": row.get("user_agent") or "",
            "uid": row.get("request_id") or "",
        },
        "unmapped": {
            "action": row["action"],
            "outcome": row["outcome"],
            "realm_user_id": row.get("realm_user_id") or "",
            "roles": list(row.get("roles") or []),
            "recording_sid": row.get("recording_sid") or "",
            "rule_name": row.get("rule_name") or "",
            "link_id": row.get("link_id") or "",
            "bytes_served": row.get("bytes_served"),
        },
        "raw_data": _raw_row(row, raw_columns),
    }
    resource = _resource(row, mapping)
    detail = row.get("detail") or {}
    if cls is WEB_RESOURCES_ACTIVITY:
        action_id, action, disposition_id, disposition = _CONTROL.get(
            row["outcome"], (0, "Unknown", 0, "Unknown")
        )
        event.update(
            web_resources=[resource],
            dst_endpoint={"svc_name": PORTAL_APP},
            action_id=action_id,
            action=action,
            disposition_id=disposition_id,
            disposition=disposition,
        )
    elif cls is API_ACTIVITY:
        event.update(
            api={
                "operation": reason or row["action"],
                "service": {"name": "Twilio"},
                "request": {"uid": row.get("request_id") or ""} if row.get("request_id") else {},
            },
            resources=[resource],
        )
    elif cls is SCAN_ACTIVITY:
        type_id, type_name = _SCAN_TYPES.get(str(detail.get("trigger", "")), (0, "Unknown"))
        if not detail.get("trigger") and str(row.get("identity") or "").startswith("admin:"):
            type_id, type_name = 1, "Manual"
        scan_uid = detail.get("run_id") or detail.get("check_id") or ""
        event["scan"] = {
            "name": action_label(row["action"]),
            "uid": str(scan_uid),
            "type_id": type_id,
            "type": type_name,
        }
        event["unmapped"]["resource"] = resource
    elif cls is AUTHENTICATION:
        event.update(user=_user(row), service={"name": f"{PRODUCT['name']} admin"})
        event["dst_endpoint"] = {"svc_name": PORTAL_APP}
    elif cls is ENTITY_MANAGEMENT:
        event["entity"] = resource
    event = _compact(event)
    if detail:
        event["unmapped"]["detail"] = dict(detail)
    return event
