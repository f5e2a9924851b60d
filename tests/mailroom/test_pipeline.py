"""The pipeline's behaviour end to end in-process: handlers, rejections, the ledger's rules."""

from __future__ import annotations

import uuid
from datetime import timedelta
from email.message import EmailMessage

import pytest
from django.utils import timezone

from accounts.selectors import support_bot
from issues.models import EmailParticipant, Issue, Note, SentNotification, Upload
from issues.services import issue_close
from mailroom.ledger import inbound_claim, inbound_process, inbound_store, inbound_sweep
from mailroom.models import InboundMessage
from projects.models import DescriptionTemplate, Visibility
from tests.factories import LabelFactory, ProjectFactory, member

from .helpers import ALIAS, FIXTURES, INCOMING, deliver, make_email

pytestmark = pytest.mark.django_db
Outcome = InboundMessage.Outcome
Status = InboundMessage.Status


@pytest.fixture(autouse=True)
def mailboxes(settings, redis_cache_flushed):  # type: ignore[no-untyped-def]
    settings.SERVICEDESK_MAILBOXES = {"incoming_email": INCOMING, "service_desk_email": ALIAS}


@pytest.fixture
def address(project) -> str:  # type: ignore[no-untyped-def]
    return INCOMING.address_for(project.service_desk.default_key)


def new_issue(address: str, **kwargs: object) -> Issue:
    row = deliver(make_email(to=address, **kwargs))  # type: ignore[arg-type]
    assert row.outcome == Outcome.ISSUE_CREATED, row.reason
    return Issue.objects.get(pk=row.issue_id)


def reply_key_for(issue: Issue, email: str = "jake@customer.example") -> str:
    participant = EmailParticipant.objects.get(issue=issue, email=email)
    return SentNotification.objects.create(
        issue=issue, participant=participant, recipient=email
    ).reply_key


# --- new issues --------------------------------------------------------------------------------


def test_email_issue_is_confidential_by_default_and_public_projects_force_it(project, address):
    assert new_issue(address).confidential
    project.service_desk.tickets_confidential_by_default = False
    project.service_desk.save()
    assert not new_issue(address).confidential
    project.visibility = Visibility.PUBLIC
    project.save()
    assert new_issue(address).confidential


def test_blank_subject_becomes_no_subject(address) -> None:
    assert new_issue(address, subject="   ").title == "(no subject)"


def test_slash_commands_from_email_never_run(project, address) -> None:
    LabelFactory(project=project, title="bug")
    issue = new_issue(address, body="Hi\n/label ~bug\n  /close\n/confidential\nthanks")
    assert issue.labels.count() == 0
    assert issue.state == "opened"
    assert "`/label ~bug`" in issue.description
    assert "  `/close`" in issue.description


def test_description_template_is_appended_and_its_commands_run(project, address) -> None:
    LabelFactory(project=project, title="support")
    alice = member(project, 50, "alice")
    template = DescriptionTemplate.objects.create(
        project=project, name="triage", content="## Triage\n/label ~support\n/assign @alice"
    )
    project.service_desk.description_template = template
    project.service_desk.save()
    issue = new_issue(address, body="Broken")
    assert issue.description.startswith("Broken")
    assert issue.description.endswith("## Triage")
    assert list(issue.labels.values_list("title", flat=True)) == ["support"]
    assert list(issue.assignees.all()) == [alice]


def test_attachments_become_uploads_and_inline_images_show(project, address) -> None:
    msg = EmailMessage()
    msg["From"] = "jake@customer.example"
    msg["To"] = address
    msg["Subject"] = "Screenshot"
    msg.set_content("See picture")
    msg.add_alternative('<p>See <img src="cid:shot@x"></p>', subtype="html")
    msg.get_payload()[1].add_related(b"\x89PNG fake", "image", "png", cid="<shot@x>")
    msg.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="€ rates.pdf")
    row = deliver(msg.as_bytes())
    assert row.outcome == Outcome.ISSUE_CREATED, row.reason
    issue = Issue.objects.get()
    uploads = {u.filename: u for u in Upload.objects.filter(issue=issue)}
    assert set(uploads) >= {"€ rates.pdf"}
    pdf = uploads["€ rates.pdf"]
    assert pdf.file.read() == b"%PDF-1.4"
    assert f"/-/uploads/{pdf.pk}/" in issue.description


def test_rate_limit_per_sender_per_project(settings, address, rate_window_frozen) -> None:
    settings.SERVICEDESK_NEW_ISSUES_PER_SENDER_PER_MINUTE = 2
    for _ in range(2):
        new_issue(address)
    row = deliver(make_email(to=address))
    assert row.outcome == Outcome.REJECTED
    assert row.reason == "rate limited"
    other = deliver(make_email(to=address, sender="finn@customer.example"))
    assert other.outcome == Outcome.ISSUE_CREATED


def test_same_message_twice_makes_one_issue(address) -> None:
    raw = make_email(to=address, message_id="<once@customer.example>")
    assert deliver(raw).outcome == Outcome.ISSUE_CREATED
    again = deliver(raw)
    assert again.outcome == Outcome.IGNORED
    assert again.reason.startswith("duplicate")
    assert Issue.objects.count() == 1


# --- replies -----------------------------------------------------------------------------------


def test_reply_by_reply_key_adds_note_with_quote_kept_collapsed(address) -> None:
    issue = new_issue(address)
    key = reply_key_for(issue)
    body = "It works now, thanks!\n\nOn Mon, 1 Jan 2026, Support wrote:\n> Try again\n"
    row = deliver(make_email(to=INCOMING.address_for(key), subject="Re: x", body=body))
    assert row.outcome == Outcome.NOTE_ADDED, row.reason
    note = Note.objects.get(pk=row.note_id)
    assert note.author == support_bot()
    assert note.external_author == "jake@customer.example"
    assert note.body == "It works now, thanks!"
    assert "Try again" in note.quoted
    assert row.decision["key"].startswith(key[:6])
    assert key not in str(row.decision)


def test_reply_to_moved_issue_lands_on_the_new_issue(project, address) -> None:
    issue = new_issue(address)
    key = reply_key_for(issue)
    target = ProjectFactory()
    moved = Issue.objects.create(
        project=target, iid=1, title=issue.title, author=issue.author, confidential=True
    )
    Issue.objects.filter(pk=issue.pk).update(moved_to=moved, state="closed")
    row = deliver(make_email(to=INCOMING.address_for(key), body="Any news?"))
    assert row.outcome == Outcome.NOTE_ADDED, row.reason
    assert Note.objects.get(pk=row.note_id).issue == moved


def test_reply_from_cc_recipient_threads_by_references_without_plus_address(address) -> None:
    issue = new_issue(address, message_id="<first@customer.example>")
    row = deliver(
        make_email(
            to=address,
            sender="boss@customer.example",
            subject="Re: Help please",
            body="Please hurry.",
            headers={"References": "<first@customer.example>"},
        )
    )
    assert row.outcome == Outcome.NOTE_ADDED, row.reason
    assert Note.objects.get(pk=row.note_id).issue == issue


def test_external_note_reopens_closed_issue_when_enabled(project, address) -> None:
    project.service_desk.reopen_issue_on_external_participant_note = True
    project.service_desk.save()
    issue = new_issue(address)
    issue.assignees.add(member(project, 20, "bob"))
    issue_close(issue=issue, user=support_bot())
    deliver(make_email(to=INCOMING.address_for(reply_key_for(issue)), body="Still broken"))
    issue.refresh_from_db()
    assert issue.state == "opened"
    reopen_note = Note.objects.filter(issue=issue, internal=True, system=False).last()
    assert "@bob" in reopen_note.body


def test_closed_issue_stays_closed_when_reopen_is_off(project, address) -> None:
    project.service_desk.reopen_issue_on_external_participant_note = False
    project.service_desk.save()
    issue = new_issue(address)
    issue_close(issue=issue, user=support_bot())
    deliver(make_email(to=INCOMING.address_for(reply_key_for(issue)), body="Thanks"))
    issue.refresh_from_db()
    assert issue.state == "closed"
    assert issue.last_public_by == "customer"  # still waits for an answer


def test_a_new_project_reopens_a_closed_ticket_on_a_customer_reply(address) -> None:
    issue = new_issue(address)
    issue_close(issue=issue, user=support_bot())
    deliver(make_email(to=INCOMING.address_for(reply_key_for(issue)), body="Not fixed"))
    issue.refresh_from_db()
    assert (issue.state, issue.last_public_by) == ("opened", "customer")


def test_unsubscribe_key_removes_only_that_participant(address) -> None:
    issue = new_issue(address)
    sent = SentNotification.objects.filter(user=None).get(issue=issue)
    # The reply key does not unsubscribe: the address carries a token of its own.
    row = deliver(make_email(to=INCOMING.address_for(f"{sent.reply_key}-unsubscribe"), body="x"))
    assert (row.outcome, row.reason) == (Outcome.REJECTED, "reply key not found")
    token = sent.unsubscribe_token
    row = deliver(make_email(to=INCOMING.address_for(f"{token}-unsubscribe"), body="stop"))
    assert row.outcome == Outcome.UNSUBSCRIBED, row.reason
    participant = EmailParticipant.objects.get(issue=issue)
    assert participant.unsubscribed_at is not None
    assert Note.objects.filter(issue=issue, system=True, internal=True).exists()


def test_empty_reply_is_rejected(address) -> None:
    issue = new_issue(address)
    row = deliver(make_email(to=INCOMING.address_for(reply_key_for(issue)), body="   "))
    assert row.outcome == Outcome.REJECTED
    assert row.reason == "empty reply"


# --- rejections --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Auto-Submitted": "auto-replied"},
        {"X-Autoreply": "yes"},
        {"Precedence": "bulk"},
        {"X-Autorespond": "Out of office"},
    ],
)
def test_auto_generated_mail_is_ignored_without_notice(address, headers) -> None:
    row = deliver(make_email(to=address, headers=headers))
    assert row.outcome == Outcome.IGNORED
    assert row.reason.startswith("auto-generated")
    assert not row.rejection_notice_due
    assert not Issue.objects.exists()


def test_mailer_daemon_is_ignored(address) -> None:
    row = deliver(make_email(to=address, sender="MAILER-DAEMON@mx.customer.example"))
    assert row.outcome == Outcome.IGNORED


def test_mail_from_our_own_address_is_a_loop(address) -> None:
    row = deliver(make_email(to=address, sender=INCOMING.address_for("anything")))
    assert row.outcome == Outcome.IGNORED
    assert row.reason.startswith("loop")


def test_bounce_marks_the_participant_bouncing(address) -> None:
    issue = new_issue(address)
    key = reply_key_for(issue)
    original = make_email(
        to="jake@customer.example",
        sender=f"Support <{INCOMING.address_for(key)}>",
        headers={"References": f"<reply-{key}@appmail.adventuretime.ooo>"},
    ).decode()
    report = (
        "From: Mail Delivery System <MAILER-DAEMON@mx.customer.example>\n"
        f"To: {INCOMING.address_for(key)}\n"
        "Subject: Undelivered Mail Returned to Sender\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n\n'
        "--B\nContent-Type: text/plain\n\nYour message could not be delivered.\n\n"
        "--B\nContent-Type: message/delivery-status\n\n"
        "Reporting-MTA: dns; mx.customer.example\n\n"
        "Final-Recipient: rfc822; jake@customer.example\nAction: failed\nStatus: 5.1.1\n\n"
        f"--B\nContent-Type: message/rfc822\n\n{original}\n--B--\n"
    )
    row = deliver(report.encode())
    assert row.outcome == Outcome.IGNORED, row.reason
    assert "1 participant(s) marked bouncing" in row.reason
    assert EmailParticipant.objects.get(issue=issue).bouncing_at is not None


def test_unknown_project_and_disabled_service_desk_are_project_not_found(project) -> None:
    wrong = deliver(make_email(to=INCOMING.address_for(f"nope-{project.pk}-issue-")))
    assert (wrong.outcome, wrong.reason) == (Outcome.REJECTED, "project not found")
    project.service_desk.service_desk_enabled = False
    project.service_desk.save()
    off = deliver(make_email(to=INCOMING.address_for(project.service_desk.default_key)))
    assert (off.outcome, off.reason) == (Outcome.REJECTED, "project not found")
    assert off.decision["rule"] == "service desk off"
    assert off.rejection_notice_due


def test_too_large_is_rejected_and_recorded(settings, address) -> None:
    settings.SERVICEDESK_MAX_EMAIL_SIZE = 1000
    row = deliver(make_email(to=address, body="x" * 5000))
    assert row.outcome == Outcome.REJECTED
    assert row.reason.startswith("too large")
    assert bytes(row.raw)  # kept: nothing received is lost


def test_empty_email_is_rejected(address) -> None:
    row = deliver(make_email(to=address, subject="", body=""))
    assert (row.outcome, row.reason) == (Outcome.REJECTED, "empty email")


def test_garbage_bytes_end_with_an_outcome(address) -> None:
    for raw in (b"\x00\xff" * 100, b"no headers at all", b"Subject: x\r\n\r\n"):
        row = deliver(raw)
        assert row.status == Status.DONE
        assert row.outcome in (Outcome.REJECTED, Outcome.IGNORED)


# --- the ledger --------------------------------------------------------------------------------


def test_our_error_is_retried_with_backoff_then_recorded_as_failed(settings, monkeypatch, address):
    settings.SERVICEDESK_INBOUND_MAX_ATTEMPTS = 2

    def broken(rows):  # type: ignore[no-untyped-def]
        raise RuntimeError("database exploded")

    monkeypatch.setattr("mailroom.handlers.plan", broken)
    row = inbound_store(raw=make_email(to=address), transport="test", enqueue=False)
    _, token = inbound_claim([row.pk])
    inbound_process(row.pk, token)
    row.refresh_from_db()
    assert row.status == Status.QUEUED
    assert row.last_error == "RuntimeError: database exploded"
    assert row.next_attempt_at > timezone.now()
    assert inbound_claim([row.pk])[0] == []  # not before its backoff
    InboundMessage.objects.filter(pk=row.pk).update(next_attempt_at=timezone.now())
    _, token = inbound_claim([row.pk])
    inbound_process(row.pk, token)
    row.refresh_from_db()
    assert (row.status, row.outcome) == (Status.FAILED, Outcome.FAILED)
    assert "after 2 attempts" in row.reason


def test_sweeper_requeues_rows_left_processing_by_a_dead_worker(settings, address) -> None:
    row = inbound_store(raw=make_email(to=address), transport="test", enqueue=False)
    inbound_claim([row.pk])  # ...and the worker dies here
    InboundMessage.objects.filter(pk=row.pk).update(
        claimed_at=timezone.now() - timedelta(seconds=settings.SERVICEDESK_INBOUND_STUCK_AFTER + 1)
    )
    assert inbound_sweep()["requeued"] == 1
    row.refresh_from_db()
    assert row.status == Status.QUEUED
    _, token = inbound_claim([row.pk])
    assert inbound_process(row.pk, token) == Outcome.ISSUE_CREATED


def test_a_stale_claim_cannot_record_an_outcome(address) -> None:
    row = inbound_store(raw=make_email(to=address), transport="test", enqueue=False)
    _, token = inbound_claim([row.pk])
    assert inbound_process(row.pk, uuid.uuid4()) is None
    assert inbound_process(row.pk, token) == Outcome.ISSUE_CREATED
    assert inbound_process(row.pk, token) is None
    assert Issue.objects.count() == 1


@pytest.mark.parametrize(
    "fixture",
    [
        "routing_dsn_postfix.eml",
        "routing_ndr_exchange.eml",
        "routing_dsn_gmail.eml",
        "routing_dsn_delayed.eml",
        "routing_bounce_exim.eml",
    ],
)
def test_real_world_bounces_are_recognised_as_delivery_reports(fixture) -> None:
    row = deliver((FIXTURES / fixture).read_bytes())
    assert row.outcome == Outcome.IGNORED
    assert row.reason.startswith("delivery report"), row.reason
    assert not row.rejection_notice_due
