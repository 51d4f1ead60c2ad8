"""The officer's journey "read a rule's history", in real headless Chromium: a rule loaded by
``import_access_rules``, edited in the admin through its one-value-per-line lists, then the
History button of its page, which shows both changes field by field and links each to its row
in the access log. Screenshots go to ``test-artifacts/``."""

from __future__ import annotations

import pytest

from audit.models import AccessLog, AccessRule
from audit.rules_file import rules_load
from portal.tests.test_browser_admin import log_in, officer, snap  # noqa: F401  (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_edit_a_rule_then_read_its_history(live_server, page, officer):  # noqa: F811
    rules_load(
        {
            "rules": [
                {
                    "name": "qa-supervisors",
                    "effect": "allow",
                    "identities": ["qa_*"],
                    "roles": ["supervisor", "wfo.quality_manager"],
                    "reason": "COMP-1",
                }
            ]
        },
        replace=False,
        actor="cli:import_access_rules",
    )
    rule = AccessRule.objects.get()
    log_in(page, live_server, officer)
    page.goto(f"{live_server.url}/admin/audit/accessrule/{rule.pk}/change/")
    assert page.input_value("#id_roles") == "supervisor\nwfo.quality_manager"
    page.fill("#id_roles", "supervisor\nqa_lead")
    page.fill("#id_teams", "Team Blue")
    snap(page, "rule-1-edit-lists")
    page.click("input[name=_continue]")
    page.wait_for_selector(".messagelist")

    page.click("a.historylink")
    page.wait_for_selector("#rule-history")
    entries = page.locator(".rule-history-entry")
    assert entries.count() == 2
    created, changed = entries.nth(0).inner_text(), entries.nth(1).inner_text()
    assert "Created" in created
    assert "cli:import_access_rules by a rules-file import" in created
    assert "Changed" in changed
    assert "admin:officer in the admin" in changed
    roles = page.locator(".rule-history-entry").nth(1).locator("[data-field=roles]").inner_text()
    assert "+ qa_lead" in roles
    assert "\N{MINUS SIGN} wfo.quality_manager" in roles
    assert "+ Team Blue" in changed
    snap(page, "rule-2-history")

    # Each change links to its row in the access log.
    edit_row = AccessLog.objects.filter(action="rule_change").order_by("sequence").last()
    page.click(f"#change-{edit_row.sequence} h2 a")
    page.wait_for_selector("#accesslog_form, #content-main")
    assert f"/admin/audit/accesslog/{edit_row.pk}/" in page.url
    snap(page, "rule-3-log-row")
    assert AccessLog.objects.filter(identity="admin:officer", reason_code="rule_history").exists()
