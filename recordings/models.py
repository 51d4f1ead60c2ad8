"""Recordings as Twilio reports them, the raw callbacks that announced them, and the Twilio
accounts whose callbacks the portal accepts."""

from __future__ import annotations

import uuid

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from audit.decisions import RecordingFacts
from portal import sids


class RecordingStatus(models.TextChoices):
    """Twilio's Recording ``status`` values, plus ``failed`` from status callbacks."""

    IN_PROGRESS = "in-progress"
    PAUSED = "paused"
    STOPPED = "stopped"
    PROCESSING = "processing"
    COMPLETED = "completed"
    ABSENT = "absent"
    FAILED = "failed"
    DELETED = "deleted"


# How far along its life a status is. A status never replaces one of a higher rank, so
# callbacks and fetches arriving out of order never move a recording back.
STATUS_RANK: dict[str, int] = {
    RecordingStatus.IN_PROGRESS: 10,
    RecordingStatus.PAUSED: 10,
    RecordingStatus.STOPPED: 20,
    RecordingStatus.PROCESSING: 30,
    RecordingStatus.COMPLETED: 40,
    RecordingStatus.ABSENT: 40,
    RecordingStatus.FAILED: 40,
    RecordingStatus.DELETED: 50,
}


class SyncState(models.TextChoices):
    """Where the portal's copy of a recording's metadata stands."""

    PENDING = "pending", "pending"
    SYNCED = "synced", "synced"
    SYNC_FAILED = "sync_failed", "sync failed"


class MediaLocation(models.TextChoices):
    """Where a recording's media file lives."""

    UNKNOWN = "unknown", "unknown"
    TWILIO = "twilio", "Twilio"
    S3 = "s3", "S3 bucket"
    LOCAL = "local", "local folder (embedded mode)"


class IntegrityState(models.TextChoices):
    """Whether the stored media file was checked to be exactly what Twilio wrote."""

    UNVERIFIED = "unverified", "not checked yet"
    VERIFIED = "verified", "verified"
    FAILED = "failed", "failed verification (never served)"


class RecordingSource(models.TextChoices):
    """What made Twilio record (its Recording ``source``), named for the recordings list's
    filter: choices the filter lists without reading the table. Twilio may add a value; it is
    stored as sent and shown raw."""

    DIAL_VERB = "DialVerb", "<Dial record> (DialVerb)"
    CONFERENCE = "Conference", "conference (Conference)"
    OUTBOUND_API = "OutboundAPI", "outbound call API (OutboundAPI)"
    TRUNKING = "Trunking", "Elastic SIP Trunking (Trunking)"
    RECORD_VERB = "RecordVerb", "<Record> (RecordVerb)"
    START_CALL_RECORDING_API = "StartCallRecordingAPI", "call recording API (StartCallRecordingAPI)"
    START_CONFERENCE_RECORDING_API = (
        "StartConferenceRecordingAPI",
        "conference recording API (StartConferenceRecordingAPI)",
    )


class EncryptionType(models.TextChoices):
    """How a recording's media is encrypted: Twilio's ``encryption_details.type``, the S3
    envelope of Video media (``recordings.media.encrypted``) or what the sync stores for
    details it cannot read (``recordings.ingest.sync``)."""

    NONE = "", "not encrypted"
    RSA_AES = "rsa-aes", "public key (rsa-aes)"
    S3_ENVELOPE = "s3-envelope", "S3 envelope, Video (s3-envelope)"
    UNKNOWN = "unknown", "type not given (unknown)"
    INVALID = "invalid", "unreadable details (invalid)"


class ArchiveState(models.TextChoices):
    """Where copying a recording's media from Twilio to the customer's bucket stands."""

    NONE = "", "not archived"
    PENDING = "pending", "pending (will retry)"
    ARCHIVED = "archived", "archived"
    FAILED = "failed", "failed (needs attention)"


class Recording(models.Model):
    """One Twilio Recording resource, as last synced from Twilio's REST API."""

    sid = models.CharField("recording SID", max_length=34, unique=True)
    account_sid = models.CharField(max_length=34, db_index=True)
    call_sid = models.CharField(max_length=34, blank=True, db_index=True)
    # Indexed: a Flex task finds its recordings by conference (recordings.flex.linking).
    conference_sid = models.CharField(max_length=34, blank=True, db_index=True)
    status = models.CharField(max_length=16, choices=RecordingStatus.choices, blank=True)
    source = models.CharField(max_length=40, blank=True, choices=RecordingSource.choices)
    channels = models.PositiveSmallIntegerField(null=True, blank=True)
    track = models.CharField(max_length=16, blank=True)
    duration_seconds = models.PositiveIntegerField(null=True, blank=True)
    start_time = models.DateTimeField(null=True, blank=True, db_index=True)
    date_created = models.DateTimeField("created at Twilio", null=True, blank=True)
    date_updated = models.DateTimeField("updated at Twilio", null=True, blank=True)
    price = models.DecimalField(max_digits=12, decimal_places=5, null=True, blank=True)
    price_unit = models.CharField(max_length=3, blank=True)
    error_code = models.PositiveIntegerField(null=True, blank=True)
    twilio_uri = models.CharField(max_length=255, blank=True)
    media_url = models.TextField(blank=True)

    encryption_type = models.CharField(max_length=16, blank=True, choices=EncryptionType.choices)
    encryption_public_key_sid = models.CharField(max_length=34, blank=True)
    encryption_cek = models.TextField("encrypted content key", blank=True)
    encryption_iv = models.CharField(max_length=64, blank=True)

    media_location = models.CharField(
        max_length=16, choices=MediaLocation.choices, default=MediaLocation.UNKNOWN
    )
    media_bucket = models.CharField(max_length=63, blank=True)
    media_key = models.CharField(max_length=1024, blank=True)
    media_size = models.BigIntegerField(
        "stored size", null=True, blank=True, help_text="Bytes of the stored object."
    )
    media_etag = models.CharField(
        max_length=128, blank=True, help_text="ETag of the object that was verified."
    )
    media_sha256 = models.CharField(max_length=64, blank=True)
    integrity_state = models.CharField(
        max_length=16, choices=IntegrityState.choices, default=IntegrityState.UNVERIFIED
    )
    integrity_checked_at = models.DateTimeField(null=True, blank=True)
    integrity_error = models.TextField(blank=True)

    sync_state = models.CharField(
        max_length=16, choices=SyncState.choices, default=SyncState.PENDING, db_index=True
    )
    sync_error = models.TextField(blank=True)
    synced_at = models.DateTimeField(null=True, blank=True)

    archive_state = models.CharField(
        max_length=16, choices=ArchiveState.choices, default=ArchiveState.NONE, blank=True
    )
    archive_error = models.TextField(blank=True)
    archive_attempts = models.PositiveIntegerField(default=0)
    archived_at = models.DateTimeField(
        null=True, blank=True, help_text="When the copy from Twilio was stored and verified."
    )
    twilio_media_deleted_at = models.DateTimeField(
        null=True, blank=True, help_text="When the portal deleted the recording at Twilio."
    )
    soft_deleted_at = models.DateTimeField(
        null=True,
        blank=True,
        db_index=True,
        help_text="When a retention policy hid the recording (media deleted after a grace period).",
    )
    hard_deleted_at = models.DateTimeField(
        null=True, blank=True, help_text="When the media was deleted from storage and Twilio."
    )
    deleted_by_policy = models.CharField(
        max_length=100, blank=True, help_text="The retention policy that deleted the recording."
    )
    retention_error = models.TextField(
        blank=True, help_text="Why the last retention step failed (retried on the next run)."
    )
    # Handling facts, kept by recordings.flex from the linked tasks (empty until a task is
    # known): what rules' ``workers``, ``teams``, ``queues`` and ``handled_by`` look at. A
    # snapshot of who handled the conversation, and in which team, at the time it was handled.
    handled_worker_sids = models.JSONField(
        default=list, blank=True, help_text="Workers (WK…) who accepted a reservation of the task."
    )
    handled_team_names = models.JSONField(
        default=list, blank=True, help_text="Teams of those workers when they handled it."
    )
    handled_queues = models.JSONField(
        default=list, blank=True, help_text="TaskQueue SIDs and names of the conversation."
    )
    # Restricted (PCI segment not paused, HR matter…): played only under a grant or a rule that
    # names restricted recordings (audit.decisions). Set and cleared by
    # recordings.lifecycle.restriction, which audits each change.
    restricted_at = models.DateTimeField(null=True, blank=True, db_index=True)
    restricted_reason = models.TextField(blank=True)
    restricted_by = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-start_time", "-id"]
        indexes = [
            models.Index(fields=["-created_at"], name="recording_created_idx"),
            # The recordings list's filters (``recordings.admin``): a value few recordings have
            # is found, counted and dated (the year list's MIN/MAX) down its own index instead
            # of a read of the whole table; newest first, like the list.
            models.Index(fields=["status", "-start_time"], name="recording_status_idx"),
            models.Index(fields=["source", "-start_time"], name="recording_source_idx"),
            models.Index(fields=["encryption_type", "-start_time"], name="recording_encrypt_idx"),
            models.Index(fields=["media_location", "-start_time"], name="recording_location_idx"),
            models.Index(fields=["archive_state", "-start_time"], name="recording_archive_idx"),
        ]
        permissions = [("restrict_recording", "Can mark recordings restricted and lift it")]

    def __str__(self) -> str:
        return self.sid

    @property
    def is_encrypted(self) -> bool:
        """True when Twilio encrypted the media with one of the customer's public keys."""
        return bool(self.encryption_type)

    def access_facts(self) -> RecordingFacts:
        """What access rules may look at about this recording (``audit.decisions``)."""
        return RecordingFacts(
            sid=self.sid,
            account_sid=self.account_sid,
            source=self.source or "",
            call_sid=self.call_sid or "",
            start_time=self.start_time,
            date_created=self.date_created,
            workers=tuple(self.handled_worker_sids or ()),
            teams=tuple(self.handled_team_names or ()),
            queues=tuple(self.handled_queues or ()),
            restricted=self.restricted_at is not None,
        )


class EventState(models.TextChoices):
    """Where the processing of one stored callback stands."""

    PENDING = "pending", "pending"
    PROCESSED = "processed", "processed"
    FAILED = "failed", "failed"


class RecordingEvent(models.Model):
    """One accepted ``recordingStatusCallback``, stored before anything else happens.

    The row is the durable record that Twilio told us something: if the broker is down the row
    stays ``pending`` and the periodic dispatcher picks it up. One row per recording and status:
    Twilio's retries and replays land on the existing row.
    """

    recording_sid = models.CharField(max_length=34)
    account_sid = models.CharField(max_length=34)
    recording_status = models.CharField(max_length=16, blank=True)
    idempotency_token = models.CharField(max_length=128, blank=True)
    payload = models.JSONField(help_text="Every parameter of the callback, as received.")
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    deliveries = models.PositiveIntegerField(
        default=1, help_text="How many times Twilio delivered this callback."
    )
    state = models.CharField(max_length=16, choices=EventState.choices, default=EventState.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_error = models.TextField(blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["recording_sid", "recording_status"], name="one_event_per_status"
            )
        ]
        # Every index costs each webhook an index write: lookups by recording use the unique
        # constraint's index, the dispatcher uses event_due_idx, the admin received_at's.
        indexes = [models.Index(fields=["state", "next_attempt_at"], name="event_due_idx")]

    def __str__(self) -> str:
        return f"{self.recording_sid} {self.recording_status}"


class TwilioSubaccount(models.Model):
    """A subaccount of the configured Twilio account whose callbacks the portal accepts.

    Refreshed from Twilio's Accounts list by a periodic task (never during a webhook). The
    subaccount's auth token signs its callbacks; it is stored sealed under the master key.
    """

    sid = models.CharField(max_length=34, unique=True)
    friendly_name = models.CharField(max_length=128, blank=True)
    status = models.CharField(max_length=16, blank=True)
    sealed_auth_token = models.TextField(blank=True, editable=False)
    refreshed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["sid"]

    def __str__(self) -> str:
        return f"{self.sid} ({self.friendly_name})" if self.friendly_name else self.sid


class PrivateKey(models.Model):
    """An RSA private key the portal holds to open recordings Twilio encrypted with its public
    half. Chosen by ``public_key_sid`` from a recording's encryption details, never "the current
    key": several live side by side, and rotation is adding one.

    The private key is stored sealed under ``PORTAL_MASTER_KEY`` (``portal.sealing``) and never
    shown again; the admin shows the SID, fingerprint, size and last use.
    """

    public_key_sid = models.CharField(
        "public key SID", max_length=34, unique=True, null=True, blank=True
    )
    friendly_name = models.CharField(max_length=64, blank=True)
    fingerprint = models.CharField(
        max_length=64, unique=True, help_text="SHA-256 of the public key (SubjectPublicKeyInfo)."
    )
    key_size = models.PositiveIntegerField(help_text="Bits.")
    public_key_pem = models.TextField()
    sealed_private_key = models.TextField(editable=False)
    master_key_id = models.CharField(max_length=12, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.public_key_sid or f"unregistered {self.fingerprint[:16]}"


def private_key_missing() -> models.Q:
    """Recordings Twilio encrypted for a public key whose private key the portal does not hold
    (Twilio's error 16107 is one way to get there), not deleted: they cannot be played until
    that key is imported. For ``Recording.objects.filter``."""
    held = PrivateKey.objects.filter(public_key_sid__isnull=False).values("public_key_sid")
    return (
        models.Q(encryption_type="rsa-aes")
        & ~models.Q(status=RecordingStatus.DELETED)
        & ~models.Q(encryption_public_key_sid__in=held)
    )


class MediaLink(models.Model):
    """A short-lived link to the portal's media endpoint, issued by url_provider.

    The token itself is never stored: only its SHA-256. The link is bound to one recording and
    to the access-log row that allowed it; fetches are counted here (not in the append-only log,
    so seeking does not flood it) and summarised into the log once the link has expired.
    """

    link_id = models.UUIDField(unique=True, default=uuid.uuid4, editable=False)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    recording = models.ForeignKey(Recording, on_delete=models.PROTECT, related_name="links")
    # The sequence of the access-log row that allowed the link (no foreign key: the log is
    # append-only and owes nothing to other tables).
    access_log_sequence = models.PositiveBigIntegerField(null=True, blank=True)
    identity = models.CharField(max_length=255, blank=True)
    realm_user_id = models.CharField(max_length=255, blank=True)
    worker_sid = models.CharField(max_length=34, blank=True)
    roles = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField(db_index=True)
    fetches = models.PositiveIntegerField(default=0)
    bytes_served = models.BigIntegerField(default=0)
    first_fetch_at = models.DateTimeField(null=True, blank=True)
    last_fetch_at = models.DateTimeField(null=True, blank=True)
    summarized_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["summarized_at", "expires_at"], name="link_to_summarize_idx")
        ]

    def __str__(self) -> str:
        return str(self.link_id)


class ArchivePolicy(models.Model):
    """Whether, and where, recordings whose media Twilio holds are copied to the customer's bucket
    (``recordings.lifecycle.archive``), per account; the row with a blank account SID applies to
    every account without its own row."""

    account_sid = models.CharField(
        "account SID",
        max_length=34,
        unique=True,
        blank=True,
        help_text="Blank: the default for every account without its own policy.",
    )
    enabled = models.BooleanField(default=True)
    bucket = models.CharField(
        max_length=63, blank=True, help_text="Blank: AWS_STORAGE_BUCKET_NAME."
    )
    key_prefix = models.CharField(
        max_length=200,
        blank=True,
        default="recordings",
        help_text="Objects are stored at {prefix}/{AccountSid}/{YYYY}/{MM}/{RecordingSid}.wav.",
    )
    delete_at_twilio_after_archive = models.BooleanField(
        default=False,
        help_text="Delete the recording at Twilio once the stored copy is verified.",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["account_sid"]
        verbose_name_plural = "archive policies"

    def __str__(self) -> str:
        return self.account_sid or "default (all accounts)"


class RetentionPolicy(models.Model):
    """Keep recordings in scope for ``keep_days`` after they started, then delete them: soft
    first (hidden from playback), hard ``hard_delete_grace_days`` later (media deleted from
    storage and Twilio, the metadata row kept as ``deleted``). Empty scope lists match any."""

    name = models.CharField(max_length=100, unique=True)
    enabled = models.BooleanField(default=True)
    account_sids = models.JSONField(
        "account SIDs", default=list, blank=True, help_text="Empty: every account."
    )
    sources = models.JSONField(
        default=list, blank=True, help_text="Recording sources, e.g. Conference; empty: any."
    )
    keep_days = models.PositiveIntegerField(help_text="Days a recording is kept after it started.")
    # Restricted recordings (HR matter, PCI…) may need keeping longer or shorter than the rest
    # of the policy's scope (recordings.lifecycle.retention); legal holds still always win.
    restricted_keep_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Days a restricted recording is kept after it started; empty: as keep_days.",
    )
    hard_delete_grace_days = models.PositiveIntegerField(
        default=7, help_text="Days between hiding a recording and deleting its media."
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "retention policies"

    def __str__(self) -> str:
        return self.name


class LegalHold(models.Model):
    """Recordings that must not be deleted, by anything, while the hold is active (not
    released): named recordings, every recording of named calls, and/or recordings that started
    in a date range. Holds are released, never deleted, so their history stays."""

    reason = models.TextField()
    case_reference = models.CharField(max_length=200, blank=True)
    # The case around the hold (issue 15): what the matter is called, whose recordings it
    # concerns (names or e-mails, as counsel gives them) and the officer's notes.
    matter_name = models.CharField(max_length=200, blank=True)
    custodians = models.JSONField(default=list, blank=True)
    notes = models.TextField(blank=True)
    recording_sids = models.JSONField("recording SIDs", default=list, blank=True)
    call_sids = models.JSONField("call SIDs", default=list, blank=True)
    started_from = models.DateTimeField(
        null=True, blank=True, help_text="Recordings that started at or after this time."
    )
    started_until = models.DateTimeField(
        null=True, blank=True, help_text="Recordings that started before this time."
    )
    created_by = models.CharField(max_length=150, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    released_at = models.DateTimeField(null=True, blank=True, editable=False, db_index=True)
    released_by = models.CharField(max_length=150, blank=True, editable=False)
    release_reason = models.TextField(blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        label = self.case_reference or f"hold {self.pk}"
        return f"{label} (released)" if self.released_at else label

    @property
    def is_active(self) -> bool:
        """True until the hold is released."""
        return self.released_at is None

    def clean(self) -> None:
        """A hold must name what it holds: SID lists of strings, and/or a sensible date range."""
        errors: dict[str, str] = {}
        for name in ("recording_sids", "call_sids"):
            value = getattr(self, name)
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                errors[name] = 'A JSON list of SIDs, e.g. ["RE…"].'
        if self.started_from and self.started_until and self.started_from >= self.started_until:
            errors["started_until"] = "Must be after the start of the range."
        if not errors and not (
            self.recording_sids or self.call_sids or self.started_from or self.started_until
        ):
            errors["recording_sids"] = "Name recordings, calls or a date range to hold."
        if not isinstance(self.custodians, list) or not all(
            isinstance(v, str) for v in self.custodians
        ):
            errors["custodians"] = "A list of names or e-mail addresses."
        if errors:
            raise ValidationError(errors)


class HoldLockState(models.TextChoices):
    """Where one held object's S3 Object Lock legal hold stands, for one hold."""

    LOCKED = "locked", "locked"
    RELEASED = "released", "released"
    FAILED = "failed", "failed (retried)"
    NOT_ENABLED = "not_enabled", "Object Lock not enabled on the bucket"


class HoldObjectLock(models.Model):
    """The S3 Object Lock legal hold that one legal hold put on one recording's stored object
    (``recordings.lifecycle.hold_locks``): set when the hold covers it, cleared at release
    unless another active hold still covers it. A failure stays here, shown on the case page,
    until the reconcile succeeds."""

    hold = models.ForeignKey(LegalHold, on_delete=models.PROTECT, related_name="object_locks")
    recording = models.ForeignKey(Recording, on_delete=models.CASCADE, related_name="+")
    bucket = models.CharField(max_length=63)
    key = models.CharField(max_length=1024)
    version_id = models.CharField(max_length=1024, blank=True)
    state = models.CharField(max_length=16, choices=HoldLockState.choices)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["hold", "recording"], name="hold_lock_once"),
        ]
        indexes = [models.Index(fields=["hold", "state"], name="hold_lock_state_idx")]

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key} {self.state}"


class HoldDerivedLock(models.Model):
    """Where the S3 Object Lock legal hold of one derived file (a waveform's ``peaks.json`` or
    ``segments.json``, ``recordings.analysis``) stands for one hold
    (``recordings.lifecycle.hold_derived_locks``). Derived files are named by the audio's
    SHA-256, so one file may serve several recordings: the row is per object, and
    ``recording`` is the held recording it was first locked for."""

    hold = models.ForeignKey(LegalHold, on_delete=models.PROTECT, related_name="derived_locks")
    recording = models.ForeignKey(Recording, on_delete=models.CASCADE, related_name="+")
    media_sha256 = models.CharField(max_length=64)
    bucket = models.CharField(max_length=63)
    key = models.CharField(max_length=1024)
    version_id = models.CharField(max_length=1024, blank=True)
    state = models.CharField(max_length=16, choices=HoldLockState.choices)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["hold", "bucket", "key"], name="hold_derived_lock_once"
            ),
        ]
        indexes = [models.Index(fields=["hold", "state"], name="hold_derived_state_idx")]

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key} {self.state}"


# --- Flex linkage: what TaskRouter tells the portal about the conversations it records ---------
#
# Written only by recordings.flex (events, directory sync, linking, media attachment). Rows are
# keyed by Twilio's SIDs; every row that events update carries ``last_event_ms`` (TaskRouter's
# event time) so that an older event arriving late never overwrites what a newer one said.


class TaskRouterEvent(models.Model):
    """One TaskRouter event callback (the Workspace's ``EventCallbackUrl``), stored before
    anything else happens, exactly like ``RecordingEvent``: with the broker down it stays
    ``pending`` for the dispatcher; Twilio's retries and replays land on the same row
    (``event_key`` is the event's ``Sid`` when TaskRouter sends one, else a digest of the
    parameters)."""

    event_key = models.CharField(max_length=64, unique=True)
    event_type = models.CharField(max_length=64, db_index=True)
    account_sid = models.CharField(max_length=34)
    workspace_sid = models.CharField(max_length=34)
    resource_sid = models.CharField(max_length=34, blank=True, db_index=True)
    event_ms = models.BigIntegerField(
        null=True, blank=True, help_text="When TaskRouter says the event happened (epoch ms)."
    )
    payload = models.JSONField(help_text="Every parameter of the callback, as received.")
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    deliveries = models.PositiveIntegerField(default=1)
    state = models.CharField(max_length=16, choices=EventState.choices, default=EventState.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_error = models.TextField(blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        verbose_name = "TaskRouter event"
        indexes = [models.Index(fields=["state", "next_attempt_at"], name="tr_event_due_idx")]

    def __str__(self) -> str:
        return f"{self.event_type} {self.resource_sid}"


class FlexTaskQueue(models.Model):
    """A TaskRouter TaskQueue (``WQ…``): rules name queues by SID or by name."""

    sid = models.CharField("TaskQueue SID", max_length=34, unique=True)
    workspace_sid = models.CharField(max_length=34)
    friendly_name = models.CharField(max_length=255, blank=True)
    synced_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["friendly_name", "sid"]
        verbose_name = "Flex task queue"

    def __str__(self) -> str:
        return self.friendly_name or self.sid


class FlexWorker(models.Model):
    """A TaskRouter Worker (``WK…``): a Flex agent, with the attributes Flex Insights reads
    for agents. ``friendly_name`` is the agent's Flex identity (``sam_40example_2Ecom``);
    ``email`` and ``full_name`` are how officers know them."""

    sid = models.CharField("worker SID", max_length=34, unique=True)
    workspace_sid = models.CharField(max_length=34)
    friendly_name = models.CharField(max_length=255, blank=True, db_index=True)
    full_name = models.CharField(max_length=255, blank=True)
    email = models.CharField(max_length=255, blank=True, db_index=True)
    team_id = models.CharField(max_length=255, blank=True)
    team_name = models.CharField(max_length=255, blank=True, db_index=True)
    department_name = models.CharField(max_length=255, blank=True)
    location = models.CharField(max_length=255, blank=True)
    manager = models.CharField(max_length=255, blank=True)
    roles = models.JSONField(default=list, blank=True)
    attributes = models.JSONField(default=dict, blank=True, help_text="As TaskRouter holds them.")
    deleted_at = models.DateTimeField(null=True, blank=True)
    last_event_ms = models.BigIntegerField(default=0)
    synced_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["full_name", "friendly_name", "sid"]
        verbose_name = "Flex worker"

    def __str__(self) -> str:
        return self.full_name or self.friendly_name or self.sid


class MediaAttachState(models.TextChoices):
    """Where writing a recording into its Flex conversation's ``conversations.media`` stands."""

    PENDING = "pending", "pending"
    ATTACHED = "attached", "attached"
    TASK_GONE = "task_gone", "task gone at Twilio"
    FAILED = "failed", "failed"
    OFF = "off", "off (FLEX_MEDIA_LEVEL=off)"


class FlexTask(models.Model):
    """A TaskRouter Task (``WT…``): one Flex conversation. ``call_sid`` and ``conference_sid``
    come from the task attributes (``call_sid``, ``conference.sid``); the calls of every
    conference participant are in ``FlexTaskCall``."""

    sid = models.CharField("task SID", max_length=34, unique=True)
    workspace_sid = models.CharField(max_length=34)
    channel = models.CharField(max_length=64, blank=True)
    call_sid = models.CharField(max_length=34, blank=True, db_index=True)
    conference_sid = models.CharField(max_length=34, blank=True, db_index=True)
    queue_sid = models.CharField(max_length=34, blank=True)
    queue_name = models.CharField(max_length=255, blank=True)
    assignment_status = models.CharField(max_length=32, blank=True)
    attributes = models.JSONField(default=dict, blank=True, help_text="As last seen.")
    created_at_twilio = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    canceled_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(
        null=True, blank=True, help_text="When the portal learned the task is gone at Twilio."
    )
    last_event_ms = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at_twilio", "-id"]
        verbose_name = "Flex task"

    def __str__(self) -> str:
        return self.sid


class FlexTaskCall(models.Model):
    """A call that belongs to a task: its own call and each conference participant's."""

    task = models.ForeignKey(FlexTask, on_delete=models.CASCADE, related_name="calls")
    call_sid = models.CharField(max_length=34, db_index=True)
    role = models.CharField(max_length=64, blank=True, help_text="customer, worker, …")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["task", "call_sid"], name="one_row_per_task_call")
        ]

    def __str__(self) -> str:
        return f"{self.task.sid} {self.call_sid}"


class FlexReservation(models.Model):
    """A TaskRouter Reservation (``WR…``): one offer of a task to one worker. Transfers give a
    task several; the accepted ones say who handled the conversation."""

    sid = models.CharField("reservation SID", max_length=34, unique=True)
    task = models.ForeignKey(FlexTask, on_delete=models.CASCADE, related_name="reservations")
    worker_sid = models.CharField(max_length=34, db_index=True)
    worker_name = models.CharField(max_length=255, blank=True)
    team_name = models.CharField(
        max_length=255,
        blank=True,
        help_text="The worker's team when they handled the task (from the event's worker "
        "attributes, else the directory); kept when the worker changes team later.",
    )
    status = models.CharField(max_length=32, blank=True)
    created_at_twilio = models.DateTimeField(null=True, blank=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    wrapup_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    last_event_ms = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["created_at_twilio", "id"]
        verbose_name = "Flex reservation"

    def __str__(self) -> str:
        return self.sid


class RecordingTaskLink(models.Model):
    """A recording linked to the task (conversation) that handled it, and the state of writing
    the recording into that task's ``conversations.media`` (or its reservations' attributes)."""

    recording = models.ForeignKey(Recording, on_delete=models.CASCADE, related_name="task_links")
    task = models.ForeignKey(FlexTask, on_delete=models.CASCADE, related_name="recording_links")
    matched_by = models.CharField(
        max_length=16, help_text="call_sid, participant or conference: how the link was found."
    )
    linked_at = models.DateTimeField(default=timezone.now)
    attach_state = models.CharField(
        max_length=16, choices=MediaAttachState.choices, default=MediaAttachState.PENDING
    )
    attach_attempts = models.PositiveIntegerField(default=0)
    attach_error = models.TextField(blank=True)
    attached_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["linked_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["recording", "task"], name="one_link_per_task")
        ]
        indexes = [
            models.Index(fields=["attach_state", "next_attempt_at"], name="link_attach_due_idx")
        ]

    def __str__(self) -> str:
        return f"{self.recording.sid} → {self.task.sid}"


class AnalysisState(models.TextChoices):
    """How a recording's waveform and speech analysis ended."""

    DONE = "done", "done"
    FAILED = "failed", "failed"


class RecordingAnalysis(models.Model):
    """A recording's waveform and speech activity (``recordings.analysis``): the summary figures
    the dashboard and filters read; the peaks and segments themselves are derived files in
    storage, keyed by ``media_sha256`` (the SHA-256 of the audio file as played)."""

    recording = models.OneToOneField(Recording, on_delete=models.CASCADE, related_name="analysis")
    state = models.CharField(max_length=16, choices=AnalysisState.choices)
    error = models.TextField(blank=True)
    algorithm = models.PositiveSmallIntegerField(help_text="Version of the analysis that ran.")
    media_sha256 = models.CharField(max_length=64, blank=True, db_index=True)
    analysed_at = models.DateTimeField(default=timezone.now)
    duration_seconds = models.FloatField(null=True, blank=True)
    channels = models.PositiveSmallIntegerField(null=True, blank=True)
    sample_rate = models.PositiveIntegerField(null=True, blank=True)
    agent_talk_ratio = models.FloatField(
        null=True, blank=True, help_text="Agent's share of the time anyone spoke (dual-channel)."
    )
    customer_talk_ratio = models.FloatField(null=True, blank=True)
    silence_seconds = models.FloatField(null=True, blank=True)
    silence_ratio = models.FloatField(null=True, blank=True)
    longest_silence_seconds = models.FloatField(null=True, blank=True, db_index=True)
    cross_talk_seconds = models.FloatField(null=True, blank=True)
    cross_talk_ratio = models.FloatField(null=True, blank=True, db_index=True)
    interruptions = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "recording analyses"

    def __str__(self) -> str:
        return f"analysis of {self.recording_id} ({self.state})"


class EvidencePackage(models.Model):
    """An evidence package of recordings (``recordings.lifecycle.evidence_package``), written by
    a background job to the exports storage and downloaded through the portal: the media as
    stored, optionally decrypted, with a signed manifest an outsider verifies offline.

    The selection is kept by SID (what the manifest names); ``hold`` is the legal hold (case)
    it was made for, when there was one. The package's own SHA-256 is kept here and in its
    ``admin_export`` access-log row.
    """

    requested_at = models.DateTimeField(default=timezone.now, db_index=True)
    requested_by = models.CharField(max_length=150, help_text="The exporter's username.")
    reason = models.TextField(help_text="Why the package is made (in its manifest and log row).")
    include_decrypted = models.BooleanField(default=False)
    recording_sids = models.JSONField("recording SIDs", default=list)
    hold = models.ForeignKey(
        LegalHold, null=True, blank=True, on_delete=models.PROTECT, related_name="packages"
    )
    state = models.CharField(max_length=8, default="queued")
    file_name = models.CharField(max_length=255, blank=True)
    size = models.PositiveBigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    # When the running job started: a job still running long after (its worker died) is
    # marked failed by recordings.lifecycle.evidence_sweep.
    started_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-requested_at", "-id"]

    def __str__(self) -> str:
        return f"evidence package {self.pk} ({self.state})"


class RestrictionRule(models.Model):
    """Restrict recordings by their facts (``recordings.lifecycle.restriction_rules``): every
    recording whose facts match is marked restricted with the rule's ``reason`` when it is
    synced or linked to its Flex conversation, or at once from the admin after a preview.

    Each non-empty list must match (one of its values); empty lists match any recording, but
    a rule names at least one fact. A rule only ever restricts: lifting is by hand, audited.
    """

    name = models.CharField(max_length=100, unique=True)
    reason = models.TextField(
        help_text="The restriction's reason, e.g. HR matter (on each recording, in the log)."
    )
    enabled = models.BooleanField(default=True)
    account_sids = models.JSONField("account SIDs", default=list, blank=True)
    sources = models.JSONField(
        default=list, blank=True, help_text="Recording sources, e.g. Conference."
    )
    call_sids = models.JSONField("call SIDs", default=list, blank=True)
    queues = models.JSONField(
        default=list, blank=True, help_text="TaskQueue SIDs (WQ…) or names of the conversation."
    )
    teams = models.JSONField(
        default=list, blank=True, help_text="Teams of the workers who handled it."
    )
    workers = models.JSONField(
        default=list, blank=True, help_text="Worker SIDs (WK…) who handled it."
    )
    min_duration_seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="Only recordings at least this long."
    )
    created_by = models.CharField(max_length=150, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    LIST_FIELDS = ("account_sids", "sources", "call_sids", "queues", "teams", "workers")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        """Lists of non-empty strings (SIDs of the right kind where they are SIDs), a reason,
        and at least one fact named: a rule matching everything is a mistake, not a rule."""
        patterns = {
            "account_sids": (sids.ACCOUNT_SID, "AC"),
            "call_sids": (sids.CALL_SID, "CA"),
            "workers": (sids.WORKER_SID, "WK"),
        }
        errors: dict[str, str] = {}
        for name in self.LIST_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, list) or not all(
                isinstance(v, str) and v.strip() and "\x00" not in v for v in value
            ):
                errors[name] = 'A JSON list of non-empty strings, e.g. ["…"].'
                continue
            if name in patterns:
                pattern, prefix = patterns[name]
                wrong = [v for v in value if not sids.is_sid(pattern, v)]
                if wrong:
                    errors[name] = f"Not a {prefix}… SID: {wrong[0][:40]}"
        if not str(self.reason or "").strip():
            errors["reason"] = "Say why the recordings it matches are restricted."
        if (
            not errors
            and self.min_duration_seconds is None
            and not any(getattr(self, name) for name in self.LIST_FIELDS)
        ):
            errors["account_sids"] = "Name at least one fact to match (a rule cannot match all)."
        if errors:
            raise ValidationError(errors)
