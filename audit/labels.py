"""The words an officer reads for the codes the access log keeps: one place for every action
and reason label, and for which actions are player activity and which are staff's.

The log stores short machine codes (``no_matching_rule``); pages, filters and exports show
these labels instead. ``audit/tests/test_labels.py`` reads the source for every code the
portal can write and fails on one without a label here. A code the portal no longer writes,
found in an old row, is shown as itself (never as "-").

``AccessAction``'s own choice labels stay as they are: changing them would need a migration
and they are not what an officer reads.
"""

from __future__ import annotations

from audit.models import AccessAction

ACTION_LABELS: dict[str, str] = {
    AccessAction.URL_PROVIDER: "Player asked for a recording",
    AccessAction.MEDIA_FETCH: "Media fetched",
    AccessAction.MEDIA_PLAYBACK: "Playback (a link's fetches)",
    AccessAction.WAVEFORM_VIEW: "Waveform viewed",
    AccessAction.ADMIN_VIEW: "Admin page viewed",
    AccessAction.ADMIN_EXPORT: "Exported by staff (log, report or evidence package)",
    AccessAction.ADMIN_LOGIN: "Admin login",
    AccessAction.RULE_CHANGE: "Access rule changed",
    AccessAction.TWILIO_CONFIG: "Twilio storage configuration",
    AccessAction.PRIVATE_KEY_DELETE: "Private key deleted",
    AccessAction.LEGAL_HOLD: "Legal hold",
    AccessAction.RETENTION_POLICY: "Retention policy changed",
    AccessAction.RETENTION_DELETE: "Recording deleted",
    AccessAction.RECORDING_SYNC: "Recording synced from Twilio",
    AccessAction.CHAIN_VERIFY: "Audit log verified",
    AccessAction.MEDIA_VERIFY: "Media integrity check",
    AccessAction.FLEX_MEDIA_ATTACH: "Recording attached to its Flex conversation",
    AccessAction.FLEX_DIRECTORY_SYNC: "Flex workers and queues synced",
    AccessAction.ACCESS_REQUEST: "Access request (four eyes)",
    AccessAction.RECORDING_RESTRICT: "Recording restricted or released",
    AccessAction.CONTROL_CHANGE: "Change needing a second approver",
    AccessAction.ACCESS_REVIEW: "Periodic access review",
}

# What players (the Flex Insights Player and the portal's media endpoint) do; everything else
# is staff in the admin or the portal's own processes (PCI DSS 10.2.1.3 keeps both).
PLAYER_ACTIONS: tuple[str, ...] = (
    AccessAction.URL_PROVIDER,
    AccessAction.MEDIA_FETCH,
    AccessAction.MEDIA_PLAYBACK,
    AccessAction.WAVEFORM_VIEW,
)

REASON_LABELS: dict[str, str] = {
    # url_provider's decision and answers
    "allowed_by_rule": "a rule allows it",
    "denied_by_rule": "a rule denies it",
    "no_matching_rule": "no rule allows it",
    "allowed_by_grant": "an approved access request allows it",
    "restricted_no_grant": "restricted recording, no grant",
    # access requests and restricted recordings
    "grant_requested": "access requested",
    "grant_approved": "access request approved",
    "grant_refused": "access request refused",
    "grant_revoked": "access grant revoked",
    # changes that weaken control, held for a second staff member (maker/checker)
    "change_proposed": "change proposed, awaiting a second approver",
    "change_approved": "change approved and applied",
    "change_refused": "change refused",
    "change_withdrawn": "change withdrawn by its proposer",
    "change_stale": "change not applied: its target changed since it was proposed",
    "change_failed": "change approved but could not be applied",
    "change_page": "change awaiting approval viewed",
    "change_denied": "refused: may not decide this change (own change, no permission, decided)",
    "anchoring_paused": "seal anchoring paused",
    "anchoring_resumed": "seal anchoring resumed",
    "recording_restricted": "recording restricted",
    "recording_unrestricted": "recording restriction lifted",
    "restricted_by_rule": "recording restricted by a restriction rule",
    "restriction_rule": "restriction rule changed",
    # periodic access reviews
    "review_opened": "access review built and assigned",
    "review_signed_off": "access review signed off",
    "review_reassigned": "access review reassigned",
    "review_exported": "access review exported",
    "review_page": "access review viewed",
    "review_list": "access reviews list",
    "missing_recording_sid": "no recording SID given",
    "malformed_recording_sid": "not a recording SID",
    "missing_token": "no Flex token",
    "malformed_authorization": "malformed Authorization header",
    "invalid_token": "Flex token not valid",
    "expired_token": "Flex token expired",
    "token_validation_unavailable": "Twilio could not check the token",
    "recording_not_found": "no such recording",
    "recording_deleted": "recording deleted",
    "no_media": "recording has no media",
    "playback_started": "playback started",
    "playback_summary": "playback summary",
    "admin_player": "from the admin's player",
    "method_not_allowed": "method not allowed",
    "waveform_not_ready": "waveform not ready yet",
    # media
    "media_error": "media error",
    "media_not_found": "media not found",
    "storage_unavailable": "storage unavailable",
    "media_integrity_failed": "media failed its integrity check",
    "media_tampered": "media was tampered with",
    "media_changed": "media changed since it was stored",
    "range_not_satisfiable": "requested range outside the media",
    "decryption_key_unavailable": "decryption key not held",
    "decryption_key_mismatch": "decryption key does not match",
    "encryption_details_invalid": "encryption details not valid",
    "encryption_unsupported": "encryption not supported",
    # staff in the admin
    "access_log_list": "access log list",
    "access_log_entry": "access log entry",
    "access_log_csv": "CSV export queued",
    "access_log_jsonl": "JSON Lines export queued",
    "access_log_download": "export downloaded",
    "evidence_package": "evidence package written",
    "evidence_package_recording": "recording put in an evidence package",
    "evidence_package_requested": "evidence package asked for",
    "evidence_package_download": "evidence package downloaded",
    "evidence_package_abandoned": "evidence package job lost (worker gone), marked failed",
    "dashboard": "dashboard",
    "identity_activity": "a person's activity",
    "playback_report": "playback report",
    "playback_report_csv": "playback report exported as CSV",
    "playback_report_pdf": "playback report exported as PDF",
    "playback_report_download": "playback report export downloaded",
    "recording_page": "recording page",
    "rule_history": "a rule's change history",
    "admin": "by staff in the admin",
    "permission": "refused: no permission",
    "login": "logged in",
    "bad_password": "wrong password",
    "bad_otp": "wrong authenticator code",
    "not_staff": "not a staff account",
    "locked_out": "refused: address locked out",
    "throttle_unavailable": "refused: failed logins could not be counted (cache down)",
    "lockout": "address locked out after failed logins",
    # rules, configuration, retention
    "rule_created": "rule created",
    "rule_updated": "rule changed",
    "rule_disabled": "rule disabled",
    "archive_policy": "archive policy changed",
    "aws_credential_created": "AWS credential created at Twilio",
    "aws_credential_deleted": "AWS credential deleted at Twilio",
    "public_key_created": "public key created at Twilio",
    "public_key_deleted": "public key deleted at Twilio",
    "video_recording_settings_updated": "Video recording settings changed",
    "video_composition_settings_updated": "Video composition settings changed",
    "created": "created",
    "changed": "changed",
    "deleted": "deleted",
    "legal_hold": "kept by a legal hold",
    "released": "legal hold released",
    "lock_on": "S3 Object Lock legal hold set",
    "lock_off": "S3 Object Lock legal hold cleared",
    "lock_kept": "S3 lock kept (another hold covers it)",
    "lock_failed": "S3 Object Lock change failed (retried)",
    "lock_not_enabled": "bucket without Object Lock: held by the portal only",
    "case_view": "legal hold case viewed",
    "soft": "hidden (soft delete)",
    "hard": "media deleted (hard delete)",
    # the audit chain
    "chain_intact": "intact",
    "chain_changed": "a row was changed",
    "chain_deleted": "a row was deleted",
    "chain_inserted": "a row was inserted",
    "chain_forged": "a row has no valid MAC",
    "chain_digest_mismatch": "a digest does not match",
    "chain_seals": "a seal failed its check",
    "full_verification_requested": "full re-verification requested",
    "full_verification_resumed": "full re-verification resumed",
    # Flex
    "attached": "attached",
    "already_present": "already attached",
    "task_gone": "task gone at Twilio",
    "bad_attributes": "task attributes not readable",
    "gave_up": "gave up after retries",
    "retry_later": "will retry",
    "not_configured": "not configured",
    "twilio_rejected": "Twilio refused it",
    "twilio_unavailable": "Twilio unavailable",
    "not_playable": "recording cannot be played",
    "attach_requested": "attachment requested by staff",
}

# Reason codes built from a template (``f"rule_{change}"``): the values the blank takes.
REASON_FAMILIES: dict[str, tuple[str, ...]] = {
    "access_log_{}": ("csv", "jsonl"),
    "playback_report_{}": ("csv", "pdf"),
    "rule_{}": ("created", "updated", "disabled"),
    "chain_{}": ("intact", "changed", "deleted", "inserted", "forged", "digest_mismatch", "seals"),
    "video_{}_settings_updated": ("recording", "composition"),
}

# url_provider answers that say the recording does not exist: not a denial of access.
NOT_FOUND_REASONS: tuple[str, ...] = ("recording_not_found", "recording_deleted")


def action_label(code: str) -> str:
    """The label of action ``code``; an unknown code as itself."""
    return ACTION_LABELS.get(code, code)


def reason_label(code: str) -> str:
    """The label of reason ``code``; an unknown code as itself, no code as ``""``."""
    return REASON_LABELS.get(code, code)
