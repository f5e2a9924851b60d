"""Snooze, merge and customer satisfaction in a real browser, with the mail pipeline behind."""

from __future__ import annotations

import re

import pytest
from django.conf import settings
from playwright.sync_api import Page, expect

from issues.models import Issue, Note, OutboundEmail, SentNotification
from notifications.models import Todo
from notifications.services import events_deliver
from projects.models import ServiceDeskSetting
from tests.browser.helpers import assert_accessible, demo_data, log_in
from tests.mailroom.helpers import deliver, make_email

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
JAKE, FINN = "jake@customer.example", "finn@customer.example"
SURVEY_LINK = re.compile(r"https?://\S+?(/-/satisfaction/[^\s)\]>]+/(good|okay|bad)/)")


@pytest.fixture
def demo(monkeypatch, transactional_db) -> None:  # type: ignore[no-untyped-def]
    demo_data(monkeypatch)


def ticket(title: str) -> Issue:
    return Issue.objects.get(project__full_path="acme/game", title__startswith=title)


def customer_writes(to_key: str, sender: str, body: str) -> Note:
    """A customer answers an email they got (its reply key), through the mail pipeline."""
    to = settings.SERVICEDESK_MAILBOXES["incoming_email"].address_for(to_key)
    row = deliver(make_email(to=to, sender=sender, subject="Re: my ticket", body=body))
    assert row.outcome == "note_added", row.reason
    return Note.objects.get(pk=row.note_id)


def key_for(issue: Issue, email: str) -> str:
    participant = issue.email_participants.get(email=email)
    return SentNotification.objects.create(issue=issue, participant=participant).reply_key


def test_a_snoozed_ticket_wakes_when_the_customer_replies(
    demo, live_server, page: Page, screenshot
) -> None:  # type: ignore[no-untyped-def]
    issue = ticket("Game crashes")
    log_in(page, live_server.url, "bob")
    page.goto(live_server.url + issue.get_absolute_url())
    page.get_by_text("Snooze this ticket").click()
    page.get_by_label("Until").select_option(label="The customer replies")
    page.get_by_role("button", name="Snooze", exact=True).click()
    expect(page.get_by_test_id("snoozed")).to_contain_text("Snoozed until the customer replies.")
    assert_accessible(page)
    screenshot(page, "snoozed")

    customer_writes(key_for(issue, JAKE), JAKE, "Still crashing after the patch.")
    events_deliver()
    page.reload()
    expect(page.get_by_test_id("snoozed")).to_have_count(0)
    expect(page.get_by_text("woke up: the customer replied")).to_be_visible()
    # Bob snoozed it and nobody is assigned: the To-Do is his.
    assert Todo.objects.filter(issue=issue, user__username="bob", action="snooze_ended").exists()


def test_merged_tickets_the_old_email_still_reaches_the_thread(
    demo, live_server, page: Page, screenshot
) -> None:  # type: ignore[no-untyped-def]
    crash, refund = ticket("Game crashes"), ticket("Refund for a double charge")
    old_key = key_for(refund, FINN)
    log_in(page, live_server.url, "bob")
    page.goto(live_server.url + refund.get_absolute_url())
    page.get_by_text("Merge into another ticket").click()
    page.get_by_label("Ticket number").fill(f"#{crash.iid}")
    page.get_by_role("button", name="Merge", exact=True).click()
    expect(page).to_have_url(re.compile(rf"/-/issues/{crash.iid}/$"))
    expect(page.get_by_test_id("merged-from").first).to_contain_text(f"merged from #{refund.iid}")
    assert_accessible(page)

    # Finn answers the email he got about his own ticket: it lands on the merged thread.
    note = customer_writes(old_key, FINN, "Any news about my refund?")
    assert note.issue == crash
    page.reload()
    expect(page.get_by_text("Any news about my refund?")).to_be_visible()
    # And he was told once where his conversation continues.
    assert OutboundEmail.objects.filter(kind="merged", recipient=FINN).count() == 1
    page.goto(live_server.url + refund.get_absolute_url())
    expect(page.get_by_test_id("merged-notice")).to_contain_text(f"#{crash.iid}")
    page.set_viewport_size({"width": 390, "height": 844})
    assert_accessible(page)
    screenshot(page, "merged-phone")


def test_a_customer_rates_the_closed_ticket_from_the_email(
    demo, live_server, page: Page, browser, screenshot
) -> None:  # type: ignore[no-untyped-def]
    ServiceDeskSetting.objects.filter(project__full_path="acme/game").update(
        satisfaction_survey=True
    )
    issue = ticket("Game crashes")
    log_in(page, live_server.url, "bob")
    page.goto(live_server.url + issue.get_absolute_url())
    page.get_by_role("button", name="Close issue", exact=True).click()
    closing = OutboundEmail.objects.get(kind="issue_closed", issue=issue, recipient=JAKE)
    good = next(m.group(1) for m in SURVEY_LINK.finditer(closing.body_text) if m.group(2) == "good")

    # Jake, not signed in, clicks "Good" in his email: one click records it.
    jake = browser.new_context(viewport={"width": 390, "height": 844}).new_page()
    jake.goto(live_server.url + good)
    expect(jake.get_by_test_id("survey-recorded")).to_be_visible()
    jake.get_by_label("Anything you want to tell us? (optional)").fill("Quick fix, thanks!")
    jake.get_by_role("button", name="Save").click()
    expect(jake.get_by_test_id("survey-recorded")).to_be_visible()
    assert_accessible(jake)
    screenshot(jake, "survey-phone")

    page.reload()
    expect(page.get_by_test_id("rating")).to_contain_text("Good")
    expect(page.get_by_text("Quick fix, thanks!")).to_be_visible()
    # The dashboard counts it this week and quotes the comment.
    page.goto(f"{live_server.url}/{issue.project.full_path}/-/dashboard/")
    csat = page.get_by_test_id("dashboard-satisfaction")
    expect(csat.get_by_test_id("satisfaction-comments")).to_contain_text("Quick fix, thanks!")
    csat.get_by_text("Data table").click()
    last_week = csat.get_by_test_id("satisfaction-table").locator("tbody tr").last
    expect(last_week.locator("td")).to_have_text(["1", "0", "0", "100 %"])
    assert_accessible(page)


def test_a_breaching_ticket_is_overdue_and_first_in_breaching_soon(
    demo, live_server, page: Page, screenshot
) -> None:  # type: ignore[no-untyped-def]
    from datetime import timedelta

    from django.utils import timezone

    from accounts.models import User
    from issues.services import service_desk_ticket_create
    from sla.models import ResponseClock, ResponsePolicy

    project = ticket("Game crashes").project
    ResponsePolicy.objects.create(project=project, enabled=True, first_response_minutes=240)
    bob = User.objects.get(username="bob")
    late = service_desk_ticket_create(
        project=project, user=bob, email="ann@customer.example", title="Printer on fire"
    )
    soon = service_desk_ticket_create(
        project=project, user=bob, email="bo@customer.example", title="Password reset"
    )
    # Five hours went by for the first: an hour past its 4 h target.
    ResponseClock.objects.filter(issue=late).update(due_at=timezone.now() - timedelta(hours=1))
    ResponseClock.objects.filter(issue=soon).update(
        due_at=timezone.now() + timedelta(minutes=30), warned_at=timezone.now()
    )

    log_in(page, live_server.url, "bob")
    page.goto(f"{live_server.url}/{project.full_path}/-/issues/")
    page.get_by_role("link", name=re.compile("^Breaching soon")).click()
    rows = page.get_by_test_id("issue-row")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("Printer on fire")
    expect(rows.first.get_by_test_id("response-due")).to_contain_text("overdue 1 h")
    expect(rows.nth(1).get_by_test_id("response-due")).to_contain_text("due in")
    assert_accessible(page)
    screenshot(page, "breaching-soon")
    page.set_viewport_size({"width": 390, "height": 844})
    assert_accessible(page)
    screenshot(page, "breaching-soon-phone")
    rows.first.get_by_role("link", name="Printer on fire").click()
    expect(page.get_by_test_id("response-due")).to_contain_text("Response overdue 1 h")
