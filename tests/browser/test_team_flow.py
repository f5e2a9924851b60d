"""The team hears about tickets, end to end: customers' emails through the real pipeline, team
notifications through the outbox, a real Celery worker and SMTP, settings and To-Dos in the
browser, and a team member answering a notification by email."""

from __future__ import annotations

from collections.abc import Callable
from email.message import EmailMessage
from email.utils import make_msgid

import pytest
from playwright.sync_api import Page, expect

from issues.models import Issue, OutboundEmail
from projects.models import Project
from tests.browser.helpers import assert_accessible, demo_data, log_in
from tests.harness.services import CapturedMail, wait_until
from tests.mailroom.helpers import deliver

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
CUSTOMER = "Jake Doe <jake@customer.example>"


@pytest.fixture
def address(monkeypatch, transactional_db, settings, live_server) -> str:  # type: ignore[no-untyped-def]
    demo_data(monkeypatch)
    settings.SITE_URL = live_server.url
    settings.DEFAULT_FROM_EMAIL = "support@servicedesk.test"
    # The worker renders the team's emails (their Reply-To) with the same mailbox settings.
    incoming = settings.SERVICEDESK_MAILBOXES["incoming_email"]
    assert incoming.enabled
    project = Project.objects.get(full_path="acme/game")
    return incoming.address_for(project.service_desk.default_key)


def email(to: str, subject: str, body: str, sender: str = CUSTOMER, **headers: str) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg["Message-ID"] = make_msgid(domain="customer.example")
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return msg.as_bytes()


def all_sent() -> None:
    wait_until(
        lambda: not OutboundEmail.objects.exclude(status="sent").exists(),
        30,
        "every recorded email to be sent",
    )


def mail_to(smtp, who: str, about: str) -> list[CapturedMail]:  # type: ignore[no-untyped-def]
    return [
        m
        for m in smtp.messages
        if m.recipients == [f"{who}@acme.example"] and about in str(m.message["Subject"])
    ]


def waiting(smtp, who: str, about: str) -> Callable[[], CapturedMail]:  # type: ignore[no-untyped-def]
    def found() -> CapturedMail:
        wait_until(lambda: mail_to(smtp, who, about), 30, f"{who}'s email about {about!r}")
        return mail_to(smtp, who, about)[-1]

    return found


def test_the_team_hears_about_tickets_and_answers_by_email(
    address, live_server, page: Page, browser, smtp, celery_worker, screenshot
) -> None:
    base = live_server.url
    all_sent()  # the demo's own emails
    smtp.clear()

    # A customer emails: alice and bob (Reporter+) are told, carol (Guest) is not.
    first = deliver(email(address, "Refund for order 42", "I was charged twice."))
    assert first.outcome == "issue_created", first.reason
    to_bob = waiting(smtp, "bob", "New ticket: Refund for order 42")()
    waiting(smtp, "alice", "New ticket: Refund for order 42")()
    all_sent()
    assert not mail_to(smtp, "carol", "Refund")
    assert to_bob.message["X-ServiceDesk-NotificationReason"] == "new_ticket"
    assert to_bob.message["List-Id"].startswith("acme/game <")

    # alice says only she hears about new tickets.
    log_in(page, base, "alice")
    page.goto(f"{base}/acme/game/-/settings/service_desk/")
    settings_nav = page.get_by_role("navigation", name="Settings")
    settings_nav.get_by_role("link", name="Notifications").click()
    page.get_by_label("Only the people chosen below").check()
    page.get_by_label("Alice").check()
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Notification settings saved.")).to_be_visible()
    assert_accessible(page)
    screenshot(page, "alice-new-ticket-rule")

    second = deliver(email(address, "Cannot log in", "Password reset never arrives."))
    issue = Issue.objects.get(pk=second.issue_id)
    waiting(smtp, "alice", "New ticket: Cannot log in")()
    all_sent()
    assert not mail_to(smtp, "bob", "Cannot log in")

    # alice assigns bob: bob gets an email and a To-Do.
    page.goto(f"{base}/acme/game/-/issues/{issue.iid}/")
    page.get_by_text("Edit assignees").click()
    page.get_by_role("checkbox", name="Bob").check()
    page.get_by_role("button", name="Save assignees").click()
    assigned = waiting(smtp, "bob", "Assigned: Cannot log in")()
    assert assigned.message["X-ServiceDesk-NotificationReason"] == "assigned"
    bob = browser.new_context().new_page()
    log_in(bob, base, "bob")
    expect(bob.get_by_test_id("todo-count")).to_have_text("1")
    bob.get_by_test_id("todos-link").click()
    expect(bob.get_by_role("heading", name="To-Do list")).to_be_visible()
    expect(bob.get_by_test_id("todo").filter(has_text="Cannot log in")).to_contain_text(
        "assigned you"
    )
    assert_accessible(bob)
    screenshot(bob, "bob-todos")

    # The customer replies: bob hears about it.
    thank_you = issue.emails.order_by("pk").values_list("message_id", flat=True)[0]
    deliver(email(address, "Re: Cannot log in", "Still nothing.", In_Reply_To=thank_you))
    replied = waiting(smtp, "bob", "Customer replied: Cannot log in")()
    assert "Still nothing." in replied.message.get_body(("plain",)).get_content()
    bob.goto(f"{base}/acme/game/-/issues/")
    bob.get_by_role("link", name="Waiting for us").click()
    row = bob.get_by_test_id("issue-row").filter(has_text="Cannot log in")
    expect(row.get_by_test_id("waiting")).to_contain_text("waiting")
    assert_accessible(bob)
    screenshot(bob, "bob-waiting-for-us")

    # bob answers that notification from his mail client: the customer gets his comment.
    reply_to = replied.message["Reply-To"]
    assert reply_to.startswith("incoming+")
    answer = email(
        reply_to,
        f"Re: {replied.message['Subject']}",
        "Sent you a new link, please try again.\n\n> Still nothing.",
        sender="Bob <bob@acme.example>",
        In_Reply_To=replied.message["Message-ID"],
    )
    row = deliver(answer)
    assert row.outcome == "note_added", row.reason
    wait_until(
        lambda: any(
            m.recipients == ["jake@customer.example"] and b"Sent you a new link" in m.data
            for m in smtp.messages
        ),
        30,
        "the customer to get bob's answer",
    )
    bob.goto(f"{base}/acme/game/-/issues/{issue.iid}/")
    expect(bob.get_by_test_id("note").filter(has_text="Sent you a new link")).to_contain_text("Bob")

    # bob turns his notifications off: nothing more reaches him.
    bob.goto(f"{base}/-/profile/notifications/")
    bob.get_by_label("Default level").select_option("disabled")
    bob.get_by_role("button", name="Save").click()
    expect(bob.get_by_text("Notification settings saved.")).to_be_visible()
    assert_accessible(bob)
    screenshot(bob, "bob-notification-settings")
    smtp.clear()
    deliver(email(address, "Re: Cannot log in", "Works now, thanks!", In_Reply_To=thank_you))
    all_sent()
    assert not mail_to(smtp, "bob", "Cannot log in")
