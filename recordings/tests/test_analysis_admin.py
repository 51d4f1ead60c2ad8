"""The analysis in the compliance console: the recordings list's speech filter (QA triggers),
the dashboard's speech per team, and the recording page's player (audited)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from audit.models import AccessLog
from recordings.analysis import selectors, service
from recordings.models import AnalysisState, RecordingAnalysis
from recordings.tests.analysis_fixtures import conversation_samples, wav_bytes
from recordings.tests.test_analysis import stored_locally

pytestmark = pytest.mark.django_db


@pytest.fixture
def officer(client, settings):
    settings.ADMIN_REQUIRE_OTP = False
    user = User.objects.create_user("officer", password="x", is_staff=True, is_superuser=True)
    client.force_login(user)
    return client


def analysed(*, customer, agent, duration, teams=()):
    samples = conversation_samples(duration=duration, customer=customer, agent=agent)
    recording = stored_locally(wav_bytes(samples), handled_team_names=list(teams))
    assert service.recording_analyse(recording_id=recording.pk).code == "done"
    return recording


def test_the_speech_filter_finds_long_silences_and_heavy_cross_talk(officer):
    quiet = analysed(customer=[(0.5, 3)], agent=[(27, 30)], duration=30)  # 24 s of silence
    talking_over = analysed(customer=[(0.5, 8)], agent=[(2, 9)], duration=10)
    plain = analysed(customer=[(0.5, 4)], agent=[(4.5, 9)], duration=10)
    unanalysed = stored_locally(b"later")
    url = reverse("admin:recordings_recording_changelist")

    def listed(choice: str) -> set[str]:
        page = officer.get(url, {"speech": choice})
        assert page.status_code == 200
        return {r.sid for r in page.context["cl"].result_list}

    assert listed("long_silence") == {quiet.sid}
    assert listed("cross_talk") == {talking_over.sid}
    assert listed("not_analysed") == {unanalysed.sid}
    assert plain.sid not in listed("long_silence") | listed("cross_talk")


def test_the_dashboard_shows_talk_ratio_and_silence_per_team(officer):
    analysed(customer=[(0.5, 3)], agent=[(3.5, 9.5)], duration=10, teams=["Gold Sales"])
    analysed(customer=[(0.5, 5)], agent=[(5.5, 7.5)], duration=10, teams=["Gold Sales", "Care"])
    analysed(customer=[(0.5, 5)], agent=[(5.5, 7.5)], duration=10)  # no team known

    from django.utils import timezone

    rows = selectors.speech_per_team(since=timezone.now() - timezone.timedelta(days=30))
    assert [(r.team, r.recordings) for r in rows] == [("Gold Sales", 2), ("Care", 1)]
    gold = rows[0]
    # Agent 6 s of 8.5 s spoken, then 2 s of 6.5 s.
    assert gold.agent_talk_ratio == pytest.approx((6 / 8.5 + 2 / 6.5) / 2, abs=0.02)
    assert gold.silence_ratio == pytest.approx((1.5 / 10 + 3.5 / 10) / 2, abs=0.02)

    page = officer.get(reverse("admin:audit_accesslog_dashboard"))
    html = page.content.decode()
    assert 'id="speech-per-team"' in html
    assert "Gold Sales" in html
    assert "Care" in html


def test_the_recording_page_shows_the_player_and_audits_it(officer):
    recording = analysed(customer=[(0.5, 3)], agent=[(3.5, 9.5)], duration=10)
    page = officer.get(reverse("admin:recordings_recording_change", args=[recording.pk]))
    html = page.content.decode()
    assert 'id="waveform-canvas"' in html
    assert 'id="waveform-data"' in html
    assert "/media/" in html  # the audio, through a short-lived portal link
    row = AccessLog.objects.get(action="waveform_view")
    assert (row.identity, row.reason_code) == ("admin:officer", "admin_player")


def test_the_recording_page_says_why_there_is_no_waveform(officer):
    broken = stored_locally(b"not audio" * 30)
    service.recording_analyse(recording_id=broken.pk)
    assert RecordingAnalysis.objects.get(recording=broken).state == AnalysisState.FAILED
    html = officer.get(reverse("admin:recordings_recording_change", args=[broken.pk])).content
    assert b"could not be computed" in html
    pending = stored_locally(b"later")
    html = officer.get(reverse("admin:recordings_recording_change", args=[pending.pk])).content
    assert b"No waveform yet" in html
