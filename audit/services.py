"""Writes to the access log: ``access_log_append`` (one row), ``audit_digest_create`` (a signed
checkpoint of the log's head), and the rows other writes leave behind: access-rule changes with
their old and new values (``access_rule_change_log``) and full verifications of the log
(``chain_check_run``).

An append takes no lock shared by other requests: on PostgreSQL the row's ``sequence`` comes
from a database sequence, and the row carries its own hash and MAC, so appends from any number
of processes go side by side. Numbers taken by appends that roll back leave gaps, which the
sealer states in its seals (``audit.sealer``). On SQLite (embedded mode, one writer) the row is
numbered under the database's write lock. Outside a transaction (url_provider, the media
endpoint) the row is committed before the function returns; inside one it commits with it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.db import connection, models, transaction
from django.utils import timezone
from django.utils.ipv6 import clean_ipv6_address

from audit.chain import (
    GENESIS_HASH,
    chain_verify,
    digest_sign,
    row_hash_compute,
    row_mac_compute,
    row_mac_keys,
    signing_keys,
    timestamp_canonical,
)
from audit.decisions import Caller, Decision
from audit.models import (
    ACCESS_RULE_FIELDS,
    AccessAction,
    AccessLog,
    AccessLogDigest,
    AccessOutcome,
    AccessRule,
    AuditSeal,
    ChainCheck,
)
from audit.sealer import seal_and_anchor, seals_verify

DETAIL_MAX_BYTES = 4096

_ACTION_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,31}")
_REASON_PATTERN = re.compile(r"[a-z0-9_.:-]{0,64}")
# Detail must never carry credentials or links; these key fragments are refused outright.
_FORBIDDEN_DETAIL_KEYS = ("token", "authorization", "password", "secret", "signature", "cookie")
# An origin (scheme://host[:port]) is fine in detail; anything longer that looks like a URL is not.
_ORIGIN = re.compile(r"[a-z][a-z0-9+.-]*://[^/?#\s]*", re.IGNORECASE)

_TEXT_FIELDS = (
    "reason_code",
    "identity",
    "realm_user_id",
    "worker_sid",
    "recording_sid",
    "rule_name",
    "user_agent",
    "request_id",
    "link_id",
)
_process_lock = threading.RLock()
UNCHAINED = ""
"""The ``prev_hash`` of rows written since seals prove the log complete: they link to no row."""


@contextmanager
def _sqlite_write_lock() -> Iterator[None]:
    """SQLite's single write lock, taken up front (plus a process-wide lock for threads that
    share an in-memory database), for the rest of a transaction: another writer waits here
    instead of failing later when it tries to upgrade a read lock."""
    with _process_lock, transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(f"UPDATE {AccessLog._meta.db_table} SET id = id WHERE 0 = 1")  # noqa: S608
        yield


def _next_position() -> int:
    """A new row's ``sequence``, from PostgreSQL's sequence: raw SQL because the ORM has no
    word for ``nextval``."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT nextval('audit_accesslog_position')")
        return int(cursor.fetchone()[0])


def _column_size(name: str) -> int:
    """The ``max_length`` of one of the log's text columns."""
    field = AccessLog._meta.get_field(name)
    if not isinstance(field, models.CharField) or field.max_length is None:
        raise TypeError(f"AccessLog.{name} is not a text column with a maximum length")
    return field.max_length


def _text(value: Any, limit: int) -> str:
    # PostgreSQL refuses NUL in text, and no database takes a lone surrogate (JSON allows
    # "\ud800"); replace both rather than lose the row.
    text = str(value or "").replace("\x00", "\ufffd")
    if not text.isascii():
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text[:limit]


def _ip(value: str | None) -> str | None:
    if value in (None, ""):
        return None
    address = ipaddress.ip_address(str(value).strip())  # ValueError for garbage
    # The same normal form Django and PostgreSQL store, so the hash survives the round trip.
    return clean_ipv6_address(str(address)) if address.version == 6 else str(address)


def _detail_problem(value: Any, path: str = "detail") -> str | None:
    if value is None or isinstance(value, bool | int):
        return None
    if isinstance(value, str):
        if "\x00" in value:
            return f"{path} contains a NUL character"
        if "://" in value and not _ORIGIN.fullmatch(value):
            return f"{path} looks like a URL; the log must never hold links"
        return None
    if isinstance(value, float):
        # PostgreSQL's jsonb may give a float back as an int (1e2 → 100): the hash would break.
        return f"{path} is a float; store it as an integer or a string"
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            problem = _detail_problem(item, f"{path}[{index}]")
            if problem:
                return problem
        return None
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path} has a non-string key {key!r}"
            if any(fragment in key.lower() for fragment in _FORBIDDEN_DETAIL_KEYS):
                return f"{path}.{key} may hold a credential; the log must never hold one"
            problem = _detail_problem(item, f"{path}.{key}")
            if problem:
                return problem
        return None
    return f"{path} holds a {type(value).__name__}, which JSON cannot store"


def _normalize(fields: dict[str, Any]) -> dict[str, Any]:
    """Turn the caller's values into exactly what the database will give back."""
    if not isinstance(fields["action"], str) or not _ACTION_PATTERN.fullmatch(fields["action"]):
        raise ValueError(f"action must be short snake_case, not {fields['action']!r}")
    if fields["outcome"] not in AccessOutcome.values:
        raise ValueError(f"outcome must be one of {AccessOutcome.values}")
    if not _REASON_PATTERN.fullmatch(str(fields["reason_code"] or "")):
        raise ValueError(f"reason_code must be a short machine code, not {fields['reason_code']!r}")
    for name in _TEXT_FIELDS:
        fields[name] = _text(fields[name], _column_size(name))
    fields["roles"] = [_text(role, 100) for role in fields["roles"]]
    fields["client_ip"] = _ip(fields["client_ip"])
    if fields["bytes_served"] is not None:
        if isinstance(fields["bytes_served"], bool) or not isinstance(fields["bytes_served"], int):
            raise ValueError("bytes_served must be an integer or None")
        if not 0 <= fields["bytes_served"] < 2**63:
            raise ValueError("bytes_served is out of range")
    detail = dict(fields["detail"] or {})
    problem = _detail_problem(detail)
    if problem:
        raise ValueError(problem)
    encoded = json.dumps(detail, sort_keys=True, separators=(",", ":"))
    if len(encoded) > DETAIL_MAX_BYTES:
        raise ValueError(f"detail is {len(encoded)} bytes; keep it under {DETAIL_MAX_BYTES}")
    fields["detail"] = json.loads(encoded)  # tuples become lists, as the database returns them
    return fields


def access_log_append(
    *,
    action: str,
    outcome: str,
    reason_code: str = "",
    identity: str = "",
    realm_user_id: str = "",
    worker_sid: str = "",
    roles: Sequence[str] = (),
    recording_sid: str = "",
    rule_name: str | None = "",
    client_ip: str | None = None,
    user_agent: str = "",
    request_id: str = "",
    link_id: str = "",
    bytes_served: int | None = None,
    detail: Mapping[str, Any] | None = None,
) -> AccessLog:
    """Append one row to the access log, chained to the current head, and answer it.

    ``occurred_at`` is stamped once the row's number is taken; put other times
    (say, the first byte of a folded playback) in ``detail``. Text is cut to the column sizes
    (``user_agent`` to 512), ``client_ip`` is normalized; a malformed ``action``/``outcome``,
    ``client_ip`` or ``detail`` (floats, credentials, URLs, over 4 KiB) raises ``ValueError``
    before anything is written. Works inside an outer transaction (see the module docstring).
    """
    fields = _normalize(
        {
            "action": action,
            "outcome": outcome,
            "reason_code": reason_code,
            "identity": identity,
            "realm_user_id": realm_user_id,
            "worker_sid": worker_sid,
            "roles": list(roles),
            "recording_sid": recording_sid,
            "rule_name": rule_name,
            "client_ip": client_ip,
            "user_agent": user_agent,
            "request_id": request_id,
            "link_id": link_id,
            "bytes_served": bytes_served,
            "detail": detail,
        }
    )
    if connection.vendor == "postgresql":
        row = _sealable_row(fields, _next_position())
        row.save()
    else:
        with _sqlite_write_lock():
            head = AccessLog.objects.order_by("-sequence").values_list("sequence", flat=True)
            row = _sealable_row(fields, (head.first() or 0) + 1)
            row.save()
    if settings.AUDIT_SEAL_INLINE:
        transaction.on_commit(seal_and_anchor)
    return row


def _sealable_row(fields: dict[str, Any], sequence: int) -> AccessLog:
    """The unsaved row for ``fields`` at ``sequence``, stamped now (after its number was taken,
    so a row's time is never earlier than the moment a lower number was handed out), with its
    hash and its MAC."""
    fields.update(occurred_at=timezone.now(), sequence=sequence, prev_hash=UNCHAINED)
    row_hash = row_hash_compute(fields)
    mac_key_id, mac_key = row_mac_keys()[0]
    return AccessLog(
        **fields,
        row_hash=row_hash,
        row_mac=row_mac_compute(row_hash, mac_key),
        mac_key_id=mac_key_id,
    )


def access_log_record_decision(
    *,
    action: str,
    caller: Caller,
    recording_sid: str,
    decision: Decision,
    **context: Any,
) -> AccessLog:
    """Append the row for an authorization decision: outcome, reason and rule from ``decision``,
    the subject from ``caller``; ``context`` passes the request fields (``client_ip``,
    ``user_agent``, ``request_id``, ``link_id``, ``detail``…) through to ``access_log_append``.
    """
    return access_log_append(
        action=action,
        outcome=AccessOutcome.ALLOWED if decision.allowed else AccessOutcome.DENIED,
        reason_code=decision.reason_code,
        identity=caller.identity,
        realm_user_id=caller.realm_user_id,
        worker_sid=caller.worker_sid,
        roles=caller.roles,
        recording_sid=recording_sid,
        rule_name=decision.rule_name or "",
        **context,
    )


def audit_digest_create() -> AccessLogDigest:
    """Sign the chain's current head into a new ``AccessLogDigest`` and answer it.

    Run periodically (``audit.tasks.sign_audit_head``). Also signs an unchanged or empty head, so
    a gap in the digests shows when signing stopped, and deleting the log's last rows is caught.
    """
    key_id, key = signing_keys()[0]
    head = AccessLog.objects.order_by("-sequence").values_list("sequence", "row_hash").first()
    head_sequence, head_hash = head if head else (0, GENESIS_HASH)
    created_at = timezone.now()
    digest = AccessLogDigest(
        created_at=created_at,
        head_sequence=head_sequence,
        head_hash=head_hash,
        key_id=key_id,
        signature=digest_sign(
            created_at=created_at,
            head_sequence=head_sequence,
            head_hash=head_hash,
            key_id=key_id,
            key=key,
        ),
    )
    digest.save()
    return digest


# --- Access-rule changes --------------------------------------------------------------------

# The rule fields whose old and new values a ``rule_change`` row records.
RULE_AUDITED_FIELDS = (*ACCESS_RULE_FIELDS[:2], "enabled", *ACCESS_RULE_FIELDS[2:])
# Room left in ``detail`` for the values; past it, values are replaced by short digests.
_RULE_CHANGE_VALUES_MAX_BYTES = DETAIL_MAX_BYTES - 512
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def _link_free(value: Any) -> Any:
    """``value`` with every ``scheme://`` removed from its strings (the log refuses links; a
    rule's reason may well cite a ticket URL, which stays readable without its scheme)."""
    if isinstance(value, str):
        return _SCHEME.sub("", value)
    if isinstance(value, list | tuple):
        return [_link_free(item) for item in value]
    return value


def access_rule_values(rule: AccessRule) -> dict[str, Any]:
    """The audited fields of ``rule`` as JSON values the log accepts (times in canonical UTC,
    links stripped of their scheme): the "before" and "after" of a ``rule_change`` row."""
    values: dict[str, Any] = {}
    for name in RULE_AUDITED_FIELDS:
        value = getattr(rule, name)
        if name in ("valid_from", "valid_until"):
            value = timestamp_canonical(value) if value is not None else None
        values[name] = _link_free(value)
    return values


def _short_digest(value: Any) -> str:
    encoded = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]


def access_rule_change_log(
    *,
    rule: AccessRule,
    change: str,
    before: dict[str, Any] | None,
    actor: str,
    via: str,
    client_ip: str | None = None,
    user_agent: str = "",
    request_id: str = "",
) -> AccessLog:
    """Append the ``rule_change`` row for ``rule``: who (``actor``), how (``via``: admin,
    rules_file), and each changed field's old and new value.

    ``before`` is :func:`access_rule_values` taken before the change (``None`` for a new rule).
    When the values would not fit the row's ``detail``, each is replaced by a 16-hex SHA-256
    digest of its JSON, so the row still says which fields changed and can be matched against
    a rules file.
    """
    after = access_rule_values(rule)
    changes = {
        name: {"old": None if before is None else before[name], "new": after[name]}
        for name in RULE_AUDITED_FIELDS
        if before is None or before[name] != after[name]
    }
    if len(json.dumps(changes, separators=(",", ":"))) > _RULE_CHANGE_VALUES_MAX_BYTES:
        changes = {
            name: {
                "old_sha256": _short_digest(pair["old"]),
                "new_sha256": _short_digest(pair["new"]),
            }
            for name, pair in changes.items()
        }
    return access_log_append(
        action=AccessAction.RULE_CHANGE,
        outcome=AccessOutcome.ALLOWED,
        reason_code=f"rule_{change}",
        identity=actor,
        rule_name=rule.name,
        client_ip=client_ip,
        user_agent=user_agent,
        request_id=request_id,
        detail={"via": via, "rule_id": rule.pk, "fields": list(changes), "changes": changes},
    )


# --- Chain verification ----------------------------------------------------------------------


def chain_check_run(
    *,
    trigger: str,
    actor: str = "",
    full: bool = True,
    client_ip: str | None = None,
    user_agent: str = "",
    request_id: str = "",
) -> ChainCheck:
    """Verify the access log now (``chain_verify``, then the seals and anchors:
    ``seals_verify``), keep the result as a :class:`ChainCheck` and write a ``chain_verify``
    row to the log; answer the check.

    ``full`` checks every row and seal; otherwise only what was sealed or written after the
    last seal a successful check verified (and every anchor's presence), so a daily check of a
    large log reads a day's rows. The log row's outcome is ``allowed`` for an intact log and
    ``error`` for a broken one, so a broken log also shows in the log's outcome filter.
    """
    since = (
        None
        if full
        else ChainCheck.objects.filter(ok=True, through_seal__gt=0).order_by("-id").first()
    )
    after_number = since.through_seal if since else 0
    last_verified = AuditSeal.objects.filter(number=after_number)
    after_sequence = last_verified.values_list("last_sequence", flat=True).first() or 0
    result = chain_verify(after_sequence=after_sequence)
    seals = seals_verify(after_number=after_number)
    ok = result.ok and seals.ok
    problem = result.problem or ("seals" if not seals.ok else "")
    scope = "" if not after_number else f" after seal {after_number}"
    sealed = f"{seals.seals} seals{scope} over {seals.sealed_rows} rows, {seals.anchors} anchors"
    message = "; ".join(
        [result.message if not result.ok else f"{result.message}, {sealed}", *seals.problems]
    )
    check = ChainCheck(
        trigger=trigger,
        actor=actor,
        ok=ok,
        count=result.count,
        digests_checked=result.digests_checked,
        first_bad_sequence=result.first_bad_sequence,
        bad_row_id=result.bad_row_id,
        problem=problem,
        message=message,
        bad_row_time=result.bad_row_time,
        last_digest_at=result.last_digest_at,
        full=after_number == 0,
        through_seal=seals.through_number if ok else 0,
    )
    return chain_check_record(
        check=check,
        seals_checked=seals.seals,
        anchors_checked=seals.anchors,
        client_ip=client_ip,
        user_agent=user_agent,
        request_id=request_id,
    )


def chain_check_record(
    *,
    check: ChainCheck,
    seals_checked: int,
    anchors_checked: int,
    client_ip: str | None = None,
    user_agent: str = "",
    request_id: str = "",
    extra: Mapping[str, Any] | None = None,
) -> ChainCheck:
    """Keep a verification's verdict (an unsaved ``check``) and write its ``chain_verify`` row
    to the access log, with ``extra`` in its detail; answer the saved check. Shared by the
    one-pass check above and the batched full run (``audit.verification``)."""
    check.save()
    access_log_append(
        action=AccessAction.CHAIN_VERIFY,
        outcome=AccessOutcome.ALLOWED if check.ok else AccessOutcome.ERROR,
        reason_code="chain_intact" if check.ok else f"chain_{check.problem}",
        identity=check.actor,
        client_ip=client_ip,
        user_agent=user_agent,
        request_id=request_id,
        detail={
            "trigger": check.trigger,
            "check_id": check.pk,
            "rows_verified": check.count,
            "digests_checked": check.digests_checked,
            "seals_checked": seals_checked,
            "anchors_checked": anchors_checked,
            "first_bad_sequence": check.first_bad_sequence,
            **(extra or {}),
        },
    )
    return check
