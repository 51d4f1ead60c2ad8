"""Legal holds as an officer places and reads them in the admin (``recordings.admin.holds``):
SIDs as text, holds from a selection or a search through a preview, and "on hold" on the
recordings list (column, filter), the recording's banner and its timeline. Against PostgreSQL
with Django's test client; query counts pinned."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.models import AccessLog
from recordings.admin.holds import MAX_HOLD_RECORDINGS, sids_parse
from recordings.lifecycle import retention
from recordings.models import LegalHold, Recording

pytestmark = pytest.mark.django_db

LIST = "admin:recordings_recording_changelist"
HOLD = "admin:recordings_recording_hold"
BASE = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)


def sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


@pytest.fixture
def make(recording_make) -> Callable[..., Recording]:
    """Recordings that started at ``BASE`` unless told otherwise."""
    return lambda **fields: recording_make(**{"start_time": BASE, **fields})


@pytest.fixture
def staff(django_user_model) -> Callable[[str | None], Client]:
    """``staff(group)``: a logged-in client for a staff member of ``group`` (or of none)."""

    def client_for(group: str | None) -> Client:
        user = django_user_model.objects.create_user(
            (group or "nobody").replace(" ", "_"), password="unused", is_staff=True
        )
        if group:
            user.groups.add(Group.objects.get(name=group))
        client = Client()
        client.force_login(user)
        return client

    return client_for


def hold_rows(**filters) -> list[AccessLog]:
    return list(AccessLog.objects.filter(action="legal_hold", **filters).order_by("sequence"))


# --- SIDs as text -------------------------------------------------------------------------------


def test_sids_parse_takes_lines_commas_spaces_and_pasted_json():
    re1, re2, ca1 = sid("RE"), sid("RE"), sid("CA")
    assert sids_parse(f"{re1}\n{ca1}\r\n  {re2}, {re1}") == ([re1, re2], [ca1])
    assert sids_parse(f'["{re1}", "{ca1}"]') == ([re1], [ca1])
    assert sids_parse(f"{re1};{re2}\t") == ([re1, re2], [])
    assert sids_parse("") == ([], [])


@pytest.mark.parametrize(
    "hostile",
    [
        "<script>alert(1)</script>",
        "RE" + "0" * 32 + "0",  # one digit too many
        "RE" + "g" * 32,
        "re" + "0" * 32,
        "CA" + "0" * 31 + "\x00",
        "RE" + "0" * 32 + "\u200b",  # a zero-width space glued on
        "'OR(1=1)--",
        "A" * 5000,
    ],
)
def test_every_bad_value_is_named_and_nothing_is_kept(hostile):
    good = sid("RE")
    with pytest.raises(ValidationError) as error:
        sids_parse(f"{good}\n{hostile}\nnope")
    messages = error.value.messages
    assert len(messages) == 2
    assert "nope" in messages[1]
    assert all(len(message) < 200 for message in messages)  # long values are cut
    assert "\x00" not in messages[0]


def test_a_huge_paste_is_refused_whole():
    with pytest.raises(ValidationError, match="At most"):
        sids_parse(" ".join(sid("RE") for _ in range(MAX_HOLD_RECORDINGS + 1)))
    with pytest.raises(ValidationError, match="too much text"):
        sids_parse("x" * 3_000_000)


def test_the_hold_form_takes_pasted_sids_and_a_call_sid_just_works(admin_client, make):
    recording = make()
    other_call = sid("CA")
    response = admin_client.post(
        reverse("admin:recordings_legalhold_add"),
        {
            "reason": "subpoena",
            "case_reference": "CASE-1",
            # A call SID pasted among the recordings goes where its prefix says.
            "recording_sids": f"{recording.sid}\n{other_call}",
            "call_sids": recording.call_sid,
        },
    )
    assert response.status_code == 302
    hold = LegalHold.objects.get()
    assert hold.recording_sids == [recording.sid]
    assert hold.call_sids == [other_call, recording.call_sid]
    assert hold.created_by == "admin"
    (row,) = hold_rows()
    assert (row.reason_code, row.detail["source"], row.identity) == (
        "created",
        "form",
        "admin:admin",
    )


def test_the_hold_form_names_each_bad_value_and_keeps_the_text(admin_client):
    typed = f"{sid('RE')}\n<b>not-a-sid</b>\nCA123"
    response = admin_client.post(
        reverse("admin:recordings_legalhold_add"),
        {"reason": "r", "recording_sids": typed, "call_sids": ""},
    )
    assert response.status_code == 200
    text = response.content.decode()
    assert "&lt;b&gt;not-a-sid&lt;/b&gt;” is not a recording SID" in text
    assert "“CA123” is not a recording SID" in text
    assert "<b>not-a-sid</b>" not in text  # shown as text, never as markup
    assert "CA123</textarea>" in text  # what was typed is still there
    assert not LegalHold.objects.exists()
    assert not hold_rows()


def test_a_hold_still_needs_something_to_hold(admin_client):
    response = admin_client.post(
        reverse("admin:recordings_legalhold_add"),
        {"reason": "r", "recording_sids": " \n ", "call_sids": ""},
    )
    assert response.status_code == 200
    assert "Name recordings, calls or a date range to hold." in response.content.decode()


def test_a_placed_hold_shows_its_sids_one_per_line(admin_client, make):
    recording = make()
    hold = LegalHold.objects.create(reason="r", recording_sids=[recording.sid, sid("RE")])
    response = admin_client.get(reverse("admin:recordings_legalhold_change", args=[hold.pk]))
    assert recording.sid in response.content.decode()


# --- One rule, in Python and in SQL -------------------------------------------------------------


hold_shapes = st.fixed_dictionaries(
    {
        "by_sid": st.booleans(),
        "by_call": st.booleans(),
        "from_days": st.none() | st.integers(-3, 3),
        "until_days": st.none() | st.integers(-3, 3),
        "released": st.booleans(),
    }
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(shapes=st.lists(hold_shapes, max_size=3))
def test_the_list_filter_and_the_deletion_rule_agree(make, shapes):
    """``recordings_on_hold`` (SQL, the filter) and ``hold_covers`` (Python, deletion) say the
    same for every kind of hold, including recordings without a start time."""
    LegalHold.objects.all().delete()
    Recording.objects.all().delete()
    recordings = [
        make(start_time=BASE + timedelta(days=offset)) for offset in (-2, -1, 0, 1, 2)
    ] + [make(start_time=None, date_created=BASE), make(call_sid="")]
    for index, shape in enumerate(shapes):
        target = recordings[index % len(recordings)]
        LegalHold.objects.create(
            reason="r",
            recording_sids=[target.sid] if shape["by_sid"] else [],
            call_sids=[target.call_sid] if shape["by_call"] and target.call_sid else [],
            started_from=None
            if shape["from_days"] is None
            else BASE + timedelta(days=shape["from_days"]),
            started_until=None
            if shape["until_days"] is None
            else BASE + timedelta(days=shape["until_days"]),
            released_at=timezone.now() if shape["released"] else None,
        )
    expected = {r.pk for r in recordings if retention.recording_is_held(r) is not None}
    everything = Recording.objects.all()
    held = set(retention.recordings_on_hold(everything, held=True).values_list("pk", flat=True))
    free = set(retention.recordings_on_hold(everything, held=False).values_list("pk", flat=True))
    assert held == expected
    assert free == {r.pk for r in recordings} - expected
    assert set(retention.holds_by_recording(recordings)) == expected


# --- The recordings list ------------------------------------------------------------------------


def test_the_list_shows_holds_in_a_column_and_filters_by_them(admin_client, make):
    held, free = make(), make()
    hold = LegalHold.objects.create(
        reason="r", case_reference="CASE-7", call_sids=[held.call_sid], created_by="jane"
    )
    page = admin_client.get(reverse(LIST)).content.decode()
    assert reverse("admin:recordings_legalhold_change", args=[hold.pk]) in page
    assert "on legal hold" in page  # the filter's title

    yes = admin_client.get(reverse(LIST), {"on_hold": "yes"}).context["cl"].result_list
    no = admin_client.get(reverse(LIST), {"on_hold": "no"}).context["cl"].result_list
    assert [r.sid for r in yes] == [held.sid]
    assert [r.sid for r in no] == [free.sid]


def test_the_list_reads_holds_once_per_page(admin_client, make):
    """Pinned: the hold column costs one query for the page, not one per row (the other
    is the "legal hold" filter's list of holds)."""
    make()
    LegalHold.objects.create(reason="r", case_reference="C", started_from=BASE - timedelta(days=9))

    def holds_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get(reverse(LIST)).status_code == 200
        return sum('FROM "recordings_legalhold"' in q["sql"] for q in queries.captured_queries)

    few = holds_queries()
    for _ in range(20):
        make()
    assert few == holds_queries() == 2


# --- Holding a selection or a search ------------------------------------------------------------


def test_hold_a_selection_previews_then_places(admin_client, make):
    one, two, left_out = make(), make(), make()
    preview = admin_client.post(
        reverse(LIST), {"action": "place_legal_hold", "_selected_action": [one.pk, two.pk]}
    )
    text = preview.content.decode()
    assert "2 recordings</strong> will be held" in text
    assert one.sid in text
    assert two.sid in text
    assert left_out.sid not in text
    assert not LegalHold.objects.exists()  # a preview holds nothing

    missing = admin_client.post(
        reverse(HOLD),
        {"mode": "selection", "sids": f"{one.sid} {two.sid}", "reason": " ", "confirm": "1"},
    )
    assert "This field is required" in missing.content.decode() or "Say why" in (
        missing.content.decode()
    )
    assert not LegalHold.objects.exists()

    placed = admin_client.post(
        reverse(HOLD),
        {
            "mode": "selection",
            # A forged or unknown value is dropped: only recordings the portal has are held.
            "sids": f"{one.sid} {two.sid} {sid('RE')} <x>",
            "reason": "litigation",
            "case_reference": "CASE-2",
            "confirm": "Place the hold",
        },
        follow=True,
    )
    hold = LegalHold.objects.get()
    assert sorted(hold.recording_sids) == sorted([one.sid, two.sid])
    assert (hold.case_reference, hold.created_by, hold.call_sids) == ("CASE-2", "admin", [])
    assert "placed on 2 recording(s)" in placed.content.decode()
    (row,) = hold_rows()
    assert row.detail["source"] == "selection"
    assert row.detail["recordings"] == 2


def test_hold_everything_a_search_matches(admin_client, make):
    call = sid("CA")
    first, second = make(call_sid=call), make(call_sid=call, start_time=BASE + timedelta(hours=1))
    make()  # another call: not held
    preview = admin_client.get(reverse(HOLD), {"q": call})
    text = preview.content.decode()
    assert "2 recordings</strong> will be held" in text
    assert f"every recording of call <code>{call}</code>" in text
    fingerprint = preview.context["fingerprint"]

    admin_client.post(
        f"{reverse(HOLD)}?q={call}",
        {
            "reason": "regulator",
            "case_reference": "REG-1",
            "fingerprint": fingerprint,
            "confirm": "1",
        },
    )
    hold = LegalHold.objects.get()
    assert sorted(hold.recording_sids) == sorted([first.sid, second.sid])
    assert hold.call_sids == [call]  # later recordings of the call are held too
    assert hold_rows()[0].detail["source"] == "search"


def test_a_search_that_changed_since_the_preview_is_previewed_again(admin_client, make):
    call = sid("CA")
    make(call_sid=call)
    fingerprint = admin_client.get(reverse(HOLD), {"q": call}).context["fingerprint"]
    make(call_sid=call)  # arrived between the preview and the confirmation
    again = admin_client.post(
        f"{reverse(HOLD)}?q={call}",
        {"reason": "r", "fingerprint": fingerprint, "confirm": "1"},
    )
    assert "matches different recordings than when you previewed it" in again.content.decode()
    assert "2 recordings</strong> will be held" in again.content.decode()
    assert not LegalHold.objects.exists()


def test_hold_all_across_pages_goes_to_the_search_preview(admin_client, make):
    make(source="Conference")
    response = admin_client.post(
        f"{reverse(LIST)}?source=Conference",
        {"action": "place_legal_hold", "_selected_action": ["1"], "select_across": "1"},
    )
    assert response.status_code == 302
    assert response["Location"] == f"{reverse(HOLD)}?source=Conference"


def test_a_search_with_bad_filters_is_not_held(admin_client):
    response = admin_client.get(reverse(HOLD), {"nonsense__field": "1"}, follow=True)
    assert "its filters are not valid" in response.content.decode()
    assert not LegalHold.objects.exists()


def test_placing_holds_needs_the_permission_and_refusals_are_audited(staff, make):
    recording = make()
    viewer = staff("compliance viewer")
    assert viewer.get(reverse(HOLD), {"q": recording.call_sid}).status_code == 403
    response = viewer.post(
        reverse(HOLD),
        {"mode": "selection", "sids": recording.sid, "reason": "r", "confirm": "1"},
    )
    assert response.status_code == 403
    assert not LegalHold.objects.exists()
    denied = hold_rows(outcome="denied")
    assert [(r.reason_code, r.identity) for r in denied] == [
        ("permission", "admin:compliance_viewer")
    ] * 2
    action_form = viewer.get(reverse(LIST)).context["action_form"]
    assert action_form is None or "place_legal_hold" not in dict(
        action_form.fields["action"].choices
    )

    manager = staff("compliance manager")
    assert manager.get(reverse(HOLD), {"q": recording.call_sid}).status_code == 200
    manager.post(
        reverse(HOLD),
        {"mode": "selection", "sids": recording.sid, "reason": "r", "confirm": "1"},
    )
    assert LegalHold.objects.get().created_by == "compliance_manager"


def test_the_hold_page_answers_in_few_queries(admin_client, make, django_assert_max_num_queries):
    """Pinned: the preview of a search reads the list once, the sample and the holds once."""
    call = sid("CA")
    for _ in range(30):
        make(call_sid=call)
    with django_assert_max_num_queries(12):
        assert admin_client.get(reverse(HOLD), {"q": call}).status_code == 200


# --- The recording's page -----------------------------------------------------------------------


def test_the_recording_page_shows_its_holds_and_the_timeline_their_history(admin_client, make):
    recording = make()
    hold = LegalHold.objects.create(
        reason="fraud inquiry",
        case_reference="CASE-8",
        call_sids=[recording.call_sid],
        created_by="jane",
    )
    released = LegalHold.objects.create(
        reason="old case",
        case_reference="CASE-OLD",
        recording_sids=[recording.sid],
        created_by="jane",
    )
    retention.legal_hold_release(hold_id=released.pk, released_by="kim", reason="settled")
    LegalHold.objects.create(reason="other", case_reference="CASE-ELSE", recording_sids=[sid("RE")])

    response = admin_client.get(reverse("admin:recordings_recording_change", args=[recording.pk]))
    text = response.content.decode()
    assert (
        f'On legal hold: <a href="{reverse("admin:recordings_legalhold_change", args=[hold.pk])}">'
        "CASE-8</a>" in text
    )
    assert f"since {hold.created_at:%Y-%m-%d %H:%M:%S} UTC, placed by jane" in text
    assert text.count("legal-hold-banner") == 1  # the released hold has none

    titles = [(e.kind, e.title, e.identity) for e in response.context["timeline"].events]
    assert ("hold", "Legal hold placed: CASE-8", "admin:jane") in titles
    assert ("hold", "Legal hold placed: CASE-OLD (released)", "admin:jane") in titles
    assert ("hold", "Legal hold released: CASE-OLD", "admin:kim") in titles
    assert not any("CASE-ELSE" in title for _, title, _ in titles)


def test_a_recording_without_holds_or_deletion_has_no_banner(admin_client, make):
    recording = make()
    response = admin_client.get(reverse("admin:recordings_recording_change", args=[recording.pk]))
    assert 'id="recording-state"' not in response.content.decode()


def test_the_list_links_its_search_to_the_hold_preview(admin_client, staff, make):
    recording = make()
    text = admin_client.get(reverse(LIST), {"q": recording.call_sid}).content.decode()
    assert f'href="{reverse(HOLD)}?q={recording.call_sid}"' in text
    viewer_page = staff("compliance viewer").get(reverse(LIST)).content.decode()
    assert 'id="hold-search"' not in viewer_page


def test_the_timeline_reads_the_holds_in_one_query(make, django_assert_num_queries):
    """Pinned: five queries whatever the number of holds (the recording, its callbacks, its
    links, the holds, its log rows)."""
    from audit.admin.selectors import recording_timeline

    recording = make()
    for index in range(5):
        LegalHold.objects.create(
            reason="r", case_reference=f"C-{index}", call_sids=[recording.call_sid]
        )
    with django_assert_num_queries(5):
        timeline = recording_timeline(sid=recording.sid)
    assert sum(event.kind == "hold" for event in timeline.events) == 5


def test_a_holds_page_says_what_it_covers_and_the_list_filters_by_it(admin_client, make):
    inside = make(start_time=BASE)
    make(start_time=BASE + timedelta(days=30))
    by_range = LegalHold.objects.create(
        reason="r",
        case_reference="RANGE-1",
        started_from=BASE - timedelta(days=1),
        started_until=BASE + timedelta(days=1),
    )
    page = admin_client.get(reverse("admin:recordings_legalhold_change", args=[by_range.pk]))
    assert f'<a href="{reverse(LIST)}?legal_hold={by_range.pk}">1 recording</a>' in (
        page.content.decode()
    )
    listed = admin_client.get(reverse(LIST), {"legal_hold": str(by_range.pk)}).context["cl"]
    assert [r.sid for r in listed.result_list] == [inside.sid]
    # A released hold's link still shows what it covered; an unknown hold shows nothing.
    retention.legal_hold_release(hold_id=by_range.pk, released_by="kim", reason="done")
    listed = admin_client.get(reverse(LIST), {"legal_hold": str(by_range.pk)}).context["cl"]
    assert [r.sid for r in listed.result_list] == [inside.sid]
    for unknown in ("999999", "x'--"):
        listed = admin_client.get(reverse(LIST), {"legal_hold": unknown}).context["cl"]
        assert list(listed.result_list) == []
    add = admin_client.get(reverse("admin:recordings_legalhold_add")).content.decode()
    assert "shown once the hold is placed" in add
