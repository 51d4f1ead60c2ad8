"""Maker/checker in real headless Chromium: one compliance manager adds an allow rule and is
told it waits for a second staff member (the rule does not exist yet, and they cannot approve
it themselves); a second manager finds it from the dashboard, reads old → new and approves it,
and the rule takes effect; a legal-hold release proposed the same way is refused with a note
and the hold stays. Screenshots go to ``test-artifacts/``."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User

from audit.models import AccessLog, AccessRule, ControlChange
from portal.tests.test_browser_admin import snap
from recordings.models import LegalHold

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery staple 15"


@pytest.fixture
def managers(settings) -> None:
    settings.ADMIN_REQUIRE_OTP = False
    settings.CONTROL_CHANGES_NEED_APPROVAL = True
    group = Group.objects.get(name="compliance manager")
    for name in ("maker", "checker"):
        User.objects.create_user(name, password=PASSWORD, is_staff=True).groups.add(group)


def _log_in(browser, live_server, username: str):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.goto(f"{live_server.url}/admin/login/?next=/admin/")
    tab.fill("#id_username", username)
    tab.fill("#id_password", PASSWORD)
    tab.click("input[type=submit]")
    tab.wait_for_selector("#user-tools")
    return context, tab


def test_propose_as_one_approve_as_another_refuse_a_release(live_server, browser, page, managers):
    hold = LegalHold.objects.create(
        reason="litigation", case_reference="CASE-7", recording_sids=["RE" + "1" * 32]
    )
    maker_context, maker = _log_in(browser, live_server, "maker")
    checker_context, checker = _log_in(browser, live_server, "checker")
    try:
        # The maker adds an allow rule: kept as a pending change, nothing created.
        maker.goto(f"{live_server.url}/admin/audit/accessrule/add/")
        maker.fill("#id_name", "qa-team")
        maker.check("#id_effect input[value=allow]")
        maker.fill("#id_identities", "qa_*")
        maker.fill("#id_reason", "COMP-9")
        maker.click("input[name=_save]")
        maker.wait_for_selector("#control-change")
        message = maker.locator(".messagelist").inner_text()
        assert "Saved as pending change #" in message
        assert "needs a second staff member's approval" in message
        assert not AccessRule.objects.exists()
        # ...and cannot approve it.
        assert maker.locator("#change-approve").count() == 0
        assert "You proposed this change" in maker.locator("#change-conflict").inner_text()
        snap(maker, "maker-checker-1-pending")

        # The checker finds it from the dashboard and approves it.
        checker.goto(f"{live_server.url}/admin/audit/accesslog/dashboard/")
        assert checker.locator("#pending-control-changes-count").inner_text() == "1"
        checker.click("#pending-control-changes a")
        checker.wait_for_selector("#result_list")
        checker.click("#result_list tbody tr a >> nth=0")
        checker.wait_for_selector("#change-diff")
        assert "+ qa_*" in checker.locator("[data-field=identities]").inner_text()
        snap(checker, "maker-checker-2-review")
        checker.fill("#change-note", "checked with COMP-9")
        checker.click("#change-approve")
        checker.wait_for_selector(".messagelist")
        assert "approved and applied" in checker.locator(".messagelist").inner_text()
        assert checker.get_attribute("#control-change", "data-status") == "applied"
        assert AccessRule.objects.get(name="qa-team").identities == ["qa_*"]
        snap(checker, "maker-checker-3-applied")

        # The maker proposes releasing the hold; the checker refuses it with a note.
        maker.goto(f"{live_server.url}/admin/recordings/legalhold/")
        maker.check(f"input[name=_selected_action][value='{hold.pk}']")
        maker.select_option("select[name=action]", "release")
        maker.fill("input[name=release_reason]", "matter settled")
        maker.click("button[name=index]")
        maker.wait_for_selector(".messagelist")
        assert "Saved as pending change #" in maker.locator(".messagelist").inner_text()
        release = ControlChange.objects.get(kind="legal_hold_release")
        checker.goto(f"{live_server.url}/admin/audit/controlchange/{release.pk}/change/")
        checker.fill("#change-note", "settlement not signed yet")
        checker.click("#change-refuse")
        checker.wait_for_selector(".messagelist")
        assert checker.get_attribute("#control-change", "data-status") == "refused"
        assert "settlement not signed yet" in checker.locator("#control-change").inner_text()
        snap(checker, "maker-checker-4-refused")
        hold.refresh_from_db()
        assert hold.released_at is None
    finally:
        maker_context.close()
        checker_context.close()
    codes = set(
        AccessLog.objects.filter(action="control_change").values_list("reason_code", flat=True)
    )
    assert codes >= {"change_proposed", "change_approved", "change_refused"}
