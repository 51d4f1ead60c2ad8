"""Configuring where Twilio stores media and which keys it encrypts with: Video
``RecordingSettings``/``CompositionSettings``, AWS credentials and public keys at Twilio.

Validation mirrors Twilio's (so an officer hears about a mistake before Twilio refuses it),
every change is written to the access log (``twilio_config`` rows, with old and new values and
never a secret), and public keys at Twilio are matched with the private keys the portal holds:
a key registered at Twilio without its private key here means recordings encrypted with it can
never be played. Calls to Twilio go through ``recordings.integrations.twilio_api``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from audit.models import AccessAction, AccessOutcome
from audit.services import access_log_append
from recordings.custody import keys
from recordings.integrations import twilio_api
from recordings.integrations.twilio_api import TwilioCredential, TwilioError, VideoStorageSettings
from recordings.models import PrivateKey

CREDENTIAL_SID = re.compile(r"CR[0-9a-fA-F]{32}")
FRIENDLY_NAME_MAX_LENGTH = 64
# RFC 3986: unreserved, reserved and percent-encoded characters, nothing else.
_RFC3986 = re.compile(r"(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})*")
_DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_ACCESS_KEY_ID = re.compile(r"[A-Z0-9]{16,128}")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


# --- Validation ------------------------------------------------------------------------------


def friendly_name_problem(name: str) -> str | None:
    """Why Twilio would refuse ``name`` as a ``FriendlyName`` of the settings, or ``None``."""
    if not name.strip():
        return "Twilio requires a friendly name."
    if len(name) > FRIENDLY_NAME_MAX_LENGTH:
        return f"At most {FRIENDLY_NAME_MAX_LENGTH} characters."
    return None


def credential_sid_problem(sid: str) -> str | None:
    """Why ``sid`` is not a credential SID (``CR`` and 32 hex digits), or ``None``."""
    return None if CREDENTIAL_SID.fullmatch(sid) else "A SID is CR followed by 32 hex digits."


def aws_s3_url_problem(url: str) -> str | None:
    """Why Twilio would refuse ``url`` as ``AwsS3Url``, or ``None``: an ``https`` URL whose
    host is DNS-compliant (lowercase labels of letters, digits and hyphens), written only with
    RFC 3986 characters, with no user, port, query or fragment."""
    if not _RFC3986.fullmatch(url):
        return "Use only RFC 3986 characters (percent-encode anything else)."
    parts = urlsplit(url)
    if parts.scheme != "https":
        return "The URL must start with https://."
    if parts.username or parts.password or parts.port is not None:
        return "The URL must not carry a user, a password or a port."
    if parts.query or parts.fragment or "?" in url or "#" in url:
        return "The URL must not have a query or a fragment."
    host = parts.netloc
    labels = host.split(".")
    if not host or len(host) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in labels):
        return (
            "The host must be DNS-compliant: lowercase letters, digits and hyphens in "
            "dot-separated labels, e.g. https://my-bucket.s3.us-east-1.amazonaws.com/recordings."
        )
    return None


def video_settings_problems(new: VideoStorageSettings) -> dict[str, str]:
    """Every field of ``new`` Twilio would refuse, with a sentence each (empty when valid)."""
    problems: dict[str, str] = {}
    if problem := friendly_name_problem(new.friendly_name):
        problems["friendly_name"] = problem
    for name in ("aws_credentials_sid", "encryption_key_sid"):
        value = getattr(new, name)
        if value and (problem := credential_sid_problem(value)):
            problems[name] = problem
    if new.aws_s3_url and (problem := aws_s3_url_problem(new.aws_s3_url)):
        problems["aws_s3_url"] = problem
    if new.aws_storage_enabled:
        if not new.aws_credentials_sid:
            problems.setdefault("aws_credentials_sid", "Storing in S3 needs AWS credentials.")
        if not new.aws_s3_url:
            problems.setdefault("aws_s3_url", "Storing in S3 needs the bucket's URL.")
    if new.encryption_enabled and not new.encryption_key_sid:
        problems.setdefault("encryption_key_sid", "Encryption needs a public key SID.")
    return problems


def video_settings_warnings(new: VideoStorageSettings) -> list[str]:
    """Valid but worth a second look: an encryption key whose private key the portal lacks."""
    warnings = []
    if new.encryption_key_sid and not private_key_held(new.encryption_key_sid):
        warnings.append(
            f"The portal holds no private key for {new.encryption_key_sid}: media encrypted "
            "with it could not be played here."
        )
    return warnings


# --- Audit -----------------------------------------------------------------------------------


def _loggable(value: Any) -> Any:
    """A value for the log's ``detail``: URLs lose their scheme (the log holds no links)."""
    return _SCHEME.sub("", value) if isinstance(value, str) else value


def _settings_values(values: VideoStorageSettings | None) -> dict[str, Any] | None:
    if values is None:
        return None
    return {name: _loggable(value) for name, value in asdict(values).items()}


def _config_log(
    *,
    reason_code: str,
    outcome: str,
    actor: str,
    context: Mapping[str, Any],
    detail: dict[str, Any],
) -> None:
    access_log_append(
        action=AccessAction.TWILIO_CONFIG,
        outcome=outcome,
        reason_code=reason_code,
        identity=actor,
        detail=detail,
        **context,
    )


# --- Video settings --------------------------------------------------------------------------


def video_settings_change(
    *,
    kind: str,
    new: VideoStorageSettings,
    actor: str,
    context: Mapping[str, Any],
) -> VideoStorageSettings:
    """Validate ``new``, send it to Twilio and log the change with old and new values.

    Raises ``ValueError`` (with the problems) before calling Twilio when ``new`` is invalid, and
    :class:`twilio_api.TwilioError` when Twilio refuses or cannot be reached; a refused
    change is logged too (outcome ``error``), so attempts leave a trace.
    """
    problems = video_settings_problems(new)
    if problems:
        raise ValueError("; ".join(f"{name}: {text}" for name, text in problems.items()))
    reason = f"video_{kind}_settings_updated"
    try:
        old = twilio_api.video_settings_fetch(kind=kind)
    except TwilioError:
        old = None
    try:
        stored = twilio_api.video_settings_update(kind=kind, new=new)
    except TwilioError as exc:
        _config_log(
            reason_code=reason,
            outcome=AccessOutcome.ERROR,
            actor=actor,
            context=context,
            detail={"kind": kind, "twilio_status": exc.status, "new": _settings_values(new)},
        )
        raise
    _config_log(
        reason_code=reason,
        outcome=AccessOutcome.ALLOWED,
        actor=actor,
        context=context,
        detail={"kind": kind, "old": _settings_values(old), "new": _settings_values(stored)},
    )
    return stored


# --- Credentials -----------------------------------------------------------------------------


def private_key_held(public_key_sid: str) -> bool:
    """True when the portal holds the private key for the public key ``public_key_sid``."""
    return PrivateKey.objects.filter(public_key_sid=public_key_sid).exists()


@dataclass(frozen=True)
class PublicKeyEntry:
    """A public key registered at Twilio and the private key the portal holds for it (or
    ``None``: then nothing encrypted with it can be played here)."""

    credential: TwilioCredential
    private_key: PrivateKey | None


@dataclass(frozen=True)
class CredentialsOverview:
    """What the credentials page shows: Twilio's AWS credentials and public keys, the latter
    matched with the portal's private keys, and the portal's keys Twilio does not know."""

    aws: list[TwilioCredential]
    public_keys: list[PublicKeyEntry]
    unregistered: list[PrivateKey]

    @property
    def orphaned(self) -> list[PublicKeyEntry]:
        """Public keys at Twilio whose private key the portal does not hold."""
        return [entry for entry in self.public_keys if entry.private_key is None]


def credentials_overview() -> CredentialsOverview:
    """Both credential lists from Twilio (two calls) and the portal's private keys (one query).

    Raises :class:`twilio_api.TwilioError` when Twilio cannot be asked.
    """
    aws = twilio_api.credentials_list(kind="aws")
    registered = twilio_api.credentials_list(kind="public_key")
    held = {key.public_key_sid: key for key in PrivateKey.objects.all()}
    known = {credential.sid for credential in registered}
    return CredentialsOverview(
        aws=aws,
        public_keys=[PublicKeyEntry(item, held.get(item.sid)) for item in registered],
        unregistered=[key for sid, key in held.items() if not sid or sid not in known],
    )


def access_key_id_problem(access_key_id: str) -> str | None:
    """Why ``access_key_id`` is not an AWS access key id, or ``None``."""
    if not _ACCESS_KEY_ID.fullmatch(access_key_id):
        return "An access key id is 16 or more uppercase letters and digits, e.g. AKIA…"
    return None


def aws_credential_register(
    *,
    access_key_id: str,
    secret_access_key: str,
    friendly_name: str,
    actor: str,
    context: Mapping[str, Any],
) -> TwilioCredential:
    """Give Twilio an AWS access key for writing to the customer's bucket, and log it.

    The secret is passed to Twilio and dropped: not stored, not logged (the log row names the
    credential's SID and the last four characters of the access key id).
    """
    credential = twilio_api.aws_credential_create(
        access_key_id=access_key_id,
        secret_access_key=secret_access_key,
        friendly_name=friendly_name,
    )
    _config_log(
        reason_code="aws_credential_created",
        outcome=AccessOutcome.ALLOWED,
        actor=actor,
        context=context,
        detail={
            "sid": credential.sid,
            "friendly_name": credential.friendly_name,
            "access_key_id_ending": access_key_id[-4:],
        },
    )
    return credential


def aws_credential_remove(*, sid: str, actor: str, context: Mapping[str, Any]) -> None:
    """Delete an AWS credential at Twilio, and log it."""
    twilio_api.aws_credential_delete(sid=sid)
    _config_log(
        reason_code="aws_credential_deleted",
        outcome=AccessOutcome.ALLOWED,
        actor=actor,
        context=context,
        detail={"sid": sid},
    )


def public_key_problem(pem: str) -> str | None:
    """Why ``pem`` is not an RSA ``-----BEGIN PUBLIC KEY-----`` block Twilio accepts, or None."""
    text = pem.strip()
    if not text.startswith("-----BEGIN PUBLIC KEY-----"):
        return "Paste a PEM block starting with -----BEGIN PUBLIC KEY----- (SubjectPublicKeyInfo)."
    try:
        key = load_pem_public_key(text.encode())
    except (ValueError, TypeError):
        return "This is not a readable public key."
    if not isinstance(key, rsa.RSAPublicKey):
        return "Twilio needs an RSA public key."
    if key.key_size < 2048:
        return "Use an RSA key of at least 2048 bits."
    return None


def public_key_register(
    *,
    friendly_name: str,
    actor: str,
    context: Mapping[str, Any],
    private_key: PrivateKey | None = None,
    pem: str = "",
) -> tuple[str, PrivateKey | None]:
    """Register a public key at Twilio: the public half of a private key the portal holds
    (``private_key``), or a pasted ``pem``. A pasted key whose private half the portal holds is
    linked to it all the same. Answers the new SID and the linked private key (``None``: the
    portal cannot decrypt what is encrypted with it). Logged.
    """
    if private_key is not None:
        pem = private_key.public_key_pem
    loaded = load_pem_public_key(pem.strip().encode())
    if not isinstance(loaded, rsa.RSAPublicKey):
        raise ValueError("Twilio needs an RSA public key")
    fingerprint = keys.public_key_fingerprint(loaded)
    sid = twilio_api.public_key_create(pem=pem.strip(), friendly_name=friendly_name)
    linked = PrivateKey.objects.filter(fingerprint=fingerprint).first()
    if linked is not None and not linked.public_key_sid:
        linked = keys.private_key_assign_sid(fingerprint=fingerprint, public_key_sid=sid)
    elif linked is not None and linked.public_key_sid != sid:
        linked = None  # the portal's key is registered under another SID already
    _config_log(
        reason_code="public_key_created",
        outcome=AccessOutcome.ALLOWED,
        actor=actor,
        context=context,
        detail={
            "sid": sid,
            "friendly_name": friendly_name,
            "fingerprint": fingerprint,
            "private_key_held": linked is not None,
        },
    )
    return sid, linked


def public_key_remove(*, sid: str, actor: str, context: Mapping[str, Any]) -> None:
    """Delete a public key at Twilio (new media is no longer encrypted with it; the portal's
    private key, if any, stays, so what was encrypted with it can still be played). Logged."""
    twilio_api.public_key_delete(sid=sid)
    _config_log(
        reason_code="public_key_deleted",
        outcome=AccessOutcome.ALLOWED,
        actor=actor,
        context=context,
        detail={"sid": sid, "private_key_held": private_key_held(sid)},
    )
