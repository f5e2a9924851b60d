"""Two agents, one customer: who else has the issue open (presence), and a public reply held
when others wrote after the page was loaded, with *Send anyway* and *Edit first*."""

from __future__ import annotations

import re
import time

import pytest
from django.urls import reverse

from accounts.models import User
from accounts.selectors import support_bot
from issues.models import Issue, Note, OutboundEmail
from issues.presence import presence_leave, presence_others, presence_touch
from issues.services import note_create
from projects.models import Project
from tests.issues.test_composer import JAKE, composer, flashes, note_url, once_token, page, ticket

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("redis_cache_flushed")]


def seen(html: str) -> int:
    return int(re.search(r'name="seen" value="(\d+)"', composer(html))[1])  # type: ignore[index]


def customer_writes(issue: Issue, body: str = "Any news? It crashed again.") -> Note:
    """What the mailroom does with the customer's email reply."""
    return note_create(
        issue=issue, author=support_bot(), body=body, external_author=JAKE, notify=True
    )


def reply(client, issue: Issue, html: str, body: str, **extra: str):  # type: ignore[no-untyped-def]
    data = {"body": body, "internal": "false", "once": once_token(html), "seen": seen(html)}
    return client.post(note_url(issue), {**data, **extra})


def written_by(user: User, issue: Issue) -> list[str]:
    return list(Note.objects.filter(issue=issue, author=user).values_list("body", flat=True))


# --- presence -----------------------------------------------------------------------------------


def test_presence_lists_the_others_with_what_they_are_writing(project, owner, reporter) -> None:
    issue = ticket(project)
    presence_touch(issue_id=issue.pk, user=owner, writing="")
    presence_touch(issue_id=issue.pk, user=reporter, writing="reply")

    assert [(v.name, v.writing) for v in presence_others(issue_id=issue.pk, user=owner)] == [
        (reporter.display_name, "reply")
    ]
    assert [(v.name, v.writing) for v in presence_others(issue_id=issue.pk, user=reporter)] == [
        (owner.display_name, "")
    ]
    other = ticket(project)
    assert presence_others(issue_id=other.pk, user=owner) == []


def test_a_viewer_who_stops_polling_disappears(project, owner, reporter, settings) -> None:
    settings.SERVICEDESK_PRESENCE_POLL = 1  # gone after 3.5 s without a heartbeat
    issue = ticket(project)
    presence_touch(issue_id=issue.pk, user=reporter, writing="")
    presence_touch(issue_id=issue.pk, user=owner, writing="")
    presence_leave(issue_id=issue.pk, user=owner)
    assert [v.user_id for v in presence_others(issue_id=issue.pk, user=reporter)] == []
    assert [v.user_id for v in presence_others(issue_id=issue.pk, user=owner)] == [reporter.pk]

    time.sleep(4)
    assert presence_others(issue_id=issue.pk, user=owner) == []
    presence_touch(issue_id=issue.pk, user=reporter, writing="internal")  # back again
    assert [v.writing for v in presence_others(issue_id=issue.pk, user=owner)] == ["internal"]


def test_the_issue_page_shows_who_else_is_here_and_the_heartbeat_updates_it(
    client, project, owner, reporter
) -> None:
    issue = ticket(project)
    client.force_login(owner)
    page(client, issue)  # alice opens it

    client.force_login(reporter)
    html = page(client, issue)
    assert f"<strong>{owner.display_name}</strong> is viewing" in html
    url = reverse("issue_presence", args=[project.full_path, issue.iid])
    client.post(url, {"writing": "reply", "seen": seen(html)})

    client.force_login(owner)
    bar = client.post(url, {"writing": "", "seen": "0"}).content.decode()
    assert f"<strong>{reporter.display_name}</strong> is writing a reply" in bar
    assert "new message" not in bar


def test_the_heartbeat_says_when_the_customer_wrote_since_the_page_was_loaded(
    client, project, reporter
) -> None:
    issue = ticket(project)
    client.force_login(reporter)
    html = page(client, issue)
    url = reverse("issue_presence", args=[project.full_path, issue.iid])
    assert "new message" not in client.post(url, {"seen": seen(html)}).content.decode()

    customer_writes(issue)
    bar = client.post(url, {"seen": seen(html)}).content.decode()
    assert "1 new message since you opened this page" in bar
    assert JAKE in bar  # Reporter+ may see the address
    # A bogus or huge "seen" counts nothing as new rather than failing.
    for bogus in ("x", "9" * 30):
        assert "new message" not in client.post(url, {"seen": bogus}).content.decode()


def test_guests_get_no_presence_bar_and_no_heartbeat(client, project, guest) -> None:
    issue = ticket(project, confidential=False)
    client.force_login(guest)
    assert 'id="presence"' not in page(client, issue)
    url = reverse("issue_presence", args=[project.full_path, issue.iid])
    assert client.post(url, {"writing": "reply"}).status_code == 403


# --- a reply held when others wrote -----------------------------------------------------------


def test_a_reply_is_held_when_the_customer_wrote_after_the_page_was_loaded(
    client, project, reporter
) -> None:
    issue = ticket(project)
    client.force_login(reporter)
    html = page(client, issue)
    news = customer_writes(issue, "Never mind, I reinstalled and it works.")
    sent_before = OutboundEmail.objects.count()

    response = reply(client, issue, html, "Please try reinstalling.")

    assert response.status_code == 409
    assert written_by(reporter, issue) == []
    assert OutboundEmail.objects.count() == sent_before
    held = response.content.decode()
    panel = re.search(r'data-testid="collision-hold".*?</div>\s*</div>', held, re.S)[0]  # type: ignore[index]
    assert "Your reply was not sent yet." in panel
    assert "Never mind, I reinstalled and it works." in panel
    assert f'href="#note-{news.pk}"' in panel
    assert 'data-testid="new-since"' in held  # the new message is marked in the thread
    assert "Please try reinstalling.</textarea>" in composer(held)  # the text is kept
    assert seen(held) == news.pk  # this page shows it now

    # Send anyway: the same text goes out, once.
    data = {"body": "Please try reinstalling.", "internal": "false"}
    data |= {"once": once_token(held), "seen": seen(held), "send_anyway": "1"}
    sent = client.post(note_url(issue), data)
    assert sent.status_code == 302
    assert written_by(reporter, issue) == ["Please try reinstalling."]
    assert list(
        OutboundEmail.objects.filter(note__author=reporter).values_list("recipient", flat=True)
    ) == [JAKE]


def test_edit_first_then_send_is_not_held_again(client, project, reporter) -> None:
    issue = ticket(project)
    client.force_login(reporter)
    html = page(client, issue)
    customer_writes(issue)
    held = reply(client, issue, html, "Draft").content.decode()

    response = reply(client, issue, held, "Draft, changed after reading the new message")
    assert response.status_code == 302
    assert written_by(reporter, issue) == ["Draft, changed after reading the new message"]


def test_send_and_close_that_was_held_closes_when_sent_anyway(client, project, reporter) -> None:
    issue = ticket(project)
    client.force_login(reporter)
    html = page(client, issue)
    customer_writes(issue)
    held = reply(client, issue, html, "Fixed in 1.2.", and_close="1")
    assert held.status_code == 409
    issue.refresh_from_db()
    assert issue.state == Issue.State.OPENED
    button = re.search(r"<button[^>]*data-testid=\"send-anyway\"[^>]*>", held.content.decode())[0]  # type: ignore[index]
    assert 'name="and_close"' in button

    sent = reply(client, issue, held.content.decode(), "Fixed in 1.2.", and_close="1")
    assert sent.status_code == 302
    issue.refresh_from_db()
    assert issue.state == Issue.State.CLOSED
    assert written_by(reporter, issue) == ["Fixed in 1.2.", "closed"]


def test_a_teammates_public_comment_holds_a_reply_but_internal_and_own_notes_do_not(
    client, project, owner, reporter
) -> None:
    issue = ticket(project)
    client.force_login(reporter)
    html = page(client, issue)
    note_create(issue=issue, author=owner, body="Looking into it", internal=True)
    note_create(issue=issue, author=reporter, body="My earlier note", internal=False)
    assert reply(client, issue, html, "First answer").status_code == 302

    html = page(client, issue)
    note_create(issue=issue, author=owner, body="I already answered him.", notify=True)
    held = reply(client, issue, html, "Second answer")
    assert held.status_code == 409
    assert "I already answered him." in held.content.decode()


def test_internal_notes_and_commands_only_are_never_held(client, project, owner) -> None:
    issue = ticket(project)
    client.force_login(owner)
    html = page(client, issue)
    customer_writes(issue)

    internal = {"body": "Customer is a VIP", "internal": "true", "seen": seen(html)}
    assert client.post(note_url(issue), internal).status_code == 302
    commands = reply(client, issue, html, "/close")
    assert commands.status_code == 302, flashes(commands)
    issue.refresh_from_db()
    assert issue.state == Issue.State.CLOSED


def test_a_form_without_seen_posts_as_before(client, project: Project, reporter) -> None:
    issue = ticket(project)
    client.force_login(reporter)
    customer_writes(issue)
    response = client.post(note_url(issue), {"body": "Hello", "internal": "false"})
    assert response.status_code == 302
    assert written_by(reporter, issue) == ["Hello"]


# --- a long thread, folded ----------------------------------------------------------------------


def test_a_long_thread_is_folded_and_its_newest_note_still_counts_as_seen(
    client, project, reporter
) -> None:
    from issues import views

    issue = ticket(project)
    first = views.THREAD_FIRST + views.THREAD_LAST + views.THREAD_FOLD_MIN
    written = [note_create(issue=issue, author=reporter, body=f"Note {n}") for n in range(first)]
    client.force_login(reporter)
    html = page(client, issue)
    assert html.count('data-testid="note"') == len(written)  # not folded yet: one too few
    written.append(note_create(issue=issue, author=reporter, body="The last straw"))

    html = page(client, issue)
    folded = written[views.THREAD_FIRST : -views.THREAD_LAST]
    assert html.count('data-testid="note"') == views.THREAD_FIRST + views.THREAD_LAST
    assert f"Show {len(folded)} older notes" in html
    # Every folded note keeps its anchor, and the link opens the whole thread at the first.
    assert all(f'<span id="note-{note.pk}" data-folded-note></span>' in html for note in folded)
    assert f'href="?notes=all#note-{folded[0].pk}"' in html
    assert "The last straw" in html
    assert f">{folded[0].body}<" not in html
    assert seen(html) == written[-1].pk

    everything = client.get(issue.get_absolute_url(), {"notes": "all"}).content.decode()
    assert everything.count('data-testid="note"') == len(written)
    assert "data-folded-note" not in everything
    assert f">{folded[0].body}<" in everything
    assert seen(everything) == written[-1].pk


def test_the_customers_newest_email_is_never_folded_away(client, project, reporter) -> None:
    """The customer's newest email is never folded, and a reply written on the folded page
    after it is not held (the page had seen it)."""
    from issues import views

    issue = ticket(project)
    for n in range(views.THREAD_FIRST + views.THREAD_LAST + views.THREAD_FOLD_MIN + 5):
        note_create(issue=issue, author=reporter, body=f"Note {n}")
    news = customer_writes(issue, "It is still on fire")
    client.force_login(reporter)
    html = page(client, issue)
    assert "It is still on fire" in html
    assert seen(html) == news.pk
    response = reply(client, issue, html, "We are on our way")
    assert response.status_code == 302
    assert "We are on our way" in written_by(reporter, issue)
