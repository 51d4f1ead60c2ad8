"""Who may play which recording (``AccessRule``), and the tamper-evident record of every access
(``AccessLog``, with signed checkpoints in ``AccessLogDigest``).

Rules are never deleted, only disabled, so the log's ``rule_name`` always names a rule that can
still be looked up. Log rows and digests are append-only: Python refuses to update or delete them,
and on PostgreSQL a trigger (migration ``0002``) refuses it too.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from audit.validation import AccessRuleInvalid, access_rule_validate


class RuleEffect(models.TextChoices):
    """What an applying rule does."""

    ALLOW = "allow", "allow"
    DENY = "deny", "deny"


# A rule's own fields, in the rules file's order (docs/contract.md); bookkeeping fields excluded.
ACCESS_RULE_FIELDS = (
    "name",
    "effect",
    "identities",
    "worker_sids",
    "roles",
    "account_sids",
    "sources",
    "call_sids",
    "max_age_days",
    "queues",
    "teams",
    "workers",
    "handled_by",
    "restricted",
    "valid_from",
    "valid_until",
    "reason",
)


class AccessRule(models.Model):
    """One authorization rule, in the shape of the rules file in docs/contract.md.

    Subjects: ``identities`` (shell-style globs against the Flex token's ``identity`` or
    ``realm_user_id``), ``worker_sids`` (exact), ``roles`` (the caller holds at least one). An
    empty list places no condition, so a rule with all three empty applies to every caller.
    Scope: ``account_sids``, ``sources``, ``call_sids`` (exact), ``max_age_days``, and who
    handled the recording (``queues``, ``teams``, ``workers``, ``handled_by``); empty or null
    places no condition. ``audit.decisions.access_decide`` is the only code that interprets them.

    Every write to the table, by any path (ORM, bulk update, raw SQL, a test's flush), gives
    :class:`AccessRuleSetVersion` a new token in the same transaction (database triggers of
    migration ``0015``): the per-process rule cache of ``audit.decisions`` reloads on it.
    """

    name = models.CharField(max_length=100, unique=True)
    effect = models.CharField(max_length=8, choices=RuleEffect.choices)
    identities = models.JSONField(default=list, blank=True, help_text='Globs, e.g. ["qa_*"].')
    worker_sids = models.JSONField(default=list, blank=True, help_text='e.g. ["WK…"].')
    roles = models.JSONField(default=list, blank=True, help_text='e.g. ["supervisor"].')
    account_sids = models.JSONField(default=list, blank=True)
    sources = models.JSONField(default=list, blank=True, help_text='e.g. ["DialVerb"].')
    call_sids = models.JSONField(default=list, blank=True)
    max_age_days = models.PositiveIntegerField(null=True, blank=True)
    queues = models.JSONField(
        default=list, blank=True, help_text="TaskQueue SIDs or names the call was handled in."
    )
    teams = models.JSONField(
        default=list, blank=True, help_text="Team names of the handling agent."
    )
    workers = models.JSONField(
        default=list, blank=True, help_text="Worker SIDs (WK…) of the handling agent."
    )
    handled_by = models.CharField(
        max_length=16,
        blank=True,
        default="",
        choices=[("caller", "the caller"), ("caller_team", "the caller's team")],
        help_text=(
            "Only recordings the caller (or an agent of the caller's team) handled. "
            "Empty here is null in the rules file."
        ),
    )
    restricted = models.BooleanField(
        default=False,
        help_text=(
            "Names restricted recordings explicitly: the rule applies only to restricted "
            "recordings, and only such an allow (or a grant) plays them."
        ),
    )
    valid_from = models.DateTimeField(null=True, blank=True)
    valid_until = models.DateTimeField(
        null=True, blank=True, help_text="Exclusive: the rule stops applying at this instant."
    )
    reason = models.TextField(blank=True, help_text="Why the rule exists (ticket, approval).")
    enabled = models.BooleanField(
        default=True, help_text="Rules are disabled, never deleted, so the log can name them."
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        state = "" if self.enabled else " (disabled)"
        return f"{self.name}: {self.effect}{state}"

    def clean(self) -> None:
        """Apply the same validation as the rules-file import (``audit.validation``)."""
        values = {field: getattr(self, field) for field in ACCESS_RULE_FIELDS}
        try:
            cleaned = access_rule_validate(values)
        except AccessRuleInvalid as exc:
            raise ValidationError(exc.errors) from exc
        for field, value in cleaned.items():
            setattr(self, field, value)


class AccessRuleSetVersion(models.Model):
    """One row whose ``token`` changes with every write to ``AccessRule``.

    Database triggers (migration ``0015``, PostgreSQL and SQLite) write a fresh random token in
    the statement's own transaction, whatever wrote the rules: so a committed change is seen by
    every process with the change itself, a rolled-back one takes its token with it (and a
    random token never comes back, unlike a counter that a rollback resets to a value another
    change then reuses), and a truncated table leaves no row, which readers treat as "unknown".
    Nothing in Python writes it.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    token = models.CharField(max_length=36)

    class Meta:
        verbose_name = "access rule set version"

    def __str__(self) -> str:
        return self.token


class AccessAction(models.TextChoices):
    """What was attempted. Extend freely; the log stores any short snake_case action."""

    URL_PROVIDER = "url_provider", "url_provider request"
    MEDIA_FETCH = "media_fetch", "media fetch"
    MEDIA_PLAYBACK = "media_playback", "media playback (summary of a link's fetches)"
    ADMIN_VIEW = "admin_view", "admin view"
    ADMIN_EXPORT = "admin_export", "admin export"
    RECORDING_SYNC = "recording_sync", "recording sync"
    RULE_CHANGE = "rule_change", "rule change"
    CHAIN_VERIFY = "chain_verify", "audit chain verification"
    TWILIO_CONFIG = "twilio_config", "Twilio storage configuration"
    PRIVATE_KEY_DELETE = "private_key_delete", "private key deletion"
    ADMIN_LOGIN = "admin_login", "admin login (success, failure or lockout)"
    LEGAL_HOLD = "legal_hold", "legal hold placed or released"
    RETENTION_POLICY = "retention_policy", "retention policy change"
    RETENTION_DELETE = "retention_delete", "recording deletion"
    MEDIA_VERIFY = "media_verify", "media integrity check"
    FLEX_MEDIA_ATTACH = "flex_media_attach", "Flex media attachment (url_provider put into a task)"
    FLEX_DIRECTORY_SYNC = "flex_directory_sync", "Flex worker and queue directory sync"
    WAVEFORM_VIEW = "waveform_view", "waveform view"
    ACCESS_REQUEST = "access_request", "access request (asked, approved, refused, revoked)"
    RECORDING_RESTRICT = "recording_restrict", "recording restricted or released"
    CONTROL_CHANGE = "control_change", "change that weakens control (proposed, approved, refused)"
    ACCESS_REVIEW = "access_review", "periodic access review (opened, signed off, exported)"


class AccessOutcome(models.TextChoices):
    """How an attempt ended."""

    ALLOWED = "allowed", "allowed"
    DENIED = "denied", "denied"
    ERROR = "error", "error"


class AppendOnlyError(Exception):
    """Raised on any attempt to change or delete an audit row through the ORM."""


class AppendOnlyQuerySet(models.QuerySet):
    """A queryset whose bulk ``update()`` and ``delete()`` refuse, like the PostgreSQL trigger."""

    def update(self, **kwargs: Any) -> int:
        """Refuse: audit rows are never changed."""
        raise AppendOnlyError(f"{self.model.__name__} rows are append-only")

    def delete(self) -> tuple[int, dict[str, int]]:
        """Refuse: audit rows are never deleted."""
        raise AppendOnlyError(f"{self.model.__name__} rows are append-only")

    def bulk_create(self, *args: Any, **kwargs: Any) -> list[Any]:
        """Refuse: rows are appended one at a time by ``audit.services``, which chains them."""
        raise AppendOnlyError(f"{self.model.__name__} rows are written by audit.services")

    def bulk_update(self, *args: Any, **kwargs: Any) -> int:
        """Refuse: audit rows are never changed."""
        raise AppendOnlyError(f"{self.model.__name__} rows are append-only")


class AppendOnlyModel(models.Model):
    """Base for audit tables: a row can be inserted once, then never saved again or deleted."""

    objects = AppendOnlyQuerySet.as_manager()
    # The field that ``audit.services`` fills in; a row without it did not come from there.
    integrity_field = ""

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Insert a new row; refuse to save one that already exists."""
        if not self._state.adding or kwargs.get("force_update") or kwargs.get("update_fields"):
            raise AppendOnlyError(f"{type(self).__name__} rows are append-only")
        if not getattr(self, self.integrity_field, None):
            raise AppendOnlyError(
                f"{type(self).__name__} rows are written by audit.services, which chains them"
            )
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        """Refuse: audit rows are never deleted."""
        raise AppendOnlyError(f"{type(self).__name__} rows are append-only")


class AccessLog(AppendOnlyModel):
    """One access attempt and its outcome, chained to the row before it by SHA-256.

    ``row_hash`` is the SHA-256 of the row's canonical content (``audit.chain``), which includes
    ``sequence`` and ``prev_hash``. Rows written before seals existed are chained: ``prev_hash``
    is the previous row's ``row_hash``. Rows written since are not (``prev_hash`` is empty): they
    take their ``sequence`` from a database sequence without a lock, carry a MAC, and the seals
    prove none is missing. Rows are appended only by ``audit.services.access_log_append``.
    Never store a token, an Authorization header or a presigned URL here.
    """

    sequence = models.PositiveBigIntegerField(unique=True, editable=False)
    occurred_at = models.DateTimeField(editable=False)
    action = models.CharField(max_length=32, choices=AccessAction.choices)
    outcome = models.CharField(max_length=16, choices=AccessOutcome.choices)
    reason_code = models.CharField(max_length=64, blank=True)
    identity = models.CharField(max_length=255, blank=True)
    realm_user_id = models.CharField(max_length=255, blank=True)
    worker_sid = models.CharField(max_length=34, blank=True)
    roles = models.JSONField(default=list, blank=True)
    recording_sid = models.CharField(max_length=34, blank=True)
    rule_name = models.CharField(max_length=100, blank=True)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=512, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    link_id = models.CharField(max_length=64, blank=True)
    bytes_served = models.BigIntegerField(null=True, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64, editable=False)
    row_hash = models.CharField(max_length=64, editable=False)
    row_mac = models.CharField(
        max_length=64,
        blank=True,
        editable=False,
        help_text="HMAC-SHA256 of row_hash under AUDIT_ROW_MAC_KEY, a key the database does not "
        "hold: a row written around the portal cannot carry a valid one. Blank only on rows "
        "written before row MACs existed.",
    )
    mac_key_id = models.CharField(max_length=16, blank=True, editable=False)

    integrity_field = "row_hash"

    class Meta:
        ordering = ["-sequence"]
        verbose_name = "access log entry"
        verbose_name_plural = "access log"
        indexes = [
            models.Index(fields=["identity", "-sequence"], name="accesslog_identity_idx"),
            models.Index(fields=["recording_sid", "-sequence"], name="accesslog_recording_idx"),
            models.Index(fields=["outcome", "-sequence"], name="accesslog_outcome_idx"),
            models.Index(fields=["occurred_at"], name="accesslog_occurred_idx"),
            # The admin's filters on what, why and which worker, newest first (migration 0017;
            # roles have a GIN index there, on PostgreSQL only).
            models.Index(fields=["action", "-sequence"], name="accesslog_action_idx"),
            models.Index(fields=["reason_code", "-sequence"], name="accesslog_reason_idx"),
            models.Index(fields=["worker_sid", "-sequence"], name="accesslog_worker_idx"),
            # The rows about restricted recordings (``"restricted": true`` in the detail): the
            # log's ``?restricted=1`` filter and the dashboard's box read only these, newest
            # first, instead of scanning every row's JSON.
            models.Index(
                fields=["-sequence"],
                condition=models.Q(detail__restricted=True),
                name="accesslog_restricted_idx",
            ),
            # An identity's page (``audit.admin.selectors.identity_activity``): its opens
            # grouped by recording and its refusals, read from these two indexes alone (an
            # index-only scan) instead of every row of a busy agent spread over the table.
            models.Index(
                fields=["identity", "occurred_at"],
                include=["recording_sid"],
                condition=models.Q(action="url_provider", outcome="allowed"),
                name="accesslog_opened_idx",
            ),
            models.Index(
                fields=["identity", "occurred_at"],
                include=["action", "outcome", "reason_code"],
                condition=~models.Q(outcome="allowed"),
                name="accesslog_refused_idx",
            ),
            # The dashboard's opens of today and of its first, partial day (``audit.rollups``),
            # one range of time read from the index alone.
            models.Index(
                fields=["occurred_at"],
                include=["identity", "recording_sid"],
                condition=models.Q(action="url_provider", outcome="allowed"),
                name="accesslog_opened_at_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.sequence} {self.action} {self.outcome} {self.identity or '-'}"


class AccessLogDigest(AppendOnlyModel):
    """A signed checkpoint of the chain's head, like a CloudTrail digest file.

    ``signature`` is HMAC-SHA256 over the canonical digest (``audit.chain.digest_message``) with
    the audit signing key named by ``key_id``. Someone who rewrites the whole chain consistently
    (recomputing every hash) still cannot make a digest match without that key.
    """

    created_at = models.DateTimeField(editable=False)
    head_sequence = models.PositiveBigIntegerField(editable=False)
    head_hash = models.CharField(max_length=64, editable=False)
    key_id = models.CharField(max_length=32, editable=False)
    signature = models.CharField(max_length=64, editable=False)

    integrity_field = "signature"

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "access log digest"
        indexes = [models.Index(fields=["head_sequence"], name="accesslogdigest_head_idx")]

    def __str__(self) -> str:
        return f"digest of #{self.head_sequence} at {self.created_at:%Y-%m-%d %H:%M:%S}Z"


class AuditSeal(AppendOnlyModel):
    """A signed commitment to a contiguous run of access-log rows (``audit.evidence``).

    Covers rows ``first_sequence`` to ``last_sequence`` but ``missing_sequences`` (``row_count``
    of them: a gap is stated, never silent) by the Merkle root of their row hashes, links
    to the previous seal by ``prev_seal_hash``, and is signed with the Ed25519 key whose public
    key has ``key_fingerprint``. Each seal is also anchored outside the database
    (``audit.anchors``): verification compares the two, so deleting rows and their seals, or
    emptying both tables, is found.
    """

    number = models.PositiveBigIntegerField(unique=True, editable=False)
    created_at = models.DateTimeField(editable=False)
    first_sequence = models.PositiveBigIntegerField(unique=True, editable=False)
    last_sequence = models.PositiveBigIntegerField(unique=True, editable=False)
    row_count = models.PositiveIntegerField(editable=False)
    missing_sequences = models.JSONField(
        default=list,
        editable=False,
        help_text="Sequences in the range that no row holds: numbers taken by appends that "
        "rolled back, listed so a gap is stated, never silent.",
    )
    merkle_root = models.CharField(max_length=64, editable=False)
    prev_seal_hash = models.CharField(max_length=64, editable=False)
    key_fingerprint = models.CharField(max_length=64, editable=False)
    signature = models.CharField(max_length=100, editable=False)
    seal_hash = models.CharField(max_length=64, unique=True, editable=False)

    integrity_field = "signature"

    class Meta:
        ordering = ["-number"]
        verbose_name = "audit seal"

    def __str__(self) -> str:
        return f"seal {self.number}: rows {self.first_sequence} to {self.last_sequence}"


class ChainCheck(models.Model):
    """The result of one full verification of the access log (``audit.chain.chain_verify``).

    Kept so the dashboard can raise "broken audit chain" without re-hashing a million rows on
    every page view: the nightly task and the admin's "Verify audit log" page each add one.
    Each run is also written to the access log itself (``chain_verify``).
    """

    checked_at = models.DateTimeField(default=timezone.now, db_index=True)
    trigger = models.CharField(max_length=16, help_text="admin, schedule or command.")
    actor = models.CharField(max_length=255, blank=True)
    ok = models.BooleanField()
    count = models.PositiveBigIntegerField(help_text="Rows verified.")
    digests_checked = models.PositiveIntegerField(default=0)
    first_bad_sequence = models.PositiveBigIntegerField(null=True, blank=True)
    bad_row_id = models.BigIntegerField(null=True, blank=True)
    problem = models.CharField(max_length=32, blank=True)
    message = models.TextField(blank=True)
    bad_row_time = models.DateTimeField(null=True, blank=True)
    last_digest_at = models.DateTimeField(null=True, blank=True)
    full = models.BooleanField(
        default=True,
        help_text="Every row and seal (True), or only those after the last verified seal.",
    )
    through_seal = models.PositiveBigIntegerField(
        default=0, help_text="The last seal verified: the next incremental run starts after it."
    )

    class Meta:
        ordering = ["-checked_at", "-id"]
        verbose_name = "audit chain check"

    def __str__(self) -> str:
        verdict = "intact" if self.ok else f"BROKEN at #{self.first_bad_sequence}"
        return f"{self.checked_at:%Y-%m-%d %H:%M:%S}Z: {verdict}"


class VerificationState(models.TextChoices):
    """Where a full re-verification of the access log stands."""

    QUEUED = "queued", "queued"
    RUNNING = "running", "running"
    DONE = "done", "done"
    FAILED = "failed", "failed (can be resumed)"


class ChainVerificationRun(models.Model):
    """A full re-verification of the access log, done in batches of seals (``audit.verification``).

    Reading a million rows takes about a minute and a deploy or a killed worker must not lose
    it, so each batch commits its position (``through_seal``) and counts here, and a requeued
    run goes on from there. At most one run is unfinished at a time (a partial unique
    constraint). When it ends, its verdict is kept as a ``ChainCheck`` (``verdict``) and written
    to the access log, like any other verification.
    """

    kind = models.CharField(
        max_length=8,
        default="full",
        editable=False,
        help_text="What is verified: every row and seal. At most one unfinished run of a kind.",
    )
    trigger = models.CharField(max_length=16, help_text="admin, schedule or command.")
    actor = models.CharField(max_length=255, blank=True)
    state = models.CharField(
        max_length=8, choices=VerificationState.choices, default=VerificationState.QUEUED
    )
    requested_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    target_seal = models.PositiveBigIntegerField(
        default=0, help_text="The last seal when the run began: batches go up to it."
    )
    target_sequence = models.PositiveBigIntegerField(
        default=0,
        help_text="The highest row number when the run began (the total, for progress).",
    )
    through_seal = models.PositiveBigIntegerField(
        default=0,
        help_text="The last seal verified by a committed batch: a resumed run goes on after it.",
    )
    through_sequence = models.PositiveBigIntegerField(default=0)
    batches = models.PositiveIntegerField(default=0)
    resumes = models.PositiveIntegerField(
        default=0, help_text="How often the run went on after it had been interrupted."
    )
    rows_checked = models.PositiveBigIntegerField(default=0)
    seals_checked = models.PositiveBigIntegerField(default=0)
    digests_checked = models.PositiveIntegerField(default=0)
    anchors_checked = models.PositiveBigIntegerField(default=0)
    last_digest_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, help_text="Why the run stopped without a verdict.")
    verdict = models.OneToOneField(
        ChainCheck,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="run",
        help_text="The verdict, once the run is done.",
    )

    class Meta:
        ordering = ["-requested_at", "-id"]
        verbose_name = "full audit log verification"
        constraints = [
            models.UniqueConstraint(
                fields=["kind"],
                condition=models.Q(state__in=["queued", "running", "failed"]),
                name="audit_one_unfinished_verification_run",
            )
        ]

    def __str__(self) -> str:
        return f"full verification {self.pk} ({self.state})"

    @property
    def percent(self) -> int:
        """How far the run is, by row number (0 to 100)."""
        if self.state == VerificationState.DONE:
            return 100
        if not self.target_sequence:
            return 0
        return min(99, self.through_sequence * 100 // self.target_sequence)


class ExportState(models.TextChoices):
    """Where an access-log export job stands."""

    QUEUED = "queued", "queued"
    RUNNING = "running", "running"
    DONE = "done", "done"
    FAILED = "failed", "failed"
    EXPIRED = "expired", "expired (file deleted)"


class ExportKind(models.TextChoices):
    """What an export job writes: the access log's rows (CSV or JSON Lines) or a playback
    report (CSV or PDF, ``audit.admin.reports``)."""

    ACCESS_LOG = "access_log", "access log"
    PLAYBACK_REPORT = "playback_report", "playback report"


class AccessLogExport(models.Model):
    """An officer's export of the access log, written by a Celery task (``audit.exports``).

    A million rows outlast any web request, so the admin queues the export and the officer
    downloads the file when it is done: complete (its row count and SHA-256 kept here), or
    visibly failed with the reason, never cut short.
    """

    requested_at = models.DateTimeField(default=timezone.now, db_index=True)
    requested_by = models.CharField(max_length=150, help_text="The officer's username.")
    query = models.CharField(
        max_length=2000, blank=True, help_text="The access log list's filters and search."
    )
    format = models.CharField(max_length=8)
    # Reports run through the same jobs, page and expiry as the log's exports: a month of a
    # busy centre's playback report takes longer than a web request may last.
    kind = models.CharField(
        max_length=16, choices=ExportKind.choices, default=ExportKind.ACCESS_LOG
    )
    # The access-log row that recorded the request (a report's PDF names it).
    audit_sequence = models.BigIntegerField(null=True, blank=True)
    state = models.CharField(max_length=8, choices=ExportState.choices, default=ExportState.QUEUED)
    rows = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Rows written: log entries, or a report's groups."
    )
    sha256 = models.CharField(max_length=64, blank=True)
    file_name = models.CharField(max_length=255, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-requested_at", "-id"]
        verbose_name = "access log export"

    def __str__(self) -> str:
        return f"export {self.pk} ({self.format}, {self.state})"


class GrantScope(models.TextChoices):
    """What an access request or grant covers."""

    RECORDING = "recording", "one recording (RE…)"
    CALL = "call", "a call's recordings (CA…)"
    TEAM = "team", "a team's recordings (team name)"


class GrantStatus(models.TextChoices):
    """Where an access request stands; only an approved one is a grant."""

    REQUESTED = "requested", "requested"
    APPROVED = "approved", "approved"
    REFUSED = "refused", "refused"


class AccessGrant(models.Model):
    """An access request and, once a second person approves it, a time-boxed grant.

    The grantee is a Flex user (``grantee_identity``, and ``grantee_worker_sid`` when the token
    had one); the scope is one recording, one call's recordings or a team's recordings. A grant
    is in force while ``status`` is approved, ``valid_from <= now < valid_until`` and it is not
    revoked: it expires on its own. ``audit.decisions.access_decide`` reads grants as facts
    (``GrantView``); ``audit.grants`` is the only code that changes them, and writes each step
    (request, approval, refusal, revocation) to the access log. Never deleted.
    """

    status = models.CharField(
        max_length=16, choices=GrantStatus.choices, default=GrantStatus.REQUESTED
    )
    grantee_identity = models.CharField(max_length=255, db_index=True)
    grantee_worker_sid = models.CharField(max_length=34, blank=True, db_index=True)
    scope = models.CharField(max_length=16, choices=GrantScope.choices)
    scope_value = models.CharField(max_length=255)
    reason = models.TextField(help_text="Why the requester needs the access.")
    duration_hours = models.PositiveIntegerField(
        help_text="How long the grant lasts once approved."
    )
    requested_at = models.DateTimeField(default=timezone.now, editable=False)
    requested_by = models.ForeignKey(
        "auth.User",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The staff member who filed the request on the grantee's behalf, if any.",
    )
    decided_by = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_note = models.TextField(blank=True)
    valid_from = models.DateTimeField(null=True, blank=True)
    valid_until = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    revoke_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-requested_at"]
        permissions = [("approve_accessgrant", "Can approve, refuse and revoke access requests")]

    def __str__(self) -> str:
        return (
            f"#{self.pk} {self.grantee_identity}: {self.scope} {self.scope_value} ({self.status})"
        )


class ForwarderPosition(models.Model):
    """How far ``audit.forwarder`` has sent the access log to one syslog destination.

    ``last_sequence`` is the highest row sequence the destination is known to have received
    (everything at or below it, gaps included, was sent or never existed); a restarted forwarder
    goes on after it. Kept per destination (``host:port``), so pointing the forwarder at a new
    collector sends that one the whole log.
    """

    destination = models.CharField(max_length=300, unique=True)
    last_sequence = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "audit forwarder position"

    def __str__(self) -> str:
        return f"{self.destination}: through #{self.last_sequence}"


class ReviewState(models.TextChoices):
    """Where a periodic access review stands."""

    OPEN = "open", "open (waiting for sign-off)"
    SIGNED_OFF = "signed_off", "signed off"


class ReviewFindings(models.TextChoices):
    """The reviewer's verdict on a period, given with the sign-off."""

    NO_EXCEPTIONS = "no_exceptions", "no exceptions"
    EXCEPTIONS_NOTED = "exceptions_noted", "exceptions noted (see the comments)"


class SignedOffReviewError(Exception):
    """Raised on any attempt to change or delete a signed-off access review."""


class AccessReviewQuerySet(models.QuerySet):
    """Bulk ``update()`` and ``delete()`` refuse when a signed-off review is among the rows."""

    def update(self, **kwargs: Any) -> int:
        """Update open reviews only; refuse if a signed-off one is in the set."""
        if self.filter(state=ReviewState.SIGNED_OFF).exists():
            raise SignedOffReviewError("a signed-off access review is never changed")
        return super().update(**kwargs)

    def delete(self) -> tuple[int, dict[str, int]]:
        """Refuse if a signed-off review is in the set."""
        if self.filter(state=ReviewState.SIGNED_OFF).exists():
            raise SignedOffReviewError("a signed-off access review is never deleted")
        return super().delete()


class AccessReview(models.Model):
    """One period's access review (HIPAA 164.312(b): record *and examine*): the report of the
    period, frozen as JSON with its SHA-256 when the review is built, the reviewer it is
    assigned to, and the reviewer's sign-off with comments and findings.

    One review per period (a completed UTC week, Monday to Monday, or a calendar month;
    ``period_end`` exclusive). Once signed off the row never changes again: ``save()``,
    ``delete()`` and the queryset's bulk writes refuse (``audit.reviews`` is the only code that
    writes reviews, and writes each step to the access log).
    """

    schedule = models.CharField(max_length=8, help_text="weekly or monthly.")
    period_start = models.DateTimeField(help_text="Inclusive, UTC midnight.")
    period_end = models.DateTimeField(help_text="Exclusive, UTC midnight.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    due_at = models.DateTimeField(help_text="Overdue (a dashboard alert) after this instant.")
    reviewer = models.ForeignKey(
        "auth.User",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Who must sign off; empty when nobody held the reviewer permission.",
    )
    state = models.CharField(max_length=12, choices=ReviewState.choices, default=ReviewState.OPEN)
    report = models.JSONField(help_text="The period's report as built (never rebuilt).")
    report_sha256 = models.CharField(
        max_length=64, help_text="SHA-256 of the report's canonical JSON, taken when built."
    )
    signed_off_by = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    signed_off_at = models.DateTimeField(null=True, blank=True)
    comments = models.TextField(blank=True)
    findings = models.CharField(max_length=16, choices=ReviewFindings.choices, blank=True)

    objects = AccessReviewQuerySet.as_manager()

    class Meta:
        ordering = ["-period_start", "-id"]
        verbose_name = "access review"
        permissions = [
            ("review_accessreview", "Can be assigned and sign off periodic access reviews"),
            ("assign_accessreview", "Can reassign periodic access reviews"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["period_start", "period_end"], name="audit_one_review_per_period"
            ),
            models.CheckConstraint(
                condition=models.Q(period_end__gt=models.F("period_start")),
                name="audit_review_period_not_empty",
            ),
        ]

    def __str__(self) -> str:
        return (
            f"{self.schedule} review {self.period_start:%Y-%m-%d} to "
            f"{self.period_end:%Y-%m-%d} ({self.get_state_display()})"
        )

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Save an open review; refuse to change one that is signed off."""
        if self._signed_off_when_stored():
            raise SignedOffReviewError("a signed-off access review is never changed")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        """Delete an open review only (signed-off reviews are kept)."""
        if self.state == ReviewState.SIGNED_OFF or self._signed_off_when_stored():
            raise SignedOffReviewError("a signed-off access review is never deleted")
        return super().delete(*args, **kwargs)

    def _signed_off_when_stored(self) -> bool:
        """Whether the stored row is signed off (asked of the database, not this instance,
        which may be stale)."""
        if self.pk is None:
            return False
        return AccessReview.objects.filter(pk=self.pk, state=ReviewState.SIGNED_OFF).exists()


class ControlChangeStatus(models.TextChoices):
    """Where a change that weakens control stands (``audit.control_changes``)."""

    PENDING = "pending", "awaiting approval"
    APPLIED = "applied", "approved and applied"
    REFUSED = "refused", "refused"
    WITHDRAWN = "withdrawn", "withdrawn by the proposer"
    STALE = "stale", "not applied: the target changed since it was proposed"
    FAILED = "failed", "approved, but could not be applied"


class ControlChange(models.Model):
    """A change that weakens control (a wider allow rule, a shorter retention, a released legal
    hold, a deleted key, paused seal anchoring), held until a second staff member approves it.

    Only made when ``CONTROL_CHANGES_NEED_APPROVAL`` is on; ``audit.control_changes`` is the
    only code that writes it, and writes each step (proposed, approved, refused, withdrawn) to
    the access log with the old and new values. ``old_values`` is the target as it was when the
    change was proposed: an approval first compares it with the target now, and applies nothing
    when they differ. ``payload`` holds what applying needs beyond the new values (a rules
    file). Kept for good, like the log rows that name it.
    """

    kind = models.CharField(max_length=32)
    target = models.CharField(max_length=200, help_text="What the change is to, in words.")
    target_id = models.CharField(max_length=64, blank=True)
    old_values = models.JSONField(default=dict, blank=True)
    new_values = models.JSONField(default=dict, blank=True)
    payload = models.JSONField(default=dict, blank=True)
    reason = models.TextField(
        blank=True,
        help_text="Why the change weakens control, or the proposer's own words where the page "
        "asks for them (a hold's release reason).",
    )
    status = models.CharField(
        max_length=16, choices=ControlChangeStatus.choices, default=ControlChangeStatus.PENDING
    )
    proposed_at = models.DateTimeField(default=timezone.now, editable=False)
    proposed_by = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    proposed_by_name = models.CharField(
        max_length=150, help_text="The proposer's username (or the command that proposed it)."
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decided_by_name = models.CharField(max_length=150, blank=True)
    decision_note = models.TextField(blank=True)

    class Meta:
        ordering = ["-proposed_at", "-id"]
        verbose_name = "change awaiting approval"
        verbose_name_plural = "changes awaiting approval"
        permissions = [
            ("approve_controlchange", "Can approve and refuse changes that weaken control")
        ]
        indexes = [models.Index(fields=["status", "-proposed_at"], name="controlchange_status_idx")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.kind}: {self.target} ({self.status})"


class SealAnchorSwitch(models.Model):
    """The staff switch that pauses writing seals to the anchor store (``audit.anchors``).

    One row at most (``id`` 1); no row means anchoring runs. While paused the sealer keeps
    sealing in the database and anchors nothing; resuming anchors every waiting seal on the
    next round. Pausing weakens the evidence (a rewrite of the database is no longer caught
    against the anchors), so with ``CONTROL_CHANGES_NEED_APPROVAL`` it waits for a second
    staff member; resuming applies at once.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    anchoring_paused = models.BooleanField(
        default=False, help_text="Seals stay in the database and are not anchored while paused."
    )
    reason = models.TextField(blank=True, help_text="Why anchoring is paused or resumed.")
    changed_by = models.CharField(max_length=150, blank=True, editable=False)
    changed_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        verbose_name = "seal anchoring switch"
        verbose_name_plural = "seal anchoring switch"

    def __str__(self) -> str:
        return "seal anchoring paused" if self.anchoring_paused else "seal anchoring running"


class AccessLogDay(models.Model):
    """One UTC day of the access log rolled up (``audit.rollups``): the dashboard reads the
    day's figures from ``AccessLogDayCount`` and ``AccessLogDayOpen`` instead of the log.

    ``rows`` is how many log rows the day held when it was rolled up: the rollup task counts
    the day again on every run and rolls it up anew when a row arrived since (a transaction
    that stamped its row before midnight and committed after the rollup). An ordinary table,
    rewritten by the worker; the log itself is never touched.
    """

    day = models.DateField(unique=True)
    rows = models.PositiveBigIntegerField()
    rolled_up_at = models.DateTimeField()

    class Meta:
        ordering = ["-day"]
        verbose_name = "access log day"

    def __str__(self) -> str:
        return f"{self.day}: {self.rows} rows"


class AccessLogDayCount(models.Model):
    """How many log rows of one UTC day had this action and outcome (a rolled-up day)."""

    day = models.DateField()
    action = models.CharField(max_length=32)
    outcome = models.CharField(max_length=16)
    rows = models.PositiveBigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["day", "action", "outcome"], name="accesslogdaycount_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.action} {self.outcome}: {self.rows}"


class AccessLogDayOpen(models.Model):
    """How often ``identity`` opened ``recording_sid`` (url_provider allowed) on one UTC day.

    Kept per (identity, recording) pair, not as per-day distinct counts: "how many people
    opened this recording over 30 days" cannot be summed from daily distinct counts (the same
    person on two days would count twice), but it can be counted from the pairs.
    """

    day = models.DateField()
    identity = models.CharField(max_length=255)
    recording_sid = models.CharField(max_length=34)
    # The caller's Flex worker, as the log row named it: the playback report finds a
    # listener's team by it (an identity is normally one worker; one that was several is
    # several rows).
    worker_sid = models.CharField(max_length=34, blank=True, default="")
    opens = models.PositiveIntegerField()

    class Meta:
        constraints = [
            # Pair first: "did this identity open this recording on those days" is one probe.
            models.UniqueConstraint(
                fields=["identity", "recording_sid", "day", "worker_sid"],
                name="accesslogdayopen_unique",
            )
        ]
        indexes = [
            models.Index(fields=["day"], name="accesslogdayopen_day_idx"),
            # Who opened these recordings on those days (the playback report's teams).
            models.Index(fields=["recording_sid", "day"], name="accesslogdayopen_rec_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.identity} {self.recording_sid}: {self.opens}"


class AccessLogDayListener(models.Model):
    """The player's and media endpoint's rows of one UTC day per listener (identity and Flex
    worker) and per action, outcome and reason: the playback report's figures by person and
    by team, read from here for whole days instead of from a month of log rows.

    ``listened_seconds`` sums the ``audio_ms_sent`` that playback summaries keep;
    ``unmeasured`` counts summaries written before they kept it (their estimate needs the
    recording, which the report looks up: a day with any is read from the log)."""

    day = models.DateField()
    identity = models.CharField(max_length=255)
    worker_sid = models.CharField(max_length=34, blank=True, default="")
    action = models.CharField(max_length=32)
    outcome = models.CharField(max_length=16)
    reason_code = models.CharField(max_length=64, blank=True, default="")
    rows = models.PositiveBigIntegerField()
    bytes_served = models.PositiveBigIntegerField(default=0)
    listened_seconds = models.FloatField(default=0.0)
    unmeasured = models.PositiveBigIntegerField(default=0)
    first_at = models.DateTimeField()
    last_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["day", "identity", "worker_sid", "action", "outcome", "reason_code"],
                name="accesslogdaylistener_unique",
            )
        ]
        verbose_name = "access log day of a listener"

    def __str__(self) -> str:
        return f"{self.day} {self.identity} {self.action} {self.outcome}: {self.rows}"


class AccessLogDayDenial(models.Model):
    """How often the player was refused ``recording_sid`` on one UTC day, per reason: the
    playback report ranks recordings by plays (``AccessLogDayOpen``) and then by denials
    without reading a month of log rows."""

    day = models.DateField()
    recording_sid = models.CharField(max_length=34)
    reason_code = models.CharField(max_length=64, blank=True, default="")
    rows = models.PositiveBigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["day", "recording_sid", "reason_code"], name="accesslogdaydenial_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.recording_sid} {self.reason_code}: {self.rows}"


class AccessLogSpan(models.Model):
    """The opens of the rolled-up days ``first_day`` to ``last_day`` counted once more, per
    identity (``AccessLogSpanIdentity``) and per recording (``AccessLogSpanRecording``), with
    the distinct counts done: the whole days of the dashboard's 30, worked out by the rollup
    task, so the page only adds today's and the first day's rows from the log.

    Valid while no day in it was rolled up after ``computed_at``; the task replaces it."""

    first_day = models.DateField()
    last_day = models.DateField()
    computed_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["first_day", "last_day"], name="accesslogspan_unique")
        ]

    def __str__(self) -> str:
        return f"{self.first_day} to {self.last_day}"


class AccessLogSpanIdentity(models.Model):
    """How many distinct recordings ``identity`` opened over a span, in how many opens, and
    how many of them nobody else opened (``sole_recordings``: a team's distinct recordings
    are its people's sole ones plus the shared ones any of them opened)."""

    span = models.ForeignKey(AccessLogSpan, on_delete=models.CASCADE, related_name="identities")
    identity = models.CharField(max_length=255)
    recordings = models.PositiveIntegerField()
    opens = models.PositiveBigIntegerField()
    sole_recordings = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["span", "identity"], name="accesslogspanidentity_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.identity}: {self.recordings} recordings"


class AccessLogSpanRecording(models.Model):
    """How many distinct identities opened ``recording_sid`` over a span, in how many opens,
    and how often the player was refused it (``denials``, requests for recordings that do not
    exist aside; a recording only refused has a row with no opens): the playback report ranks
    the span's recordings by opens, then denials."""

    span = models.ForeignKey(AccessLogSpan, on_delete=models.CASCADE, related_name="recordings")
    recording_sid = models.CharField(max_length=34)
    people = models.PositiveIntegerField()
    opens = models.PositiveBigIntegerField()
    denials = models.PositiveBigIntegerField(default=0)
    # The identity that opened it, when only one did (``people`` 1); else empty.
    opener = models.CharField(max_length=255, blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["span", "recording_sid"], name="accesslogspanrecording_unique"
            )
        ]
        indexes = [
            # The dashboard reads the recordings more than one person opened.
            models.Index(
                fields=["span", "recording_sid"],
                condition=models.Q(people__gt=1),
                name="accesslogspanrec_shared_idx",
            ),
            # The playback report's first recordings, in its order (then SIDs in byte order,
            # which PostgreSQL sorts among the few of equal opens and denials).
            models.Index(
                fields=["span", "-opens", "-denials"],
                include=["recording_sid"],
                name="accesslogspanrec_ranked_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.recording_sid}: {self.people} people"
