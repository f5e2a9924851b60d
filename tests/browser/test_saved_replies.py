"""A saved reply in the browser: picked from the comment box's menu, filled in for the ticket,
posted — its quick actions run."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from issues.models import Issue
from projects.models import Project
from saved_replies.services import saved_reply_save
from tests.browser.helpers import assert_accessible, demo_data, log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_saved_reply_with_a_placeholder_and_close_is_inserted_sent_and_closes(
    monkeypatch, transactional_db, live_server, page: Page, screenshot
) -> None:
    demo_data(monkeypatch)
    project = Project.objects.get(full_path="acme/game")
    issue = Issue.objects.get(project=project, title__startswith="Game crashes")
    saved_reply_save(
        project=project, name="Fixed in the next release",
        content="Hello %{CUSTOMER_NAME}, ticket %{ISSUE_ID} is fixed in 2.4.\n/close",
    )  # fmt: skip
    log_in(page, live_server.url, "bob")
    page.goto(f"{live_server.url}{issue.get_absolute_url()}")
    box = page.get_by_label("Comment", exact=True)
    box.fill("Thanks for waiting.")
    page.get_by_text("Saved replies").click()
    assert_accessible(page)
    page.get_by_role("link", name="Fixed in the next release").click()
    expect(box).to_have_value(
        f"Thanks for waiting.\nHello {issue.external_author_name}, ticket #{issue.iid} is fixed "
        "in 2.4.\n/close"
    )
    screenshot(page, "saved-reply-inserted")
    page.get_by_role("button", name="Send reply", exact=True).click()
    note = page.get_by_test_id("note").filter(has_text="is fixed in 2.4")
    expect(note).to_be_visible()
    expect(note).not_to_contain_text("/close")
    issue.refresh_from_db()
    assert issue.state == Issue.State.CLOSED
