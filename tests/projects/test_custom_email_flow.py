"""A project's own email address end to end: the verification email leaves through the
project's SMTP server (aiosmtpd requiring STARTTLS and AUTH, a certificate from the session's
CA), the "provider" forwards it by LMTP into Dovecot, the real worker polls it over IMAP and
decides; then Service Desk emails go out through that server and replies come back the same
way. Each verification failure reason is reached through the real workers."""

from __future__ import annotations

import re
from datetime import timedelta
from email.utils import parseaddr

import pytest
from django.utils import timezone

from issues.models import Issue, Note, OutboundEmail
from mailroom.models import InboundMessage
from projects.custom_email import TOKEN_LINE, custom_email_create, custom_email_enable
from projects.models import CustomEmail
from servicedesk.queues import enqueue
from tests.factories import ProjectFactory
from tests.harness.services import CapturedMail
from tests.mailroom.helpers import make_email
from tests.mailroom.test_imap import broker_url, start_poller, wait_for

pytestmark = pytest.mark.django_db(transaction=True)
CUSTOM = "support@customer.test"
Error = CustomEmail.Error


@pytest.fixture
def mailbox_env(imap_mailbox, redis_server, settings) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """The IMAP workers' environment (test_imap.py's), on their own broker; this process gets
    the same mailbox configuration."""
    import redis

    from servicedesk.config import load_mailboxes

    env = {
        "REDIS_URL": broker_url(redis_server),
        "SERVICEDESK_INCOMING_EMAIL_ENABLED": "true",
        "SERVICEDESK_INCOMING_EMAIL_ADDRESS": "support+%{key}@example.test",
        "SERVICEDESK_INCOMING_EMAIL_HOST": "127.0.0.1",
        "SERVICEDESK_INCOMING_EMAIL_PORT": str(imap_mailbox.port_imap),
        "SERVICEDESK_INCOMING_EMAIL_USER": "support",
        "SERVICEDESK_INCOMING_EMAIL_PASSWORD": imap_mailbox.password,
        "SERVICEDESK_INCOMING_EMAIL_IDLE_TIMEOUT": "2",
        "SERVICEDESK_IMAP_LOCK_TTL": "6",
    }
    settings.SERVICEDESK_MAILBOXES = load_mailboxes(None, environ=env)
    redis.Redis.from_url(broker_url(redis_server)).flushdb()
    return env


def sd_address(settings, project) -> str:  # type: ignore[no-untyped-def]
    return settings.SERVICEDESK_MAILBOXES["incoming_email"].address_for(
        project.service_desk.default_key
    )


def forwarded(raw: bytes, to: str) -> bytes:
    """What a forwarding rule delivers: the message as it was, plus the forwarder's headers."""
    return f"X-Forwarded-For: {CUSTOM} {to}\r\nX-Forwarded-To: {to}\r\n".encode() + raw


def start(project, actor, server, **overrides):  # type: ignore[no-untyped-def]
    values = {"address": CUSTOM, "smtp_host": "127.0.0.1", "smtp_port": server.port,
              "smtp_username": server.username, "smtp_password": server.password,
              "smtp_authentication": "auto", **overrides}  # fmt: skip
    return custom_email_create(project=project, actor=actor, **values)


def finished(custom: CustomEmail, timeout: float = 60) -> CustomEmail:
    return wait_for(
        lambda: CustomEmail.objects.exclude(state="started").filter(pk=custom.pk).first(),
        timeout,
        "the verification to finish",
    )


def result_emails(smtp, count: int = 2) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Recipient → subject of the result emails (the instance's own server)."""
    return {m.recipients[0]: str(m.message["Subject"]) for m in smtp.wait_for(count, 30)}


@pytest.mark.parametrize(
    ("provider_does", "expected"),
    [
        ("forward as it is", "verified"),
        ("forward to another project", Error.INCORRECT_FORWARDING_TARGET),
        ("rewrite From", Error.INCORRECT_FROM),
        ("rewrite the token", Error.INCORRECT_TOKEN),
    ],
)
def test_verification_round_trip_through_the_providers_forwarding(
    imap_mailbox, worker_factory, mailbox_env, celery_worker, smtp, submission_server,
    project, owner, maintainer, settings, provider_does, expected,
) -> None:  # fmt: skip
    target = sd_address(settings, project)
    if provider_does == "forward to another project":
        target = sd_address(settings, ProjectFactory(path="other", service_desk_enabled=True))

    def forward(mail: CapturedMail) -> None:
        raw = mail.data
        if provider_does == "rewrite From":
            raw = re.sub(rb"(?m)^From: .*$", b"From: forwarder@customer.test", raw, count=1)
        if provider_does == "rewrite the token":
            raw = re.sub(rb"(Verification token: )\S+", rb"\1XXXXXXXXXXXX", raw)
        imap_mailbox.deliver_lmtp(forwarded(raw, target), target)

    submission_server.forward = forward
    start_poller(worker_factory, mailbox_env)
    custom = start(project, maintainer, submission_server)
    custom = finished(custom)

    [sent] = submission_server.messages
    assert (sent.envelope_from, sent.recipients) == (CUSTOM, ["support+verify@customer.test"])
    assert f"{TOKEN_LINE} {custom.token}" in sent.message.get_content()
    assert submission_server.logins == [("CRAM-MD5", submission_server.username)]
    assert (custom.state, custom.error or "verified") == (
        ("verified", "verified") if expected == "verified" else ("failed", expected)
    )
    row = InboundMessage.objects.get(transport="imap")
    assert row.reason == f"custom email verification: {expected}"
    assert not Issue.objects.exists()  # never an issue, never a thank-you with the token
    subjects = result_emails(smtp)
    assert set(subjects) == {owner.email, maintainer.email}
    word = "is verified" if expected == "verified" else "failed"
    assert all(word in subject for subject in subjects.values())


def test_verification_email_that_comes_back_too_late_fails(
    imap_mailbox, worker_factory, mailbox_env, celery_worker, smtp, submission_server,
    project, owner, maintainer, settings,
) -> None:  # fmt: skip
    custom = start(project, maintainer, submission_server)
    [held] = submission_server.wait_for(1, 30)  # the provider sits on it
    CustomEmail.objects.filter(pk=custom.pk).update(
        triggered_at=timezone.now() - timedelta(minutes=31)
    )
    target = sd_address(settings, project)
    imap_mailbox.deliver_lmtp(forwarded(held.data, target), target)
    start_poller(worker_factory, mailbox_env)
    assert finished(custom).error == Error.MAIL_NOT_RECEIVED


def test_verification_never_forwarded_is_failed_by_the_periodic_task(
    celery_worker, smtp, submission_server, project, owner, maintainer
) -> None:
    custom = start(project, maintainer, submission_server)
    submission_server.wait_for(1, 30)  # sent, but no forwarding rule brings it back
    CustomEmail.objects.filter(pk=custom.pk).update(
        triggered_at=timezone.now() - timedelta(minutes=31)
    )
    enqueue("projects.tasks.expire_custom_email_verifications")  # as beat does every minute
    assert finished(custom).error == Error.MAIL_NOT_RECEIVED
    assert set(result_emails(smtp)) == {owner.email, maintainer.email}


@pytest.mark.parametrize(
    ("server_is", "expected"),
    [
        ("refusing the password", Error.INVALID_CREDENTIALS),
        ("not there", Error.SMTP_HOST_ISSUE),
        ("silent", Error.READ_TIMEOUT),
    ],
)
def test_smtp_failures_when_sending_the_verification_through_the_worker(
    celery_worker, smtp, submission_server, silent_server, project, owner, maintainer,
    server_is, expected,
) -> None:  # fmt: skip
    overrides: dict[str, object] = {}
    if server_is == "refusing the password":
        overrides["smtp_password"] = "not-the-password"
    elif server_is == "not there":
        submission_server.stop()
    else:
        overrides["smtp_port"] = silent_server.port
    custom = start(project, maintainer, submission_server, **overrides)
    assert finished(custom).error == expected
    subjects = result_emails(smtp)
    assert set(subjects) == {owner.email, maintainer.email}
    body = "".join(m.data.decode(errors="replace") for m in smtp.messages)
    assert "not-the-password" not in body
    assert "not-the-password" not in celery_worker.log_path.read_text(errors="replace")


def test_service_desk_emails_go_through_the_projects_server_and_replies_come_back(
    imap_mailbox, worker_factory, mailbox_env, celery_worker, smtp, submission_server,
    project, maintainer, settings,
) -> None:  # fmt: skip
    project.service_desk.outgoing_name = "ACME Support"
    project.service_desk.save()
    custom = start(project, maintainer, submission_server)
    submission_server.wait_for(1, 30)
    CustomEmail.objects.filter(pk=custom.pk).update(state="verified")
    custom_email_enable(project=project, enabled=True)
    target = sd_address(settings, project)
    # A customer writes to the custom address; the provider forwards it to the project.
    imap_mailbox.deliver_lmtp(
        forwarded(make_email(to=CUSTOM, subject="Broken save game"), target), target
    )
    start_poller(worker_factory, mailbox_env)
    issue = wait_for(lambda: Issue.objects.filter(title="Broken save game").first(), 30, "issue")
    thank_you = submission_server.wait_for(2, 30)[1].message
    assert parseaddr(thank_you["From"]) == ("ACME Support", CUSTOM)
    key = OutboundEmail.objects.get(kind="thank_you").sent_notification.reply_key
    assert parseaddr(thank_you["Reply-To"])[1] == f"support+{key}@customer.test"
    # The customer answers it; the provider forwards the answer (their client kept no
    # References): the reply key in To routes it.
    answer = make_email(to=thank_you["Reply-To"], subject="Re: Broken save game", body="Still.")
    imap_mailbox.deliver_lmtp(forwarded(answer, target), target)
    note = wait_for(lambda: Note.objects.filter(issue=issue, body="Still.").first(), 30, "note")
    assert note.external_author == "jake@customer.example"
    # Nothing of the project's went through the instance's own server.
    assert all(parseaddr(m.message["From"])[1] != CUSTOM for m in smtp.messages)
