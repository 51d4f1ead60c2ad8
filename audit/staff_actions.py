"""Access-log rows for what staff do in the admin (PCI DSS 10.2.1.3: access to audit logs).

Opening the access log, exporting it, viewing a recording's page and changing Twilio's storage
settings each append a row, with the staff member as the identity (``admin:<username>``, so
staff never mix with the Flex identities of players) and the request's address, user agent and
request id, like any other row.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from django.http import HttpRequest, QueryDict

from audit.models import AccessLog, AccessOutcome
from audit.services import access_log_append
from portal.http import request_audit_fields

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_MAX_PARAMETERS = 20
_MAX_VALUE_LENGTH = 200


def staff_identity(request: HttpRequest) -> str:
    """The access-log identity of the staff member making ``request``."""
    return f"admin:{request.user.get_username()}"


def query_detail(query: QueryDict) -> dict[str, str]:
    """The filters of a list or export, for a row's ``detail``: at most 20 parameters, values
    cut to 200 characters and stripped of any ``scheme://`` (the log never holds links)."""
    kept: dict[str, str] = {}
    for name in sorted(query)[:_MAX_PARAMETERS]:
        value = ",".join(query.getlist(name))
        kept[name[:64]] = _SCHEME.sub("", value)[:_MAX_VALUE_LENGTH]
    return kept


def staff_action_log(
    request: HttpRequest,
    *,
    action: str,
    reason_code: str,
    outcome: str = AccessOutcome.ALLOWED,
    recording_sid: str = "",
    detail: Mapping[str, Any] | None = None,
) -> AccessLog:
    """Append the row for one thing a staff member did in the admin."""
    return access_log_append(
        action=action,
        outcome=outcome,
        reason_code=reason_code,
        identity=staff_identity(request),
        recording_sid=recording_sid,
        detail=detail,
        **request_audit_fields(request),
    )
