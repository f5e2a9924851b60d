"""Two agents on one ticket in real browsers: alice and bob see each other (and who is writing)
on the issue page; bob's reply is held when the customer's email arrived after he opened the
page; alice, whose page is older still, sends hers anyway."""

from __future__ import annotations

import pytest
from django.conf import settings
from playwright.sync_api import Page, expect

from accounts.models import User
from issues.models import Issue, Note, OutboundEmail, SentNotification
from tests.browser.helpers import assert_accessible, demo_data, log_in
from tests.mailroom.helpers import deliver, make_email

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
JAKE = "jake@customer.example"


@pytest.fixture
def issue(monkeypatch, transactional_db, settings) -> Issue:  # type: ignore[no-untyped-def]
    demo_data(monkeypatch)
    settings.SERVICEDESK_PRESENCE_POLL = 1  # heartbeats every second: the test waits less
    return Issue.objects.get(project__full_path="acme/game", title__startswith="Game crashes")


def customer_replies(issue: Issue, body: str) -> None:
    """Jake answers the email he got (its reply key), through the mail pipeline."""
    jake = issue.email_participants.get(email=JAKE)
    key = SentNotification.objects.create(issue=issue, participant=jake).reply_key
    to = settings.SERVICEDESK_MAILBOXES["incoming_email"].address_for(key)
    row = deliver(make_email(to=to, subject="Re: Game crashes", body=body))
    assert row.outcome == "note_added", row.reason


def emailed_notes(author: str) -> list[str]:
    return list(
        OutboundEmail.objects.filter(note__author__username=author, recipient=JAKE)
        .order_by("pk")
        .values_list("note__body", flat=True)
    )


def test_two_agents_see_each_other_and_a_reply_is_held_for_news(
    issue, live_server, page: Page, browser, screenshot
) -> None:
    base, url = live_server.url, f"{live_server.url}{issue.get_absolute_url()}"
    alice = browser.new_context(viewport={"width": 1440, "height": 900}).new_page()
    log_in(alice, base, "alice")
    alice.goto(url)
    log_in(page, base, "bob")
    page.goto(url)

    # Each sees the other: bob at once (the page is rendered with alice in it), alice at
    # her next heartbeat; then alice sees bob start writing.
    expect(page.get_by_test_id("presence")).to_contain_text("Alice Owner is viewing")
    expect(alice.get_by_test_id("presence")).to_contain_text("Bob Reporter is viewing")
    page.get_by_label("Comment", exact=True).fill("Could you send us the crash log?")
    expect(alice.get_by_test_id("presence")).to_contain_text("Bob Reporter is writing a reply")
    assert_accessible(alice)

    # Jake writes while bob is typing: bob's bar says so, and his reply is held, not sent.
    customer_replies(issue, "Never mind, it works after the update!")
    expect(page.get_by_test_id("presence-new")).to_contain_text(
        "1 new message since you opened this page"
    )
    page.get_by_role("button", name="Send reply", exact=True).click()
    hold = page.get_by_test_id("collision-hold")
    expect(hold).to_contain_text("Your reply was not sent yet.")
    expect(hold).to_contain_text("Never mind, it works after the update!")
    expect(hold).to_be_focused()
    expect(page.get_by_test_id("new-since")).to_have_count(1)
    expect(page.get_by_label("Comment", exact=True)).to_have_value(
        "Could you send us the crash log?"
    )
    assert emailed_notes("bob") == []
    assert_accessible(page)
    screenshot(page, "held-reply")
    page.set_viewport_size({"width": 390, "height": 844})
    assert_accessible(page)
    screenshot(page, "held-reply-phone")
    page.set_viewport_size({"width": 1440, "height": 900})

    # Edit first: the box gets the focus; the changed reply goes out without another hold.
    page.get_by_test_id("edit-first").click()
    box = page.get_by_label("Comment", exact=True)
    expect(box).to_be_focused()
    box.fill("Glad the update fixed it, Jake!")
    page.get_by_role("button", name="Send reply", exact=True).click()
    expect(page.get_by_text("Reply sent to")).to_be_visible()
    assert emailed_notes("bob") == ["Glad the update fixed it, Jake!"]

    # alice's page is older than both: her reply is held for Jake's email and bob's reply;
    # she sends it anyway, once.
    alice.get_by_label("Comment", exact=True).fill("Closing this one, thanks Jake.")
    alice.get_by_role("button", name="Send reply", exact=True).click()
    expect(alice.get_by_test_id("collision-hold").get_by_role("listitem")).to_have_count(2)
    alice.get_by_test_id("send-anyway").click()
    expect(alice.get_by_text("Reply sent to")).to_be_visible()
    assert emailed_notes("alice") == ["Closing this one, thanks Jake."]
    assert Note.objects.filter(issue=issue, author__username="alice").count() == 1


def test_a_link_to_a_folded_note_opens_the_whole_thread_at_it(
    issue, live_server, page: Page
) -> None:
    """A long thread folds its middle; a link to a note in there (as an email or a colleague
    would send) unfolds the thread and shows that note."""
    from issues import views
    from issues.services import note_create

    bob = User.objects.get(username="bob")
    count = views.THREAD_FIRST + views.THREAD_LAST + views.THREAD_FOLD_MIN + 5
    notes = [note_create(issue=issue, author=bob, body=f"Step {n} done") for n in range(count)]
    folded = notes[views.THREAD_FIRST]  # the demo thread has notes before these
    log_in(page, live_server.url, "bob")
    page.goto(f"{live_server.url}{issue.get_absolute_url()}")
    expect(page.get_by_test_id("unfold-notes")).to_be_visible()
    expect(page.get_by_text(folded.body, exact=True)).to_have_count(0)

    page.goto(f"{live_server.url}{issue.get_absolute_url()}#note-{folded.pk}")
    expect(page.get_by_text(folded.body, exact=True)).to_be_visible()
    assert "notes=all" in page.url
    expect(page.get_by_test_id("unfold-notes")).to_have_count(0)
    assert_accessible(page)
