"""Outbound mail you can see: each public comment says, per recipient, sent / pending (next
try) / failed (the server's words); the project's Outbound mail tab (Maintainer+) and the
instance's (staff) list every email with Retry for a failed one; the Django admin shows the
outbox read-only. Reply keys and unsubscribe tokens are never shown anywhere."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from issues.models import Issue, OutboundEmail
from issues.outbox import outbound_claim, outbound_send
from issues.services import note_post
from tests.factories import UserFactory
from tests.harness.services import wait_until
from tests.issues.test_composer import JAKE, ticket
from tests.mailroom.helpers import ALIAS, INCOMING

pytestmark = pytest.mark.django_db
Status = OutboundEmail.Status


@pytest.fixture(autouse=True)
def mailboxes(settings, redis_cache_flushed):  # type: ignore[no-untyped-def]
    settings.SERVICEDESK_MAILBOXES = {"incoming_email": INCOMING, "service_desk_email": ALIAS}
    settings.DEFAULT_FROM_EMAIL = "support@servicedesk.test"


def reply(issue: Issue, author, body: str = "We are on it.") -> OutboundEmail:  # type: ignore[no-untyped-def]
    """A public comment; returns the email it recorded to Jake."""
    posted = note_post(issue=issue, author=author, body=body)
    return OutboundEmail.objects.get(note=posted.note, recipient=JAKE)


def send_now(email: OutboundEmail) -> str:
    claimed, token = outbound_claim([email.pk])
    return outbound_send(claimed, token)[email.pk]


def secrets_of(email: OutboundEmail) -> list[str]:
    email.refresh_from_db()
    sent = email.sent_notification
    assert sent is not None
    assert sent.reply_key in str(email.headers)  # the test looks for something that is there
    return [sent.reply_key, sent.unsubscribe_token]


def outbox_url(project, *extra) -> str:  # type: ignore[no-untyped-def]
    if extra:
        return reverse(f"project_outbound_{extra[0]}", args=[project.full_path, *extra[1:]])
    return reverse("project_outbound_list", args=[project.full_path])


# --- the issue page ---------------------------------------------------------------------------


def test_each_public_comment_shows_its_emails_sent_pending_and_failed(
    client, smtp, project, reporter
) -> None:
    issue = ticket(project)
    sent = reply(issue, reporter, "First answer")
    assert send_now(sent) == Status.SENT
    pending = reply(issue, reporter, "Second answer")
    OutboundEmail.objects.filter(pk=pending.pk).update(
        next_attempt_at=timezone.now() + timedelta(minutes=5),
        last_error="SMTPResponseException: 451 Greylisted",
    )
    failed = reply(issue, reporter, "Third answer")
    smtp.answer(JAKE, "550 5.1.1 No such user here", at="RCPT")
    assert send_now(failed) == Status.FAILED

    client.force_login(reporter)
    html = client.get(issue.get_absolute_url()).content.decode()

    states = html.split('data-testid="deliveries"')[1:]
    assert len(states) == 3
    assert "Emailed to jake@customer.example:" in states[0]
    assert ">Sent<" in states[0]
    assert ">Pending<" in states[1]
    assert "next try in 4" in states[1]
    assert "451 Greylisted" in states[1]
    assert ">Failed<" in states[2]
    assert "(550, b&#x27;5.1.1 No such user here&#x27;)" in states[2]
    for secret in secrets_of(sent):
        assert secret not in html


def test_guests_see_no_delivery_states(client, project, reporter, guest) -> None:
    issue = ticket(project, confidential=False)
    reply(issue, reporter)
    client.force_login(guest)
    html = client.get(issue.get_absolute_url()).content.decode()
    assert "We are on it." in html
    assert 'data-testid="deliveries"' not in html
    assert JAKE not in html


def test_internal_notes_and_team_notifications_list_no_emails(client, project, reporter) -> None:
    issue = ticket(project)
    note_post(issue=issue, author=reporter, body="Only us", internal=True)
    client.force_login(reporter)
    html = client.get(issue.get_absolute_url()).content.decode()
    assert 'data-testid="deliveries"' not in html


# --- the project's Outbound mail tab ------------------------------------------------------------


def test_maintainers_list_the_projects_emails_and_filter_them(
    client, project, maintainer, reporter, smtp
) -> None:
    issue = ticket(project)
    good = reply(issue, reporter, "Good one")
    send_now(good)
    bad = reply(issue, reporter, "Bad one")
    smtp.answer(JAKE, "550 5.1.1 No such user here", at="RCPT")
    send_now(bad)
    elsewhere = ticket(_other_project(project))
    reply(elsewhere, _other_member(elsewhere.project))

    client.force_login(maintainer)
    html = client.get(outbox_url(project)).content.decode()
    assert html.count('data-testid="outbox-row"') == 2
    assert "Outbound mail" in html
    assert "to jake@customer.example" in html

    failed = client.get(outbox_url(project), {"status": "failed"}).content.decode()
    assert failed.count('data-testid="outbox-row"') == 1
    assert f"/-/outbound/{bad.pk}/" in failed
    assert (
        client.get(outbox_url(project), {"q": "nobody@"})
        .content.decode()
        .count('data-testid="outbox-row"')
        == 0
    )
    htmx = client.get(outbox_url(project), {"kind": "new_note"}, HTTP_HX_REQUEST="true")
    assert b"<h1>" not in htmx.content
    assert htmx.content.count(b'data-testid="outbox-row"') == 2


def _other_project(project):  # type: ignore[no-untyped-def]
    from tests.factories import ProjectFactory

    return ProjectFactory(group=project.group, path="other", service_desk_enabled=True)


def _other_member(project):  # type: ignore[no-untyped-def]
    from projects.models import Role
    from projects.services import membership_set

    user = UserFactory(username="olga")
    membership_set(user=user, project=project, role=Role.REPORTER)
    return user


def test_the_list_costs_the_same_queries_for_few_and_many_emails(
    client, project, maintainer, reporter
) -> None:
    issue = ticket(project)
    client.force_login(maintainer)

    def cost() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(outbox_url(project)).status_code == 200
        return len(captured)

    reply(issue, reporter)
    few = cost()
    for n in range(30):
        reply(issue, reporter, f"Answer {n}")
    assert cost() == few


def test_the_detail_shows_the_email_without_its_secrets(client, project, maintainer, reporter):
    issue = ticket(project)
    email = reply(issue, reporter, "Here is the fix.")
    client.force_login(maintainer)
    html = client.get(outbox_url(project, "detail", email.pk)).content.decode()
    assert "Here is the fix." in html
    assert "Reply-To" in html
    assert "[redacted]" in html
    for secret in secrets_of(email):
        assert secret not in html


@pytest.mark.django_db(transaction=True)
def test_retry_sends_a_failed_email_again_through_the_worker(
    client, project, maintainer, reporter, smtp, celery_worker
) -> None:
    issue = ticket(project)
    # The worker sends the reply as soon as it is committed: refused from the start.
    smtp.answer(JAKE, "550 5.1.1 No such user here", at="RCPT")
    email = reply(issue, reporter, "Try me again")
    wait_until(
        lambda: OutboundEmail.objects.get(pk=email.pk).status == Status.FAILED, 30, "the refusal"
    )
    smtp.clear()  # the mailbox exists now

    client.force_login(maintainer)
    response = client.post(outbox_url(project, "retry", email.pk))
    assert response.status_code == 302
    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        f"Email #{email.pk} is queued to be sent again."
    ]
    wait_until(
        lambda: OutboundEmail.objects.get(pk=email.pk).status == Status.SENT, 30, "the retry"
    )
    assert [m.message["Subject"] for m in smtp.messages if JAKE in m.recipients] == [email.subject]


def test_retry_refuses_an_email_that_did_not_fail(client, project, maintainer, reporter, smtp):
    issue = ticket(project)
    email = reply(issue, reporter)
    send_now(email)
    client.force_login(maintainer)
    response = client.post(outbox_url(project, "retry", email.pk))
    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        f"Email #{email.pk} is sent, not failed: nothing to retry."
    ]
    email.refresh_from_db()
    assert (email.status, email.attempts) == (Status.SENT, 1)


def test_another_projects_email_is_not_in_this_ledger(client, project, maintainer) -> None:
    other = _other_project(project)
    email = reply(ticket(other), _other_member(other))
    client.force_login(maintainer)
    assert client.get(outbox_url(project, "detail", email.pk)).status_code == 404
    assert client.post(outbox_url(project, "retry", email.pk)).status_code == 404


# --- the instance's ledger and the Django admin ---------------------------------------------------


def test_staff_see_every_projects_emails_and_the_admin_hides_the_secrets(
    client, project, reporter
) -> None:
    email = reply(ticket(project), reporter, "Admin can read this")
    other = _other_project(project)
    reply(ticket(other), _other_member(other))
    staff = UserFactory(username="root", is_staff=True, is_superuser=True)
    client.force_login(staff)

    listing = client.get(reverse("instance_outbound_list")).content.decode()
    assert listing.count('data-testid="outbox-row"') == 2
    assert "acme/other" in listing
    assert "acme/game" in listing

    for url in (
        reverse("instance_outbound_detail", args=[email.pk]),
        reverse("admin:issues_outboundemail_changelist"),
        reverse("admin:issues_outboundemail_change", args=[email.pk]),
    ):
        response = client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        for secret in secrets_of(email):
            assert secret not in html, url
    admin_page = client.get(reverse("admin:issues_outboundemail_change", args=[email.pk]))
    assert "Admin can read this" in admin_page.content.decode()
    assert client.get(reverse("admin:issues_outboundemail_add")).status_code == 403
