"""Akismet: new email issues are checked; spam waits in the quarantine for a Reporter's call.

The clients are the akismet package's own ``TestSyncClient`` subclasses (no network), chosen
through the AKISMET_CLIENT_CLASS setting exactly as a deployment chooses the real one.
"""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from issues.models import Issue, OutboundEmail
from mailroom.ledger import inbound_claim, inbound_process, inbound_process_batch, inbound_store
from mailroom.models import InboundMessage
from mailroom.services import NotInQuarantine, spam_confirm, spam_release
from mailroom.spam import sender_ip
from tests.mailroom.akismet_clients import _Recording
from tests.mailroom.helpers import ALIAS, INCOMING, deliver, make_email

pytestmark = pytest.mark.django_db
CLIENTS = "tests.mailroom.akismet_clients."


@pytest.fixture(autouse=True)
def mailboxes(settings, redis_cache_flushed):  # type: ignore[no-untyped-def]
    settings.SERVICEDESK_MAILBOXES = {"incoming_email": INCOMING, "service_desk_email": ALIAS}
    settings.DEFAULT_FROM_EMAIL = "support@servicedesk.test"
    _Recording.reports.clear()


def use(settings, client: str) -> None:  # type: ignore[no-untyped-def]
    settings.AKISMET_API_KEY = "akismet-test-key"
    settings.AKISMET_CLIENT_CLASS = CLIENTS + client


def to(project) -> str:  # type: ignore[no-untyped-def]
    return INCOMING.address_for(project.service_desk.default_key)


def test_spam_is_quarantined_without_an_issue_or_a_thank_you(project, settings) -> None:
    use(settings, "SpamClient")
    row = deliver(make_email(to=to(project), subject="Cheap watches"))
    assert (row.outcome, row.reason) == ("spam", "spam (spam)")
    assert row.decision["rule"] == "akismet"
    assert row.project == project
    assert not Issue.objects.exists()
    assert not OutboundEmail.objects.exclude(kind="team").exists()


def test_discard_verdict_is_quarantined_too(project, settings) -> None:
    use(settings, "DiscardClient")
    assert deliver(make_email(to=to(project))).reason == "spam (discard)"


def test_ham_becomes_an_issue_and_the_trace_says_it_was_checked(project, settings) -> None:
    use(settings, "HamClient")
    row = deliver(make_email(to=to(project)))
    assert row.outcome == "issue_created"
    assert row.decision["akismet"] == "ham"


def test_no_key_no_check(project, settings) -> None:
    settings.AKISMET_API_KEY = ""
    settings.AKISMET_CLIENT_CLASS = CLIENTS + "SpamClient"  # would say spam if asked
    row = deliver(make_email(to=to(project)))
    assert row.outcome == "issue_created"
    assert "akismet" not in row.decision


def test_akismet_unreachable_lets_the_email_through_and_says_so(project, settings) -> None:
    use(settings, "UnreachableClient")
    row = deliver(make_email(to=to(project)))
    assert row.outcome == "issue_created"
    assert row.decision["akismet"] == "error: RequestError"


def test_spam_in_a_batch_is_checked_one_by_one(project, settings) -> None:
    use(settings, "SpamClient")
    rows = [
        inbound_store(raw=make_email(to=to(project), subject=f"s{i}"), transport="t", enqueue=False)
        for i in range(3)
    ]
    claimed, token = inbound_claim([r.pk for r in rows])
    inbound_process_batch(claimed, token)
    assert set(InboundMessage.objects.values_list("outcome", flat=True)) == {"spam"}
    assert not Issue.objects.exists()


def test_not_spam_reports_ham_and_creates_the_issue_with_its_thank_you(
    project, settings, reporter
) -> None:
    use(settings, "SpamClient")
    row = deliver(make_email(to=to(project), subject="Really a customer"))
    spam_release(message_id=row.pk, user=reporter)
    assert _Recording.reports == [("ham", "jake@customer.example")]
    row.refresh_from_db()
    assert (row.status, row.spam_released, row.spam_reviewed_by) == ("queued", True, reporter)
    _, token = inbound_claim([row.pk])
    inbound_process(row.pk, token)  # Akismet still says spam: the release skips the check
    row.refresh_from_db()
    assert row.outcome == "issue_created"
    issue = Issue.objects.get()
    assert issue.title == "Really a customer"
    assert OutboundEmail.objects.exclude(kind="team").get().kind == "thank_you"
    with pytest.raises(NotInQuarantine):
        spam_release(message_id=row.pk, user=reporter)


def test_spam_confirmed_reports_spam_and_leaves_the_quarantine(
    project, settings, reporter, django_capture_on_commit_callbacks
) -> None:
    use(settings, "SpamClient")
    row = deliver(make_email(to=to(project)))
    with django_capture_on_commit_callbacks(execute=True):
        spam_confirm(message_id=row.pk, user=reporter)
    assert _Recording.reports == [("spam", "jake@customer.example")]
    row.refresh_from_db()
    assert row.reason == f"spam (confirmed by {reporter.username})"
    assert row.spam_reviewed_at is not None
    with pytest.raises(NotInQuarantine):
        spam_confirm(message_id=row.pk, user=reporter)
    with pytest.raises(NotInQuarantine):
        spam_release(message_id=row.pk, user=reporter)


def test_sender_ip_is_the_first_public_hop() -> None:
    from mailroom.parsing import parse_email

    raw = make_email(
        to="x@y.example",
        headers={
            "Received": "from mx.example (mx.example [10.0.0.5]) by us",
        },
    )
    raw = b"Received: from client.example (client.example [93.184.216.34]) by mx.example\r\n" + raw
    assert sender_ip(parse_email(raw)) == "93.184.216.34"
    assert sender_ip(parse_email(make_email(to="x@y.example"))) == "127.0.0.1"


def test_manage_py_check_says_when_spam_checking_is_off(settings) -> None:
    def check() -> str:
        out = io.StringIO()
        call_command("check", stdout=out, stderr=out)
        return out.getvalue()

    settings.AKISMET_API_KEY = ""
    assert "mailroom.I001" in check()
    assert "not checked for spam" in check()
    settings.AKISMET_API_KEY = "set"
    assert "mailroom.I001" not in check()
