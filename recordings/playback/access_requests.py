"""The Flex user's side of access requests (four eyes): the ``/access-requests/`` page.

A player's user who is refused a recording asks for it here with the same Flex token the player
uses (validated with Twilio exactly as url_provider does), a reason and a duration; the request
waits for a compliance manager in the admin (``audit.admin.grants``). The requester is who the
token says, never a value typed into the form. ``audit.grants`` files the request and logs it; a
token that fails validation is logged here (``access_request``, denied) and files nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.utils import timezone

from audit.grants import AccessRequestInvalid, access_request_create, access_requests_of
from audit.models import AccessAction, AccessGrant, AccessOutcome
from audit.services import access_log_append
from recordings.integrations import twilio_api
from recordings.playback import flex_auth
from recordings.playback.player_requests import RequestContext

logger = logging.getLogger(__name__)


@dataclass
class PageResult:
    """What the page shows after a submission: who the token named, the errors by field, the
    request just filed and the user's requests."""

    status: int = 200
    identity: str = ""
    errors: dict[str, str] = field(default_factory=dict)
    filed: AccessGrant | None = None
    requests: list[AccessGrant] = field(default_factory=list)


def _caller(token: str, context: RequestContext) -> flex_auth.FlexIdentity | PageResult:
    try:
        return flex_auth.flex_token_validate(
            flex_auth.token_from_authorization(f"Bearer {token}" if token else None)
        )
    except flex_auth.FlexAuthError as exc:
        reason, status, message = exc.code, 401, exc.detail
    except twilio_api.TwilioError as exc:
        logger.warning("Flex token validation unavailable: %s", exc)
        reason, status = "token_validation_unavailable", 503
        message = "Twilio could not validate the token now; try again."
    access_log_append(
        action=AccessAction.ACCESS_REQUEST,
        outcome=AccessOutcome.DENIED,
        reason_code=reason,
        client_ip=context.client_ip,
        user_agent=context.user_agent,
        request_id=context.request_id,
    )
    return PageResult(status=status, errors={"token": message})


def access_request_submit(
    *,
    token: str,
    scope: str,
    scope_value: str,
    reason: str,
    duration_hours: str,
    context: RequestContext,
) -> PageResult:
    """File a request for the Flex user the token names (bad fields: 400 with the errors, and
    nothing filed), and answer their requests."""
    caller = _caller(token.strip(), context)
    if isinstance(caller, PageResult):
        return caller
    result = PageResult(identity=caller.identity)
    try:
        hours = int(duration_hours)
    except (TypeError, ValueError):
        hours = 0
    try:
        result.filed = access_request_create(
            identity=caller.identity,
            worker_sid=caller.worker_sid,
            scope=scope,
            scope_value=scope_value,
            reason=reason,
            duration_hours=hours,
            now=timezone.now(),
        )
    except AccessRequestInvalid as exc:
        result.status, result.errors = 400, exc.errors
    result.requests = access_requests_of(identity=caller.identity)
    return result


def access_requests_show(*, token: str, context: RequestContext) -> PageResult:
    """The requests of the Flex user the token names (with their state and validity)."""
    caller = _caller(token.strip(), context)
    if isinstance(caller, PageResult):
        return caller
    return PageResult(
        identity=caller.identity, requests=access_requests_of(identity=caller.identity)
    )
