"""Restriction rules (``recordings.lifecycle.restriction_rules`` and its admin): recordings
restricted by their facts when synced and when their Flex handling facts arrive, audited with
the rule's name; applied to existing recordings after a preview; a release by hand sticks; the
player is refused an auto-restricted recording under a general allow; the Python rule and its
SQL say the same; the restricted recordings' own retention."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.models import AccessLog, AccessRule
from recordings import jobs, tasks
from recordings.flex import linking
from recordings.ingest import events
from recordings.lifecycle import restriction, restriction_rules, retention
from recordings.models import (
    FlexReservation,
    FlexTask,
    LegalHold,
    Recording,
    RecordingEvent,
    RestrictionRule,
    RetentionPolicy,
)
from recordings.tests.callbacks import callback_params, new_sid, post_form
from recordings.tests.playback_fixtures import allow_supervisors, ask, flex_token, local_recording

pytestmark = pytest.mark.django_db

ACCOUNT = "AC" + "a" * 32
OTHER_ACCOUNT = "AC" + "b" * 32
WORKER = "WK" + "7" * 32


def rule(**fields) -> RestrictionRule:
    values = {"name": "hr", "reason": "HR matter"}
    values.update(fields)
    made = RestrictionRule(**values)
    made.full_clean()
    made.save()
    return made


def rows(reason_code: str) -> list[AccessLog]:
    return list(AccessLog.objects.filter(reason_code=reason_code).order_by("sequence"))


# --- the rule itself ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({}, "account_sids", "at least one fact"),
        ({"account_sids": ["ACnope"]}, "account_sids", "Not a AC… SID"),
        ({"call_sids": ["RE" + "1" * 32]}, "call_sids", "Not a CA… SID"),
        ({"workers": "WK" + "1" * 32}, "workers", "JSON list"),
        ({"teams": ["HR", ""]}, "teams", "non-empty strings"),
        ({"queues": ["HR\x00"]}, "queues", "non-empty strings"),
        ({"sources": ["DialVerb"], "reason": "  "}, "reason", "Say why"),
    ],
)
def test_a_rule_that_cannot_be_applied_is_refused_with_a_clear_error(fields, field, words):
    values = {"name": "bad", "reason": "HR matter", **fields}
    with pytest.raises(ValidationError) as refused:
        RestrictionRule(**values).full_clean()
    assert words in " ".join(refused.value.message_dict[field])
    assert not RestrictionRule.objects.exists()


def test_a_rule_matches_only_when_every_fact_it_names_matches():
    recording, _ = local_recording(
        account_sid=ACCOUNT,
        source="DialVerb",
        duration_seconds=90,
        handled_queues=["WQ" + "1" * 32, "HR line"],
        handled_team_names=["HR"],
        handled_worker_sids=[WORKER],
    )

    def matches(**fields) -> bool:
        return restriction_rules.restriction_rule_matches(
            rule=RestrictionRule(name="x", reason="y", **fields), recording=recording
        )

    assert matches(account_sids=[ACCOUNT, OTHER_ACCOUNT])
    assert matches(account_sids=[ACCOUNT], teams=["HR", "Sales"], queues=["HR line"])
    assert not matches(account_sids=[ACCOUNT], teams=["Sales"])
    assert not matches(account_sids=[OTHER_ACCOUNT], teams=["HR"])
    assert matches(workers=[WORKER], min_duration_seconds=90)
    assert not matches(workers=[WORKER], min_duration_seconds=91)
    assert not matches(call_sids=["CA" + "0" * 32])
    assert not matches()  # names nothing: matches nothing
    recording.duration_seconds = None
    assert not matches(min_duration_seconds=1)  # an unknown length is not "at least"


POOL = {
    "account_sid": [ACCOUNT, OTHER_ACCOUNT],
    "source": ["DialVerb", "Conference", ""],
    "call_sid": ["CA" + "1" * 32, "CA" + "2" * 32],
    "duration_seconds": [None, 5, 60, 600],
    "handled_queues": [[], ["HR line"], ["Sales", "WQ" + "1" * 32]],
    "handled_team_names": [[], ["HR"], ["HR", "Sales"]],
    "handled_worker_sids": [[], [WORKER], ["WK" + "8" * 32, WORKER]],
}


@pytest.fixture
def every_kind_of_recording() -> list[Recording]:
    """One recording per combination of a few facts (the rest varied round robin)."""
    made = []
    keys = ["account_sid", "source", "handled_team_names", "handled_worker_sids"]
    others = itertools.cycle(
        itertools.product(POOL["call_sid"], POOL["duration_seconds"], POOL["handled_queues"])
    )
    for combination in itertools.product(*(POOL[key] for key in keys)):
        call_sid, duration, queues = next(others)
        made.append(
            Recording.objects.create(
                sid=new_sid("RE"),
                call_sid=call_sid,
                duration_seconds=duration,
                handled_queues=queues,
                **dict(zip(keys, combination, strict=True)),
            )
        )
    return made


rules = st.builds(
    lambda **fields: RestrictionRule(name="any", reason="any", **fields),
    account_sids=st.lists(st.sampled_from(POOL["account_sid"]), max_size=2, unique=True),
    sources=st.lists(st.sampled_from(["DialVerb", "Conference"]), max_size=2, unique=True),
    call_sids=st.lists(st.sampled_from(POOL["call_sid"]), max_size=1),
    queues=st.lists(st.sampled_from(["HR line", "Sales", "Other"]), max_size=2, unique=True),
    teams=st.lists(st.sampled_from(["HR", "Sales", "Support"]), max_size=2, unique=True),
    workers=st.lists(st.sampled_from([WORKER, "WK" + "9" * 32]), max_size=2, unique=True),
    min_duration_seconds=st.sampled_from([None, 1, 60, 601]),
)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the SQL is exact on PostgreSQL")
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(candidate=rules)
def test_the_rule_and_its_sql_say_the_same(every_kind_of_recording, candidate):
    by_python = {
        r.sid
        for r in every_kind_of_recording
        if restriction_rules.restriction_rule_matches(rule=candidate, recording=r)
    }
    by_sql = set(
        Recording.objects.filter(restriction_rules.rule_scope(candidate)).values_list(
            "sid", flat=True
        )
    )
    assert by_python == by_sql


# --- automatically, as facts arrive -----------------------------------------------------------


def test_a_recording_synced_with_matching_facts_is_restricted_and_audited(client, fake_twilio):
    rule(name="payments", reason="PCI: card payments line", sources=["StartCallRecordingAPI"])
    rule(name="off", reason="disabled rules do nothing", sources=["DialVerb"], enabled=False)
    matched, unmatched = new_sid("RE"), new_sid("RE")
    fake_twilio.add_recording(matched, source="StartCallRecordingAPI", media=b"RIFF....WAVE")
    fake_twilio.add_recording(unmatched, source="DialVerb", media=b"RIFF....WAVE")
    for sid in (matched, unmatched):
        assert post_form(client, callback_params(sid, "completed")).status_code == 204
    for event in RecordingEvent.objects.order_by("pk"):
        events.event_process(event_id=event.pk)

    restricted = Recording.objects.get(sid=matched)
    assert restricted.restricted_at is not None
    assert restricted.restricted_reason == "PCI: card payments line"
    assert restricted.restricted_by == "system:restriction_rules (rule payments)"
    assert Recording.objects.get(sid=unmatched).restricted_at is None
    [row] = rows("restricted_by_rule")
    assert (row.action, row.outcome, row.identity, row.recording_sid) == (
        "recording_restrict",
        "allowed",
        "system:restriction_rules",
        matched,
    )
    assert row.detail == {
        "restricted": True,
        "reason": "PCI: card payments line",
        "rule": "payments",
    }


def test_handling_facts_from_the_flex_linkage_restrict_a_recording_once_known(settings):
    settings.TWILIO_WORKSPACE_SID = "WS" + "1" * 32
    rule(name="hr-team", reason="HR matter", teams=["HR"])
    recording, _ = local_recording()
    assert restriction_rules.restriction_rules_apply(recording=recording) is None  # no facts yet
    task = FlexTask.objects.create(
        sid=new_sid("WT"),
        workspace_sid=settings.TWILIO_WORKSPACE_SID,
        channel="voice",
        call_sid=recording.call_sid,
        queue_name="HR line",
    )
    FlexReservation.objects.create(
        sid=new_sid("WR"),
        task=task,
        worker_sid=WORKER,
        team_name="HR",
        status="accepted",
        accepted_at=timezone.now(),
    )

    linking.recording_link(recording_id=recording.pk)

    recording.refresh_from_db()
    assert recording.handled_team_names == ["HR"]
    assert recording.restricted_reason == "HR matter"
    assert [r.detail["rule"] for r in rows("restricted_by_rule")] == ["hr-team"]
    # Linked again: nothing twice.
    linking.recording_handling_refresh(recording_id=recording.pk)
    assert len(rows("restricted_by_rule")) == 1


def test_a_release_by_hand_sticks_and_rules_never_lift(client):
    rule(name="acct", reason="HR matter", account_sids=[ACCOUNT])
    recording, _ = local_recording(account_sid=ACCOUNT)
    assert restriction_rules.restriction_rules_apply(recording=recording) == "acct"
    recording.refresh_from_db()
    assert restriction.recordings_unrestrict(
        recordings=[recording], reason="cleared by HR", actor="admin:officer"
    ) == [recording.sid]
    recording.refresh_from_db()
    # The next sync or link does not undo the officer's release, nor does applying the rule.
    assert restriction_rules.restriction_rules_apply(recording=recording) is None
    rule_row = RestrictionRule.objects.get()
    assert restriction_rules.restriction_rule_preview(rule=rule_row).count == 0
    assert restriction_rules.restriction_rule_apply_existing(rule=rule_row, actor="admin:o") == []
    recording.refresh_from_db()
    assert recording.restricted_at is None
    assert [
        (r.reason_code, r.identity)
        for r in AccessLog.objects.filter(action="recording_restrict").order_by("sequence")
    ] == [
        ("restricted_by_rule", "system:restriction_rules"),
        ("recording_unrestricted", "admin:officer"),
    ]
    # Disabling or deleting a rule lifts nothing either.
    other, _ = local_recording(account_sid=ACCOUNT)
    restriction_rules.restriction_rules_apply(recording=other)
    RestrictionRule.objects.all().delete()
    other.refresh_from_db()
    assert other.restricted_at is not None


def test_the_player_is_refused_an_auto_restricted_recording_under_a_general_allow(
    client, fake_twilio
):
    allow_supervisors()
    rule(name="acct", reason="HR matter", account_sids=[ACCOUNT])
    recording, _ = local_recording(account_sid=ACCOUNT)
    restriction_rules.restriction_rules_apply(recording=recording)
    token = flex_token(fake_twilio)

    refused = ask(client, recording.sid, token)
    assert refused.status_code == 403
    last = AccessLog.objects.filter(action="url_provider").latest("sequence")
    assert (last.reason_code, last.detail["restricted"]) == ("restricted_no_grant", True)

    AccessRule.objects.create(
        name="hr-reviewers", effect="allow", roles=["supervisor"], restricted=True, reason="HR"
    )
    assert ask(client, recording.sid, token).status_code == 200


# --- from the admin -----------------------------------------------------------------------------


def staff(name: str, group: str) -> Client:
    user = User.objects.create_user(name, password="pw-not-used", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    client = Client()
    client.force_login(User.objects.get(pk=user.pk))
    return client


def test_define_preview_and_apply_a_rule_from_the_admin(django_assert_num_queries):
    officer = staff("officer", "compliance manager")
    matching = [local_recording(account_sid=OTHER_ACCOUNT)[0] for _ in range(3)]
    local_recording(account_sid=ACCOUNT)
    already = local_recording(account_sid=OTHER_ACCOUNT)[0]
    restriction.recordings_restrict(
        recordings=[already], reason="by hand first", actor="admin:x", now=timezone.now()
    )

    created = officer.post(
        "/admin/recordings/restrictionrule/add/",
        {
            "name": "second-account",
            "reason": "Caller declined QA use",
            "enabled": "on",
            "account_sids": f'["{OTHER_ACCOUNT}"]',
            "sources": "[]",
            "call_sids": "[]",
            "queues": "[]",
            "teams": "[]",
            "workers": "[]",
            "min_duration_seconds": "",
        },
    )
    assert created.status_code == 302, created.content.decode()[:2000]
    made = RestrictionRule.objects.get()
    assert made.created_by == "officer"
    [change] = rows("restriction_rule")
    assert (change.action, change.identity, change.detail["what"]) == (
        "rule_change",
        "admin:officer",
        "created",
    )
    assert change.detail["changes"]["account_sids"] == {"old": None, "new": [OTHER_ACCOUNT]}
    # Saved, it restricts nothing that exists until the officer applies it.
    assert Recording.objects.filter(restricted_at__isnull=False).count() == 1

    url = f"/admin/recordings/restrictionrule/{made.pk}/apply/"
    # Session, user, two for permissions, the rule, the count and the sample, whatever the
    # number of recordings (at most: the session's own save comes and goes with its timer).
    with django_assert_num_queries(7, exact=False):
        page = officer.get(url)
    text = page.content.decode()
    assert "<strong>3</strong> existing recordings would be restricted now" in text
    for recording in matching:
        assert recording.sid in text
    assert already.sid not in text
    fingerprint = text.split('name="fingerprint" value="')[1].split('"')[0]

    # A confirmation of a preview that no longer holds shows the preview again.
    newcomer = local_recording(account_sid=OTHER_ACCOUNT)[0]
    stale = officer.post(url, {"fingerprint": fingerprint})
    assert stale.status_code == 200
    assert "changed since the preview" in stale.content.decode()
    assert "<strong>4</strong> existing recordings" in stale.content.decode()
    assert not Recording.objects.filter(pk=newcomer.pk, restricted_at__isnull=False).exists()
    fresh = stale.content.decode().split('name="fingerprint" value="')[1].split('"')[0]

    applied = officer.post(url, {"fingerprint": fresh})
    assert applied.status_code == 302
    assert applied["Location"].endswith("/admin/recordings/recording/?restricted=yes")
    restricted = set(
        Recording.objects.filter(restricted_at__isnull=False).values_list("sid", flat=True)
    )
    assert restricted == {r.sid for r in [*matching, newcomer, already]}
    applied_rows = rows("restricted_by_rule")
    assert len(applied_rows) == 4
    assert {r.identity for r in applied_rows} == {"admin:officer"}
    assert {r.detail["rule"] for r in applied_rows} == {"second-account"}
    assert Recording.objects.get(pk=already.pk).restricted_reason == "by hand first"

    # The marker on the recording's page and the list's column.
    recording_page = officer.get(f"/admin/recordings/recording/{newcomer.pk}/change/")
    assert 'id="restricted-banner"' in recording_page.content.decode()
    assert "Caller declined QA use" in recording_page.content.decode()


def test_a_large_apply_restricts_the_rest_in_the_background(monkeypatch, settings):
    monkeypatch.setattr(restriction_rules, "INLINE_LIMIT", 2)
    officer = staff("officer", "compliance manager")
    matching = [local_recording(account_sid=OTHER_ACCOUNT)[0] for _ in range(5)]
    made = rule(account_sids=[OTHER_ACCOUNT])
    url = f"/admin/recordings/restrictionrule/{made.pk}/apply/"
    fingerprint = (
        officer.get(url).content.decode().split('name="fingerprint" value="')[1].split('"')[0]
    )
    queued: list[tuple[int, str]] = []
    monkeypatch.setattr(
        jobs, "queue_restriction_rule_apply", lambda *args: queued.append(args) or True
    )

    applied = officer.post(url, {"fingerprint": fingerprint}, follow=True)

    text = applied.content.decode()
    assert "2 recordings restricted by rule" in text
    assert "The other 3 are being restricted in the background." in text
    assert queued == [(made.pk, "admin:officer")]
    assert Recording.objects.filter(restricted_at__isnull=False).count() == 2
    # The job, as the worker runs it: the rest, in the officer's name.
    assert tasks.apply_restriction_rule(*queued[0]) == 3
    assert {r.sid for r in matching} == set(
        Recording.objects.filter(restricted_at__isnull=False).values_list("sid", flat=True)
    )
    assert {r.identity for r in rows("restricted_by_rule")} == {"admin:officer"}
    assert tasks.apply_restriction_rule(999999, "admin:officer") == 0  # a rule deleted since


def test_only_those_who_may_restrict_see_and_change_rules():
    viewer = staff("viewer", "compliance viewer")
    made = rule(account_sids=[ACCOUNT])
    assert viewer.get("/admin/recordings/restrictionrule/").status_code == 403
    assert viewer.get(f"/admin/recordings/restrictionrule/{made.pk}/apply/").status_code == 403
    assert (
        viewer.post(
            f"/admin/recordings/restrictionrule/{made.pk}/apply/", {"fingerprint": "x" * 64}
        ).status_code
        == 403
    )
    refused = AccessLog.objects.filter(reason_code="permission", identity="admin:viewer")
    assert [r.detail["page"] for r in refused] == ["restriction_rule_apply"] * 2
    index = viewer.get("/admin/").content.decode()
    assert "restriction-rules-link" not in index
    officer = staff("officer", "compliance manager")
    officer_index = officer.get("/admin/").content.decode()
    assert "restriction-rules-link" in officer_index
    assert "evidence-packages-link" in officer_index
    assert officer.get("/admin/recordings/restrictionrule/999999/apply/").status_code == 404


def test_deleting_a_rule_is_audited_and_keeps_its_restrictions():
    officer = staff("officer", "compliance manager")
    made = rule(account_sids=[ACCOUNT])
    recording, _ = local_recording(account_sid=ACCOUNT)
    restriction_rules.restriction_rules_apply(recording=recording)
    deleted = officer.post(f"/admin/recordings/restrictionrule/{made.pk}/delete/", {"post": "yes"})
    assert deleted.status_code == 302
    assert [r.detail["what"] for r in rows("restriction_rule")] == ["deleted"]
    recording.refresh_from_db()
    assert recording.restricted_at is not None


# --- restricted recordings' own retention -------------------------------------------------------

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def aged(days: int, *, restricted: bool, **fields) -> Recording:
    recording = Recording.objects.create(
        sid=new_sid("RE"),
        account_sid=ACCOUNT,
        source="DialVerb",
        status="completed",
        start_time=NOW - timedelta(days=days),
        **fields,
    )
    if restricted:
        restriction.recordings_restrict(
            recordings=[recording], reason="HR matter", actor="admin:x", now=NOW
        )
    return recording


def planned(now: datetime = NOW) -> set[str]:
    return {step.recording_sid for step in retention.retention_plan(now=now)}


def test_restricted_recordings_keep_their_own_period_and_holds_still_win():
    policy = RetentionPolicy.objects.create(name="keep-30", keep_days=30, restricted_keep_days=365)
    plain_old = aged(40, restricted=False)
    restricted_old = aged(40, restricted=True)
    restricted_ancient = aged(400, restricted=True)
    held_ancient = aged(400, restricted=True)
    LegalHold.objects.create(reason="litigation", recording_sids=[held_ancient.sid])

    assert planned() == {plain_old.sid, restricted_ancient.sid}

    # Shorter for restricted ones (caller declined QA use: delete sooner).
    policy.restricted_keep_days = 10
    policy.save()
    young_restricted = aged(20, restricted=True)
    young_plain = aged(20, restricted=False)
    assert planned() == {
        plain_old.sid,
        restricted_old.sid,
        restricted_ancient.sid,
        young_restricted.sid,
    }
    assert young_plain.sid not in planned()

    # Empty: restricted recordings follow keep_days like the others.
    policy.restricted_keep_days = None
    policy.save()
    assert planned() == {plain_old.sid, restricted_old.sid, restricted_ancient.sid}


def test_the_longest_keep_wins_across_policies_for_restricted_recordings():
    RetentionPolicy.objects.create(name="short", keep_days=30, restricted_keep_days=5)
    RetentionPolicy.objects.create(name="account", keep_days=10, account_sids=[ACCOUNT])
    restricted = aged(20, restricted=True)
    plain = aged(20, restricted=False)
    steps = {step.recording_sid: step.policy for step in retention.retention_plan(now=NOW)}
    # Restricted: max(5, 10) = 10 days → due, by "account". Plain: max(30, 10) = 30 → kept.
    assert steps == {restricted.sid: "account"}
    assert plain.sid not in steps
