"""Identity and credentials: Flex token validation (``iam.twilio.com``) and the account's
``Credentials/PublicKeys`` and ``Credentials/AWS`` (``accounts.twilio.com``).

Token validation answers HTTP 200 for valid, unknown and expired tokens alike (``valid`` and
``code`` tell them apart), as Twilio does. Credentials are created, listed (the v1 ``meta``
envelope), fetched, renamed and deleted; a public key must be an RSA
``-----BEGIN PUBLIC KEY-----`` PEM, an AWS credential ``ACCESS_KEY_ID:SECRET``, and neither
secret is ever served back (tests read them through the fake's Python API).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from faketwilio.httpserver import (
    Request,
    Response,
    bad_request,
    iso,
    iso_millis,
    not_found,
    paginate,
    twilio_path,
)
from faketwilio.routing import routes, visible_account
from faketwilio.state import Credential, State, Token

ACCOUNTS_BASE = "https://accounts.twilio.com"


# ---------------------------------------------------------------------- Flex tokens


def token_answer(entry: Token | None) -> dict[str, Any]:
    """What token validation answers for ``entry`` (None: an unknown token) right now."""
    answer: dict[str, Any] = {
        "valid": False,
        "code": 20101,
        "message": "Invalid Access Token",
        "expiration": None,
        "realm_user_id": None,
        "identity": None,
        "roles": None,
        "worker_sid": None,
    }
    if entry is None:
        return answer
    if entry.expiration <= datetime.now(UTC):
        answer.update(code=20104, message="Access Token expired or expiration date invalid")
        return answer
    return {
        "valid": True,
        "code": 0,
        "message": None,
        "expiration": iso_millis(entry.expiration),
        "realm_user_id": entry.realm_user_id,
        "identity": entry.identity,
        "roles": list(entry.roles),
        "worker_sid": entry.worker_sid,
    }


def validate_token(state: State, request: Request, match: dict[str, str]) -> Response:
    """``POST /iam/v1/Accounts/{AC}/Tokens/validate`` with a JSON ``{"token": …}`` body."""
    visible_account(state, request, match["ac"])
    try:
        payload = json.loads(request.body or b"null")
    except ValueError:
        raise bad_request("The request body is not valid JSON") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("token"), str):
        raise bad_request("Missing required parameter token in the post body")
    with state.lock:
        entry = state.tokens.get(payload["token"])
        return Response.json(200, token_answer(entry))


# ---------------------------------------------------------------------- credentials


def credential_json(kind: str, credential: Credential) -> dict[str, Any]:
    """A ``PublicKeys`` or ``AWS`` credential resource (without its secret)."""
    return {
        "sid": credential.sid,
        "account_sid": credential.account_sid,
        "friendly_name": credential.friendly_name,
        "date_created": iso(credential.date_created),
        "date_updated": iso(credential.date_updated),
        "url": f"{ACCOUNTS_BASE}/v1/Credentials/{kind}/{credential.sid}",
    }


def credentials(state: State, request: Request, match: dict[str, str]) -> Response:
    """``GET`` (list) or ``POST`` (create) ``/accounts/v1/Credentials/{PublicKeys|AWS}``."""
    kind = match["kind"]
    if request.method == "GET":
        with state.lock:
            items = [
                ((int(c.date_created.timestamp()), c.sid), credential_json(kind, c))
                for c in state.credentials[kind].values()
            ]
        page = paginate(items, request.query, reverse=False)
        return Response.json(200, page.v1("credentials", f"{ACCOUNTS_BASE}/v1/Credentials/{kind}"))
    form = request.form()
    if kind == "PublicKeys":
        secret = check_public_key(form.get("PublicKey"))
    else:
        secret = check_aws_credentials(form.get("Credentials"))
    friendly_name = form.get("FriendlyName") or None
    if friendly_name and len(friendly_name) > 64:
        raise bad_request("FriendlyName must be at most 64 characters")
    account_sid = form.get("AccountSid") or state.account_sid
    with state.lock:
        if not state.has_account(account_sid):
            raise bad_request(f"AccountSid {account_sid} is not this account or a subaccount")
        credential = state.add_credential(kind, account_sid, friendly_name, secret)
        return Response.json(201, credential_json(kind, credential))


def credential(state: State, request: Request, match: dict[str, str]) -> Response:
    """``GET`` (fetch), ``POST`` (rename) or ``DELETE`` one credential."""
    kind = match["kind"]
    with state.lock:
        store = state.credentials[kind]
        found = store.get(match["cr"])
        if found is None:
            raise not_found(twilio_path(request.path))
        if request.method == "DELETE":
            del store[found.sid]
            return Response(204)
        if request.method == "POST":
            friendly_name = request.form().get("FriendlyName")
            if friendly_name is not None:
                if len(friendly_name) > 64:
                    raise bad_request("FriendlyName must be at most 64 characters")
                state.rename_credential(found, friendly_name or None)
        return Response.json(200, credential_json(kind, found))


def check_public_key(pem: str | None) -> str:
    """``pem`` if it is an RSA ``-----BEGIN PUBLIC KEY-----`` that loads, else 400."""
    if not pem:
        raise bad_request("Missing required parameter PublicKey in the post body")
    text = pem.strip()
    match = re.fullmatch(
        r"-----BEGIN PUBLIC KEY-----(.*?)-----END PUBLIC KEY-----", text, flags=re.DOTALL
    )
    if match is None:
        raise bad_request("PublicKey must be a PEM '-----BEGIN PUBLIC KEY-----' block")
    # Twilio's docs show the key on one line; rebuild standard PEM lines before loading.
    body = "".join(match[1].split())
    lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    normalized = f"-----BEGIN PUBLIC KEY-----\n{lines}\n-----END PUBLIC KEY-----\n"
    try:
        key = load_pem_public_key(normalized.encode())
    except (ValueError, TypeError):
        raise bad_request("PublicKey is not a valid public key") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise bad_request("PublicKey must be an RSA key")
    return pem


def check_aws_credentials(secret: str | None) -> str:
    """``secret`` if it reads ``ACCESS_KEY_ID:SECRET``, else 400."""
    if not secret:
        raise bad_request("Missing required parameter Credentials in the post body")
    if not re.fullmatch(r"[A-Za-z0-9]{4,128}:\S+", secret):
        raise bad_request("Credentials must be of the form AWS_ACCESS_KEY_ID:AWS_SECRET_ACCESS_KEY")
    return secret


_CREDENTIALS = r"/accounts/v1/Credentials/(?P<kind>PublicKeys|AWS)"

ROUTES = routes(
    ("POST", r"/iam/v1/Accounts/(?P<ac>[^/]+)/Tokens/validate", validate_token),
    ("GET POST", _CREDENTIALS, credentials),
    ("GET POST DELETE", _CREDENTIALS + r"/(?P<cr>[^/]+)", credential),
)
