"""Twilio's webhook signatures: which auth tokens may sign a callback, the URL forms Twilio
signs, the form body read once in the shape Twilio's ``RequestValidator`` reads, and the check
itself (Twilio's own computation, compared in constant time).

Every webhook the portal accepts (recording status callbacks, and any later one) checks its
``X-Twilio-Signature`` here, so there is one copy of this code.
"""

from __future__ import annotations

import functools
import hmac
import json
import logging
from typing import Any
from urllib.parse import parse_qsl, urlparse

from django.conf import settings
from django.core.exceptions import TooManyFieldsSent
from django.http import HttpRequest
from twilio.request_validator import (
    SIGNATURE_SETTINGS_HEADER,
    RequestValidator,
    add_port,
    get_signature_algorithm,
    remove_port,
)

from portal.sealing import SealingError, unseal
from portal.sids import ACCOUNT_SID
from recordings.models import TwilioSubaccount

logger = logging.getLogger(__name__)


def public_url(request: HttpRequest) -> str:
    """The URL Twilio called, as Twilio saw it: behind a proxy, ``PUBLIC_BASE_URL`` gives the
    public scheme and host, since the signature covers them."""
    if settings.PUBLIC_BASE_URL:
        return settings.PUBLIC_BASE_URL + request.get_full_path()
    return request.build_absolute_uri()


def signing_tokens(account_sid: str) -> list[str]:
    """Auth tokens that may sign callbacks for ``account_sid``; empty when the account is
    neither the configured one nor one of its known subaccounts."""
    main = settings.TWILIO_AUTH_TOKEN
    if not main or not settings.TWILIO_ACCOUNT_SID:
        return []
    if account_sid == settings.TWILIO_ACCOUNT_SID:
        return [main]
    subaccount = TwilioSubaccount.objects.filter(sid=account_sid).first()
    if subaccount is None:
        return []
    tokens = [main]
    if subaccount.sealed_auth_token:
        try:
            tokens.insert(
                0,
                unseal(
                    subaccount.sealed_auth_token, purpose=f"subaccount-token:{subaccount.sid}"
                ).decode(),
            )
        except SealingError:
            logger.error("stored auth token of subaccount %s cannot be opened", subaccount.sid)
    return tokens


class FormFields(dict[str, list[str]]):
    """A form body's fields, every value of every name in order, in the shape Twilio's
    ``RequestValidator`` reads (``getall``, as for a Flask MultiDict)."""

    def getall(self, name: str) -> list[str]:
        """Every value sent under ``name``."""
        return self[name]


def form_fields(body: bytes, encoding: str) -> FormFields:
    """Parse an ``application/x-www-form-urlencoded`` body as Django's ``request.POST`` would
    (same decoding, blank values kept, ``DATA_UPLOAD_MAX_NUMBER_FIELDS`` enforced), without
    building a QueryDict: a callback's form is read once, by the signature check and the view."""
    try:
        text = body.decode(encoding)
    except UnicodeDecodeError:
        text = body.decode("iso-8859-1")  # what Django falls back to for misbehaving clients
    try:
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            encoding=encoding,
            max_num_fields=settings.DATA_UPLOAD_MAX_NUMBER_FIELDS,
        )
    except ValueError as exc:
        raise TooManyFieldsSent(
            "The number of GET/POST parameters exceeded settings.DATA_UPLOAD_MAX_NUMBER_FIELDS."
        ) from exc
    fields = FormFields()
    for name, value in pairs:
        fields.setdefault(name, []).append(value)
    return fields


@functools.lru_cache(maxsize=64)
def _signed_urls(url: str) -> tuple[str, ...]:
    """The forms of ``url`` a Twilio signature may cover, the one we were given first: Twilio
    signs with or without the default port, so its validator accepts either. Cached: every
    callback comes to the same few URLs."""
    parsed = urlparse(url)
    return tuple(dict.fromkeys([url, remove_port(parsed), add_port(parsed)]))


def signature_valid(
    request: HttpRequest, signed: FormFields | str | None, tokens: list[str]
) -> bool:
    """True when ``X-Twilio-Signature`` matches under one of ``tokens``.

    The signature is computed by Twilio's ``RequestValidator`` and compared in constant time,
    as its ``validate`` does (URL with and without port; for a JSON body, the ``bodySHA256``
    query parameter must be the body's hash and the form is empty); it stops at the first form
    that matches instead of always computing both.
    """
    signature = request.headers.get("X-Twilio-Signature", "").encode()
    if not signature or not tokens:
        return False
    algorithm = get_signature_algorithm(request.headers.get(SIGNATURE_SETTINGS_HEADER))
    params: FormFields | dict[str, str] | None
    if isinstance(signed, str):
        claimed = request.GET.getlist("bodySHA256")[:1] or [""]
        body_hash = RequestValidator("").compute_hash(signed)  # needs no token: SHA-256 hex
        if not hmac.compare_digest(body_hash.encode(), claimed[0].encode()):
            return False
        params = {}
    else:
        params = signed
    urls = _signed_urls(public_url(request))
    for token in tokens:
        validator = RequestValidator(token)
        for url in urls:
            try:
                computed = validator.compute_signature(url, params, algorithm)
            except ValueError:  # an algorithm this version of twilio does not know
                logger.warning("callback signed with unsupported algorithm %r refused", algorithm)
                return False
            if hmac.compare_digest(computed.encode(), signature):
                return True
    return False


class CallbackRefused(Exception):
    """A callback that is not authenticated as Twilio's for an account served here: answered
    403 with ``code`` and ``detail`` as the error body, and nothing stored."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


_NOT_SIGNED = "The request is not signed by Twilio."


def callback_authenticate(request: HttpRequest, *, subaccounts: bool = True) -> dict[str, Any]:
    """The parameters of a callback whose ``X-Twilio-Signature`` is valid for its
    ``AccountSid``; raises :class:`CallbackRefused` otherwise.

    Every webhook the portal accepts comes through here. ``subaccounts`` says whether known
    subaccounts (signed with their own token) are served too, or only the configured account.
    A callback with a missing or malformed ``AccountSid`` is checked against the configured
    account, so a signed but malformed callback reaches the caller's validation (400).
    """
    params, signed = callback_params(request)
    if params is None:
        # A JSON body we cannot parse, or one whose hash the signature does not cover: nothing
        # here is authenticated, so it is refused like any unsigned request.
        raise CallbackRefused("invalid_signature", _NOT_SIGNED)
    if not settings.TWILIO_AUTH_TOKEN:
        # An API key cannot check Twilio's signatures: only the auth token can.
        logger.error(
            "TWILIO_AUTH_TOKEN is not set: Twilio's callbacks cannot be checked and are refused "
            "(set it besides the API key; it is used for signatures only)"
        )
        raise CallbackRefused("invalid_signature", _NOT_SIGNED)
    account_sid = str(params.get("AccountSid") or "")
    if ACCOUNT_SID.fullmatch(account_sid):
        served = subaccounts or account_sid == settings.TWILIO_ACCOUNT_SID
        tokens = signing_tokens(account_sid) if served else []
        if not tokens:
            logger.warning("callback for unknown account %s refused", account_sid)
            raise CallbackRefused("unknown_account", "This AccountSid is not served here.")
    else:
        tokens = signing_tokens(settings.TWILIO_ACCOUNT_SID)
    if not signature_valid(request, signed, tokens):
        logger.warning("callback with a missing or bad X-Twilio-Signature refused")
        raise CallbackRefused("invalid_signature", _NOT_SIGNED)
    return params


def callback_params(
    request: HttpRequest,
) -> tuple[dict[str, Any] | None, FormFields | str | None]:
    """A callback's parameters (the last value of each name) and what its signature covers (form
    fields, or the raw JSON body together with its ``bodySHA256`` query parameter)."""
    # The media type without parameters, read from the header itself: a DRF request's
    # ``content_type`` keeps the parameters (``; charset=utf-8``), Django's drops them.
    content_type = request.META.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
    if content_type == "application/json":
        if "bodySHA256" not in request.GET:
            return None, None
        try:
            raw = request.body.decode("utf-8")
            params = json.loads(raw)
        except (UnicodeDecodeError, ValueError):
            return None, None
        if not isinstance(params, dict):
            return None, None
        return {k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items()}, raw
    if content_type == "application/x-www-form-urlencoded":
        form = form_fields(request.body, request.encoding or settings.DEFAULT_CHARSET)
    elif content_type == "multipart/form-data":  # Twilio does not send it; signed alike
        form = FormFields(request.POST.lists())
    else:  # no form fields, as Django's request.POST has none for any other body
        form = FormFields()
    return {key: values[-1] for key, values in form.items()}, form
