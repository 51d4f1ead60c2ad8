"""url_provider and the rules about who handled a recording: the caller's team comes from the
worker directory by the token's ``worker_sid`` (one query, only when a rule in force needs it),
and the handling facts are read with the recording."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import AccessLog, AccessRule
from recordings.models import FlexWorker
from recordings.playback.player_requests import caller_team_of
from recordings.tests.playback_fixtures import ask, flex_token, local_recording

pytestmark = pytest.mark.django_db

CALLER_WORKER = "WK" + "1" * 32  # the worker SID of flex_token's tokens
OTHER_WORKER = "WK" + "2" * 32


def worker(sid: str, team: str, **fields) -> FlexWorker:
    return FlexWorker.objects.create(
        sid=sid, workspace_sid="WS" + "0" * 32, team_name=team, **fields
    )


def team_rule() -> AccessRule:
    return AccessRule.objects.create(
        name="own-team", effect="allow", roles=["supervisor"], handled_by="caller_team"
    )


def handled(team: str, by: str = OTHER_WORKER):
    recording, _ = local_recording(
        handled_worker_sids=[by], handled_team_names=[team], handled_queues=["Sales"]
    )
    return recording


def test_a_supervisor_plays_the_calls_of_their_own_team(client, fake_twilio):
    team_rule()
    worker(CALLER_WORKER, "Team Blue")
    token = flex_token(fake_twilio)
    assert ask(client, handled("Team Blue").sid, token).status_code == 200
    assert ask(client, handled("Team Green").sid, token).status_code == 403
    unhandled, _ = local_recording()
    assert ask(client, unhandled.sid, token).status_code == 403
    reasons = list(AccessLog.objects.order_by("sequence").values_list("reason_code", "rule_name"))
    assert reasons == [
        ("allowed_by_rule", "own-team"),
        ("no_matching_rule", ""),
        ("no_matching_rule", ""),
    ]


def test_an_unknown_or_deleted_worker_has_no_team(client, fake_twilio):
    team_rule()
    token = flex_token(fake_twilio)
    recording = handled("Team Blue")
    assert ask(client, recording.sid, token).status_code == 403  # not in the directory
    worker(CALLER_WORKER, "Team Blue", deleted_at=timezone.now())
    assert ask(client, recording.sid, token).status_code == 403
    assert caller_team_of(worker_sid=CALLER_WORKER) == ""
    assert caller_team_of(worker_sid="") == ""


def test_an_agent_plays_their_own_calls(client, fake_twilio):
    AccessRule.objects.create(
        name="own-calls", effect="allow", roles=["agent"], handled_by="caller"
    )
    token = flex_token(fake_twilio, identity="sam", roles=("agent",))
    assert ask(client, handled("Team Blue", by=CALLER_WORKER).sid, token).status_code == 200
    assert ask(client, handled("Team Blue", by=OTHER_WORKER).sid, token).status_code == 403


def test_queue_rules_see_the_recordings_queues(client, fake_twilio):
    AccessRule.objects.create(name="sales", effect="allow", queues=["Sales"])
    assert ask(client, handled("Team Blue").sid, flex_token(fake_twilio)).status_code == 200


def test_the_team_is_looked_up_only_when_a_rule_needs_it(client, fake_twilio):
    """The difference in queries between two otherwise identical requests is the lookup."""
    AccessRule.objects.create(name="supervisors", effect="allow", roles=["supervisor"])
    worker(CALLER_WORKER, "Team Blue")
    token = flex_token(fake_twilio)
    recording = handled("Team Blue")
    ask(client, recording.sid, token)  # caches the token and the rules

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert ask(client, recording.sid, token).status_code == 200
        return sum("recordings_flexworker" in q["sql"] for q in captured.captured_queries)

    assert queries() == 0
    AccessRule.objects.create(
        name="own-team", effect="deny", handled_by="caller_team", teams=["Team Red"]
    )
    ask(client, recording.sid, token)  # reads the changed rules
    assert queries() == 1


def test_the_rules_version_is_read_with_the_recording_not_on_its_own(client, fake_twilio):
    """url_provider reads the rule set's version token in the recording's query: no query of
    its own reads ``audit_accessrulesetversion`` while nothing changed, and a rule changed
    between two requests is still seen by the second (the token it carries changed)."""
    rule = AccessRule.objects.create(name="supervisors", effect="allow", roles=["supervisor"])
    token = flex_token(fake_twilio)
    recording = handled("Team Blue")
    ask(client, recording.sid, token)  # caches the token and the rules

    with CaptureQueriesContext(connection) as captured:
        assert ask(client, recording.sid, token).status_code == 200
    reads = [q["sql"] for q in captured.captured_queries if "accessrulesetversion" in q["sql"]]
    assert len(reads) == 1, reads
    assert "recordings_recording" in reads[0]  # the subquery inside the recording's read

    rule.roles = ["wfo.quality_manager"]
    rule.save()
    assert ask(client, recording.sid, token).status_code == 403
