"""Key custody: import, generate (and register with the fake Twilio), select by SID, rotate the
master key; the commands around them; and the admin page that describes keys without showing
them."""

from __future__ import annotations

import base64
import functools
import os
import subprocess
import sys
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from django.core.management import CommandError, call_command
from django.db import IntegrityError
from django.utils import timezone

from audit.models import AccessLog
from faketwilio.recording_formats import make_rsa_key
from portal.sealing import current_master_key_id, master_key_id, seal, unseal
from recordings.custody import keys
from recordings.models import PrivateKey, Recording, TwilioSubaccount
from recordings.tests.callbacks import new_sid

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _fresh_caches():
    keys.key_caches_clear()
    keys._last_touched.clear()
    yield
    keys.key_caches_clear()


@functools.cache
def spare_key(n: int) -> rsa.RSAPrivateKey:
    """Pre-made keys for tests about anything but generation (2048-bit generation is slow)."""
    return make_rsa_key()


@pytest.fixture
def quick_generation(monkeypatch):
    """``private_key_generate`` hands out distinct pre-made keys instead of generating."""
    made = iter(range(100))
    monkeypatch.setattr(
        keys.rsa, "generate_private_key", lambda public_exponent, key_size: spare_key(next(made))
    )


def pem(key, fmt=serialization.PrivateFormat.PKCS8, password: bytes | None = None) -> bytes:
    encryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, fmt, encryption)


def new_master_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def same_key(a: rsa.RSAPrivateKey, b: rsa.RSAPrivateKey) -> bool:
    return a.private_numbers() == b.private_numbers()


# ---------------------------------------------------------------------------------------------
# Import
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fmt", [serialization.PrivateFormat.TraditionalOpenSSL, serialization.PrivateFormat.PKCS8]
)
def test_import_pkcs1_or_pkcs8_stores_the_key_sealed(rsa_key, fmt):
    sid = new_sid("CR")
    text = pem(rsa_key, fmt)
    stored = keys.private_key_import(pem=text, public_key_sid=sid, friendly_name="primary")

    row = PrivateKey.objects.get(pk=stored.pk)
    assert (row.public_key_sid, row.friendly_name, row.key_size) == (sid, "primary", 2048)
    assert row.fingerprint == keys.public_key_fingerprint(rsa_key.public_key())
    assert row.public_key_pem.startswith("-----BEGIN PUBLIC KEY-----")
    assert row.master_key_id == current_master_key_id()
    # Sealed: neither the PEM nor the DER appears, and it opens only for its own fingerprint.
    body = b"".join(text.splitlines()[1:-1]).decode()
    assert body[:40] not in row.sealed_private_key
    assert "PRIVATE" not in row.sealed_private_key
    der = unseal(row.sealed_private_key, purpose=f"private-key:{row.fingerprint}")
    assert same_key(serialization.load_der_private_key(der, None), rsa_key)
    assert same_key(keys.private_key_for(sid), rsa_key)


def test_import_takes_the_private_key_out_of_a_file_with_more_blocks(rsa_key):
    public = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    text = b"comment line\n" + public + pem(rsa_key)
    stored = keys.private_key_import(pem=text, public_key_sid=new_sid("CR"))
    assert stored.fingerprint == keys.public_key_fingerprint(rsa_key.public_key())


def _ec_pkcs8() -> bytes:
    return pem(ec.generate_private_key(ec.SECP256R1()))


def _ec_traditional() -> bytes:
    return pem(
        ec.generate_private_key(ec.SECP256R1()), serialization.PrivateFormat.TraditionalOpenSSL
    )


def _ed25519() -> bytes:
    return pem(ed25519.Ed25519PrivateKey.generate())


def _public_only() -> bytes:
    return (
        spare_key(90)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def _encrypted_pkcs8() -> bytes:
    return pem(spare_key(90), password=b"passphrase")


def _encrypted_traditional() -> bytes:
    return pem(
        spare_key(90), serialization.PrivateFormat.TraditionalOpenSSL, password=b"passphrase"
    )


def _small() -> bytes:
    return pem(rsa.generate_private_key(public_exponent=65537, key_size=1024))  # noqa: S505


def _der() -> bytes:
    return spare_key(90).private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _damaged() -> bytes:
    lines = pem(spare_key(90)).splitlines()
    return b"\n".join([lines[0], b"AAAA" + lines[1][4:], *lines[2:]])


def _truncated() -> bytes:
    return pem(spare_key(90))[:300]


def _two_keys() -> bytes:
    return pem(spare_key(90)) + pem(spare_key(91))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_ec_pkcs8, r"EC private key; Twilio encrypts recordings for RSA keys only"),
        (_ec_traditional, r"EC private key; Twilio encrypts recordings for RSA keys only"),
        (_ed25519, r"Ed25519 private key"),
        (_public_only, r"holds no private key \(only PUBLIC KEY\)"),
        (_encrypted_pkcs8, r"encrypted with a passphrase"),
        (_encrypted_traditional, r"encrypted with a passphrase"),
        (_small, r"1024-bit; the portal requires RSA of at least 2048 bits"),
        (_der, r"not a PEM file"),
        (lambda: b"hello world", r"not a PEM file"),
        (_damaged, r"could not be read"),
        (_truncated, r"no END line"),
        (_two_keys, r"holds 2 private keys"),
    ],
)
def test_import_refuses_anything_but_an_unencrypted_rsa_key(make, message):
    with pytest.raises(keys.KeyImportError, match=message):
        keys.private_key_import(pem=make(), public_key_sid=new_sid("CR"))
    assert not PrivateKey.objects.exists()


@pytest.mark.parametrize("sid", ["CR123", "RE" + "0" * 32, "CR" + "G" * 32, "cr" + "0" * 32])
def test_import_refuses_a_malformed_sid(rsa_key, sid):
    with pytest.raises(keys.KeyImportError, match="is not a public key SID"):
        keys.private_key_import(pem=pem(rsa_key), public_key_sid=sid)


def test_import_refuses_a_key_already_held_or_a_sid_already_taken(rsa_key, other_rsa_key):
    sid = new_sid("CR")
    keys.private_key_import(pem=pem(rsa_key), public_key_sid=sid)
    with pytest.raises(keys.KeyImportError, match="already holds this key"):
        keys.private_key_import(pem=pem(rsa_key), public_key_sid=new_sid("CR"))
    with pytest.raises(keys.KeyImportError, match=f"different private key for {sid}"):
        keys.private_key_import(pem=pem(other_rsa_key), public_key_sid=sid)
    assert PrivateKey.objects.count() == 1


def test_friendly_name_is_limited_like_twilios(rsa_key):
    with pytest.raises(keys.KeyImportError, match="longer than 64"):
        keys.private_key_import(pem=pem(rsa_key), public_key_sid=None, friendly_name="x" * 65)


# ---------------------------------------------------------------------------------------------
# Selecting by SID, last use
# ---------------------------------------------------------------------------------------------


def test_keys_are_chosen_by_sid_never_the_newest(rsa_key, other_rsa_key):
    first, second = new_sid("CR"), new_sid("CR")
    keys.private_key_import(pem=pem(rsa_key), public_key_sid=first)
    keys.private_key_import(pem=pem(other_rsa_key), public_key_sid=second)
    assert same_key(keys.private_key_for(first), rsa_key)
    assert same_key(keys.private_key_for(second), other_rsa_key)


@pytest.mark.parametrize("sid", ["CR" + "9" * 32, ""], ids=["unknown-sid", "empty"])
def test_unknown_sid_is_a_clear_error(rsa_key, sid):
    keys.private_key_import(pem=pem(rsa_key), public_key_sid=new_sid("CR"))
    with pytest.raises(keys.KeyNotFound, match="holds no private key for public key"):
        keys.private_key_for(sid)


def test_last_used_is_written_at_most_once_a_minute(rsa_key):
    sid = new_sid("CR")
    stored = keys.private_key_import(pem=pem(rsa_key), public_key_sid=sid)
    assert stored.last_used_at is None

    keys.private_key_for(sid)
    first = PrivateKey.objects.get(pk=stored.pk).last_used_at
    assert first is not None
    keys.private_key_for(sid)  # this process wrote it seconds ago: no write
    assert PrivateKey.objects.get(pk=stored.pk).last_used_at == first

    keys._last_touched.clear()  # another process: the database guard still holds
    keys.private_key_for(sid)
    assert PrivateKey.objects.get(pk=stored.pk).last_used_at == first

    old = timezone.now() - timedelta(minutes=5)
    PrivateKey.objects.filter(pk=stored.pk).update(last_used_at=old)
    keys._last_touched.clear()
    keys.private_key_for(sid)
    assert PrivateKey.objects.get(pk=stored.pk).last_used_at > old


def test_a_key_whose_master_key_is_gone_is_unavailable(rsa_key, settings):
    sid = new_sid("CR")
    settings.PORTAL_MASTER_KEYS = [new_master_key()]
    keys.private_key_import(pem=pem(rsa_key), public_key_sid=sid)
    keys.key_caches_clear()
    settings.PORTAL_MASTER_KEYS = [new_master_key()]
    with pytest.raises(keys.KeyUnavailable, match="is not configured in PORTAL_MASTER_KEY"):
        keys.private_key_for(sid)
    assert keys.private_keys_held() == []


def test_a_sealed_key_copied_to_another_row_does_not_open(rsa_key, other_rsa_key):
    sid = new_sid("CR")
    victim = keys.private_key_import(pem=pem(rsa_key), public_key_sid=sid)
    donor = keys.private_key_import(pem=pem(other_rsa_key), public_key_sid=new_sid("CR"))
    PrivateKey.objects.filter(pk=victim.pk).update(sealed_private_key=donor.sealed_private_key)
    with pytest.raises(keys.KeyUnavailable, match="failed authentication"):
        keys.private_key_for(sid)


def test_secret_cache_expires_and_stays_bounded(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(keys.time, "monotonic", lambda: clock[0])
    cache: keys.SecretCache[str, bytes] = keys.SecretCache(max_entries=2, ttl=10)
    cache.put("a", b"1")
    cache.put("b", b"2")
    assert cache.get("a") == b"1"  # now "b" is the least recently used
    cache.put("c", b"3")
    assert (cache.get("a"), cache.get("b"), cache.get("c"), len(cache)) == (b"1", None, b"3", 2)
    clock[0] += 10
    assert (cache.get("a"), len(cache)) == (None, 1)
    cache.discard(lambda key: key == "c")
    assert len(cache) == 0


# ---------------------------------------------------------------------------------------------
# Generate and register
# ---------------------------------------------------------------------------------------------


def test_generate_without_registering(fake_twilio):
    stored = keys.private_key_generate(bits=2048, friendly_name="spare")
    assert (stored.public_key_sid, stored.key_size, stored.friendly_name) == (None, 2048, "spare")
    assert fake_twilio.public_keys == {}
    opened = serialization.load_der_private_key(
        unseal(stored.sealed_private_key, purpose=f"private-key:{stored.fingerprint}"), None
    )
    assert keys.public_key_pem(opened.public_key()) == stored.public_key_pem
    assert keys.private_keys_held()[0][0] == stored.pk


@pytest.mark.usefixtures("quick_generation")
def test_generate_and_register_stores_twilios_sid(fake_twilio):
    stored = keys.private_key_generate(bits=2048, register=True, friendly_name="portal 2026")
    assert keys.PUBLIC_KEY_SID.match(stored.public_key_sid)
    assert fake_twilio.public_keys[stored.public_key_sid].strip() == stored.public_key_pem.strip()
    assert keys.private_key_for(stored.public_key_sid).key_size == 2048


@pytest.mark.parametrize("status", [400, 503])
@pytest.mark.usefixtures("quick_generation")
def test_a_twilio_failure_during_register_leaves_nothing(fake_twilio, status):
    fake_twilio.fail(status, path_contains="Credentials/PublicKeys")
    with pytest.raises(keys.KeyRegistrationFailed, match="nothing was stored"):
        keys.private_key_generate(bits=2048, register=True)
    assert not PrivateKey.objects.exists()


@pytest.mark.usefixtures("quick_generation")
def test_a_storage_failure_after_register_withdraws_the_registration(fake_twilio, monkeypatch):
    def broken_store(*args, **kwargs):
        raise IntegrityError("simulated")

    monkeypatch.setattr(keys, "_store", broken_store)
    with pytest.raises(IntegrityError):
        keys.private_key_generate(bits=2048, register=True)
    assert fake_twilio.public_keys == {}
    assert not PrivateKey.objects.exists()


@pytest.mark.parametrize("bits", [1024, 2047, 32768])
def test_generate_refuses_sizes_out_of_range(bits):
    with pytest.raises(keys.KeyImportError, match="bit"):
        keys.private_key_generate(bits=bits)


@pytest.mark.usefixtures("quick_generation")
def test_assign_sid_to_a_key_made_without_register():
    stored = keys.private_key_generate(bits=2048)
    sid = new_sid("CR")
    assert keys.private_key_assign_sid(fingerprint=stored.fingerprint, public_key_sid=sid)
    assert keys.private_key_for(sid).key_size == 2048
    # Idempotent for the same SID; a different one is refused.
    keys.private_key_assign_sid(fingerprint=stored.fingerprint, public_key_sid=sid)
    with pytest.raises(keys.KeyImportError, match=f"already registered as {sid}"):
        keys.private_key_assign_sid(fingerprint=stored.fingerprint, public_key_sid=new_sid("CR"))
    with pytest.raises(keys.KeyNotFound):
        keys.private_key_assign_sid(fingerprint="0" * 64, public_key_sid=new_sid("CR"))


# ---------------------------------------------------------------------------------------------
# Master key rotation
# ---------------------------------------------------------------------------------------------


def test_rotation_reseals_keys_and_subaccount_tokens(rsa_key, other_rsa_key, settings):
    old, new = new_master_key(), new_master_key()
    settings.PORTAL_MASTER_KEYS = [old]
    first, second = new_sid("CR"), new_sid("CR")
    keys.private_key_import(pem=pem(rsa_key), public_key_sid=first)
    keys.private_key_import(pem=pem(other_rsa_key), public_key_sid=second)
    sub = new_sid("AC")
    TwilioSubaccount.objects.create(
        sid=sub, sealed_auth_token=seal(b"sub-token", purpose=f"subaccount-token:{sub}")
    )
    old_id = current_master_key_id()

    settings.PORTAL_MASTER_KEYS = [new, old]
    assert keys.master_key_rotate() == 3
    new_id = master_key_id(base64.urlsafe_b64decode(new))
    assert set(PrivateKey.objects.values_list("master_key_id", flat=True)) == {new_id}
    assert new_id != old_id
    assert keys.master_key_rotate() == 0

    settings.PORTAL_MASTER_KEYS = [new]  # the old key can go now
    keys.key_caches_clear()
    assert same_key(keys.private_key_for(first), rsa_key)
    assert same_key(keys.private_key_for(second), other_rsa_key)
    token = TwilioSubaccount.objects.get(sid=sub).sealed_auth_token
    assert unseal(token, purpose=f"subaccount-token:{sub}") == b"sub-token"


def test_rotation_is_all_or_nothing(rsa_key, other_rsa_key, settings):
    lost, kept, new = new_master_key(), new_master_key(), new_master_key()
    settings.PORTAL_MASTER_KEYS = [kept]
    keys.private_key_import(pem=pem(rsa_key), public_key_sid=new_sid("CR"))
    settings.PORTAL_MASTER_KEYS = [lost]
    orphan = keys.private_key_import(pem=pem(other_rsa_key), public_key_sid=new_sid("CR"))
    before = dict(PrivateKey.objects.values_list("pk", "sealed_private_key"))

    settings.PORTAL_MASTER_KEYS = [new, kept]
    with pytest.raises(keys.MasterKeyRotationError, match=f"{orphan.public_key_sid}.*nothing"):
        keys.master_key_rotate()
    assert dict(PrivateKey.objects.values_list("pk", "sealed_private_key")) == before


# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("quick_generation")
def test_generate_keypair_prints_the_public_key_never_the_private(fake_twilio):
    out = StringIO()
    call_command("generate_keypair", "--bits", "2048", "--register", stdout=out)
    stored = PrivateKey.objects.get()
    text = out.getvalue()
    assert f"public key SID: {stored.public_key_sid}" in text
    assert stored.fingerprint in text
    assert stored.public_key_pem.strip() in text
    assert "PRIVATE" not in text
    assert stored.sealed_private_key not in text


@pytest.mark.usefixtures("quick_generation")
def test_generate_keypair_unregistered_says_how_to_assign_the_sid():
    out = StringIO()
    call_command("generate_keypair", "--bits", "2048", stdout=out)
    stored = PrivateKey.objects.get()
    assert f"assign_public_key_sid {stored.fingerprint} CR" in out.getvalue()
    sid = new_sid("CR")
    call_command("assign_public_key_sid", stored.fingerprint, sid, stdout=StringIO())
    assert PrivateKey.objects.get().public_key_sid == sid


@pytest.mark.usefixtures("quick_generation")
def test_generate_keypair_register_failure_is_a_clear_error(fake_twilio):
    fake_twilio.fail(503, path_contains="Credentials/PublicKeys")
    with pytest.raises(CommandError, match=r"Twilio did not register the public key.*nothing"):
        call_command("generate_keypair", "--bits", "2048", "--register", stdout=StringIO())
    assert not PrivateKey.objects.exists()


def test_generate_keypair_default_is_4096_bits():
    from recordings.management.commands.generate_keypair import Command

    parser = Command().create_parser("manage.py", "generate_keypair")
    assert parser.parse_args([]).bits == 4096


def test_import_private_key_command(rsa_key, tmp_path):
    path = tmp_path / "key.pem"
    path.write_bytes(pem(rsa_key, serialization.PrivateFormat.TraditionalOpenSSL))
    sid = new_sid("CR")
    out = StringIO()
    call_command("import_private_key", "--public-key-sid", sid, str(path), stdout=out)
    assert f"imported 2048-bit key for {sid}" in out.getvalue()
    assert "PRIVATE" not in out.getvalue()
    assert PrivateKey.objects.get().public_key_sid == sid


def test_import_private_key_command_refuses_clearly(tmp_path):
    with pytest.raises(CommandError, match="cannot read"):
        call_command("import_private_key", "--public-key-sid", new_sid("CR"), "/nonexistent")
    path = tmp_path / "public.pem"
    path.write_bytes(_public_only())
    with pytest.raises(CommandError, match="not imported: this file holds no private key"):
        call_command("import_private_key", "--public-key-sid", new_sid("CR"), str(path))


@pytest.mark.django_db
def test_import_private_key_exits_1_from_the_shell(tmp_path, settings):
    path = tmp_path / "ec.pem"
    path.write_bytes(_ec_pkcs8())
    database = settings.DATABASES["default"]  # the test database, which exists during the test
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "portal.settings_test",
        "DATABASE_URL": (
            f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}"
        ),
    }
    result = subprocess.run(
        [
            *(sys.executable, "manage.py", "import_private_key", "--skip-checks"),
            *("--public-key-sid", new_sid("CR"), str(path)),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 1
    assert "EC private key" in result.stderr
    assert "Traceback" not in result.stderr


def test_rotate_master_key_command(rsa_key, settings):
    old, new = new_master_key(), new_master_key()
    settings.PORTAL_MASTER_KEYS = [old]
    keys.private_key_import(pem=pem(rsa_key), public_key_sid=new_sid("CR"))
    settings.PORTAL_MASTER_KEYS = [new, old]
    out = StringIO()
    call_command("rotate_master_key", stdout=out)
    assert "resealed 1 secrets; everything is now sealed under master key " in out.getvalue()
    assert current_master_key_id() in out.getvalue()


# ---------------------------------------------------------------------------------------------
# Admin
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def held_key(rsa_key) -> PrivateKey:
    return keys.private_key_import(pem=pem(rsa_key), public_key_sid=new_sid("CR"))


def test_admin_lists_and_shows_keys_without_key_material(admin_client, held_key):
    listing = admin_client.get("/admin/recordings/privatekey/")
    assert listing.status_code == 200
    for value in (held_key.public_key_sid, held_key.fingerprint, held_key.master_key_id):
        assert value in listing.content.decode()
    page = admin_client.get(f"/admin/recordings/privatekey/{held_key.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert held_key.fingerprint in html
    assert "BEGIN PUBLIC KEY" in html
    assert "PRIVATE KEY" not in html
    assert held_key.sealed_private_key.split(":")[2][:24] not in html
    assert 'name="_save"' not in html
    assert admin_client.get("/admin/recordings/privatekey/add/").status_code == 403


def test_only_superusers_may_delete_and_are_warned(
    admin_client, client, django_user_model, held_key
):
    Recording.objects.create(
        sid=new_sid("RE"),
        account_sid=new_sid("AC"),
        encryption_type="rsa-aes",
        encryption_public_key_sid=held_key.public_key_sid,
    )
    staff = django_user_model.objects.create_user("officer", password="pw-officer", is_staff=True)
    from django.contrib.auth.models import Permission

    staff.user_permissions.set(Permission.objects.filter(codename__endswith="privatekey"))
    client.force_login(staff)
    delete_url = f"/admin/recordings/privatekey/{held_key.pk}/delete/"
    assert client.get("/admin/recordings/privatekey/").status_code == 200
    assert client.post(delete_url, {"post": "yes"}).status_code == 403
    assert PrivateKey.objects.filter(pk=held_key.pk).exists()

    confirm = admin_client.get(delete_url)
    assert confirm.status_code == 200
    assert "The 1 recordings Twilio encrypted for" in confirm.content.decode()
    assert "become unplayable" in confirm.content.decode()
    assert (
        "delete_selected" not in admin_client.get("/admin/recordings/privatekey/").content.decode()
    )

    assert admin_client.post(delete_url, {"post": "yes"}).status_code == 302
    assert not PrivateKey.objects.filter(pk=held_key.pk).exists()
    row = AccessLog.objects.get(action="private_key_delete")
    assert (row.identity, row.outcome) == ("admin:admin", "allowed")  # staff, as in the admin
    assert row.detail["fingerprint"] == held_key.fingerprint
    with pytest.raises(keys.KeyNotFound):
        keys.private_key_for(held_key.public_key_sid)


def test_a_concurrent_import_of_the_same_key_is_a_clear_error(rsa_key, monkeypatch):
    fingerprint = keys.public_key_fingerprint(rsa_key.public_key())
    real_seal = keys.seal

    def seal_while_another_import_lands(data: bytes, *, purpose: str) -> str:
        sealed = real_seal(data, purpose=purpose)
        PrivateKey.objects.create(
            fingerprint=fingerprint,
            key_size=2048,
            public_key_pem="-",
            sealed_private_key=sealed,
            master_key_id="-",
        )
        return sealed

    monkeypatch.setattr(keys, "seal", seal_while_another_import_lands)
    with pytest.raises(keys.KeyImportError, match="imported concurrently"):
        keys.private_key_import(pem=pem(rsa_key), public_key_sid=new_sid("CR"))
