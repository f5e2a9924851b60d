"""The comment box in a real browser: bob answers a customer in Reply mode and sees who the
reply goes to; an internal note looks different and emails nobody; Send & close; the tabs
work from the keyboard and without JavaScript; axe finds nothing in either mode."""

from __future__ import annotations

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from issues.models import Issue, Note, OutboundEmail
from issues.services import participant_add
from tests.browser.helpers import assert_accessible, demo_data, log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def issue(monkeypatch, transactional_db) -> Issue:  # type: ignore[no-untyped-def]
    demo_data(monkeypatch)
    issue = Issue.objects.get(project__full_path="acme/game", title__startswith="Game crashes")
    jake = issue.email_participants.get(email="jake@customer.example")
    jake.name = "Jake Doe"
    jake.save(update_fields=["name"])
    participant_add(issue=issue, email="dana@customer.example")
    finn, _ = participant_add(issue=issue, email="finn@customer.example")
    finn.unsubscribed_at = timezone.now()
    finn.save(update_fields=["unsubscribed_at"])
    return issue


def to_customers() -> list[str]:
    return sorted(OutboundEmail.objects.exclude(kind="team").values_list("recipient", flat=True))


def test_bob_replies_to_the_customer_and_adds_an_internal_note(
    issue, live_server, page: Page, screenshot
) -> None:
    log_in(page, live_server.url, "bob")
    page.goto(f"{live_server.url}{issue.get_absolute_url()}")
    reply_tab, internal_tab = (
        page.get_by_label("Reply to customer"),
        page.get_by_label("Internal note"),
    )
    box = page.locator(".composer-box")
    recipients = page.get_by_test_id("recipients")
    send, add_note = (
        page.get_by_role("button", name="Send reply", exact=True),
        page.get_by_role("button", name="Add internal note", exact=True),
    )

    # Reply mode first: who gets it, and who does not.
    expect(reply_tab).to_be_checked()
    expect(recipients).to_have_text(
        "Emailed to Jake Doe <jake@customer.example>, dana@customer.example; "
        "not to finn@customer.example (unsubscribed)."
    )
    expect(send).to_be_visible()
    expect(add_note).to_be_hidden()
    expect(page.get_by_text("Only the team sees this.")).to_be_hidden()
    assert_accessible(page)
    reply_background = box.evaluate("el => getComputedStyle(el).backgroundImage")

    # Internal mode: the box changes, the recipients go, the button says what will happen.
    internal_tab.check()
    expect(page.get_by_text("Only the team sees this.")).to_be_visible()
    expect(recipients).to_be_hidden()
    expect(add_note).to_be_visible()
    expect(send).to_be_hidden()
    assert "repeating-linear-gradient" in box.evaluate("el => getComputedStyle(el).backgroundImage")
    assert reply_background == "none"
    assert_accessible(page)
    screenshot(page, "composer-internal")

    page.get_by_label("Comment", exact=True).fill("Refund approved by finance.")
    add_note.click()
    expect(page.get_by_role("status")).to_contain_text("Internal note added.")
    note = page.get_by_test_id("note").filter(has_text="Refund approved by finance.")
    expect(note).to_contain_text("Internal note")
    assert Note.objects.get(body="Refund approved by finance.").internal
    assert to_customers() == []

    # Back to the customer: the reply goes to Jake and Dana, and the page says so.
    expect(reply_tab).to_be_checked()  # a fresh page starts in Reply mode
    page.get_by_label("Comment", exact=True).fill("Your refund is on its way.")
    screenshot(page, "composer-reply")
    send.click()
    expect(page.get_by_role("status")).to_contain_text(
        "Reply sent to jake@customer.example, dana@customer.example."
    )
    expect(
        page.get_by_test_id("note").filter(has_text="Your refund is on its way.")
    ).to_be_visible()
    assert to_customers() == ["dana@customer.example", "jake@customer.example"]

    # Send & close: one more reply, and the ticket is closed.
    page.get_by_label("Comment", exact=True).fill("Closing this one, thanks!")
    page.get_by_role("button", name="Send & close", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text(f"Issue #{issue.iid} closed.")
    issue.refresh_from_db()
    assert issue.state == Issue.State.CLOSED
    expect(page.get_by_role("button", name="Send & close", exact=True)).to_have_count(0)


def test_the_tabs_work_from_the_keyboard(issue, live_server, page: Page) -> None:
    log_in(page, live_server.url, "bob")
    page.goto(f"{live_server.url}{issue.get_absolute_url()}")
    page.get_by_label("Reply to customer").focus()
    page.keyboard.press("ArrowRight")
    expect(page.get_by_label("Internal note")).to_be_checked()
    expect(page.get_by_role("button", name="Add internal note", exact=True)).to_be_visible()
    page.keyboard.press("ArrowLeft")
    expect(page.get_by_role("button", name="Send reply", exact=True)).to_be_visible()


def test_the_modes_switch_without_javascript(issue, live_server, browser) -> None:
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    log_in(page, live_server.url, "bob")
    page.goto(f"{live_server.url}{issue.get_absolute_url()}")
    page.get_by_label("Internal note").check()
    expect(page.get_by_role("button", name="Add internal note", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Send reply", exact=True)).to_be_hidden()
    page.get_by_label("Comment", exact=True).fill("Posted without JavaScript.")
    page.get_by_role("button", name="Add internal note", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("Internal note added.")
    assert Note.objects.get(body="Posted without JavaScript.").internal
    context.close()
