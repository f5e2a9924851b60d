"""The first end-to-end flow in a real browser: headless Chromium against the live server."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from issues.models import Issue, Note
from tests.browser.helpers import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_reporter_adds_internal_note_guest_gets_404_outsider_sees_nothing(
    demo, live_server, page: Page, browser, screenshot
) -> None:
    issue = Issue.objects.get(project__full_path="acme/game", title__startswith="Game crashes")
    assert issue.confidential
    issue_url = f"{live_server.url}/acme/game/-/issues/{issue.iid}/"

    # bob (Reporter): project list -> issue list -> confidential issue -> internal note.
    log_in(page, live_server.url, "bob")
    screenshot(page, "bob-projects")
    page.get_by_role("link", name="acme/game").click()
    issue_list = page.get_by_test_id("issue-list")
    expect(issue_list).to_contain_text("Game crashes when I open the inventory")
    expect(issue_list).to_contain_text("Confidential")
    screenshot(page, "bob-issue-list")
    page.get_by_role("link", name="Game crashes when I open the inventory").click()
    expect(page).to_have_url(issue_url)
    expect(page.get_by_text("jake@customer.example").first).to_be_visible()
    page.get_by_label("Comment").fill(
        "Reproduced on **Windows 11**; escalating to the engine team."
    )
    page.get_by_label("Internal note").check()
    page.get_by_role("button", name="Add internal note", exact=True).click()
    new_note = page.get_by_test_id("note").filter(has_text="escalating to the engine team")
    expect(new_note).to_contain_text("Internal note")
    expect(new_note.locator(".markdown strong")).to_have_text("Windows 11")
    screenshot(page, "bob-internal-note")
    note = Note.objects.get(issue=issue, body__contains="escalating")
    assert note.internal
    assert note.author.username == "bob"

    # carol (Guest): the confidential issue does not exist for her.
    carol = browser.new_context().new_page()
    log_in(carol, live_server.url, "carol")
    response = carol.goto(issue_url)
    assert response is not None
    assert response.status == 404
    screenshot(carol, "carol-404")
    carol.goto(f"{live_server.url}/acme/game/-/issues/")
    expect(carol.get_by_test_id("issue-list")).not_to_contain_text("Game crashes")

    # dave (no membership): no projects at all, and 404 on the project.
    dave = browser.new_context().new_page()
    log_in(dave, live_server.url, "dave")
    expect(dave.get_by_text("You are not a member of any project yet.")).to_be_visible()
    screenshot(dave, "dave-no-projects")
    response = dave.goto(f"{live_server.url}/acme/game/-/issues/")
    assert response is not None
    assert response.status == 404
