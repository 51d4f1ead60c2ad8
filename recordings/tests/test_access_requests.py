"""Access requests (four eyes) and restricted recordings end to end, through the portal's page,
the admin's actions and url_provider: request, approve by another person, play, expire, revoke;
restrict and see the refusal; every step in the access log."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone

from audit import grants
from audit.models import AccessGrant, AccessLog, AccessRule, GrantStatus
from recordings.lifecycle import restriction
from recordings.models import Recording
from recordings.tests.playback_fixtures import allow_supervisors, ask, flex_token, local_recording

pytestmark = pytest.mark.django_db

PAGE = "/access-requests/"


def staff(name: str, *, group: str | None = "compliance manager", email: str = "") -> User:
    user = User.objects.create_user(name, email=email, password="pw-not-used", is_staff=True)
    if group:
        user.groups.add(Group.objects.get(name=group))
    return User.objects.get(pk=user.pk)  # fresh: no cached permissions


def admin_client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def restricted(**fields) -> Recording:
    recording, _ = local_recording(**fields)
    restriction.recordings_restrict(
        recordings=[recording], reason="HR matter", actor="officer", now=timezone.now()
    )
    recording.refresh_from_db()
    return recording


def file_request(client: Client, token: str, recording: Recording, **fields):
    data = {
        "token": token,
        "scope": "recording",
        "scope_value": recording.sid,
        "reason": "Complaint #42 review",
        "duration_hours": "2",
        "action": "request",
        **fields,
    }
    return client.post(PAGE, data)


def rows(action: str) -> list[tuple[str, str]]:
    return list(
        AccessLog.objects.filter(action=action)
        .order_by("sequence")
        .values_list("outcome", "reason_code")
    )


def test_request_approve_play_revoke_and_every_step_is_logged(client, fake_twilio):
    allow_supervisors()  # a general allow: it does not play restricted recordings
    recording = restricted()
    token = flex_token(fake_twilio, identity="alice")

    refused = ask(client, recording.sid, token)
    assert refused.status_code == 403
    assert "restricted" in refused.json()["detail"]
    last = AccessLog.objects.filter(action="url_provider").latest("sequence")
    assert (last.reason_code, last.detail) == ("restricted_no_grant", {"restricted": True})

    page = file_request(client, token, recording)
    assert page.status_code == 200
    grant = AccessGrant.objects.get()
    assert (grant.grantee_identity, grant.status) == ("alice", GrantStatus.REQUESTED)
    assert f'data-request="{grant.pk}"' in page.content.decode()
    assert ask(client, recording.sid, token).status_code == 403  # not approved yet

    manager = staff("manager", email="manager@example.com")
    answer = admin_client(manager).post(
        "/admin/audit/accessgrant/",
        {"action": "approve_requests", "_selected_action": [grant.pk], "note": "ok"},
    )
    assert answer.status_code == 302
    grant.refresh_from_db()
    assert grant.status == GrantStatus.APPROVED
    assert grant.valid_until - grant.valid_from == timedelta(hours=2)

    played = ask(client, recording.sid, token)
    assert played.status_code == 200
    use = AccessLog.objects.filter(action="url_provider").latest("sequence")
    assert use.reason_code == "allowed_by_grant"
    assert use.detail == {
        "restricted": True,
        "grant": {
            "id": grant.pk,
            "requester": "alice",
            "approver": "manager",
            "reason": "Complaint #42 review",
        },
    }
    # Another Flex user (another worker) is still refused: the grant is alice's.
    bob = "eyJbob-token"
    fake_twilio.add_token(
        bob,
        identity="bob",
        realm_user_id="bob@example.com",
        roles=["supervisor"],
        worker_sid="WK" + "2" * 32,
    )
    assert ask(client, recording.sid, bob).status_code == 403

    admin_client(manager).post(
        "/admin/audit/accessgrant/",
        {"action": "revoke_grants", "_selected_action": [grant.pk], "note": "case closed"},
    )
    assert ask(client, recording.sid, token).status_code == 403
    assert rows("access_request") == [
        ("allowed", "grant_requested"),
        ("allowed", "grant_approved"),
        ("allowed", "grant_revoked"),
    ]
    approval = AccessLog.objects.get(reason_code="grant_approved")
    assert approval.identity == "alice"
    assert approval.detail["requester"] == "alice"
    assert approval.detail["approver"] == "manager"
    assert approval.detail["reason"] == "Complaint #42 review"


def test_a_grant_expires_on_its_own(client, fake_twilio):
    recording = restricted()
    token = flex_token(fake_twilio, identity="alice")
    grant = grants.access_request_create(
        identity="alice",
        scope="call",
        scope_value=recording.call_sid,
        reason="audit, see https://tickets.example.com/42",
        duration_hours=1,
        now=timezone.now(),
    )
    manager = staff("manager")
    grants.access_request_approve(
        grant=grant, approver=manager, now=timezone.now() - timedelta(minutes=59, seconds=58)
    )
    assert ask(client, recording.sid, token).status_code == 200
    # A reason that cites a link is kept, but never as a link in the log.
    use = AccessLog.objects.filter(action="url_provider").latest("sequence")
    assert use.detail["grant"]["reason"] == "audit, see https:/ /tickets.example.com/42"
    AccessGrant.objects.filter(pk=grant.pk).update(
        valid_until=timezone.now() - timedelta(seconds=1)
    )
    answer = ask(client, recording.sid, token)
    assert answer.status_code == 403
    assert AccessLog.objects.latest("sequence").reason_code == "restricted_no_grant"


def test_the_requester_can_never_approve(fake_twilio):
    recording, _ = local_recording()
    now = timezone.now()
    filer = staff("filer")
    on_behalf = grants.access_request_create(
        identity="dana",
        scope="recording",
        scope_value=recording.sid,
        reason="x",
        duration_hours=1,
        now=now,
        requested_by=filer,
    )
    with pytest.raises(grants.AccessRequestInvalid, match="you filed this request"):
        grants.access_request_approve(grant=on_behalf, approver=filer, now=now)
    # Flex encodes e-mail identities: sam@example.com is sam_40example_2Ecom.
    mine = grants.access_request_create(
        identity="sam_40example_2Ecom",
        scope="team",
        scope_value="Team Blue",
        reason="x",
        duration_hours=1,
        now=now,
    )
    sam = staff("sam", email="Sam@Example.com")
    with pytest.raises(grants.AccessRequestInvalid, match="you are the requester"):
        grants.access_request_refuse(grant=mine, approver=sam, now=now, note="no")
    viewer = staff("viewer", group="compliance viewer")
    with pytest.raises(grants.AccessRequestInvalid, match="permission"):
        grants.access_request_approve(grant=mine, approver=viewer, now=now)
    # Through the admin too: the message says why, and the request stays pending.
    answer = admin_client(filer).post(
        "/admin/audit/accessgrant/",
        {"action": "approve_requests", "_selected_action": [on_behalf.pk]},
        follow=True,
    )
    assert "you filed this request" in answer.content.decode()
    on_behalf.refresh_from_db()
    assert on_behalf.status == GrantStatus.REQUESTED
    other = staff("other")
    grants.access_request_refuse(grant=on_behalf, approver=other, now=now, note="not needed")
    with pytest.raises(grants.AccessRequestInvalid, match="already refused"):
        grants.access_request_approve(grant=on_behalf, approver=other, now=now)
    assert AccessLog.objects.filter(reason_code="grant_approved").count() == 0


def test_the_page_refuses_bad_input_and_bad_tokens_and_files_nothing(client, fake_twilio):
    token = flex_token(fake_twilio, identity="alice")
    recording, _ = local_recording()
    bad = file_request(
        client, token, recording, scope_value="RE123", reason=" ", duration_hours="0"
    )
    assert bad.status_code == 400
    body = bad.content.decode()
    assert 'id="error-scope_value"' in body
    assert 'id="error-reason"' in body
    assert 'id="error-duration_hours"' in body
    unknown = file_request(client, "eyJnot-a-token", recording)
    assert unknown.status_code == 401
    missing = file_request(client, "", recording)
    assert missing.status_code == 401
    assert not AccessGrant.objects.exists()
    assert rows("access_request") == [("denied", "invalid_token"), ("denied", "missing_token")]
    # The user's own list needs their token, and shows only their requests.
    file_request(client, token, recording)
    grants.access_request_create(
        identity="bob",
        scope="recording",
        scope_value=recording.sid,
        reason="x",
        duration_hours=1,
        now=timezone.now(),
    )
    mine = client.post(PAGE, {"token": token, "action": "list"}).content.decode()
    assert mine.count("data-status=") == 1


def test_restricting_from_the_admin_and_the_marker(client, fake_twilio):
    allow_supervisors()
    first, _ = local_recording()
    second, _ = local_recording()
    token = flex_token(fake_twilio)
    manager = staff("manager")
    officer = admin_client(manager)
    ask_form = officer.post(
        "/admin/recordings/recording/",
        {"action": "restrict_recordings", "_selected_action": [first.pk, second.pk]},
    )
    assert ask_form.status_code == 200
    assert 'id="restriction-form"' in ask_form.content.decode()
    assert not Recording.objects.filter(restricted_at__isnull=False).exists()  # needs a reason
    done = officer.post(
        "/admin/recordings/recording/",
        {
            "action": "restrict_recordings",
            "_selected_action": [first.pk, second.pk],
            "apply": "Restrict",
            "reason": "PCI segment not paused",
        },
    )
    assert done.status_code == 302
    assert Recording.objects.filter(restricted_at__isnull=False).count() == 2
    assert rows("recording_restrict") == [("allowed", "recording_restricted")] * 2
    page = officer.get(f"/admin/recordings/recording/{first.pk}/change/").content.decode()
    assert 'id="restricted-banner"' in page
    assert "PCI segment not paused" in page
    listing = officer.get("/admin/recordings/recording/?restricted=yes").content.decode()
    assert first.sid in listing
    assert second.sid in listing
    assert ask(client, first.sid, token).status_code == 403
    # A rule that names restricted recordings plays them; lifting the restriction restores
    # the general allow.
    AccessRule.objects.create(
        name="pci-team", effect="allow", roles=["supervisor"], restricted=True
    )
    assert ask(client, first.sid, token).status_code == 200
    officer.post(
        "/admin/recordings/recording/",
        {
            "action": "unrestrict_recordings",
            "_selected_action": [second.pk],
            "apply": "Lift",
            "reason": "segment redacted",
        },
    )
    second.refresh_from_db()
    assert second.restricted_at is None
    assert ask(client, second.sid, token).status_code == 200
    # A viewer may not restrict.
    viewer = admin_client(staff("viewer", group="compliance viewer"))
    viewer.post(
        "/admin/recordings/recording/",
        {
            "action": "restrict_recordings",
            "_selected_action": [second.pk],
            "apply": "Restrict",
            "reason": "x",
        },
    )
    second.refresh_from_db()
    assert second.restricted_at is None


def test_the_dashboard_counts_and_the_log_filters_attempts_on_restricted_recordings(
    client, fake_twilio
):
    allow_supervisors()
    recording = restricted()
    open_recording, _ = local_recording()
    token = flex_token(fake_twilio)
    ask(client, recording.sid, token)
    ask(client, recording.sid, token)
    ask(client, open_recording.sid, token)
    grants.access_request_create(
        identity="alice",
        scope="recording",
        scope_value=recording.sid,
        reason="x",
        duration_hours=1,
        now=timezone.now(),
    )
    officer = admin_client(staff("manager"))
    dashboard = officer.get("/admin/audit/accesslog/dashboard/")
    assert dashboard.status_code == 200
    restricted_box = dashboard.content.decode().split('id="restricted-activity"')[1]
    assert "<strong>2</strong> attempts</a> on restricted recordings, 2 refused" in restricted_box
    assert "<strong>1</strong> access requests" in restricted_box
    listing = officer.get("/admin/audit/accesslog/?restricted=1").content.decode()
    assert listing.count(recording.sid) >= 2
    assert open_recording.sid not in listing
