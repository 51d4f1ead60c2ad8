"""The browser rig works: Debian's Chromium opens a page the portal serves."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_admin_login_page_renders_in_chromium(live_server, page):
    page.goto(f"{live_server.url}/admin/login/")
    assert page.title().startswith("Log in")
    assert page.locator("input[name=username]").is_visible()
