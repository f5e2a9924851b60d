"""Outbound emails end to end: recorded with their cause, sent to the real SMTP server."""

from __future__ import annotations

import pytest
from django.urls import reverse

from issues.models import EmailParticipant, Issue, IssueEmail, OutboundEmail
from issues.outbox import outbound_claim, outbound_send
from issues.tasks import send_outbound_emails
from tests.mailroom.helpers import ALIAS, INCOMING, deliver, make_email

pytestmark = pytest.mark.django_db
Status = OutboundEmail.Status


@pytest.fixture(autouse=True)
def mailboxes(settings, redis_cache_flushed):  # type: ignore[no-untyped-def]
    settings.SERVICEDESK_MAILBOXES = {"incoming_email": INCOMING, "service_desk_email": ALIAS}
    settings.DEFAULT_FROM_EMAIL = "support@servicedesk.test"


def send_pending() -> dict[int, str]:
    ids = list(OutboundEmail.objects.filter(status=Status.PENDING).values_list("pk", flat=True))
    claimed, token = outbound_claim(ids)
    return outbound_send(claimed, token)


def new_email_issue(project, **kwargs) -> Issue:  # type: ignore[no-untyped-def]
    to = INCOMING.address_for(project.service_desk.default_key)
    row = deliver(make_email(to=to, subject="Printer on fire", **kwargs))
    assert row.outcome == "issue_created", row.reason
    return Issue.objects.get(pk=row.issue_id)


def test_thank_you_is_recorded_with_the_issue_and_arrives_with_every_header(project, smtp) -> None:
    project.service_desk.outgoing_name = 'ACME "Support"\r\nBcc: evil@example.org'
    project.service_desk.save()
    issue = new_email_issue(project)
    [email] = OutboundEmail.objects.filter(issue=issue)
    assert (email.kind, email.status, email.recipient) == ("thank_you", "pending",
                                                           "jake@customer.example")  # fmt: skip
    assert send_pending() == {email.pk: Status.SENT}

    [captured] = smtp.wait_for(1)
    assert captured.recipients == ["jake@customer.example"]
    message = captured.message
    key = email.sent_notification.reply_key
    assert message["Subject"] == f"Re: Printer on fire (#{issue.iid})"
    assert message["From"].addresses[0].display_name == 'ACME "Support" Bcc: evil@example.org'
    assert message["From"].addresses[0].addr_spec == "support@servicedesk.test"
    assert "Bcc" not in message
    assert message["Reply-To"] == INCOMING.address_for(key)
    assert message["Message-ID"] == f"<issue_{issue.pk}@servicedesk.test>"
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["X-Auto-Response-Suppress"] == "All"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe_url = f"http://servicedesk.test/-/unsubscribe/{key}"
    assert message["List-Unsubscribe"].strip() == (  # long: folded after the colon
        f"<{unsubscribe_url}>, <mailto:{INCOMING.address_for(key + '-unsubscribe')}>"
    )
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert f"ticket **#{issue.iid}**" in text
    assert unsubscribe_url in text
    assert f"<strong>#{issue.iid}</strong>" in html
    assert f'href="{unsubscribe_url}"' in html
    assert "%{" not in text
    # The thank-you never echoes what the sender wrote (verification codes, SPEC §8).
    assert "My game does not start" not in text
    assert IssueEmail.objects.filter(issue=issue, direction="out").exists()


def test_reply_to_the_thank_you_threads_back_to_the_issue(project, smtp) -> None:
    issue = new_email_issue(project)
    send_pending()
    thank_you = smtp.wait_for(1)[0].message
    reply = make_email(
        to=str(thank_you["Reply-To"]),
        subject=f"Re: {thank_you['Subject']}",
        body="It works now.\n\nOn Monday Support wrote:\n> Thank you for your message.",
        headers={"In-Reply-To": thank_you["Message-ID"], "References": thank_you["References"]},
    )
    row = deliver(reply)
    assert row.outcome == "note_added", row.reason
    assert row.issue_id == issue.pk


def test_cc_participants_get_new_participant_instead(project, smtp) -> None:
    project.service_desk.add_external_participants_from_cc = True
    project.service_desk.save()
    issue = new_email_issue(project, headers={"Cc": "boss@customer.example"})
    kinds = dict(OutboundEmail.objects.filter(issue=issue).values_list("recipient", "kind"))
    assert kinds == {
        "jake@customer.example": "thank_you",
        "boss@customer.example": "new_participant",
    }
    send_pending()
    messages = {m.recipients[0]: m.message for m in smtp.wait_for(2)}
    boss = messages["boss@customer.example"]
    assert boss["In-Reply-To"] == f"<issue_{issue.pk}@servicedesk.test>"
    assert boss["Message-ID"].startswith("<reply-")
    assert boss["Auto-Submitted"] == "auto-generated"


def test_nothing_is_sent_when_service_desk_is_off(project) -> None:
    from issues.emails import service_desk_issue_created

    issue = new_email_issue(project)
    OutboundEmail.objects.all().delete()
    project.service_desk.service_desk_enabled = False
    project.service_desk.save()
    participant = EmailParticipant.objects.get(issue=issue)
    assert service_desk_issue_created(issue=issue, requester=participant, cc=[]) == []
    assert not OutboundEmail.objects.exists()


def test_smtp_outage_retries_and_delivers_once(project, smtp) -> None:
    new_email_issue(project)
    smtp.stop()
    [result] = send_pending().values()
    email = OutboundEmail.objects.get()
    assert result == Status.PENDING
    assert email.attempts == 1
    assert "ConnectionRefusedError" in email.last_error
    assert email.next_attempt_at is not None
    assert outbound_claim([email.pk])[0] == []  # not before its backoff
    smtp.start()
    OutboundEmail.objects.update(next_attempt_at=None)
    assert send_pending() == {email.pk: Status.SENT}
    assert len(smtp.wait_for(1)) == 1
    assert send_pending() == {}
    assert len(smtp.messages) == 1


def test_permanent_refusal_is_recorded_with_the_reason(project, smtp, monkeypatch) -> None:
    import smtplib

    new_email_issue(project)

    def refuse(self, *args, **kwargs):  # the server answers 550 for this recipient
        raise smtplib.SMTPRecipientsRefused({"jake@customer.example": (550, b"No such user")})

    monkeypatch.setattr("django.core.mail.backends.smtp.EmailBackend.send_messages", refuse)
    assert list(send_pending().values()) == [Status.FAILED]
    assert "No such user" in OutboundEmail.objects.get().last_error


def test_unsubscribe_link_confirms_on_get_and_unsubscribes_on_post(client, project) -> None:
    new_email_issue(project)
    email = OutboundEmail.objects.get()
    url = reverse("unsubscribe", args=[email.sent_notification.reply_key])
    page = client.get(url)
    assert page.status_code == 200
    assert b"Unsubscribe?" in page.content
    assert email.participant.unsubscribed_at is None
    response = client.post(url)
    assert b"You are unsubscribed" in response.content
    email.participant.refresh_from_db()
    assert email.participant.unsubscribed_at is not None
    assert client.get(reverse("unsubscribe", args=["0" * 32])).status_code == 404


def test_rfc8058_one_click_post_unsubscribes(client, project) -> None:
    new_email_issue(project)
    email = OutboundEmail.objects.get()
    url = reverse("unsubscribe", args=[email.sent_notification.reply_key])
    response = client.post(
        url, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 200
    email.participant.refresh_from_db()
    assert email.participant.unsubscribed_at is not None


@pytest.mark.django_db(transaction=True)
def test_the_worker_sends_after_commit(project, smtp, celery_worker) -> None:
    """Through Redis and the real worker process, as in production."""
    new_email_issue(project)
    send_outbound_emails.delay(list(OutboundEmail.objects.values_list("pk", flat=True)))
    [captured] = smtp.wait_for(1, timeout=30)
    assert captured.message["Auto-Submitted"] == "auto-replied"
    assert OutboundEmail.objects.get().status == Status.SENT


def test_team_comment_emails_the_requester_but_internal_and_system_notes_do_not(
    client, project, reporter, smtp
) -> None:
    issue = new_email_issue(project)
    OutboundEmail.objects.all().delete()
    client.force_login(reporter)
    url = reverse("note_add", args=[project.full_path, issue.iid])
    client.post(url, {"body": "Team only", "internal": "on"})
    client.post(reverse("issue_close", args=[project.full_path, issue.iid]))
    assert not OutboundEmail.objects.exists()
    client.post(url, {"body": "We **fixed** it in 2.3.2."})
    [email] = OutboundEmail.objects.all()
    assert (email.kind, email.recipient) == ("new_note", "jake@customer.example")
    send_pending()
    message = smtp.wait_for(1)[0].message
    assert "We **fixed** it in 2.3.2." in message.get_body(("plain",)).get_content()
    assert "<strong>fixed</strong>" in message.get_body(("html",)).get_content()
    assert message["In-Reply-To"] == f"<issue_{issue.pk}@servicedesk.test>"
    assert message["Auto-Submitted"] == "auto-generated"
    assert "Team only" not in message.as_string()


def test_customer_reply_goes_to_the_other_participants_only(project, smtp) -> None:
    project.service_desk.add_external_participants_from_cc = True
    project.service_desk.save()
    issue = new_email_issue(project, headers={"Cc": "boss@customer.example, gone@customer.example"})
    gone = EmailParticipant.objects.get(issue=issue, email="gone@customer.example")
    gone.unsubscribed_at = gone.created_at
    gone.save()
    OutboundEmail.objects.all().delete()
    row = deliver(
        make_email(
            to=INCOMING.address_for(project.service_desk.default_key),
            subject="Re: Printer on fire",
            body="Still burning.",
            headers={"In-Reply-To": f"<issue_{issue.pk}@servicedesk.test>"},
        )
    )
    assert row.outcome == "note_added", row.reason
    assert list(OutboundEmail.objects.values_list("kind", "recipient")) == [
        ("new_note", "boss@customer.example")
    ]


def test_sweeper_requeues_emails_left_sending_by_a_dead_worker(project) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from issues.outbox import STUCK_AFTER, outbound_sweep

    new_email_issue(project)
    email = OutboundEmail.objects.get()
    outbound_claim([email.pk])  # ...and the worker dies before sending
    OutboundEmail.objects.update(claimed_at=timezone.now() - STUCK_AFTER - timedelta(seconds=1))
    assert outbound_sweep() == 1
    email.refresh_from_db()
    assert email.status == Status.PENDING
    assert outbound_claim([email.pk])[0] == [email.pk]
