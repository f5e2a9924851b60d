"""Replies signed with the agent's name (off by default): a team comment then comes from
"Bob at ACME Support" and %{AUTHOR_NAME} is Bob; off, both are the desk's name alone (as
received by a real SMTP server)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.models import User
from issues.models import Issue, OutboundEmail
from issues.outbox import outbound_claim, outbound_send
from projects.services import service_desk_email_template_set
from tests.mailroom.helpers import ALIAS, INCOMING, deliver, make_email

pytestmark = pytest.mark.django_db
Status = OutboundEmail.Status
TEMPLATE = "%{NOTE_TEXT}\n\n— %{AUTHOR_NAME}\n\n[Unsubscribe](%{UNSUBSCRIBE_URL})"


@pytest.fixture(autouse=True)
def mailboxes(settings, redis_cache_flushed):  # type: ignore[no-untyped-def]
    settings.SERVICEDESK_MAILBOXES = {"incoming_email": INCOMING, "service_desk_email": ALIAS}
    settings.DEFAULT_FROM_EMAIL = "support@servicedesk.test"


@pytest.fixture
def issue(project) -> Issue:  # type: ignore[no-untyped-def]
    project.service_desk.outgoing_name = "ACME Support"
    project.service_desk.save()
    service_desk_email_template_set(project=project, kind="new_note", text=TEMPLATE)
    row = deliver(make_email(to=INCOMING.address_for(project.service_desk.default_key)))
    assert row.outcome == "issue_created", row.reason
    OutboundEmail.objects.all().delete()
    return Issue.objects.get(pk=row.issue_id)


def sign_replies(issue: Issue, on: bool = True) -> None:
    issue.project.service_desk.sign_replies_with_agent_name = on
    issue.project.service_desk.save()


def comment_and_receive(client, user: User, issue: Issue, smtp, body: str = "Fixed."):  # type: ignore[no-untyped-def]
    client.force_login(user)
    url = reverse("note_add", args=[issue.project.full_path, issue.iid])
    assert client.post(url, {"body": body}).status_code == 302
    ids = list(OutboundEmail.objects.filter(status=Status.PENDING).values_list("pk", flat=True))
    outbound_send(*outbound_claim(ids))
    [captured] = smtp.wait_for(1)
    return captured.message


def test_off_by_default_replies_come_from_the_desk(client, reporter, issue, smtp) -> None:
    assert not issue.project.service_desk.sign_replies_with_agent_name
    message = comment_and_receive(client, reporter, issue, smtp)
    [sender] = message["From"].addresses
    assert (sender.display_name, sender.addr_spec) == ("ACME Support", "support@servicedesk.test")
    text = message.get_body(("plain",)).get_content()
    assert "— ACME Support" in text
    assert "Bob" not in message.as_string()


def test_signed_replies_name_the_agent(client, reporter, issue, smtp) -> None:
    sign_replies(issue)
    message = comment_and_receive(client, reporter, issue, smtp)
    [sender] = message["From"].addresses
    assert (sender.display_name, sender.addr_spec) == (
        "Bob at ACME Support", "support@servicedesk.test"
    )  # fmt: skip
    assert "Fixed.\r\n\r\n— Bob\r\n" in message.get_body(("plain",)).get_content()
    assert "<p>— Bob</p>" in message.get_body(("html",)).get_content()


def test_a_customers_reply_is_still_theirs_when_replies_are_signed(issue, smtp) -> None:
    from issues.models import EmailParticipant

    sign_replies(issue)
    EmailParticipant.objects.create(issue=issue, email="ann@customer.example")
    root = f"<issue-{issue.thread_token}@servicedesk.test>"
    row = deliver(
        make_email(
            to=INCOMING.address_for(issue.project.service_desk.default_key),
            subject="Re: x", body="Still broken.", headers={"In-Reply-To": root},
        )
    )  # fmt: skip
    assert row.outcome == "note_added", row.reason
    ids = list(OutboundEmail.objects.values_list("pk", flat=True))
    outbound_send(*outbound_claim(ids))
    [captured] = smtp.wait_for(1)
    assert captured.recipients == ["ann@customer.example"]
    assert captured.message["From"].addresses[0].display_name == "Jake via ACME Support"
    text = captured.message.get_body(("plain",)).get_content()
    assert text.startswith("Jake wrote:\r\n\r\nStill broken.")
    assert "— Jake\r\n" in text


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ('Jürgen "JW" Weiß', 'Jürgen "JW" Weiß'),
        ("Bob\r\nBcc: victim@evil.example", "Bob Bcc: victim@evil.example"),
        ("*Bob* [x](http://evil.example) <b>", "*Bob* [x](http://evil.example) <b>"),
    ],
    ids=["quotes-non-ascii", "crlf", "markup"],
)
def test_agent_names_are_quoted_or_encoded_and_literal(
    client, reporter, issue, smtp, name, shown
) -> None:
    User.objects.filter(pk=reporter.pk).update(name=name)
    reporter.refresh_from_db()
    sign_replies(issue)
    message = comment_and_receive(client, reporter, issue, smtp)
    assert message.as_bytes().split(b"\n\n")[0].isascii()
    assert "Bcc" not in message
    assert [a.addr_spec for a in message["From"].addresses] == ["support@servicedesk.test"]
    assert message["From"].addresses[0].display_name == f"{shown} at ACME Support"
    assert f"— {shown}\r\n" in message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert 'href="http://evil.example' not in html  # a name is text, never a link
    assert "<em>" not in html


def test_a_bot_comment_is_never_signed(issue, smtp) -> None:
    from accounts.selectors import support_bot
    from issues.emails import note_added
    from issues.services import note_create

    sign_replies(issue)
    note_added(note_create(issue=issue, author=support_bot(), body="Automatic answer."))
    outbound_send(*outbound_claim(list(OutboundEmail.objects.values_list("pk", flat=True))))
    message = smtp.wait_for(1)[0].message
    assert message["From"].addresses[0].display_name == "ACME Support"
