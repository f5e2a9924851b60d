"""Our first email answers the customer's own: the thank-you (and the Cc'd people's
new-participant email) carries In-Reply-To/References to the Message-ID of the email that opened
the ticket, so it shows under it in their mail client — and a hostile Message-ID never becomes a
header of ours (as received by a real SMTP server)."""

from __future__ import annotations

import pytest

from issues.emails import safe_message_id
from issues.models import Issue, OutboundEmail
from issues.outbox import outbound_claim, outbound_send
from tests.mailroom.helpers import ALIAS, INCOMING, deliver, make_email

pytestmark = pytest.mark.django_db
Status = OutboundEmail.Status
CUSTOMER_ID = "<CAH+x7Q.1234$abc@mail.customer.example>"


@pytest.fixture(autouse=True)
def mailboxes(settings, redis_cache_flushed):  # type: ignore[no-untyped-def]
    settings.SERVICEDESK_MAILBOXES = {"incoming_email": INCOMING, "service_desk_email": ALIAS}
    settings.DEFAULT_FROM_EMAIL = "support@servicedesk.test"


def send_pending() -> dict[int, str]:
    ids = list(OutboundEmail.objects.filter(status=Status.PENDING).values_list("pk", flat=True))
    claimed, token = outbound_claim(ids)
    return outbound_send(claimed, token)


def new_email_issue(project, raw: bytes | None = None, **kwargs) -> Issue:  # type: ignore[no-untyped-def]
    to = INCOMING.address_for(project.service_desk.default_key)
    row = deliver(raw if raw is not None else make_email(to=to, **kwargs))
    assert row.outcome == "issue_created", row.reason
    return Issue.objects.get(pk=row.issue_id)


def root_of(issue: Issue) -> str:
    return f"<issue-{issue.thread_token}@servicedesk.test>"


def test_thank_you_answers_the_customers_own_email(project, smtp) -> None:
    issue = new_email_issue(project, message_id=CUSTOMER_ID)
    send_pending()
    [captured] = smtp.wait_for(1)
    message = captured.message
    assert message["Message-ID"] == root_of(issue)  # still the thread's root
    assert message["In-Reply-To"] == CUSTOMER_ID
    assert message["References"].split() == [CUSTOMER_ID, root_of(issue)]


def test_a_reply_to_the_threaded_thank_you_still_becomes_a_note(project, smtp) -> None:
    issue = new_email_issue(project, message_id=CUSTOMER_ID)
    send_pending()
    thank_you = smtp.wait_for(1)[0].message
    row = deliver(
        make_email(
            to=INCOMING.address_for(project.service_desk.default_key),
            subject=f"Re: {thank_you['Subject']}",
            body="Thanks.",
            # Without the reply key: the References alone bring it to the issue.
            headers={
                "In-Reply-To": thank_you["Message-ID"],
                "References": f"{thank_you['References']} {thank_you['Message-ID']}",
            },
        )
    )
    assert (row.outcome, row.issue_id) == ("note_added", issue.pk), row.reason


def test_cc_participants_new_participant_email_refers_to_the_customers_email(project, smtp) -> None:
    project.service_desk.add_external_participants_from_cc = True
    project.service_desk.save()
    issue = new_email_issue(
        project, message_id=CUSTOMER_ID, headers={"Cc": "boss@customer.example"}
    )
    send_pending()
    boss = {m.recipients[0]: m.message for m in smtp.wait_for(2)}["boss@customer.example"]
    own = boss["Message-ID"]
    assert boss["In-Reply-To"] == root_of(issue)
    assert boss["References"].split() == [CUSTOMER_ID, root_of(issue), own]


def raw_with_message_id(project, value: bytes) -> bytes:  # type: ignore[no-untyped-def]
    to = INCOMING.address_for(project.service_desk.default_key)
    raw = make_email(to=to, message_id="<placeholder@customer.example>")
    return raw.replace(b"<placeholder@customer.example>", value)


@pytest.mark.parametrize(
    "value",
    [
        b"<" + b"x" * 300 + b"@customer.example>",  # longer than any header of ours should be
        "<jürgen.weiß@customer.example>".encode(),  # non-ASCII: not an RFC 5322 id
        b"<no-at-sign>",
        b"<a\x01b@customer.example>",  # a control character
        b"<a@b> <c@d>",  # two ids: only one is the email's
        b'<"quoted"@customer.example>',
    ],
    ids=["too-long", "non-ascii", "no-at", "control", "two-ids", "quoted"],
)
def test_a_hostile_message_id_is_not_copied_into_our_headers(project, smtp, value) -> None:
    issue = new_email_issue(project, raw=raw_with_message_id(project, value))
    send_pending()
    message = smtp.wait_for(1)[0].message
    raw_sent = message.as_bytes()
    if value != b"<a@b> <c@d>":
        assert "In-Reply-To" not in message
        assert message["References"] == root_of(issue)
    else:  # the parser keeps the first id, and that one is fine
        assert message["In-Reply-To"] == "<a@b>"
        assert b"<c@d>" not in raw_sent
    assert "jürgen" not in message.as_string()
    assert b"x" * 300 not in raw_sent


def test_a_folded_message_id_cannot_smuggle_a_header(project, smtp) -> None:
    raw = raw_with_message_id(project, b"<a@customer.example>\r\n\tBcc: victim@evil.example")
    issue = new_email_issue(project, raw=raw)
    send_pending()
    [captured] = smtp.wait_for(1)
    assert captured.recipients == ["jake@customer.example"]
    assert "Bcc" not in captured.message
    assert b"victim" not in captured.message.as_bytes()
    assert captured.message["In-Reply-To"] == "<a@customer.example>"
    assert captured.message["References"].split() == ["<a@customer.example>", root_of(issue)]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("<a.b+c@mail.example>", "<a.b+c@mail.example>"),
        ("  <a@b>  ", "<a@b>"),
        ("a@b", "<a@b>"),  # written without its brackets
        ("<x@[192.0.2.1]>", "<x@[192.0.2.1]>"),
        ("<a@b>\r\nBcc: evil@example.org", None),
        ("<a@b>\nX: y", None),
        ("<a@b\r\n>", None),
        ("<a@b> <c@d>", None),
        ("<a@b><c@d>", None),
        ("<a b@c>", None),
        ("<a@b", None),
        ("<>", None),
        ("", None),
        ("<jürgen@weiß.example>", None),
        ('<"Jürgen Weiß"@example.org>', None),
        ("<" + "a" * 240 + "@b.example>", None),
        ("<a@b\x00>", None),
    ],
)
def test_safe_message_id(value, expected) -> None:
    assert safe_message_id(value) == expected


@pytest.mark.parametrize(
    ("message_id", "expected"),
    [
        ("<x.1@customer.example>", "<x.1@customer.example>"),
        ("<x@a>\r\nBcc: v@evil", None),
        ("<x@a> <y@b>", None),  # looked like one id to the old check: "<" … ">"
        ("<x\x01@a>", None),
    ],
)
def test_a_rejection_notice_answers_only_a_well_formed_message_id(
    project, message_id, expected
) -> None:
    from issues.emails import Rejection, rejection_notices

    [notice] = rejection_notices(
        [Rejection("jake@customer.example", "Hi", "too large", message_id=message_id)]
    )
    assert notice.headers.get("In-Reply-To") == expected
    assert notice.headers.get("References") == expected
