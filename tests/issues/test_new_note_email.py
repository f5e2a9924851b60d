"""The *new note* email: who gets it, and the headers that keep it in the customer's thread and
bring their answer back (as received by a real SMTP server)."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from issues.models import EmailParticipant, Issue, OutboundEmail
from issues.outbox import outbound_claim, outbound_send
from tests.mailroom.helpers import ALIAS, INCOMING, deliver, make_email

pytestmark = pytest.mark.django_db
Status = OutboundEmail.Status
REQUESTER = "jake@customer.example"


@pytest.fixture(autouse=True)
def mailboxes(settings, redis_cache_flushed):  # type: ignore[no-untyped-def]
    settings.SERVICEDESK_MAILBOXES = {"incoming_email": INCOMING, "service_desk_email": ALIAS}
    settings.DEFAULT_FROM_EMAIL = "support@servicedesk.test"


@pytest.fixture
def issue(project) -> Issue:  # type: ignore[no-untyped-def]
    """An email issue from jake, Cc boss and ann; its first emails already out of the way."""
    project.service_desk.add_external_participants_from_cc = True
    project.service_desk.save()
    to = INCOMING.address_for(project.service_desk.default_key)
    row = deliver(make_email(to=to, headers={"Cc": "boss@customer.example, ann@customer.example"}))
    assert row.outcome == "issue_created", row.reason
    OutboundEmail.objects.exclude(kind="team").all().delete()
    return Issue.objects.get(pk=row.issue_id)


def send_pending() -> dict[int, str]:
    ids = list(
        OutboundEmail.objects.exclude(kind="team")
        .filter(status=Status.PENDING)
        .values_list("pk", flat=True)
    )
    claimed, token = outbound_claim(ids)
    return outbound_send(claimed, token)


def team_comment(client, reporter, issue: Issue, body: str) -> None:  # type: ignore[no-untyped-def]
    client.force_login(reporter)
    url = reverse("note_add", args=[issue.project.full_path, issue.iid])
    assert client.post(url, {"body": body}).status_code == 302


def customer_reply(client, reporter, issue: Issue, body: str) -> None:  # type: ignore[no-untyped-def]
    root = f"<issue-{issue.thread_token}@servicedesk.test>"
    to = INCOMING.address_for(issue.project.service_desk.default_key)
    row = deliver(make_email(to=to, subject="Re: x", body=body, headers={"In-Reply-To": root}))
    assert row.outcome == "note_added", row.reason


def test_each_recipient_finds_their_own_reply_key_in_references(client, reporter, issue, smtp):
    team_comment(client, reporter, issue, "Fixed in 2.3.2.")
    emails = list(OutboundEmail.objects.exclude(kind="team").select_related("sent_notification"))
    assert sorted(e.recipient for e in emails) == [
        "ann@customer.example", "boss@customer.example", REQUESTER
    ]  # fmt: skip
    send_pending()
    received = {m.recipients[0]: m.message for m in smtp.wait_for(3)}
    root = f"<issue-{issue.thread_token}@servicedesk.test>"
    for email in emails:
        # A client that drops Reply-To still answers with References: the key brings it back.
        own = f"<reply-{email.sent_notification.reply_key}@servicedesk.test>"
        message = received[email.recipient]
        assert message["References"].split() == [root, own], email.recipient
        assert message["Message-ID"] == own
        assert message["In-Reply-To"] == root


@pytest.mark.parametrize("comment", [team_comment, customer_reply], ids=["team", "customer"])
def test_a_bouncing_participant_gets_no_new_note_email(client, reporter, issue, smtp, comment):
    EmailParticipant.objects.filter(issue=issue, email="boss@customer.example").update(
        bouncing_at=timezone.now()
    )
    comment(client, reporter, issue, "Any news?")
    expected = ["ann@customer.example"] + ([REQUESTER] if comment is team_comment else [])
    recipients = OutboundEmail.objects.exclude(kind="team").values_list("recipient", flat=True)
    assert sorted(recipients) == expected
    send_pending()
    assert sorted(m.recipients[0] for m in smtp.wait_for(len(expected))) == expected

    # "Clear bouncing": the next comment reaches them again.
    EmailParticipant.objects.filter(issue=issue).update(bouncing_at=None)
    OutboundEmail.objects.exclude(kind="team").all().delete()
    comment(client, reporter, issue, "And now?")
    assert "boss@customer.example" in OutboundEmail.objects.exclude(kind="team").values_list(
        "recipient", flat=True
    )


# --- Whose words: a participant's email reply passed on to the others ---------------------------


def reply_from(issue: Issue, sender: str, body: str = "It still crashes.") -> None:
    root = f"<issue-{issue.thread_token}@servicedesk.test>"
    to = INCOMING.address_for(issue.project.service_desk.default_key)
    raw = make_email(
        to=to, subject="Re: x", sender=sender, body=body, headers={"In-Reply-To": root}
    )
    row = deliver(raw)
    assert row.outcome == "note_added", row.reason


def received_by(recipient: str, count: int, smtp):  # type: ignore[no-untyped-def]
    send_pending()
    return {m.recipients[0]: m.message for m in smtp.wait_for(count)}[recipient]


@pytest.fixture
def acme(issue: Issue) -> Issue:
    issue.project.service_desk.outgoing_name = "ACME Support"
    issue.project.service_desk.save()
    return issue


def test_a_forwarded_reply_says_who_wrote_it(acme, smtp):
    reply_from(acme, "Dana Smith <boss@customer.example>", "It **still** crashes.")
    message = received_by(REQUESTER, 2, smtp)
    [sender] = message["From"].addresses
    assert (sender.display_name, sender.addr_spec) == (
        "Dana Smith via ACME Support", "support@servicedesk.test"
    )  # fmt: skip
    text = message.get_body(("plain",)).get_content()
    assert text.startswith("Dana Smith wrote:\r\n\r\nIt still crashes.")
    assert "<p>Dana Smith wrote:</p>" in message.get_body(("html",)).get_content()
    assert "boss@customer.example" not in message.as_string()


def test_a_team_comment_comes_from_the_desk_alone(client, reporter, acme, smtp):
    team_comment(client, reporter, acme, "On it.")
    message = received_by(REQUESTER, 3, smtp)
    assert message["From"].addresses[0].display_name == "ACME Support"
    assert "wrote:" not in message.get_body(("plain",)).get_content()


@pytest.mark.parametrize(
    "sender",
    ["boss@customer.example", '"boss@customer.example" <boss@customer.example>'],
    ids=["no-name", "address-as-name"],
)
def test_a_sender_without_a_name_is_never_shown_by_address(acme, smtp, sender):
    EmailParticipant.objects.filter(issue=acme).update(name="")
    reply_from(acme, sender)
    message = received_by(REQUESTER, 2, smtp)
    assert message["From"].addresses[0].display_name == "ACME Support"
    text = message.get_body(("plain",)).get_content()
    assert text.startswith("Another participant wrote:")
    assert "boss@" not in message.as_string()


def test_the_name_the_participant_was_known_by_when_the_reply_has_none(acme, smtp):
    EmailParticipant.objects.filter(issue=acme, email="boss@customer.example").update(
        name="Dana Smith"
    )
    reply_from(acme, "boss@customer.example")
    message = received_by(REQUESTER, 2, smtp)
    assert message["From"].addresses[0].display_name == "Dana Smith via ACME Support"


@pytest.mark.parametrize(
    "name",
    [
        'Dana "The Boss" Smith',
        "Jürgen Weiß",
        "Smith, Dana (Sales)",
        r"Back\slash <b>x</b> [1] *star* _u_ #h `c` & more",
    ],
)
def test_names_are_quoted_or_encoded_in_from_and_literal_in_the_body(acme, smtp, name):
    from email.headerregistry import Address

    reply_from(acme, str(Address(display_name=name, addr_spec="boss@customer.example")))
    message = received_by(REQUESTER, 2, smtp)
    headers = message.as_bytes().split(b"\n\n")[0]
    assert headers.isascii()  # non-ASCII names are encoded words, never raw bytes in a header
    assert [a.addr_spec for a in message["From"].addresses] == ["support@servicedesk.test"]
    assert message["From"].addresses[0].display_name == f"{name} via ACME Support"
    text = message.get_body(("plain",)).get_content()
    assert text.startswith(f"{name} wrote:\r\n")


def test_line_breaks_in_a_name_never_make_a_header(acme, smtp):
    from issues.emails import note_added
    from issues.models import Note

    # A name stored with line breaks (by another path, or an older parser) is still one line.
    reply_from(acme, "Dana <boss@customer.example>")
    note = Note.objects.filter(issue=acme).exclude(external_author="").get()
    for name in ("Dana\r\nBcc: victim", "Dana\nBcc: victim\rX-Evil: 1"):
        Note.objects.filter(pk=note.pk).update(external_name=name)
        note.refresh_from_db()
        OutboundEmail.objects.all().delete()
        note_added(note)
        send_pending()
        for captured in smtp.wait_for(2):
            assert captured.recipients[0] in (REQUESTER, "ann@customer.example")
            assert "Bcc" not in captured.message
            assert "X-Evil" not in captured.message
            [sender] = captured.message["From"].addresses
            assert sender.addr_spec == "support@servicedesk.test"
            assert sender.display_name == f"{' '.join(name.split())} via ACME Support"
        smtp.clear()


def test_an_encoded_word_carrying_a_line_break_in_a_reply_never_makes_a_header(acme, smtp):
    to = INCOMING.address_for(acme.project.service_desk.default_key)
    raw = make_email(
        to=to, subject="Re: x", sender="Placeholder <boss@customer.example>",
        headers={"In-Reply-To": f"<issue-{acme.thread_token}@servicedesk.test>"},
    ).replace(
        b"From: Placeholder",
        b"From: =?utf-8?b?RGFuYQ0KQmNjOiB2aWN0aW0=?=",  # "Dana", CR LF, "Bcc: victim"
    )  # fmt: skip
    assert deliver(raw).outcome == "note_added"
    send_pending()
    for captured in smtp.wait_for(2):
        assert "Bcc" not in captured.message
        assert captured.recipients[0] in (REQUESTER, "ann@customer.example")
        [sender] = captured.message["From"].addresses
        assert (sender.display_name, sender.addr_spec) == (
            "Dana Bcc: victim via ACME Support", "support@servicedesk.test"
        )  # fmt: skip
