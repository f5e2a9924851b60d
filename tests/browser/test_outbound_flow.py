"""Outbound mail from the browser: a team member's comment reaches the customer's inbox
through the outbox and a real Celery worker; the customer leaves through the email's links."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from issues.models import EmailParticipant, Issue, OutboundEmail
from issues.services import participant_add
from tests.browser.helpers import demo_data, log_in
from tests.harness.services import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def issue(monkeypatch, transactional_db, settings, live_server) -> Issue:  # type: ignore[no-untyped-def]
    demo_data(monkeypatch)
    # Links in emails point at the server the browser talks to.
    settings.SITE_URL = live_server.url
    settings.DEFAULT_FROM_EMAIL = "support@servicedesk.test"
    issue = Issue.objects.get(project__full_path="acme/game", title__startswith="Game crashes")
    participant_add(issue=issue, email="boss@customer.example")
    return issue


def comment(page: Page, text: str, *, internal: bool = False, files=None, button: str = "") -> None:  # type: ignore[no-untyped-def]
    page.get_by_label("Comment", exact=True).fill(text)
    if files:
        page.get_by_label("Attach files").set_input_files(files)
    if internal:
        page.get_by_label("Internal note").check()
    button = button or ("Add internal note" if internal else "Send reply")
    page.get_by_role("button", name=button, exact=True).click()
    first_words = " ".join(text.split()[:3])  # before any Markdown
    expect(page.get_by_test_id("note").filter(has_text=first_words)).to_be_visible()


def to_customers(smtp):  # type: ignore[no-untyped-def]
    """What the SMTP server got for customers (the team's notifications go to @acme.example)."""
    return [m for m in smtp.messages if not m.recipients[0].endswith("@acme.example")]


def wait_until_all_sent(timeout: float = 30) -> None:
    wait_until(
        lambda: not OutboundEmail.objects.exclude(kind="team").exclude(status="sent").exists(),
        timeout,
        "every recorded email to be sent",
    )


def test_comment_in_the_browser_is_emailed_and_the_customer_can_unsubscribe(
    issue, live_server, page: Page, browser, smtp, celery_worker, screenshot
) -> None:
    issue_url = f"{live_server.url}/acme/game/-/issues/{issue.iid}/"
    log_in(page, live_server.url, "bob")
    page.goto(issue_url)

    # An internal note: nothing is recorded, nothing is sent.
    comment(page, "Engine team says it is the shader cache.", internal=True)
    assert not OutboundEmail.objects.exclude(kind="team").exists()

    # A public comment with a file: one email per participant, sent by the worker.
    comment(
        page,
        "Please delete the **shader cache** folder and try again.",
        files=[{"name": "steps.txt", "mimeType": "text/plain", "buffer": b"1. Quit\n2. Delete\n"}],
    )
    screenshot(page, "bob-public-comment")
    wait_until(lambda: len(to_customers(smtp)) >= 2, 30, "2 emails to customers by SMTP")
    captured = {m.recipients[0]: m.message for m in to_customers(smtp)}
    assert sorted(captured) == ["boss@customer.example", "jake@customer.example"]
    jake = captured["jake@customer.example"]
    assert jake["Subject"] == f"Re: {issue.title} (#{issue.iid})"
    assert jake["From"].addresses[0].display_name == "Support Bot"
    text = jake.get_body(("plain",)).get_content()
    assert "Please delete the shader cache folder" in text  # text, not Markdown
    assert "<strong>shader cache</strong>" in jake.get_body(("html",)).get_content()
    assert [a.get_filename() for a in jake.iter_attachments()] == ["steps.txt"]
    assert "Engine team" not in jake.as_string()

    # Jake unsubscribes through the link in the email: a confirmation page, then the POST.
    link = jake["List-Unsubscribe"].split(",")[0].strip().strip("<>")
    assert link.startswith(f"{live_server.url}/-/unsubscribe/")
    customer = browser.new_context().new_page()  # not logged in
    customer.goto(link)
    expect(customer.get_by_role("heading", name="Unsubscribe?")).to_be_visible()
    screenshot(customer, "jake-unsubscribe-confirm")
    customer.get_by_role("button", name="Unsubscribe").click()
    expect(customer.get_by_role("heading", name="You are unsubscribed")).to_be_visible()

    # The boss uses the mail client's one-click button: an RFC 8058 POST, no page, no login.
    boss = captured["boss@customer.example"]
    assert boss["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    one_click = boss["List-Unsubscribe"].split(",")[0].strip().strip("<>")
    response = customer.request.post(
        one_click,
        data="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status == 200
    assert EmailParticipant.objects.filter(issue=issue, unsubscribed_at=None).count() == 0

    # The team sees it happen; further comments email nobody.
    page.reload()
    expect(page.get_by_test_id("system-note").filter(has_text="unsubscribed")).to_have_count(2)
    wait_until_all_sent()
    smtp.clear()
    expect(page.get_by_test_id("no-recipients")).to_contain_text("Nobody will receive this reply")
    comment(page, "Did that help?", button="Add comment")
    # No row, no email: nothing is ever sent that the outbox did not record first.
    assert (
        not OutboundEmail.objects.exclude(kind="team").filter(note__body="Did that help?").exists()
    )
    assert to_customers(smtp) == []
