"""Outbound emails end to end: recorded with their cause, sent to the real SMTP server."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from issues.models import EmailParticipant, Issue, IssueEmail, OutboundEmail
from issues.outbox import outbound_claim, outbound_send
from issues.tasks import send_outbound_emails
from tests.mailroom.helpers import ALIAS, INCOMING, deliver, make_email

pytestmark = pytest.mark.django_db
Status = OutboundEmail.Status
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


@pytest.fixture(autouse=True)
def mailboxes(settings, redis_cache_flushed):  # type: ignore[no-untyped-def]
    settings.SERVICEDESK_MAILBOXES = {"incoming_email": INCOMING, "service_desk_email": ALIAS}
    settings.DEFAULT_FROM_EMAIL = "support@servicedesk.test"


def send_pending() -> dict[int, str]:
    ids = list(
        OutboundEmail.objects.exclude(kind="team")
        .filter(status=Status.PENDING)
        .values_list("pk", flat=True)
    )
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
    [email] = OutboundEmail.objects.exclude(kind="team").filter(issue=issue)
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
    assert message["Message-ID"] == f"<issue-{issue.thread_token}@servicedesk.test>"
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["X-Auto-Response-Suppress"] == "All"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    token = email.sent_notification.unsubscribe_token
    assert token != key
    unsubscribe_url = f"http://servicedesk.test/-/unsubscribe/{token}"
    assert message["List-Unsubscribe"].strip() == (  # long: folded after the colon
        f"<{unsubscribe_url}>, <mailto:{INCOMING.address_for(token + '-unsubscribe')}>"
    )
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    # The text part is text, not the Markdown it was rendered from.
    assert f"opened ticket #{issue.iid} for it." in text
    assert f"Unsubscribe ({unsubscribe_url}) from emails" in text
    assert "**" not in text
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
    kinds = dict(
        OutboundEmail.objects.exclude(kind="team")
        .filter(issue=issue)
        .values_list("recipient", "kind")
    )
    assert kinds == {
        "jake@customer.example": "thank_you",
        "boss@customer.example": "new_participant",
    }
    send_pending()
    messages = {m.recipients[0]: m.message for m in smtp.wait_for(2)}
    boss = messages["boss@customer.example"]
    assert boss["In-Reply-To"] == f"<issue-{issue.thread_token}@servicedesk.test>"
    assert boss["Message-ID"].startswith("<reply-")
    assert boss["Auto-Submitted"] == "auto-generated"


def test_nothing_is_sent_when_service_desk_is_off(project) -> None:
    from issues.emails import NewTicket, service_desk_issues_created

    issue = new_email_issue(project)
    OutboundEmail.objects.exclude(kind="team").all().delete()
    project.service_desk.service_desk_enabled = False
    project.service_desk.save()
    participant = EmailParticipant.objects.get(issue=issue)
    assert service_desk_issues_created([NewTicket(issue, participant)]) == []
    assert not OutboundEmail.objects.exclude(kind="team").exists()


def test_smtp_outage_retries_and_delivers_once(project, smtp) -> None:
    new_email_issue(project)
    smtp.stop()
    [result] = send_pending().values()
    email = OutboundEmail.objects.exclude(kind="team").get()
    assert result == Status.PENDING
    assert email.attempts == 1
    assert "ConnectionRefusedError" in email.last_error
    assert email.next_attempt_at is not None
    assert outbound_claim([email.pk])[0] == []  # not before its backoff
    smtp.start()
    OutboundEmail.objects.exclude(kind="team").update(next_attempt_at=None)
    assert send_pending() == {email.pk: Status.SENT}
    assert len(smtp.wait_for(1)) == 1
    assert send_pending() == {}
    assert len(smtp.messages) == 1


def test_unsubscribe_link_confirms_on_get_and_unsubscribes_on_post(client, project) -> None:
    new_email_issue(project)
    email = OutboundEmail.objects.exclude(kind="team").get()
    assert (
        client.get(reverse("unsubscribe", args=[email.sent_notification.reply_key])).status_code
        == 404
    )
    url = reverse("unsubscribe", args=[email.sent_notification.unsubscribe_token])
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
    email = OutboundEmail.objects.exclude(kind="team").get()
    url = reverse("unsubscribe", args=[email.sent_notification.unsubscribe_token])
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
    send_outbound_emails.delay(
        list(OutboundEmail.objects.exclude(kind="team").values_list("pk", flat=True))
    )
    [captured] = smtp.wait_for(1, timeout=30)
    assert captured.message["Auto-Submitted"] == "auto-replied"
    assert OutboundEmail.objects.exclude(kind="team").get().status == Status.SENT


def test_team_comment_emails_the_requester_but_internal_and_system_notes_do_not(
    client, project, reporter, smtp
) -> None:
    issue = new_email_issue(project)
    OutboundEmail.objects.exclude(kind="team").all().delete()
    client.force_login(reporter)
    url = reverse("note_add", args=[project.full_path, issue.iid])
    client.post(url, {"body": "Team only", "internal": "on"})
    client.post(reverse("issue_close", args=[project.full_path, issue.iid]))
    assert not OutboundEmail.objects.exclude(kind="team").exists()
    client.post(url, {"body": "We **fixed** it in 2.3.2."})
    [email] = OutboundEmail.objects.exclude(kind="team").all()
    assert (email.kind, email.recipient) == ("new_note", "jake@customer.example")
    send_pending()
    message = smtp.wait_for(1)[0].message
    assert "We fixed it in 2.3.2." in message.get_body(("plain",)).get_content()
    assert "<strong>fixed</strong>" in message.get_body(("html",)).get_content()
    assert message["In-Reply-To"] == f"<issue-{issue.thread_token}@servicedesk.test>"
    assert message["Auto-Submitted"] == "auto-generated"
    assert "Team only" not in message.as_string()


def test_customer_reply_goes_to_the_other_participants_only(project, smtp) -> None:
    project.service_desk.add_external_participants_from_cc = True
    project.service_desk.save()
    issue = new_email_issue(project, headers={"Cc": "boss@customer.example, gone@customer.example"})
    gone = EmailParticipant.objects.get(issue=issue, email="gone@customer.example")
    gone.unsubscribed_at = gone.created_at
    gone.save()
    OutboundEmail.objects.exclude(kind="team").all().delete()
    row = deliver(
        make_email(
            to=INCOMING.address_for(project.service_desk.default_key),
            subject="Re: Printer on fire",
            body="Still burning.",
            headers={"In-Reply-To": f"<issue-{issue.thread_token}@servicedesk.test>"},
        )
    )
    assert row.outcome == "note_added", row.reason
    assert list(OutboundEmail.objects.exclude(kind="team").values_list("kind", "recipient")) == [
        ("new_note", "boss@customer.example")
    ]


def test_sweeper_requeues_emails_left_sending_by_a_dead_worker(project) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from issues.outbox import STUCK_AFTER, outbound_sweep

    new_email_issue(project)
    email = OutboundEmail.objects.exclude(kind="team").get()
    outbound_claim([email.pk])  # ...and the worker dies before sending
    OutboundEmail.objects.exclude(kind="team").update(
        claimed_at=timezone.now() - STUCK_AFTER - timedelta(seconds=1)
    )
    assert outbound_sweep() == 1
    email.refresh_from_db()
    assert email.status == Status.PENDING
    assert outbound_claim([email.pk])[0] == [email.pk]


# --- Issue closed -----------------------------------------------------------------------------


def test_issue_closed_email_is_off_by_default_and_sent_when_the_project_turns_it_on(
    client, project, reporter, smtp
) -> None:
    issue = new_email_issue(project)
    OutboundEmail.objects.exclude(kind="team").all().delete()
    client.force_login(reporter)
    close = reverse("issue_close", args=[project.full_path, issue.iid])
    reopen = reverse("issue_reopen", args=[project.full_path, issue.iid])
    client.post(close)
    assert not OutboundEmail.objects.exclude(kind="team").exists()

    client.post(reopen)
    project.service_desk.send_issue_closed_email = True
    project.service_desk.save()
    client.post(close)
    client.post(close)  # already closed: no second email
    [email] = OutboundEmail.objects.exclude(kind="team").all()
    assert (email.kind, email.recipient) == ("issue_closed", "jake@customer.example")
    send_pending()
    message = smtp.wait_for(1)[0].message
    assert message["Subject"] == f"Re: Printer on fire (#{issue.iid})"
    assert message["In-Reply-To"] == f"<issue-{issue.thread_token}@servicedesk.test>"
    text = message.get_body(("plain",)).get_content()
    assert f"Ticket #{issue.iid} has been closed" in text
    assert email.sent_notification.unsubscribe_token in text  # its own unsubscribe link
    assert email.sent_notification.reply_key not in text


# --- [Rejected] notices -----------------------------------------------------------------------


def test_rejected_email_gets_one_notice_per_sender_per_hour(project, smtp) -> None:
    unknown = INCOMING.address_for("nobody-here-issue-")
    first = deliver(make_email(to=unknown, subject="Where does this go?", message_id="<a@c.ex>"))
    assert first.outcome == "rejected"
    [notice] = OutboundEmail.objects.exclude(kind="team").filter(kind="rejected")
    assert notice.recipient == "jake@customer.example"
    assert notice.issue is None
    assert notice.sent_notification is None
    deliver(make_email(to=unknown, subject="Again"))
    deliver(make_email(to=unknown, subject="And again", sender="JAKE@customer.example"))
    assert OutboundEmail.objects.exclude(kind="team").filter(kind="rejected").count() == 1
    deliver(make_email(to=unknown, subject="Me too", sender="amy@customer.example"))
    assert OutboundEmail.objects.exclude(kind="team").filter(kind="rejected").count() == 2

    send_pending()
    messages = {m.recipients[0]: m.message for m in smtp.wait_for(2)}
    message = messages["jake@customer.example"]
    assert message["Subject"] == "[Rejected] Where does this go?"
    assert message["In-Reply-To"] == "<a@c.ex>"
    assert message["Auto-Submitted"] == "auto-replied"
    assert "Reply-To" not in message
    assert "List-Unsubscribe" not in message
    text = message.get_body(("plain",)).get_content()
    assert "does not belong to a support desk" in text
    assert "nobody-here" not in text  # the notice never repeats the key or what was sent


def test_an_hour_later_the_sender_may_get_another_notice(project) -> None:
    from datetime import timedelta

    from django.utils import timezone

    unknown = INCOMING.address_for("nobody-here-issue-")
    deliver(make_email(to=unknown))
    OutboundEmail.objects.exclude(kind="team").update(
        created_at=timezone.now() - timedelta(minutes=61)
    )
    deliver(make_email(to=unknown))
    assert OutboundEmail.objects.exclude(kind="team").filter(kind="rejected").count() == 2


def test_no_notice_to_auto_generated_mail_or_to_ourselves(project, settings) -> None:
    settings.SERVICEDESK_MAX_EMAIL_SIZE = 100
    to = INCOMING.address_for(project.service_desk.default_key)
    robot = deliver(make_email(to=to, headers={"Auto-Submitted": "auto-replied"}))
    assert (robot.outcome, robot.reason[:9]) == ("rejected", "too large")  # size comes first
    ours = deliver(make_email(to=to, sender="support@servicedesk.test"))
    assert ours.outcome == "rejected"
    assert not OutboundEmail.objects.exclude(kind="team").filter(kind="rejected").exists()


def test_rejections_in_a_batch_send_one_notice_per_sender(project) -> None:
    from mailroom.ledger import inbound_claim, inbound_process_batch, inbound_store

    unknown = INCOMING.address_for("nobody-here-issue-")
    rows = [
        inbound_store(raw=make_email(to=unknown, subject=f"n{i}"), transport="test", enqueue=False)
        for i in range(3)
    ]
    claimed, token = inbound_claim([r.pk for r in rows])
    inbound_process_batch(claimed, token)
    assert OutboundEmail.objects.exclude(kind="team").filter(kind="rejected").count() == 1


def test_rejection_wording_for_each_reason() -> None:
    from issues.emails import rejection_wording

    assert rejection_wording("too large (30.0 MB > 25 MB)") == "it is larger than we accept"
    assert rejection_wording("project not found") == rejection_wording("no key found")
    assert "try again" in rejection_wording("rate limited")
    assert rejection_wording("something new") == "it could not be processed"


# --- Attachments and file links ---------------------------------------------------------------


def _comment_with_files(client, project, issue, files, internal=False):  # type: ignore[no-untyped-def]
    from django.core.files.uploadedfile import SimpleUploadedFile

    uploads = [
        SimpleUploadedFile(name, content, content_type=ctype) for name, content, ctype in files
    ]
    data = {"body": "See attached.", "files": uploads}
    if internal:
        data["internal"] = "on"
    return client.post(reverse("note_add", args=[project.full_path, issue.iid]), data)


def test_comment_files_go_as_real_attachments(client, project, reporter, smtp) -> None:
    issue = new_email_issue(project)
    OutboundEmail.objects.exclude(kind="team").all().delete()
    client.force_login(reporter)
    response = _comment_with_files(client, project, issue, [
        ("log.txt", b"line 1\nline 2\n", "text/plain"),
        ("shot.png", PNG, "image/png"),
    ])  # fmt: skip
    assert response.status_code == 302
    [email] = OutboundEmail.objects.exclude(kind="team").all()
    assert len(email.attachments) == 2
    send_pending()
    message = smtp.wait_for(1)[0].message
    attached = {part.get_filename(): part.get_content() for part in message.iter_attachments()}
    assert attached["shot.png"] == PNG
    assert attached["log.txt"].replace("\r\n", "\n") == "line 1\nline 2\n"  # CRLF on the wire
    assert set(attached) == {"log.txt", "shot.png"}
    text = message.get_body(("plain",)).get_content()
    assert "See attached." in text
    assert "http://servicedesk.test/-/files/" in text  # links work without login too


def test_files_over_the_limit_are_links_that_work_without_login(
    client, project, reporter, smtp, settings
) -> None:
    settings.SERVICEDESK_EMAIL_ATTACHMENTS_MAX_SIZE = 1000
    issue = new_email_issue(project)
    OutboundEmail.objects.exclude(kind="team").all().delete()
    client.force_login(reporter)
    _comment_with_files(client, project, issue, [("big.bin", b"x" * 1001, "application/zip")])
    [email] = OutboundEmail.objects.exclude(kind="team").all()
    assert email.attachments == []
    send_pending()
    message = smtp.wait_for(1)[0].message
    assert list(message.iter_attachments()) == []
    [link] = re.findall(r"http://servicedesk\.test(/-/files/\S+/big\.bin)", email.body_text)

    client.logout()
    download = client.get(link)
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == b"x" * 1001
    assert download["Content-Disposition"].startswith("attachment")
    token = link.split("/")[3]
    forged = link.replace(token, token[:-1] + ("A" if token[-1] != "A" else "B"))
    assert client.get(forged).status_code == 404
    other_name = link.replace("big.bin", "other.bin")
    assert client.get(other_name).status_code == 404


def test_expired_file_links_stop_working(client, project, reporter, settings) -> None:
    issue = new_email_issue(project)
    client.force_login(reporter)
    settings.SERVICEDESK_EMAIL_ATTACHMENTS_MAX_SIZE = 0
    _comment_with_files(client, project, issue, [("a.txt", b"a", "text/plain")])
    email = OutboundEmail.objects.exclude(kind="team").get(kind="new_note")
    [link] = re.findall(r"http://servicedesk\.test(/-/files/\S+/a\.txt)", email.body_text)
    client.logout()
    assert client.get(link).status_code == 200
    settings.SERVICEDESK_EMAIL_FILE_LINK_DAYS = -1
    assert client.get(link).status_code == 404


def test_links_to_internal_files_are_never_signed(client, project, reporter) -> None:
    issue = new_email_issue(project)
    client.force_login(reporter)
    _comment_with_files(client, project, issue, [("secret.txt", b"s", "text/plain")],
                        internal=True)  # fmt: skip
    internal = issue.notes.get(internal=True)
    assert not OutboundEmail.objects.exclude(kind="team").filter(kind="new_note").exists()
    path = re.search(r"\((/-/uploads/\d+/secret\.txt)\)", internal.body).group(1)
    client.post(reverse("note_add", args=[project.full_path, issue.iid]),
                {"body": f"Quoting the internal file: [it]({path})"})  # fmt: skip
    email = OutboundEmail.objects.exclude(kind="team").get(kind="new_note")
    assert "/-/files/" not in email.body_text
    assert path in email.body_text  # left as it was: it needs a login


def test_comment_form_validates_files(client, project, reporter, settings) -> None:
    issue = new_email_issue(project)
    client.force_login(reporter)
    settings.SERVICEDESK_MAX_UPLOAD_SIZE = 10
    response = _comment_with_files(client, project, issue, [("big.txt", b"x" * 11, "text/plain")])
    assert response.status_code == 400
    assert b"big.txt is 11\xc2\xa0bytes; files may be at most 10\xc2\xa0bytes." in response.content
    settings.SERVICEDESK_MAX_UPLOADS_PER_NOTE = 1
    response = _comment_with_files(client, project, issue, [("a", b"a", ""), ("b", b"b", "")])
    assert b"At most 1 files per comment." in response.content
    empty = client.post(reverse("note_add", args=[project.full_path, issue.iid]), {"body": " "})
    assert b"Write a comment or attach a file." in empty.content
    assert not issue.notes.filter(system=False).exists()


# --- Per-project templates --------------------------------------------------------------------


def test_project_templates_override_the_defaults_and_blank_restores_them(project, smtp) -> None:
    from django.core.exceptions import ValidationError

    from projects.services import service_desk_email_template_set

    service_desk_email_template_set(
        project=project,
        kind="thank_you",
        text="Hi! Your ticket is %{ ISSUE_ID } (%{ISSUE_PATH}).\r\nStop: %{UNSUBSCRIBE_URL}",
    )
    issue = new_email_issue(project)
    email = OutboundEmail.objects.exclude(kind="team").get(issue=issue)
    key = email.sent_notification.unsubscribe_token
    assert email.body_text == (
        f"Hi! Your ticket is #{issue.iid} ({project.full_path}#{issue.iid}).\n"
        f"Stop: http://servicedesk.test/-/unsubscribe/{key}\n"
    )
    service_desk_email_template_set(project=project, kind="thank_you", text="  ")
    second = new_email_issue(project, message_id="<other@customer.example>")
    assert (
        "Thank you for your message"
        in OutboundEmail.objects.exclude(kind="team").get(issue=second).body_text
    )
    with pytest.raises(ValidationError):
        service_desk_email_template_set(project=project, kind="rejected", text="x")
    with pytest.raises(ValidationError):
        service_desk_email_template_set(project=project, kind="new_note", text="x" * 20_001)


def test_an_unknown_placeholder_saved_before_the_check_is_sent_as_nothing(project, smtp) -> None:
    from django.core.exceptions import ValidationError

    from issues.emails import render_placeholders
    from projects.models import ServiceDeskSetting
    from projects.services import service_desk_email_template_set

    with pytest.raises(ValidationError, match="ISSUE_IDD"):
        service_desk_email_template_set(project=project, kind="thank_you", text="%{ISSUE_IDD}")
    ServiceDeskSetting.objects.filter(project=project).update(
        thank_you_template="Ticket %{ISSUE_ID}%{ ISSUE_IDD }, [stop](%{UNSUBSCRIBE_URL}).%{x y}"
    )
    issue = new_email_issue(project)
    send_pending()
    message = smtp.wait_for(1)[0].message
    text = message.get_body(("plain",)).get_content()
    assert text.startswith(f"Ticket #{issue.iid}, stop (http://servicedesk.test/-/unsubscribe/")
    assert text.rstrip().endswith(").")
    assert "%{" not in message.as_string()
    # Other callers keep the old behaviour unless they ask: unknown ones as written.
    assert render_placeholders("%{A} %{ B }", {"B": "b"}) == "%{A} b"
    assert render_placeholders("%{A} %{ B }", {"B": "b"}, unknown="") == " b"


# --- Backends ---------------------------------------------------------------------------------


def test_an_anymail_esp_backend_sends_the_same_email(project, settings) -> None:
    from django.core import mail

    settings.EMAIL_BACKEND = "anymail.backends.test.EmailBackend"
    issue = new_email_issue(project)
    assert list(send_pending().values()) == [Status.SENT]
    [message] = mail.outbox
    assert message.to == ["jake@customer.example"]
    assert message.extra_headers["Message-ID"] == f"<issue-{issue.thread_token}@servicedesk.test>"
    assert message.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message.reply_to == [
        OutboundEmail.objects.exclude(kind="team").get().headers["Reply-To"]
    ]
    assert message.alternatives[0][1] == "text/html"


@pytest.mark.parametrize(
    ("status", "expected"), [(400, Status.FAILED), (429, Status.PENDING), (503, Status.PENDING)]
)
def test_esp_api_errors_are_permanent_for_4xx_and_retried_otherwise(
    project, monkeypatch, settings, status, expected
) -> None:
    from anymail.exceptions import AnymailAPIError

    class Response:
        status_code = status
        text = "{}"
        reason = "test"

        def json(self) -> dict:  # type: ignore[type-arg]
            return {}

    def fail(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise AnymailAPIError("ESP said no", status_code=status, response=Response())

    settings.EMAIL_BACKEND = "anymail.backends.test.EmailBackend"
    new_email_issue(project)
    monkeypatch.setattr("anymail.backends.test.EmailBackend.send_messages", fail)
    assert list(send_pending().values()) == [expected]
    assert "ESP said no" in OutboundEmail.objects.exclude(kind="team").get().last_error


def test_a_batch_is_sent_over_one_connection_and_not_retried_while_the_server_is_down(
    project, smtp, monkeypatch
) -> None:
    import smtplib

    project.service_desk.add_external_participants_from_cc = True
    project.service_desk.save()
    new_email_issue(project, headers={"Cc": "a@customer.example, b@customer.example"})
    connects = []
    real_connect = smtplib.SMTP.connect

    def counting_connect(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        connects.append(args)
        return real_connect(self, *args, **kwargs)

    monkeypatch.setattr(smtplib.SMTP, "connect", counting_connect)
    smtp.stop()
    assert list(send_pending().values()) == [Status.PENDING] * 3
    assert len(connects) == 1  # the first refusal stands for the batch
    assert {e.last_error[:22] for e in OutboundEmail.objects.exclude(kind="team").all()} == {
        "ConnectionRefusedError"
    }

    smtp.start()
    connects.clear()
    OutboundEmail.objects.exclude(kind="team").update(next_attempt_at=None)
    assert list(send_pending().values()) == [Status.SENT] * 3
    assert len(connects) == 1
    assert sorted(m.recipients[0] for m in smtp.wait_for(3)) == [
        "a@customer.example", "b@customer.example", "jake@customer.example"
    ]  # fmt: skip


ESPS = {
    # EMAIL_BACKEND and ANYMAIL_* variables exactly as the README shows them.
    "mailgun": {"MAILGUN_API_KEY": "key-test", "MAILGUN_SENDER_DOMAIN": "mg.servicedesk.test"},
    "postmark": {"POSTMARK_SERVER_TOKEN": "server-token"},
    "sendgrid": {"SENDGRID_API_KEY": "SG.test"},
    "amazon_ses": {
        "AMAZON_SES_CLIENT_PARAMS": {
            "region_name": "eu-west-1", "aws_access_key_id": "AKIATEST",
            "aws_secret_access_key": "secret",
        }
    },
}  # fmt: skip


@pytest.mark.filterwarnings("ignore::anymail.exceptions.AnymailNotSupportedWarning")
@pytest.mark.parametrize("esp", sorted(ESPS))
def test_each_documented_esp_carries_our_headers(project, settings, esp) -> None:
    """What each ESP would be asked to send (its API payload, built offline): the threading,
    Reply-To and unsubscribe headers survive the translation."""
    from email import message_from_bytes, policy

    from django.core.mail import get_connection

    from issues.outbox import _message

    settings.ANYMAIL = ESPS[esp]
    issue = new_email_issue(project)
    email = OutboundEmail.objects.exclude(kind="team").get()
    connection = get_connection(f"anymail.backends.{esp}.EmailBackend")
    connection.open()
    payload = connection.build_message_payload(
        _message(email, connection), connection.send_defaults
    )
    if esp == "amazon_ses":  # SES gets the whole MIME message
        payload.finalize_payload()
        sent = message_from_bytes(payload.params["Content"]["Raw"]["Data"], policy=policy.default)
        serialized = str(sent)
        assert sent["Reply-To"] == email.headers["Reply-To"]
    else:
        serialized = str(payload.serialize_data())  # Mailgun's is a form (a dict)
    for expected in (
        f"<issue-{issue.thread_token}@servicedesk.test>",
        email.headers["Reply-To"],
        "List-Unsubscribe=One-Click",
        email.sent_notification.unsubscribe_token + "-unsubscribe",
        "auto-replied",
        "Re: Printer on fire",
    ):
        assert expected in serialized, (esp, expected)


def test_each_recipient_of_a_comment_gets_their_own_unsubscribe_link(
    client, project, reporter
) -> None:
    project.service_desk.add_external_participants_from_cc = True
    project.service_desk.save()
    issue = new_email_issue(project, headers={"Cc": "boss@customer.example"})
    OutboundEmail.objects.exclude(kind="team").all().delete()
    client.force_login(reporter)
    client.post(reverse("note_add", args=[project.full_path, issue.iid]), {"body": "Fixed."})
    emails = list(OutboundEmail.objects.exclude(kind="team").select_related("sent_notification"))
    keys = [e.sent_notification.unsubscribe_token for e in emails]
    assert len(emails) == 2
    assert len(set(keys)) == 2
    for email, key in zip(emails, keys, strict=True):
        other = next(k for k in keys if k != key)
        assert f"/-/unsubscribe/{key}" in email.body_text
        assert f'href="http://servicedesk.test/-/unsubscribe/{key}"' in email.body_html
        assert other not in email.body_text + email.body_html
        assert email.headers["List-Unsubscribe"].startswith(
            f"<http://servicedesk.test/-/unsubscribe/{key}>"
        )


def test_over_the_hourly_project_limit_emails_wait_and_the_bot_says_so_once(
    project, smtp, settings
) -> None:
    from servicedesk.ratelimit import _redis

    settings.SERVICEDESK_OUTBOUND_EMAILS_PER_PROJECT_PER_HOUR = 2
    project.service_desk.add_external_participants_from_cc = True
    project.service_desk.save()
    issue = new_email_issue(project, headers={"Cc": "a@customer.example, b@customer.example"})
    results = send_pending()
    assert sorted(results.values()) == [Status.PENDING, Status.SENT, Status.SENT]
    [held] = OutboundEmail.objects.exclude(kind="team").filter(status=Status.PENDING)
    assert held.attempts == 0  # waiting is not a failed attempt
    assert held.next_attempt_at.minute == 0  # the next hour
    assert held.last_error == "held: over 2 emails per project per hour"
    assert outbound_claim([held.pk])[0] == []  # not before then
    [note] = issue.notes.filter(author__is_bot=True, internal=True)
    assert "more than 2 emails in the past hour" in note.body

    OutboundEmail.objects.exclude(kind="team").update(next_attempt_at=None)
    assert list(send_pending().values()) == [Status.PENDING]  # still this hour
    assert issue.notes.filter(author__is_bot=True, internal=True).count() == 1  # said once

    _redis(settings.REDIS_CACHE_URL or settings.REDIS_URL).flushdb()  # the next hour
    OutboundEmail.objects.exclude(kind="team").update(next_attempt_at=None)
    assert list(send_pending().values()) == [Status.SENT]
    assert len(smtp.wait_for(3)) == 3


def test_a_moved_ticket_stays_one_conversation_in_the_customers_mail_client(
    project, reporter
) -> None:
    from issues.emails import note_added
    from issues.services import issue_move, note_create
    from projects.services import membership_set
    from tests.factories import ProjectFactory

    issue = new_email_issue(project)
    target = ProjectFactory(group=project.group, path="web", service_desk_enabled=True)
    membership_set(user=reporter, project=target, role=20)
    copy = issue_move(issue=issue, target=target, user=reporter)
    [email] = note_added(note_create(issue=copy, author=reporter, body="Moved, still on it."))
    root = f"<issue-{issue.thread_token}@servicedesk.test>"
    assert email.headers["In-Reply-To"] == root
    assert email.headers["References"].startswith(root)


def test_the_teams_notifications_do_not_count_against_the_project_limit(
    project, owner, reporter, smtp, settings
) -> None:
    from notifications.services import events_deliver

    settings.SERVICEDESK_OUTBOUND_EMAILS_PER_PROJECT_PER_HOUR = 1
    new_email_issue(project)  # a thank-you to the customer, and the team hears of it
    events_deliver()
    pending = OutboundEmail.objects.filter(status=Status.PENDING).values_list("pk", flat=True)
    claimed, token = outbound_claim(list(pending))
    results = outbound_send(claimed, token)
    assert sorted(results.values()) == [Status.SENT] * 3  # the thank-you, alice's, bob's
    assert OutboundEmail.objects.filter(kind="team", status=Status.SENT).count() == 2
