"""The url_provider decision: who asks, for which recording, may they, and with what link.

One function, ``url_provide``, turns a player's request into an answer and writes exactly one
access-log row for it, whatever the outcome; the HTTP view only translates. The authorization
decision itself is ``audit.decisions.access_decide``, the only place that decides.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils import timezone

from audit.decisions import (
    Caller,
    Decision,
    RuleSet,
    access_decide,
    rule_set_token_subquery,
    rules_in_force_at_token,
)
from audit.models import AccessLog
from audit.services import access_log_append
from portal.sids import RECORDING_SID
from recordings.integrations import twilio_api
from recordings.media.body import MediaBody, MediaError, MediaRangeNotSatisfiable
from recordings.media.opener import media_open, media_playable_check
from recordings.models import FlexWorker, MediaLink, MediaLocation, Recording, RecordingStatus
from recordings.playback import flex_auth, links

logger = logging.getLogger(__name__)

ACTION = "url_provider"


@dataclass(frozen=True)
class RequestContext:
    """What the access log keeps about the request itself."""

    client_ip: str | None = None
    user_agent: str = ""
    request_id: str = ""


@dataclass(frozen=True)
class Answer:
    """The HTTP answer: status and JSON body (``media_url``, or ``error`` and ``detail``)."""

    status: int
    body: dict[str, str]


def request_audit(
    action: str, outcome: str, reason: str, context: RequestContext, **fields: Any
) -> AccessLog:
    """Write the access-log row of one player request (url_provider, media, waveform): the
    answer's outcome and reason, where the request came from, and ``fields``."""
    return access_log_append(
        action=action,
        outcome=outcome,
        reason_code=reason,
        client_ip=context.client_ip,
        user_agent=context.user_agent,
        request_id=context.request_id,
        **fields,
    )


def _is_deleted(recording: Recording) -> bool:
    """Deleted, or hidden by retention (soft-deleted, whether or not a legal hold keeps its
    media): either way it is never played."""
    return recording.status == RecordingStatus.DELETED or recording.soft_deleted_at is not None


# What url_provider reads of a recording: whether it may be played (status, soft deletion), the
# facts rules look at, and where the media is. Other fields load on first use (one query each).
_PLAYBACK_FIELDS = (
    "id",
    "sid",
    "account_sid",
    "source",
    "call_sid",
    "start_time",
    "date_created",
    "status",
    "soft_deleted_at",
    "media_location",
    "media_bucket",
    "media_key",
    "encryption_type",
    "handled_worker_sids",
    "handled_team_names",
    "handled_queues",
    "restricted_at",
)


def recording_for_playback(*, sid: str) -> Recording | None:
    """The recording url_provider is asked for, with only the fields it decides on, or None.
    It carries the access rules' version token (``rule_set_token``) read in the same query,
    so the decision's cached rule set costs no round trip of its own."""
    return (
        Recording.objects.only(*_PLAYBACK_FIELDS)
        .annotate(rule_set_token=rule_set_token_subquery())
        .filter(sid=sid)
        .first()
    )


def caller_team_of(*, worker_sid: str) -> str:
    """The team the portal's worker directory gives ``worker_sid`` (one query on its unique
    index), or "" when the SID is empty, unknown, deleted at TaskRouter or has no team: an
    empty team never matches ``handled_by: caller_team``, so the rule fails closed."""
    if not worker_sid:
        return ""
    team = (
        FlexWorker.objects.filter(sid=worker_sid, deleted_at__isnull=True)
        .values_list("team_name", flat=True)
        .first()
    )
    return team or ""


def caller_for_rules(*, caller: Caller, rules: RuleSet) -> Caller:
    """``caller`` with its team filled in when a rule in force needs it (``handled_by:
    caller_team``); otherwise as it is, without the query."""
    if not rules.needs_caller_team or caller.team:
        return caller
    return dataclasses.replace(caller, team=caller_team_of(worker_sid=caller.worker_sid))


@dataclass(frozen=True)
class Refusal:
    """A player request refused before anything is served: the HTTP status, the error body's
    ``code`` and ``detail``, and what the access-log row says (``outcome``, ``reason`` and any
    ``extra`` columns), plus who asked when the token said so (``audit_fields``)."""

    status: int
    code: str
    detail: str
    outcome: str
    reason: str
    audit_fields: dict[str, Any] = dataclasses.field(default_factory=dict)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class Granted:
    """A player request the rules allow: the caller, the recording and the decision, at
    ``now``; ``audit_fields`` names the caller for the access-log row."""

    caller: flex_auth.FlexIdentity
    recording: Recording
    decision: Decision
    now: datetime
    audit_fields: dict[str, Any]


def player_request_decide(
    *, authorization: str | None, recording_sid: str | None
) -> Refusal | Granted:
    """The steps every player request shares (url_provider and the waveform): the SID's shape,
    the Flex token, the recording (missing or deleted: 404), and the one decision
    (``access_decide``, with the caller's team when a rule needs it). The caller audits the
    answer with its own action; nothing is written here."""
    if not recording_sid:
        return Refusal(
            400,
            "missing_recording_sid",
            "Pass ?recording_sid=RE… (or ?recording=).",
            "error",
            "missing_recording_sid",
        )
    if not RECORDING_SID.fullmatch(recording_sid):
        return Refusal(
            400,
            "malformed_recording_sid",
            "A recording SID is RE and 32 hex digits.",
            "error",
            "malformed_recording_sid",
        )
    try:
        caller = flex_auth.flex_token_validate(flex_auth.token_from_authorization(authorization))
    except flex_auth.FlexAuthError as exc:
        detail = {"detail": {"twilio_code": exc.twilio_code}} if exc.twilio_code else {}
        return Refusal(401, exc.code, exc.detail, "denied", exc.code, extra=detail)
    except twilio_api.TwilioError as exc:
        logger.warning("Flex token validation unavailable: %s", exc)
        return Refusal(
            503,
            "token_validation_unavailable",
            "Twilio could not validate the token now.",
            "error",
            "token_validation_unavailable",
        )
    who: dict[str, Any] = {
        "identity": caller.identity,
        "realm_user_id": caller.realm_user_id,
        "worker_sid": caller.worker_sid,
        "roles": caller.roles,
    }
    recording = recording_for_playback(sid=recording_sid)
    if recording is None or _is_deleted(recording):
        reason = "recording_not_found" if recording is None else "recording_deleted"
        return Refusal(404, reason, "No such recording.", "denied", reason, audit_fields=who)
    now = timezone.now()
    # The annotation recording_for_playback added (the model has no such field).
    token: str | None = getattr(recording, "rule_set_token", None)
    rules = rules_in_force_at_token(now=now, token=token)
    decision = access_decide(
        caller=caller_for_rules(caller=caller.as_caller(), rules=rules),
        recording=recording.access_facts(),
        now=now,
        rules=rules,
        grants="database",
    )
    detail = decision_detail(recording=recording, decision=decision)
    if detail:
        who = {**who, "detail": detail}
    if not decision.allowed:
        return Refusal(
            403,
            "forbidden",
            (
                "This recording is restricted: ask for access (/access-requests/)."
                if recording.restricted_at is not None
                else "No access rule allows you this recording."
            ),
            "denied",
            decision.reason_code,
            audit_fields=who,
            extra={"rule_name": decision.rule_name or ""},
        )
    return Granted(caller, recording, decision, now, who)


def decision_detail(*, recording: Recording, decision: Decision) -> dict[str, Any]:
    """What a player request's access-log row adds about the decision: ``restricted`` on every
    attempt on a restricted recording, so the log highlights them, and the grant used (its id,
    requester, approver and reason) when a grant allowed it."""
    detail: dict[str, Any] = {}
    if recording.restricted_at is not None:
        detail["restricted"] = True
    if decision.grant is not None:
        detail["grant"] = {
            "id": decision.grant.id,
            "requester": decision.grant.requester,
            "approver": decision.grant.approver,
            # The log refuses text that reads as a link; a reason may cite a ticket's URL.
            "reason": decision.grant.reason.replace("://", ":/ /")[:500],
        }
    return detail


def _error(status: int, code: str, detail: str) -> Answer:
    return Answer(status, {"error": code, "detail": detail})


def audited_sid(recording_sid: str | None) -> str:
    """The SID an audit row names: the one asked for when it is well-formed, else none (a
    malformed value cut to the column's size could read as a real SID it was not)."""
    return recording_sid if recording_sid and RECORDING_SID.fullmatch(recording_sid) else ""


def _unplayable_status(exc: MediaError) -> int:
    """url_provider's status for media that cannot be played, from the contract's list: 404
    when nothing playable exists (media gone at Twilio, a file that failed its tag check), 503
    when the portal or Twilio must do something first (key missing or wrong, Twilio down,
    unusable encryption details, which an operator must look at)."""
    return 503 if exc.status >= 500 else 404


def url_provide(
    *,
    authorization: str | None,
    recording_sid: str | None,
    base_url: str,
    context: RequestContext,
    issue_link: bool = True,
) -> Answer:
    """Answer a Flex Insights Player's request for a recording, and audit it.

    200 with ``media_url``; 400 bad or missing SID; 401 missing/invalid/expired token;
    403 no rule allows it; 404 no such recording, or deleted, or no media; 503 Twilio IAM
    unreachable (fail closed). A recording whose media is known not to play now (see
    ``media_playable_check``) answers 404 or 503 with the media error's code, never a link.
    Without ``issue_link`` (a ``HEAD`` request, whose answer has no body) it decides and audits
    the same way but makes no link, since nobody would receive it.
    """
    audit: dict[str, Any] = {"recording_sid": audited_sid(recording_sid)}

    def record(outcome: str, reason: str, **fields: Any) -> AccessLog:
        return request_audit(ACTION, outcome, reason, context, **{**audit, **fields})

    def finish(answer: Answer, outcome: str, reason: str, **fields: Any) -> Answer:
        record(outcome, reason, **fields)
        return answer

    checked = player_request_decide(authorization=authorization, recording_sid=recording_sid)
    audit.update(checked.audit_fields)
    if isinstance(checked, Refusal):
        return finish(
            _error(checked.status, checked.code, checked.detail),
            checked.outcome,
            checked.reason,
            **checked.extra,
        )
    caller, recording, decision, now = (
        checked.caller,
        checked.recording,
        checked.decision,
        checked.now,
    )
    if recording.media_location == MediaLocation.UNKNOWN:
        return finish(
            _error(404, "no_media", "This recording has no stored media."),
            "denied",
            "no_media",
            rule_name=decision.rule_name or "",
        )

    try:
        media_playable_check(recording=recording)
    except MediaError as exc:
        status = _unplayable_status(exc)
        if status >= 500:
            logger.warning("recording %s cannot be played now: %s", recording.sid, exc)
        return finish(
            _error(status, exc.code, str(exc) or exc.code),
            "error",
            exc.code,
            rule_name=decision.rule_name or "",
        )

    if not issue_link:
        return finish(
            Answer(200, {}),
            "allowed",
            decision.reason_code,
            rule_name=decision.rule_name or "",
            detail={**audit.get("detail", {}), "method": "HEAD"},
        )

    # The link is made first and handed out only after its audit row is written: a failure in
    # between leaves an unused link, never an unaudited one.
    issued = links.media_link_issue(
        recording=recording,
        link_id=uuid.uuid4(),
        base_url=base_url,
        identity=caller.identity,
        realm_user_id=caller.realm_user_id,
        worker_sid=caller.worker_sid,
        roles=caller.roles,
        now=now,
    )
    row = record(
        "allowed", decision.reason_code, rule_name=decision.rule_name or "", link_id=issued.link_id
    )
    if issued.kind == "portal":
        links.media_link_bind(link_id=issued.link_id, access_log_sequence=row.sequence)
    return Answer(200, {"media_url": issued.url})


ALLOWED_METHODS = ("GET", "HEAD", "OPTIONS")


def url_provide_other_method(
    *, method: str, recording_sid: str | None, context: RequestContext
) -> Answer:
    """Answer and audit a url_provider request made with a method other than ``GET`` or
    ``HEAD`` (CORS preflights are answered before any view and never get here): ``OPTIONS``
    answers 204 (the allowed methods go in the ``Allow`` header), any other method 405. Nothing
    is looked up and no token is checked."""
    if method == "OPTIONS":
        answer, reason = Answer(204, {}), "not_a_preflight"
    else:
        detail = f"Use {', '.join(ALLOWED_METHODS[:2])}."
        answer, reason = _error(405, "method_not_allowed", detail), "method_not_allowed"
    request_audit(
        ACTION,
        "error",
        reason,
        context,
        recording_sid=audited_sid(recording_sid),
        detail={"method": "".join(c for c in method if c.isalnum())[:16]},
    )
    return answer


MEDIA_ACTION = "media_fetch"


@dataclass(frozen=True)
class ServedMedia:
    """The media body of an accepted link, with the link its bytes are counted on."""

    body: MediaBody
    link: MediaLink


@dataclass
class MediaAnswer:
    """What the media endpoint sends: an error (status and JSON body), or the media of an
    accepted link (``served``)."""

    status: int
    error: dict[str, str] | None = None
    served: ServedMedia | None = None
    size: int | None = None  # the media's size, for a 416's Content-Range


def media_serve(
    *, link_id: uuid.UUID, token: str, range_header: str | None, context: RequestContext
) -> MediaAnswer:
    """Check a media link and open its recording, whole or the requested range.

    A refused link (unknown, wrong token, expired) answers 403 with an audit row; a media
    failure answers its own status with an audit row; the first successful fetch of a link is
    audited, later ones (seeking) are counted on the link and summarised when it expires.
    """

    def record(outcome: str, reason: str, link: MediaLink | None, **fields: Any) -> None:
        subject: dict[str, Any] = {"link_id": str(link_id)}
        if link is not None:
            subject.update(
                identity=link.identity,
                realm_user_id=link.realm_user_id,
                worker_sid=link.worker_sid,
                roles=link.roles,
                recording_sid=link.recording.sid,
            )
        request_audit(MEDIA_ACTION, outcome, reason, context, **subject, **fields)

    try:
        link = links.media_link_resolve(link_id=link_id, token=token)
    except links.LinkRefused as exc:
        record("denied", exc.reason, exc.link)
        return MediaAnswer(403, error={"error": exc.reason, "detail": exc.detail})
    if _is_deleted(link.recording):
        # A link issued before the recording was deleted dies with it.
        record("denied", "recording_deleted", link)
        return MediaAnswer(
            404, error={"error": "recording_deleted", "detail": "No such recording."}
        )
    try:
        body = media_open(recording=link.recording, range_header=range_header)
    except MediaError as exc:
        record("error", exc.code, link)
        error = {"error": exc.code, "detail": str(exc) or exc.code}
        size = exc.size if isinstance(exc, MediaRangeNotSatisfiable) else None
        return MediaAnswer(exc.status, error=error, size=size)
    if links.media_link_note_fetch(link=link):
        record(
            "allowed",
            "playback_started",
            link,
            detail={"range": f"{body.start}-{body.end - 1}/{body.size}" if body.partial else "all"},
        )
    return MediaAnswer(206 if body.partial else 200, served=ServedMedia(body, link))
