"""Operator commands and the poller's one-per-mailbox lock, against the real Dovecot."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from mailroom.ledger import inbound_store
from mailroom.locks import mailbox_lock
from mailroom.models import InboundMessage
from mailroom.transport import poll_mailbox
from servicedesk.config import MailboxConfig

from .helpers import INCOMING, deliver, make_email


def mailbox(dovecot, **overrides) -> MailboxConfig:  # type: ignore[no-untyped-def]
    values = {
        "name": "incoming_email",
        "enabled": True,
        "address": "support+%{key}@example.test",
        "user": "support",
        "password": dovecot.password,
        "host": "127.0.0.1",
        "port": dovecot.port_imap,
        **overrides,
    }
    return MailboxConfig(**values)


@pytest.mark.parametrize("security", ["plain", "start_tls", "ssl"])
def test_check_mailboxes_logs_in_and_reports(imap_mailbox, settings, security) -> None:
    settings.SERVICEDESK_IMAP_INSECURE_TLS = True  # Dovecot's test certificate is self-signed
    options = {
        "plain": {},
        "start_tls": {"start_tls": True},
        "ssl": {"ssl": True, "port": imap_mailbox.port_imaps},
    }[security]
    settings.SERVICEDESK_MAILBOXES = {"incoming_email": mailbox(imap_mailbox, **options)}
    out = io.StringIO()
    call_command("check_mailboxes", stdout=out)
    assert "incoming_email (support+%{key}@example.test): OK" in out.getvalue()
    assert "UIDVALIDITY" in out.getvalue()


def test_check_mailboxes_fails_on_a_wrong_password_without_printing_it(
    imap_mailbox, settings
) -> None:
    settings.SERVICEDESK_MAILBOXES = {
        "incoming_email": mailbox(imap_mailbox, password="wrong-secret")
    }
    out = io.StringIO()
    with pytest.raises(CommandError, match="failed the check"):
        call_command("check_mailboxes", stdout=out)
    assert "failed" in out.getvalue()
    assert "wrong-secret" not in out.getvalue()


def test_check_mailboxes_says_when_a_mailbox_is_address_only(settings) -> None:
    settings.SERVICEDESK_MAILBOXES = {"incoming_email": INCOMING}
    out = io.StringIO()
    call_command("check_mailboxes", stdout=out)
    assert "address only" in out.getvalue()


@pytest.mark.django_db
def test_only_one_poller_per_mailbox(imap_mailbox, settings, redis_server) -> None:
    settings.SERVICEDESK_MAILBOXES = {"incoming_email": mailbox(imap_mailbox)}
    with mailbox_lock("incoming_email", ttl=30) as lease:
        assert lease is not None
        assert poll_mailbox("incoming_email", lease_seconds=1) == (
            "incoming_email: another worker is polling it"
        )
    assert poll_mailbox("incoming_email", lease_seconds=0.5).startswith("incoming_email: fetched")


@pytest.mark.django_db
def test_reprocess_and_list_failures(project, settings, django_capture_on_commit_callbacks) -> None:
    settings.SERVICEDESK_MAILBOXES = {"incoming_email": INCOMING}
    rejected = deliver(make_email(to="nobody@example.org"))
    out = io.StringIO()
    call_command("list_inbound", stdout=out)
    assert f"#{rejected.pk}" in out.getvalue()
    assert "no key found" in out.getvalue()

    row = inbound_store(
        raw=make_email(to=INCOMING.address_for(project.service_desk.default_key)),
        transport="test",
        enqueue=False,
    )
    InboundMessage.objects.filter(pk=row.pk).update(status="failed", outcome="failed")
    from servicedesk.celery import app

    app.conf.task_always_eager = True  # the queued task runs here, not in a worker
    try:
        with django_capture_on_commit_callbacks(execute=True):
            call_command("reprocess_email", "--failed", stdout=io.StringIO())
    finally:
        app.conf.task_always_eager = False
    row.refresh_from_db()
    assert (row.status, row.outcome) == ("done", "issue_created")
    with pytest.raises(CommandError, match="no inbound message 999999"):
        call_command("reprocess_email", "999999", stdout=io.StringIO())
    # The ledger page's refusals: an email that made its issue is not processed twice.
    with pytest.raises(CommandError, match="was carried out"):
        call_command("reprocess_email", str(row.pk), stdout=io.StringIO())
    assert InboundMessage.objects.get(pk=row.pk).status == "done"
