"""The spam quarantine in the browser: bob (Reporter) releases one email Akismet held back and
deletes another; the released one becomes an issue through the real worker."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from issues.models import Issue
from mailroom.models import InboundMessage
from projects.models import Project
from tests.browser.helpers import demo_data, log_in
from tests.harness.services import wait_until
from tests.mailroom.helpers import deliver, make_email

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def held(monkeypatch, transactional_db, settings, redis_cache_flushed) -> Project:  # type: ignore[no-untyped-def]
    demo_data(monkeypatch)
    # The address the worker process knows too (its settings are the defaults).
    incoming = settings.SERVICEDESK_MAILBOXES["incoming_email"]
    settings.AKISMET_API_KEY = "akismet-test-key"
    settings.AKISMET_CLIENT_CLASS = "tests.mailroom.akismet_clients.SpamClient"
    project = Project.objects.get(full_path="acme/game")
    to = incoming.address_for(project.service_desk.default_key)
    for subject, body in (("Order 66 shipped", "Your order is on its way."),
                          ("CHEAP WATCHES", "Buy <b>now</b>!!!")):  # fmt: skip
        assert deliver(make_email(to=to, subject=subject, body=body)).outcome == "spam"
    return project


def test_bob_releases_one_and_deletes_the_other(
    held, live_server, page: Page, celery_worker, screenshot
) -> None:
    log_in(page, live_server.url, "bob")
    page.goto(f"{live_server.url}/acme/game/-/issues/")
    page.get_by_role("navigation", name="Project").get_by_role("link", name="Spam").click()
    rows = page.get_by_test_id("spam-list").locator("li")
    expect(rows).to_have_count(2)
    watches = rows.filter(has_text="CHEAP WATCHES")
    watches.get_by_text("Show the text").click()
    expect(watches.locator("pre")).to_have_text("Buy <b>now</b>!!!")  # text, not HTML
    screenshot(page, "spam-quarantine")

    rows.filter(has_text="Order 66 shipped").get_by_role("button", name="Not spam").click()
    expect(page.get_by_role("status")).to_contain_text("Released")
    watches = page.get_by_test_id("spam-list").locator("li").filter(has_text="CHEAP WATCHES")
    watches.get_by_role("button", name="Delete").click()
    expect(page.get_by_test_id("spam-empty")).to_be_visible()

    wait_until(
        lambda: Issue.objects.filter(title="Order 66 shipped").exists(),
        30,
        "the released email to become an issue",
    )
    assert not Issue.objects.filter(title="CHEAP WATCHES").exists()
    deleted = InboundMessage.objects.get(subject="CHEAP WATCHES")
    assert deleted.spam_reviewed_by.username == "bob"
    page.goto(f"{live_server.url}/acme/game/-/issues/")
    expect(page.get_by_test_id("issue-list")).to_contain_text("Order 66 shipped")
