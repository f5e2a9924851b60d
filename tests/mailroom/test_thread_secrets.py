"""Nobody posts into a ticket without a secret: key-less threading and our Message-IDs."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from issues.emails import issue_message_id
from issues.models import (
    EmailParticipant,
    Issue,
    IssueEmail,
    Note,
    OutboundEmail,
    SentNotification,
)
from mailroom.ledger import inbound_claim, inbound_process_batch, inbound_store
from mailroom.models import InboundMessage

from .helpers import ALIAS, INCOMING, deliver, make_email

pytestmark = pytest.mark.django_db
HOST = "servicedesk.test"


@pytest.fixture(autouse=True)
def mailboxes(settings, redis_cache_flushed):  # type: ignore[no-untyped-def]
    settings.SERVICEDESK_MAILBOXES = {"incoming_email": INCOMING, "service_desk_email": ALIAS}
    settings.DEFAULT_FROM_EMAIL = f"support@{HOST}"
    settings.SITE_URL = f"https://{HOST}"


@pytest.fixture
def to(project) -> str:  # type: ignore[no-untyped-def]
    return INCOMING.address_for(project.service_desk.default_key)


@pytest.fixture
def ticket(project, to) -> Issue:  # type: ignore[no-untyped-def]
    """Jake's ticket, with his colleague Dana in Cc."""
    project.service_desk.add_external_participants_from_cc = True
    project.service_desk.save()
    row = deliver(make_email(to=to, subject="Invoice wrong", message_id="<jake-1@customer.example>",
                             headers={"Cc": "dana@customer.example"}))  # fmt: skip
    assert row.outcome == "issue_created", row.reason
    OutboundEmail.objects.exclude(kind="team").all().delete()
    return Issue.objects.get(pk=row.issue_id)


def reply(to: str, in_reply_to: str, sender: str, body: str = "Please send me the money") -> bytes:
    return make_email(to=to, subject="Re: Invoice wrong", body=body, sender=sender,
                      headers={"In-Reply-To": in_reply_to, "References": in_reply_to})  # fmt: skip


def process_as_batch(raws: list[bytes]) -> list[InboundMessage]:
    ids = [inbound_store(raw=raw, transport="test", enqueue=False).pk for raw in raws]
    claimed, token = inbound_claim(ids)
    inbound_process_batch(claimed, token)
    return list(InboundMessage.objects.filter(pk__in=ids).order_by("pk"))


def test_every_message_id_we_send_is_random(project, to) -> None:
    rows = [deliver(make_email(to=to, subject=f"Ticket {n}")) for n in range(2)]
    ids = [
        OutboundEmail.objects.exclude(kind="team").get(issue_id=row.issue_id).message_id
        for row in rows
    ]
    for message_id in ids:
        assert re.fullmatch(rf"<issue-[0-9a-f]{{32}}@{HOST}>", message_id), message_id
    assert ids[0] != ids[1]


def test_stranger_naming_a_guessable_legacy_root_gets_no_note_on_the_ticket(ticket, to) -> None:
    """Issues from before random roots keep their sequential root: it threads only for a
    participant. A stranger naming it opens a ticket of their own; nobody else is emailed."""
    legacy = f"<issue_{ticket.pk}@{HOST}>"
    IssueEmail.objects.create(issue=ticket, message_id=legacy, direction="out")

    row = deliver(reply(to, legacy, "Mallory <mallory@evil.example>"))
    assert row.outcome == "issue_created"
    assert row.issue_id != ticket.pk
    assert not Note.objects.filter(issue=ticket, external_author="mallory@evil.example").exists()
    assert (
        not OutboundEmail.objects.exclude(kind="team")
        .filter(recipient__endswith="@customer.example")
        .exists()
    )

    row = deliver(reply(to, legacy, "Dana <dana@customer.example>", body="Any news?"))
    assert (row.outcome, row.issue_id) == ("note_added", ticket.pk)
    assert not Note.objects.get(pk=row.note_id).internal


@pytest.mark.parametrize("path", ["alone", "batch"])
def test_non_participant_reply_by_a_leaked_root_is_held_as_an_internal_note(
    ticket, to, path
) -> None:
    """The root is unguessable but travels with every email (a forward leaks it): a reply from
    an address that is not a participant is kept internal and emailed to nobody."""
    email = reply(to, issue_message_id(ticket), "Mallory <mallory@evil.example>")
    if path == "alone":
        row = deliver(email)
    else:
        [row, _] = process_as_batch([email, make_email(to=to, subject="Other ticket")])
    assert (row.outcome, row.issue_id) == ("note_added", ticket.pk)
    note = Note.objects.get(pk=row.note_id)
    assert (note.internal, note.from_non_participant) == (True, True)
    assert row.decision["non_participant"] is True
    assert not OutboundEmail.objects.exclude(kind="team").filter(issue=ticket).exists()


@pytest.mark.parametrize("path", ["alone", "batch"])
def test_participant_reply_without_a_key_is_public_and_emailed(ticket, to, path) -> None:
    email = reply(to, "<jake-1@customer.example>", "Dana <dana@customer.example>")
    if path == "alone":
        row = deliver(email)
    else:
        [row, _] = process_as_batch([email, make_email(to=to, subject="Other ticket")])
    note = Note.objects.get(pk=row.note_id)
    assert (note.internal, note.from_non_participant) == (False, False)
    assert list(
        OutboundEmail.objects.exclude(kind="team")
        .filter(issue=ticket)
        .values_list("recipient", flat=True)
    ) == ["jake@customer.example"]


def test_reporter_makes_a_held_reply_public_with_one_click(client, ticket, to, reporter) -> None:
    row = deliver(reply(to, issue_message_id(ticket), "Newcomer <new@customer.example>"))
    note = Note.objects.get(pk=row.note_id)
    url = reverse("note_make_public", args=[ticket.project.full_path, ticket.iid, note.pk])
    client.force_login(reporter)
    page = client.get(reverse("issue_detail", args=[ticket.project.full_path, ticket.iid]))
    assert url in page.content.decode()

    assert client.post(url).status_code == 302
    note.refresh_from_db()
    assert (note.internal, note.from_non_participant) == (False, False)
    recipients = (
        OutboundEmail.objects.exclude(kind="team")
        .filter(note=note)
        .values_list("recipient", flat=True)
    )
    assert sorted(recipients) == ["dana@customer.example", "jake@customer.example"]
    assert client.post(url).status_code == 302  # twice: nothing more is sent
    assert OutboundEmail.objects.exclude(kind="team").filter(note=note).count() == 2


def test_cc_participant_list_unchanged_by_held_reply(ticket, to) -> None:
    deliver(reply(to, issue_message_id(ticket), "Mallory <mallory@evil.example>"))
    participants = EmailParticipant.objects.filter(issue=ticket).values_list("email", flat=True)
    assert sorted(participants) == ["dana@customer.example", "jake@customer.example"]


# --- Reply keys never leak ------------------------------------------------------------------


def quoting_reply(ticket: Issue, sender: str = "Jake <jake@customer.example>") -> bytes:
    """Jake answers our thank-you the way mail clients do: the whole email quoted below, its
    Reply-To address, Message-ID and unsubscribe link with it."""
    sent = SentNotification.objects.create(
        issue=ticket,
        recipient="jake@customer.example",
        participant=EmailParticipant.objects.get(issue=ticket, email="jake@customer.example"),
    )
    key, token = sent.reply_key, sent.unsubscribe_token
    quoted = (
        f"On Mon, 1 Dec 2026, Support <{INCOMING.address_for(key)}> wrote:\n"
        "> Thank you for your message.\n"
        f"> Unsubscribe: https://{HOST}/-/unsubscribe/{token}\n"
        f"> Message-ID: <reply-{key}@{HOST}>\n"
        f"> Or write to {INCOMING.address_for(token + '-unsubscribe')}\n"
    )
    return make_email(
        to=INCOMING.address_for(key), subject="Re: Invoice wrong", sender=sender,
        body=f"Here is my order number {key.upper()[:8]}.\n\n{quoted}",
    )  # fmt: skip


def test_our_keys_and_unsubscribe_links_are_cut_from_stored_email_text(ticket) -> None:
    raw = quoting_reply(ticket)
    row = deliver(raw)
    assert row.outcome == "note_added", row.reason
    note = Note.objects.get(pk=row.note_id)
    stored = note.body + note.quoted
    keys = re.findall(r"[0-9a-f]{32}", raw.decode())
    assert keys
    for key in keys:
        assert key not in stored
    assert "/-/unsubscribe/" not in stored
    assert "> Thank you for your message." in note.quoted  # the rest of the quote is kept


def test_quoted_history_is_emailed_to_nobody_and_shown_only_to_reporters(
    ticket, client, guest, reporter
) -> None:
    ticket.confidential = False
    ticket.save()
    row = deliver(quoting_reply(ticket))
    [email] = OutboundEmail.objects.exclude(kind="team").filter(note_id=row.note_id)
    assert email.recipient == "dana@customer.example"
    assert "Thank you for your message" not in email.body_text + email.body_html
    assert "Support <" not in email.body_text  # the quote's "On …, Support <…> wrote:"
    assert email.body_text.startswith("Jake wrote:\n\nHere is my order number")  # ours

    url = reverse("issue_detail", args=[ticket.project.full_path, ticket.iid])
    client.force_login(guest)
    page = client.get(url).content.decode()
    assert "Here is my order number" in page
    assert "Thank you for your message" not in page
    client.force_login(reporter)
    page = client.get(url).content.decode()
    assert "Thank you for your message" in page
