"""The comment box on the issue page: its two modes (Reply to customer, Internal note), who a
reply is emailed to, Send & close, the flash after posting, and the one-time token against
double posts."""

from __future__ import annotations

import re

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from accounts.selectors import support_bot
from issues.models import Issue, Note, OutboundEmail
from issues.services import issue_create, participant_add
from projects.models import Project
from tests.factories import IssueFactory

pytestmark = pytest.mark.django_db
JAKE = "jake@customer.example"


def ticket(project: Project, *, confidential: bool = True) -> Issue:
    """A Service Desk issue: Jake Doe wrote it and is its participant."""
    issue = issue_create(
        project=project,
        author=support_bot(),
        title="Printer on fire",
        confidential=confidential,
        external_author=JAKE,
    )
    jake, _ = participant_add(issue=issue, email=JAKE)
    jake.name = "Jake Doe"
    jake.save(update_fields=["name"])
    return issue


def page(client, issue: Issue) -> str:  # type: ignore[no-untyped-def]
    response = client.get(issue.get_absolute_url())
    assert response.status_code == 200
    return response.content.decode()


def composer(html: str) -> str:
    return re.search(r'<form[^>]*data-testid="composer".*?</form>', html, re.S)[0]  # type: ignore[index]


def buttons(html: str) -> list[str]:
    """The composer's submit buttons' words, as a screen reader gets them in each mode."""
    return [
        re.sub(r"\|+", "|", re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "|", b))).strip("| ")
        for b in re.findall(r'<button type="submit"(?! formaction)[^>]*>(.*?)</button>', html)
    ]


def recipients(html: str) -> str:
    found = re.search(r'<p class="recipients">(.*?)</p>', html, re.S)
    return found[1] if found else ""


def note_url(issue: Issue) -> str:
    return reverse("note_add", args=[issue.project.full_path, issue.iid])


def flashes(response) -> list[str]:  # type: ignore[no-untyped-def]
    return [str(m) for m in get_messages(response.wsgi_request)]


def once_token(html: str) -> str:
    return re.search(r'name="once" value="([^"]+)"', html)[1]  # type: ignore[index]


# --- the two modes ------------------------------------------------------------------------------


def test_reporter_gets_reply_and_internal_tabs_with_reply_checked(
    client, reporter, project
) -> None:
    issue = ticket(project)
    client.force_login(reporter)
    form = composer(page(client, issue))
    assert "<legend" in form
    assert re.search(
        r'type="radio" name="internal" value="false" id="composer-mode-reply"[^>]* checked', form
    )
    assert re.search(r'value="true" id="composer-mode-internal"(?![^>]*checked)[^>]*>', form)
    assert '<label for="composer-mode-reply">Reply to customer</label>' in form
    assert '<label for="composer-mode-internal">Internal note</label>' in form
    assert "Only the team sees this." in form
    # Each button carries both wordings; CSS shows the one for the checked mode.
    assert buttons(form) == [
        "Send reply|Add internal note",
        "Send &amp; close|Add internal note &amp; close",
    ]  # fmt: skip


def test_guest_gets_one_mode_no_addresses_and_a_plain_button(client, guest, project) -> None:
    issue = ticket(project, confidential=False)
    client.force_login(guest)
    html = page(client, issue)
    form = composer(html)
    assert 'name="internal"' not in form
    assert "Reply to customer" not in form
    assert "jake@" not in html
    assert "Jake Doe" not in html
    assert 'data-testid="recipients"' not in form
    assert buttons(form) == ["Add comment"]  # no Send & close: not their issue


def test_an_issue_without_participants_gets_add_comment(client, reporter, project) -> None:
    issue = IssueFactory(project=project)
    client.force_login(reporter)
    form = composer(page(client, issue))
    assert buttons(form)[0] == "Add comment|Add internal note"
    assert 'data-testid="recipients"' not in form


def test_a_failed_internal_note_comes_back_in_internal_mode_with_the_error_by_the_box(
    client, reporter, project
) -> None:
    issue = ticket(project)
    client.force_login(reporter)
    response = client.post(note_url(issue), {"body": "  ", "internal": "true"})
    assert response.status_code == 400
    form = composer(response.content.decode())
    assert re.search(r'id="composer-mode-internal"[^>]* checked', form)
    box = re.search(r'<div class="composer-box">.*?</textarea>\s*(.*?)\n', form, re.S)[1]  # type: ignore[index]
    assert box == '<p class="error" role="alert">Write a comment or attach a file.</p>'
    assert not Note.objects.filter(issue=issue, system=False).exists()


# --- recipients ----------------------------------------------------------------------------------


def test_a_reply_lists_who_is_emailed_and_who_is_not(client, reporter, project) -> None:
    issue = ticket(project)
    participant_add(issue=issue, email="dana@customer.example")
    finn, _ = participant_add(issue=issue, email="finn@customer.example")
    finn.name, finn.unsubscribed_at = "Finn", timezone.now()
    finn.save()
    gus, _ = participant_add(issue=issue, email="gus@customer.example")
    gus.bouncing_at = timezone.now()
    gus.save()
    client.force_login(reporter)
    form = composer(page(client, issue))
    assert recipients(form) == (
        "Emailed to Jake Doe &lt;jake@customer.example&gt;, dana@customer.example; "
        "not to finn@customer.example (unsubscribed), gus@customer.example (bouncing)."
    )
    assert 'data-testid="no-recipients"' not in form
    assert buttons(form)[0] == "Send reply|Add internal note"


def test_a_warning_when_every_participant_is_unsubscribed_or_bouncing(
    client, reporter, project
) -> None:
    issue = ticket(project)
    issue.email_participants.update(unsubscribed_at=timezone.now())
    client.force_login(reporter)
    form = composer(page(client, issue))
    assert recipients(form) == "Not emailed to jake@customer.example (unsubscribed)."
    warning = re.search(r'data-testid="no-recipients">(.*?)</p>', form, re.S)[1]  # type: ignore[index]
    assert "Nobody will receive this reply" in warning
    assert "unsubscribed or their address is bouncing" in warning
    assert buttons(form)[0] == "Add comment|Add internal note"


def test_a_warning_when_service_desk_is_off(client, reporter, project) -> None:
    issue = ticket(project)
    project.service_desk.service_desk_enabled = False
    project.service_desk.save()
    client.force_login(reporter)
    form = composer(page(client, issue))
    assert recipients(form) == ""
    warning = re.search(r'data-testid="no-recipients">(.*?)</p>', form, re.S)[1]  # type: ignore[index]
    assert "Service Desk is off for this project" in warning
    assert buttons(form)[0] == "Add comment|Add internal note"


# --- posting: flash, Send & close -------------------------------------------------------------


def test_a_reply_flashes_whom_it_was_sent_to(client, reporter, project) -> None:
    issue = ticket(project)
    participant_add(issue=issue, email="dana@customer.example")
    participant_add(issue=issue, email="finn@customer.example")
    issue.email_participants.filter(email__startswith="finn").update(bouncing_at=timezone.now())
    client.force_login(reporter)
    response = client.post(note_url(issue), {"body": "We refunded you.", "internal": "false"})
    note = Note.objects.get(body="We refunded you.")
    assert response["Location"].endswith(f"#note-{note.pk}")
    assert flashes(response) == ["Reply sent to jake@customer.example, dana@customer.example."]
    sent = OutboundEmail.objects.filter(note=note).values_list("recipient", flat=True)
    assert sorted(sent) == ["dana@customer.example", JAKE]


def test_an_internal_note_flashes_and_emails_nobody(client, reporter, project) -> None:
    issue = ticket(project)
    client.force_login(reporter)
    response = client.post(note_url(issue), {"body": "Refund approved", "internal": "true"})
    assert flashes(response) == ["Internal note added."]
    assert Note.objects.get(body="Refund approved").internal
    assert not OutboundEmail.objects.exclude(kind="team").exists()


def test_a_guests_comment_flash_names_no_address(client, guest, project) -> None:
    issue = ticket(project, confidential=False)
    client.force_login(guest)
    response = client.post(note_url(issue), {"body": "Me too"})
    assert flashes(response) == ["Comment added."]
    assert OutboundEmail.objects.filter(recipient=JAKE).exists()  # it was emailed all the same


def test_send_and_close_posts_the_reply_then_closes(client, reporter, project) -> None:
    issue = ticket(project)
    client.force_login(reporter)
    response = client.post(note_url(issue), {"body": "Refunded. Bye!", "and_close": "1"})
    note = Note.objects.get(body="Refunded. Bye!")
    assert response["Location"].endswith(f"#note-{note.pk}")
    assert flashes(response) == [f"Reply sent to {JAKE}.", f"Issue #{issue.iid} closed."]
    issue.refresh_from_db()
    assert issue.state == Issue.State.CLOSED
    assert issue.closed_by == reporter
    closing = issue.notes.get(system=True, body="closed")
    assert closing.pk > note.pk  # the reply comes first in the thread
    assert OutboundEmail.objects.get(note=note).recipient == JAKE
    # A closed issue's composer offers no Send & close.
    assert buttons(composer(page(client, issue))) == ["Send reply|Add internal note"]


def test_send_and_close_with_a_close_command_says_closed_once(client, reporter, project) -> None:
    issue = ticket(project)
    client.force_login(reporter)
    response = client.post(note_url(issue), {"body": "Done\n/close", "and_close": "1"})
    assert flashes(response) == [f"Reply sent to {JAKE}.", "Closed."]
    assert issue.notes.filter(system=True, body="closed").count() == 1


def test_send_and_close_is_refused_to_those_who_may_not_close(client, guest, project) -> None:
    issue = ticket(project, confidential=False)
    client.force_login(guest)
    response = client.post(note_url(issue), {"body": "Closing it", "and_close": "1"})
    assert response.status_code == 403
    assert not Note.objects.filter(body="Closing it").exists()
    issue.refresh_from_db()
    assert issue.is_open


# --- the one-time token ---------------------------------------------------------------------------


def test_the_same_form_posted_twice_posts_once(client, reporter, project) -> None:
    issue = ticket(project)
    client.force_login(reporter)
    token = once_token(page(client, issue))
    data = {"body": "Only once, please", "once": token}
    first = client.post(note_url(issue), data)
    second = client.post(note_url(issue), data)
    note = Note.objects.get(body="Only once, please")
    assert first["Location"] == second["Location"] == f"{issue.get_absolute_url()}#note-{note.pk}"
    assert flashes(second)[-1] == "That comment was already posted."  # after the first's
    assert OutboundEmail.objects.filter(recipient=JAKE).count() == 1
    # Another page load gives another token.
    assert once_token(page(client, issue)) != token


def test_a_rejected_form_keeps_its_token_usable(client, reporter, project) -> None:
    issue = ticket(project)
    client.force_login(reporter)
    token = once_token(page(client, issue))
    refused = client.post(note_url(issue), {"body": "", "once": token})
    assert refused.status_code == 400
    assert once_token(refused.content.decode()) == token
    assert client.post(note_url(issue), {"body": "Now with text", "once": token}).status_code == 302
    assert Note.objects.filter(body="Now with text").exists()


def test_a_token_is_the_users_own(client, reporter, owner, project) -> None:
    issue = ticket(project)
    client.force_login(reporter)
    token = once_token(page(client, issue))
    client.post(note_url(issue), {"body": "Bob's", "once": token})
    client.force_login(owner)
    client.post(note_url(issue), {"body": "Alice's", "once": token})
    assert Note.objects.filter(body__in=["Bob's", "Alice's"]).count() == 2
