"""The inbound ledger in a real browser: alice (Owner) finds a rejected email, reads why, downloads
it and has the worker process it again; staff read mailbox health; bob (Reporter) may not look."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.utils import timezone
from playwright.sync_api import Page, expect

from accounts.models import User
from issues.models import OutboundEmail
from mailroom.models import InboundMessage, MailboxState, WorkerHeartbeat
from projects.models import Project
from servicedesk.config import MailboxConfig
from tests.browser.helpers import PASSWORD, demo_data, log_in
from tests.harness.services import wait_until
from tests.mailroom.helpers import deliver, make_email

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def emails(monkeypatch, transactional_db, redis_cache_flushed) -> dict[str, InboundMessage]:  # type: ignore[no-untyped-def]
    demo_data(monkeypatch)
    project = Project.objects.get(full_path="acme/game")
    # The development mailbox (address only): the same in the worker process.
    address = django_settings.SERVICEDESK_MAILBOXES["incoming_email"].address_for(
        project.service_desk.default_key
    )
    return {
        "issue": deliver(make_email(to=address, subject="My save game is gone")),
        "rejected": deliver(
            make_email(to=address, subject="", body="", sender="Finn <finn@customer.example>")
        ),
        "unclaimed": deliver(make_email(to="someone@elsewhere.example", subject="Not for us")),
    }


def wait_until_done(row: InboundMessage, timeout: float = 30) -> InboundMessage:
    def done() -> bool:
        row.refresh_from_db()
        return row.status == "done"

    wait_until(done, timeout, f"inbound #{row.pk} to be processed")
    return row


def wait_for_outbox(timeout: float = 30) -> None:
    """The thank-you and [Rejected] notices the emails caused are sent by the worker: let it
    finish before the test's database is emptied under it."""
    wait_until(
        lambda: (
            not OutboundEmail.objects.exclude(kind="team")
            .filter(status__in=["pending", "sending"])
            .exists()
        ),
        timeout,
        "the worker to send the outbox",
    )


def test_owner_reads_downloads_and_reprocesses_a_rejected_email(
    emails, live_server, page: Page, celery_worker, screenshot, tmp_path: Path
) -> None:
    rejected = emails["rejected"]
    assert (rejected.outcome, rejected.reason) == ("rejected", "empty email")
    log_in(page, live_server.url, "alice")
    page.get_by_role("link", name="acme/game").click()
    page.get_by_role("navigation", name="Project").get_by_role("link", name="Inbound mail").click()
    expect(page.get_by_role("heading", name="Inbound mail")).to_be_visible()
    ledger = page.get_by_test_id("ledger")
    expect(ledger.get_by_test_id("ledger-row")).to_have_count(2)  # not the unclaimed one
    expect(ledger).to_contain_text("My save game is gone")
    expect(ledger).to_contain_text("finn@customer.example")
    expect(ledger).not_to_contain_text("Not for us")
    screenshot(page, "ledger")

    # Only the rejections (the select swaps the results in with htmx, and the URL follows).
    page.get_by_label("Outcome").select_option("rejected")
    expect(ledger.get_by_test_id("ledger-row")).to_have_count(1)
    expect(page).to_have_url(f"{live_server.url}/acme/game/-/inbound/?q=&outcome=rejected&status=")
    ledger.get_by_role("link", name="(no subject)").click()

    expect(page.get_by_role("heading", name=f"Email #{rejected.pk}")).to_be_visible()
    expect(page.get_by_test_id("email-outcome")).to_have_text("Rejected")
    expect(page.get_by_test_id("email-reason")).to_have_text("empty email")
    decision = page.get_by_test_id("decision")
    expect(decision).to_contain_text("Rule")
    expect(decision).to_contain_text("empty")
    expect(decision).to_contain_text("Key found in header")
    screenshot(page, "ledger-detail")

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download the raw email (.eml)").click()
    download = download_info.value
    assert download.suggested_filename == f"inbound-{rejected.pk}.eml"
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    assert saved.read_bytes() == bytes(InboundMessage.objects.get(pk=rejected.pk).raw)

    # Reprocess: a confirmation first, then the worker processes it again — same outcome.
    page.get_by_text("Reprocess…").click()
    page.get_by_role("button", name=f"Reprocess email #{rejected.pk}").click()
    expect(page.get_by_role("status")).to_contain_text("is queued to be processed again")
    row = wait_until_done(rejected)
    assert (row.outcome, row.reason, row.attempts) == ("rejected", "empty email", 1)
    page.reload()
    expect(page.get_by_test_id("email-outcome")).to_have_text("Rejected")
    wait_for_outbox()


def test_staff_read_mailbox_health_and_reporters_may_not_open_the_ledger(
    emails, live_server, page: Page, browser, settings, screenshot, celery_worker
) -> None:
    settings.SERVICEDESK_MAILBOXES = {
        **settings.SERVICEDESK_MAILBOXES,
        "service_desk_email": MailboxConfig(
            name="service_desk_email",
            enabled=True,
            address="support+%{key}@acme.example",
            user="support@acme.example",
            password="never-show-this-password",
            host="imap.acme.example",
            inbox_method="imap",
        ),
    }
    now = timezone.now()
    MailboxState.objects.create(
        name="service_desk_email",
        last_fetch_at=now - timedelta(seconds=20),
        last_success_at=now - timedelta(minutes=42),
        consecutive_errors=17,
        last_error="LoginError: b'[AUTHENTICATIONFAILED] Authentication failed.' "
        "(imap.acme.example)",
        messages_fetched=1234,
    )
    WorkerHeartbeat.objects.create(hostname="celery@worker-1", seen_at=now, beats=321)
    User.objects.create_user("sam", "sam@acme.example", PASSWORD, name="Sam Staff", is_staff=True)

    log_in(page, live_server.url, "sam")
    page.get_by_role("navigation", name="Account").get_by_role("link", name="Inbound mail").click()
    health = page.get_by_test_id("mailbox-health")
    expect(health.get_by_test_id("mailbox")).to_have_count(2)
    expect(health).to_contain_text("Not fetching")
    expect(health.get_by_test_id("mailbox-error")).to_contain_text("AUTHENTICATIONFAILED")
    expect(health.get_by_test_id("heartbeats")).to_contain_text("celery@worker-1")
    expect(page.get_by_test_id("ledger").get_by_test_id("ledger-row")).to_have_count(3)
    expect(page.get_by_test_id("ledger")).to_contain_text("Not for us")
    assert "never-show-this-password" not in page.content()
    screenshot(page, "mailbox-health")

    # alice answers customers: the banner tells her the mailbox is down.
    alice = browser.new_context().new_page()
    log_in(alice, live_server.url, "alice")
    alice.goto(f"{live_server.url}/acme/game/-/issues/")
    expect(alice.get_by_test_id("mailbox-alert")).to_contain_text(
        "Mailbox service_desk_email is not fetching email"
    )
    screenshot(alice, "mailbox-banner")

    # bob is a Reporter: no tab, and the page itself is forbidden.
    bob = browser.new_context().new_page()
    log_in(bob, live_server.url, "bob")
    bob.goto(f"{live_server.url}/acme/game/-/issues/")
    expect(bob.get_by_role("navigation", name="Project")).not_to_contain_text("Inbound mail")
    response = bob.goto(f"{live_server.url}/acme/game/-/inbound/")
    assert response is not None
    assert response.status == 403
    response = bob.goto(f"{live_server.url}/-/admin/inbound/")
    assert response is not None
    assert response.status == 404
    wait_for_outbox()
